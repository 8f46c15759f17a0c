"""The rules every analysis follows, stated once, and the helpers that apply them.

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
"""

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
