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
  for losses below 1) from one end of the slice to the other. This fixed rule
  decides only where the slope's uncertainty was not measured; where the scan
  measured the slope at the centre with its standard error
  (``Surface.slopes``), the centre is on a slope when ``|slope| > z · se``
  (:mod:`lossmap.analysis.uncertainty`).
* **Convexity.** Second differences ``D[i] = L[i-1] - 2 L[i] + L[i+1]``. A
  slice is *not convex* when some ``D[i]`` is negative beyond round-off. The
  round-off is the scan's **measured floor** ``f`` (``Surface.roundoff``, per
  variable): the largest difference between the scan's own values and a
  float64 evaluation at the centre-most grid point and the grid's corners
  (:mod:`lossmap.backends.torch.roundoff`). Each of the four unit weights of ``D``
  can carry ``f``, so a second difference counts as negative when::

      D[i]  <  -k · 4 · f  -  eps64 · (|L[i-1]| + 2 |L[i]| + |L[i+1]|)     (k = 2)

  (the last term is the float64 arithmetic of ``D`` itself, negligible). The
  safety ``k`` (:data:`ROUNDOFF_SAFETY`) covers grid points whose error
  exceeds the measured ones (the floor is a maximum over at most 5 points, not
  over the grid): on the demo's θ0 line (512 samples) the largest error over
  all 31 points was 0.67× the floor measured at 3, on the quartic line of
  ``tests/test_roundoff.py`` 1.55×; and ``k = 2`` still resolves second
  differences 14× smaller than the −3e-5 that θ0 line has (bound 2.2e-6).
  Where no floor was measured (a store of lossmap 0.1, the JAX backend, a
  Surface built by hand) the round-off is *assumed* from the machine epsilon
  of the scan's dtype (``spec.dtype``; float32 → 1.19e-7) as before::

      D[i]  <  -safety · eps · (|L[i-1]| + 2 |L[i]| + |L[i+1]|)       (safety = 32)

  and the finding's evidence says the round-off was assumed (``floor_measured`` False).
  This assumed bound is loose: on the demo's θ0 line it is about 100× the
  measured error and hides second differences of −3e-5.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface
from .finding import Evidence

SLOPE_TOL = 1e-2
"""Default ``tol`` of :func:`slope_at_centre` (fraction of the loss scale)."""

CONVEXITY_SAFETY = 32.0
"""Default ``safety`` factor on the assumed (dtype-eps) round-off in :func:`convexity`."""

ROUNDOFF_SAFETY = 2.0
"""Default safety ``k`` on the measured round-off floor (see the rules above)."""

EPS64 = float(np.finfo(np.float64).eps)

_EPS = {"bfloat16": 2.0**-7, "float16": 2.0**-10, "half": 2.0**-10}


def _check_surface(surface: Any, *, what: str) -> Surface:
    if not isinstance(surface, Surface):
        raise InputTypeError(f"{what} takes a lossmap Surface, got {type(surface).__name__}")
    from ..scan.slicing import require_view

    require_view(surface, what)  # 3-D and up: the message shows the slice to take
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


def _floor(surface: Surface, variable: str, floor: float | None = None) -> float | None:
    """The measured round-off floor of ``variable`` (``floor`` if given), None if not measured."""
    if floor is None and surface.roundoff is not None:
        floor = surface.roundoff.get(variable)
    if floor is None:
        return None
    if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor >= 0):
        raise InputError(f"floor={floor!r} must be a finite number >= 0 (the round-off of a value)")
    return float(floor)


def _dtype(surface: Surface) -> str:
    """The scan's dtype name (``"float32"``), whose eps an assumed round-off uses."""
    return str(surface.spec.dtype).replace("torch.", "")


def _centre_or_closest(surface: Surface) -> tuple[tuple[int, ...], dict[str, float] | None]:
    """Grid index of the centre, else of the grid point closest to it and its coordinates."""
    centre = surface.centre_index()
    if centre is not None:
        return centre, None
    idx = tuple(int(np.argmin(np.abs(c))) for c in surface.spec.coords())
    return idx, {d: float(surface.coords[d][i]) for d, i in zip(surface.dims, idx, strict=True)}


def _state(surface: Surface, L: np.ndarray, idx: Any) -> str:
    """``"finite"``; ``"diverged"`` (computed and not finite, or ±inf); ``"missing"`` (not yet)."""
    v = float(L[idx])
    if math.isfinite(v):
        return "finite"
    if math.isinf(v) or bool(np.asarray(surface.done)[idx]):
        return "diverged"
    return "missing"


def _split_of(surface: Surface, variable: str) -> str | None:
    """``"train"`` for ``"train_loss"`` (splits and metrics may hold underscores)."""
    for s in surface.spec.splits:
        for m in surface.spec.metrics:
            if variable == f"{s}_{m}":
                return s
    return None


def _n(surface: Surface, variable: str) -> int | None:
    """The samples behind ``variable``: ``surface.samples`` of its split, else ``spec.samples``."""
    split = _split_of(surface, variable)
    if surface.samples and split in surface.samples and surface.samples[split]:
        return int(surface.samples[split])
    return int(surface.spec.samples) if surface.spec.samples else None


def _evidence(surface: Surface, variable: str, **fields: Any) -> Evidence:
    """The :class:`Evidence` every finding of ``variable`` shares, plus ``fields``."""
    coordinate = "t" if surface.spec.path is not None else surface.dims[0]
    base = {"coordinate": coordinate, "n": _n(surface, variable),
            "split": _split_of(surface, variable), "dtype": _dtype(surface)}
    return Evidence(**{**base, **fields})


def _centre_evidence(surface: Surface, variable: str, L: np.ndarray, idx: Any,
                     stand_in: dict[str, float] | None, **fields: Any) -> Evidence:
    """:func:`_evidence` with the centre's state, value and stand-in."""
    return _evidence(surface, variable, centre=_state(surface, L, idx),
                     centre_value=float(L[idx]), stand_in=stand_in, **fields)
