"""The grid minimum, the cosine of two directions, and :func:`analyse` (every finding at once).

The rules (missing points, slope, convexity) are stated in :mod:`lossmap.analysis.common`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface
from .common import _centre_or_closest, _check_surface, _values
from .convexity import convexity
from .slope import slope_at_centre

__all__ = ["analyse", "direction_cosine", "minimum"]


# -- minimum -------------------------------------------------------------------
def minimum(surface: Surface, variable: str) -> dict[str, Any]:
    """Value and coordinates of the grid minimum over the finite points.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str
        A stored variable, e.g. ``"test_loss"``.

    Returns
    -------
    dict
        ``value`` (NaN if no point is finite), ``coords`` (dim → coordinate,
        or None), ``index`` (grid index tuple, or None), ``at_centre`` (bool:
        the minimum is at the centre, or at the grid point closest to it when
        0 is not on the grid; ties count as at the centre) and ``warning``
        (a sentence, or None).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": (a - 0.5) ** 2}, np.ones(21, bool))
    >>> r = minimum(surf, "train_loss")
    >>> r["coords"], r["warning"]
    ({'alpha': 0.5}, 'the minimum along this slice is not at the centre')
    """
    _check_surface(surface, what="minimum")
    L = _values(surface, variable)
    finite = np.isfinite(L)
    out: dict[str, Any] = {"variable": variable}
    if not finite.any():
        out.update(
            value=math.nan,
            coords=None,
            index=None,
            at_centre=False,
            warning=f"{variable} has no finite point on this slice",
        )
        return out
    flat = int(np.argmin(np.where(finite, L, np.inf)))
    idx = tuple(int(i) for i in np.unravel_index(flat, L.shape))
    value = float(L[idx])
    centre, note = _centre_or_closest(surface)
    at_centre = bool(finite[centre] and L[centre] <= value)
    if at_centre:
        idx = centre
    out.update(
        value=value,
        coords={d: float(surface.coords[d][i]) for d, i in zip(surface.dims, idx, strict=True)},
        index=idx,
        at_centre=at_centre,
        warning=None if at_centre else "the minimum along this slice is not at the centre",
    )
    if note:
        out["note"] = note
    return out


# -- directions ----------------------------------------------------------------
def direction_cosine(d1: Mapping[str, Any], d2: Mapping[str, Any]) -> float:
    """Cosine of the angle between two directions (0 if either is zero).

    Parameters
    ----------
    d1, d2 : Direction or dict of str to Tensor
        Directions keyed like ``model.named_parameters()``; the inner product
        runs over the names they share.

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> round(direction_cosine({"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])}), 4)
    0.7071
    """
    from ..directions.direction import Direction

    for name, d in (("d1", d1), ("d2", d2)):
        if not isinstance(d, Mapping):
            raise InputTypeError(
                f"{name} must be a Direction or a dict of tensors, got {type(d).__name__}"
            )
    first = d1 if isinstance(d1, Direction) else Direction(d1)
    second = d2 if isinstance(d2, Direction) else Direction(d2)
    if not set(first) & set(second):
        raise InputError(
            "the two directions share no parameter name: they belong to different models"
        )
    return float(first.cosine(second))


# -- everything at once --------------------------------------------------------
def analyse(surface: Surface, variables: Any = None) -> dict[str, dict[str, Any]]:
    """Slope (lines only), convexity and minimum of each variable.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variables : str or sequence of str, optional
        Default: every ``*_loss`` variable (every variable if there is none).

    Returns
    -------
    dict of str to dict
        Per variable: ``{"slope": ..., "convexity": ..., "minimum": ...}``
        (``slope`` only for a line), each the result of the function of that
        name.
    """
    _check_surface(surface, what="analyse")
    if variables is None:
        variables = [v for v in surface.values if v.endswith("_loss")] or list(surface.values)
    elif isinstance(variables, str):
        variables = [variables]
    out: dict[str, dict[str, Any]] = {}
    for v in variables:
        entry: dict[str, Any] = {}
        if len(surface.dims) == 1:
            entry["slope"] = slope_at_centre(surface, v)
        entry["convexity"] = convexity(surface, v)
        entry["minimum"] = minimum(surface, v)
        out[v] = entry
    return out
