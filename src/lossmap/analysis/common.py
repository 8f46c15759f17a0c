"""Defaults and input helpers shared by :mod:`lossmap.analysis` and its private modules."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface

SLOPE_TOL = 1e-2
"""Default ``tol`` of :func:`slope_at_centre` (fraction of the loss scale)."""

CONVEXITY_SAFETY = 32.0
"""Default ``safety`` factor on round-off in :func:`convexity`."""

_EPS = {"bfloat16": 2.0**-7, "float16": 2.0**-10, "half": 2.0**-10}


def _check_surface(surface: Any, *, what: str) -> Surface:
    if not isinstance(surface, Surface):
        raise InputTypeError(f"{what} takes a lossmap Surface, got {type(surface).__name__}")
    return surface


def _values(surface: Surface, variable: str) -> np.ndarray:
    if variable not in surface.values:
        raise InputError(
            f"unknown variable {variable!r}; this surface has {', '.join(surface.values)}"
        )
    return np.asarray(surface.values[variable], dtype=np.float64)


def _require_line(surface: Surface, what: str) -> None:
    if len(surface.dims) != 1:
        raise InputError(
            f"{what} needs a line (1 direction); this surface is a plane: "
            "take a grid line of it, or use convexity()/minimum(), which accept planes"
        )


def _eps(dtype: str) -> float:
    """Machine epsilon of an evaluation dtype name (float32 when unknown)."""
    name = str(dtype).replace("torch.", "")
    if name in _EPS:
        return _EPS[name]
    try:
        return float(np.finfo(np.dtype(name)).eps)
    except TypeError:
        return float(np.finfo(np.float32).eps)


def _centre_or_closest(surface: Surface) -> tuple[tuple[int, ...], str | None]:
    """Grid index of the centre, else of the grid point closest to it, with a note."""
    centre = surface.centre_index()
    if centre is not None:
        return centre, None
    idx = tuple(int(np.argmin(np.abs(c))) for c in surface.spec.coords())
    at = ", ".join(
        f"{d} = {surface.coords[d][i]:.4g}" for d, i in zip(surface.dims, idx, strict=True)
    )
    return idx, f"0 is not a grid point; the closest grid point ({at}) is used instead"
