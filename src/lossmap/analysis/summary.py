"""Numbers read off a Surface: slope at the centre, convexity, grid minimum, direction cosine.

Everything here only reads a :class:`~lossmap.surface.Surface` (pure numpy; no
plotting, no evaluation). The rules, stated once:

* **Missing points.** A grid point whose value is NaN (not computed yet) or not
  finite (diverged) is *ignored*: a finite difference that would need it is not
  formed and is counted as ``skipped``; the minimum is taken over finite
  points only. Nothing is ever interpolated across a missing point.
* **Slope.** The central difference ``(L[i+1] - L[i-1]) / (a[i+1] - a[i-1])``
  at the grid point ``i`` at α = 0. The point is *stationary along this
  direction* when the change the slope predicts across the whole scanned
  range is small against the loss itself::

      |slope| · (hi - lo)  <  tol · max(|L(0)|, 1)        (tol = 1e-2 by default)

  i.e. the linear term moves the loss by less than 1 % of its value (or of 1,
  for losses below 1) from one end of the slice to the other.
* **Convexity.** Second differences ``D[i] = L[i-1] - 2 L[i] + L[i+1]``. A
  slice is *not convex* when some ``D[i]`` is negative beyond round-off::

      D[i]  <  -safety · eps · (|L[i-1]| + 2 |L[i]| + |L[i+1]|)

  where ``eps`` is the machine epsilon of the scan's evaluation dtype
  (``spec.dtype``; float32 → 1.19e-7) and ``safety`` (32 by default) covers
  the error of a mean accumulated over many samples. Rounding each of the
  three values alone can shift ``D`` by at most ``eps/2`` times that sum.

Slope and convexity live in private modules next to this one; every name is
importable from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface
from .common import _EPS as _EPS
from .common import CONVEXITY_SAFETY, SLOPE_TOL
from .common import _centre_or_closest as _centre_or_closest
from .common import _check_surface as _check_surface
from .common import _eps as _eps
from .common import _require_line as _require_line
from .common import _values as _values
from .convexity import _line_convexity as _line_convexity
from .convexity import _second_differences as _second_differences
from .convexity import _verdict as _verdict
from .convexity import convexity
from .slope import slope_at_centre

__all__ = [
    "CONVEXITY_SAFETY",
    "SLOPE_TOL",
    "analyse",
    "convexity",
    "direction_cosine",
    "minimum",
    "slope_at_centre",
]


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
    >>> spec = ScanSpec(axes=((-1, 1, 21),), splits=("train",), metrics=("loss",))
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
