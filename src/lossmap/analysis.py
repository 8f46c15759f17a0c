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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError
from .surface import Surface

__all__ = [
    "CONVEXITY_SAFETY",
    "SLOPE_TOL",
    "analyse",
    "convexity",
    "direction_cosine",
    "minimum",
    "slope_at_centre",
]

SLOPE_TOL = 1e-2
"""Default ``tol`` of :func:`slope_at_centre` (fraction of the loss scale)."""

CONVEXITY_SAFETY = 32.0
"""Default ``safety`` factor on round-off in :func:`convexity`."""

_EPS = {"bfloat16": 2.0**-7, "float16": 2.0**-10, "half": 2.0**-10}


# -- helpers -------------------------------------------------------------------
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


# -- slope ---------------------------------------------------------------------
def slope_at_centre(surface: Surface, variable: str, *, tol: float = SLOPE_TOL) -> dict[str, Any]:
    """Slope of a line at α = 0 by a central difference, and what it says.

    Parameters
    ----------
    surface : Surface
        A line (one direction).
    variable : str
        A stored variable, e.g. ``"train_loss"``.
    tol : float, default 1e-2
        The point is stationary when ``|slope| · span < tol · max(|L(0)|, 1)``
        (see the module docstring).

    Returns
    -------
    dict
        ``slope`` (float, NaN when it cannot be formed), ``step`` (the
        difference in α between the two points used), ``alpha`` (where the
        slope is taken), ``method`` (``"central"``, or ``"forward"`` /
        ``"backward"`` when a neighbour is missing or off the grid, or None),
        ``stationary`` (bool or None), ``verdict`` (``"on a slope"``, ``"at a
        stationary point along this direction"`` or ``"undetermined"``),
        ``message`` (a sentence with the sign), ``note`` (why the centre
        or the difference differs from the usual, else None), and, with a
        central difference, ``curvature`` (the second difference over the
        step squared) and ``vertex`` (``alpha - slope / curvature``, where
        the parabola through the three points has its minimum; None unless
        the curvature is positive).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.spec import ScanSpec
    >>> spec = ScanSpec(axes=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": 2 + 3 * a + 5 * a**2}, np.ones(21, bool))
    >>> r = slope_at_centre(surf, "train_loss")
    >>> round(r["slope"], 6), r["verdict"]
    (3.0, 'on a slope')
    """
    _check_surface(surface, what="slope_at_centre")
    _require_line(surface, "slope_at_centre")
    L = _values(surface, variable)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise InputError(f"tol={tol!r} must be a positive number")
    a = surface.coords["alpha"]
    (i,), note = _centre_or_closest(surface)
    notes = [note] if note else []
    n = len(a)
    ok = np.isfinite(L)
    lo, hi = i - 1, i + 1
    out: dict[str, Any] = {"variable": variable, "alpha": float(a[i])}
    if ok[i] and lo >= 0 and hi < n and ok[lo] and ok[hi]:
        method, j, k = "central", lo, hi
    elif ok[i] and hi < n and ok[hi]:
        method, j, k = "forward", i, hi
    elif ok[i] and lo >= 0 and ok[lo]:
        method, j, k = "backward", lo, i
    else:
        method = None
    if method is None:
        why = "is missing" if not ok[i] else "has no finite neighbour on the grid"
        notes.append(f"the point at alpha = {a[i]:.4g} {why}")
        out.update(
            slope=math.nan,
            step=math.nan,
            curvature=None,
            vertex=None,
            method=None,
            stationary=None,
            verdict="undetermined",
            message="the slope at the centre cannot be formed: " + "; ".join(notes),
            note="; ".join(notes),
        )
        return out
    if method != "central":
        notes.append(
            f"a {method} difference is used: a neighbour of alpha = {a[i]:.4g} is missing "
            "or off the grid"
        )
    step = float(a[k] - a[j])
    slope = float((L[k] - L[j]) / step)
    span = float(a[-1] - a[0])
    scale = max(abs(float(L[i])), 1.0)
    stationary = abs(slope) * span < tol * scale
    if stationary:
        verdict = "at a stationary point along this direction"
        message = (
            f"{variable}: slope {slope:.3g} at alpha = {a[i]:.3g}, {verdict} "
            f"(|slope| x span = {abs(slope) * span:.2g} < {tol:g} x {scale:.3g})"
        )
    else:
        verdict = "on a slope"
        down = "positive" if slope < 0 else "negative"
        message = (
            f"{variable}: slope {slope:.3g} at alpha = {a[i]:.3g}, {verdict}: "
            f"the loss decreases towards {down} alpha"
        )
    curvature = vertex = None
    if method == "central":
        h = float(a[hi] - a[i])
        curvature = float((L[lo] - 2.0 * L[i] + L[hi]) / h**2)
        if curvature > 0:
            vertex = float(a[i] - slope / curvature)
    out.update(
        slope=slope,
        step=step,
        curvature=curvature,
        vertex=vertex,
        method=method,
        stationary=bool(stationary),
        verdict=verdict,
        message=message,
        note="; ".join(notes) or None,
    )
    return out


# -- convexity -----------------------------------------------------------------
def _second_differences(
    L: np.ndarray, eps: float, safety: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second differences along the last axis, their tolerance and validity.

    ``L`` has shape (..., n); each output has shape (..., n - 2), entry ``i``
    centred on point ``i + 1``.
    """
    left, mid, right = L[..., :-2], L[..., 1:-1], L[..., 2:]
    valid = np.isfinite(left) & np.isfinite(mid) & np.isfinite(right)
    with np.errstate(invalid="ignore"):
        d2 = left - 2.0 * mid + right  # (..., n-2)
        tol = safety * eps * (np.abs(left) + 2.0 * np.abs(mid) + np.abs(right))
    d2 = np.where(valid, d2, np.nan)
    return d2, np.where(valid, tol, np.nan), valid


def _line_convexity(L: np.ndarray, coord: np.ndarray, eps: float, safety: float) -> dict[str, Any]:
    """Convexity counts of all lines in ``L`` (shape (..., n)) along its last axis."""
    d2, tol, valid = _second_differences(L, eps, safety)
    violating = valid & (d2 < -tol)
    h = float(coord[1] - coord[0])
    out: dict[str, Any] = {
        "checked": int(valid.sum()),
        "skipped": int((~valid).sum()),
        "violations": int(violating.sum()),
        "min_second_difference": float(np.nanmin(d2)) if valid.any() else math.nan,
        "step": h,
    }
    out["min_curvature"] = out["min_second_difference"] / h**2
    out["_violating"] = violating
    out["_d2"] = d2
    return out


def _verdict(r: dict[str, Any], convex_text: str) -> tuple[bool | None, str]:
    if r["violations"]:
        return False, "this slice is not convex, so the surface is not convex"
    if not r["checked"]:
        return None, "undetermined: no three consecutive finite points along a grid line"
    return True, convex_text


def convexity(
    surface: Surface,
    variable: str,
    *,
    safety: float = CONVEXITY_SAFETY,
    eps: float | None = None,
) -> dict[str, Any]:
    """Whether a line, or every grid line of a plane, is convex within round-off.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str
        A stored variable, e.g. ``"train_loss"``.
    safety : float, default 32
        Multiple of the round-off bound a negative second difference must
        exceed to count (see the module docstring).
    eps : float, optional
        Machine epsilon of the values; default from ``surface.spec.dtype``.

    Returns
    -------
    dict
        ``convex`` (bool: no violation among the second differences that
        could be formed; None when none could be formed), ``verdict`` (a sentence), ``violations``,
        ``checked``, ``skipped`` (second differences that needed a missing
        point), ``min_second_difference`` (raw, in loss units) and
        ``min_curvature`` (that divided by the step squared). A line adds
        ``step``, ``alpha_min`` (where the most negative difference sits) and
        ``violating_alpha`` (array); a plane adds, per dimension ``"alpha"``
        and ``"beta"``, a dict with ``lines``, ``lines_not_convex`` and the
        counts above for the grid lines along that dimension.

    Notes
    -----
    On a plane only grid lines are checked (parallel to α or to β); convex
    grid lines do not prove the plane convex, but one non-convex line proves
    it is not.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.spec import ScanSpec
    >>> spec = ScanSpec(axes=((-1, 1, 41),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": a**4 - a**2}, np.ones(41, bool))
    >>> convexity(surf, "train_loss")["verdict"]
    'this slice is not convex, so the surface is not convex'
    """
    _check_surface(surface, what="convexity")
    L = _values(surface, variable)
    if not (isinstance(safety, (int, float)) and safety >= 0):
        raise InputError(f"safety={safety!r} must be a number >= 0")
    eps = _eps(surface.spec.dtype) if eps is None else float(eps)
    coords = surface.coords
    if len(surface.dims) == 1:
        r = _line_convexity(L, coords["alpha"], eps, safety)
        violating, d2 = r.pop("_violating"), r.pop("_d2")
        inner = coords["alpha"][1:-1]
        r["violating_alpha"] = inner[violating]
        r["alpha_min"] = float(inner[np.nanargmin(d2)]) if r["checked"] else math.nan
        r["convex"], r["verdict"] = _verdict(r, "convex along this slice (within round-off)")
        return {"variable": variable, **r}
    out: dict[str, Any] = {"variable": variable}
    for axis, dim in enumerate(surface.dims):
        r = _line_convexity(np.moveaxis(L, axis, -1), coords[dim], eps, safety)
        violating = r.pop("_violating")
        r.pop("_d2")
        r["lines"] = int(violating.shape[0])
        r["lines_not_convex"] = int(violating.any(axis=-1).sum())
        out[dim] = r
    parts = [out[d] for d in surface.dims]
    out["violations"] = sum(p["violations"] for p in parts)
    out["checked"] = sum(p["checked"] for p in parts)
    out["skipped"] = sum(p["skipped"] for p in parts)
    mins = [p["min_second_difference"] for p in parts if not math.isnan(p["min_second_difference"])]
    curv = [p["min_curvature"] for p in parts if not math.isnan(p["min_curvature"])]
    out["min_second_difference"] = min(mins) if mins else math.nan
    out["min_curvature"] = min(curv) if curv else math.nan
    out["convex"], out["verdict"] = _verdict(
        out, "convex along every grid line of this slice (within round-off)"
    )
    if out["convex"] is False:
        a, b = out["alpha"], out["beta"]
        out["verdict"] = (
            "this slice is not convex, so the surface is not convex "
            f"({a['lines_not_convex']} of {a['lines']} grid lines along alpha and "
            f"{b['lines_not_convex']} of {b['lines']} along beta have negative second "
            "differences beyond round-off)"
        )
    return out


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
    from .directions import Direction

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
