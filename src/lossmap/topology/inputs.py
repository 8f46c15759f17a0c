"""What :func:`lossmap.topology` accepts, read into one shape: values, errors, coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError

__all__ = ["Field", "read_field"]

#: The names of a scan's dimensions, in order.
DIMS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


@dataclass(frozen=True)
class Field:
    """Values to build a merge tree on.

    ``values`` (grid shape, or (n,) for sampled points), ``se`` (same shape or
    None), ``dims``, ``coords`` (dimension → 1-D coordinates of a grid),
    ``points`` ((n, d) sampled coordinates, or None for a grid), ``missing``
    (bool, points not computed), ``samples`` (behind each value, if known).
    """

    values: np.ndarray
    se: np.ndarray | None
    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    points: np.ndarray | None
    missing: np.ndarray
    samples: int | None = None


def _array(x: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(f"{what} must be numbers, got {type(x).__name__}") from None


def read_field(
    data: Any,
    variable: str,
    *,
    se: Any = None,
    coords: Any = None,
    points: Any = None,
) -> Field:
    """Read a Surface, an xarray Dataset/DataArray, or an array into a :class:`Field`."""
    if hasattr(data, "done") and hasattr(data, "values") and isinstance(data.values, dict):
        return _surface(data, variable)
    try:
        import xarray as xr
    except ImportError:  # pragma: no cover - xarray is a dependency
        xr = None
    if xr is not None and isinstance(data, xr.Dataset):
        if variable not in data:
            names = ", ".join(str(v) for v in data.data_vars)
            raise InputError(f"no variable {variable!r} in the Dataset; it has {names}")
        da = data[variable]
        err = data.get(f"{variable}_se")
        done = data.get("done")
        missing = np.zeros(da.shape, bool) if done is None else ~np.asarray(done, bool)
        return _grid(
            da.values,
            None if err is None else err.values,
            tuple(map(str, da.dims)),
            {
                str(d): np.asarray(da[d].values, np.float64)
                if d in da.coords
                else np.arange(n, dtype=np.float64)
                for d, n in zip(da.dims, da.shape, strict=True)
            },
            missing,
        )
    if xr is not None and isinstance(data, xr.DataArray):
        return read_field(data.to_dataset(name=variable), variable, se=se)
    values = _array(data, "values")
    err = None if se is None else _array(se, "se")
    if err is not None and err.shape != values.shape:
        raise InputError(
            f"se has shape {err.shape} but the values have {values.shape}: pass one "
            "standard error per value"
        )
    if points is not None:
        pts = _array(points, "points")
        if pts.ndim != 2 or values.ndim != 1 or len(pts) != len(values):
            raise InputError(
                f"sampled points must be an (n, d) array with n values; got points "
                f"{pts.shape} and values {values.shape}"
            )
        dims = (
            DIMS[: pts.shape[1]]
            if pts.shape[1] <= len(DIMS)
            else tuple(f"x{i}" for i in range(pts.shape[1]))
        )
        return Field(values, err, tuple(dims), {}, pts, np.zeros(values.shape, bool))
    if values.ndim < 1:
        raise InputError("topology needs a grid of values (an array of 1 or more dimensions)")
    dims = (
        DIMS[: values.ndim]
        if values.ndim <= len(DIMS)
        else tuple(f"x{i}" for i in range(values.ndim))
    )
    if coords is None:
        axes = {d: np.arange(n, dtype=np.float64) for d, n in zip(dims, values.shape, strict=True)}
    else:
        seq = list(coords.values()) if isinstance(coords, dict) else list(coords)
        names = list(coords) if isinstance(coords, dict) else list(dims)
        if len(seq) != values.ndim or any(
            len(c) != n for c, n in zip(seq, values.shape, strict=True)
        ):
            raise InputError(
                f"coords must give one coordinate array per dimension of the "
                f"values' shape {values.shape}"
            )
        dims = tuple(map(str, names))
        axes = {d: _array(c, "coords") for d, c in zip(dims, seq, strict=True)}
    return _grid(values, err, tuple(dims), axes, np.zeros(values.shape, bool))


def _grid(
    values: np.ndarray,
    se: np.ndarray | None,
    dims: tuple[str, ...],
    coords: dict[str, np.ndarray],
    missing: np.ndarray,
    samples: int | None = None,
) -> Field:
    values = np.asarray(values, np.float64)
    se = None if se is None else np.asarray(se, np.float64)
    return Field(values, se, dims, coords, None, np.asarray(missing, bool), samples)


def _surface(surf: Any, variable: str) -> Field:
    try:
        values = surf[variable]
        err = surf.se(variable)
    except KeyError as exc:
        raise InputError(str(exc.args[0]) if exc.args else f"no variable {variable!r}") from None
    split = variable.split("_", 1)[0]
    samples = (surf.samples or {}).get(split) if getattr(surf, "samples", None) else None
    spec = getattr(surf, "spec", None)
    if getattr(spec, "design", None) is not None:  # sampled points, not a grid: a k-NN graph
        pts = np.asarray(surf.points(), dtype=np.float64)
        k = pts.shape[1]
        dims = DIMS[:k] if k <= len(DIMS) else tuple(f"x{i}" for i in range(k))
        return Field(
            np.asarray(values, np.float64).reshape(-1),
            None if err is None else np.asarray(err, np.float64).reshape(-1),
            tuple(dims),
            {},
            pts,
            ~np.asarray(surf.done, bool).reshape(-1),
            samples,
        )
    return _grid(
        values, err, tuple(surf.dims), dict(surf.coords), ~np.asarray(surf.done, bool), samples
    )
