"""Convexity of a line or of every grid line of a plane; rules in :mod:`lossmap.analysis`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..surface import Surface
from .common import (
    CONVEXITY_SAFETY,
    EPS64,
    ROUNDOFF_SAFETY,
    _assumed,
    _check_surface,
    _eps,
    _floor,
    _values,
)
from .uncertainty import _sample_scope, _second_difference_noise


def _second_differences(
    L: np.ndarray, eps: float, safety: float, floor: float | None = None, k: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Second differences along the last axis, their tolerance and validity.

    ``L`` has shape (..., n); each output has shape (..., n - 2), entry ``i``
    centred on point ``i + 1``. The tolerance is ``k·4·floor`` plus float64's
    own rounding of ``D`` where a floor was measured, else ``safety·eps·Σ|L|``.
    """
    left, mid, right = L[..., :-2], L[..., 1:-1], L[..., 2:]
    valid = np.isfinite(left) & np.isfinite(mid) & np.isfinite(right)
    with np.errstate(invalid="ignore"):
        d2 = left - 2.0 * mid + right  # (..., n-2)
        mag = np.abs(left) + 2.0 * np.abs(mid) + np.abs(right)
        tol = safety * eps * mag if floor is None else k * 4.0 * floor + EPS64 * mag
    d2 = np.where(valid, d2, np.nan)
    return d2, np.where(valid, tol, np.nan), valid


def _line_convexity(L: np.ndarray, coord: np.ndarray, eps: float, safety: float,
                    floor: float | None = None, k: float = 2.0) -> dict[str, Any]:
    """Convexity counts of all lines in ``L`` (shape (..., n)) along its last axis."""
    d2, tol, valid = _second_differences(L, eps, safety, floor, k)
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


def _evidence(out: dict[str, Any], L: np.ndarray, floor: float | None, eps: float,
              k: float) -> None:
    """Add ``floor``, ``floor_measured``, ``bound``, ``n_negative``, ``deepest``, ``ratio``."""
    finite = L[np.isfinite(L)]
    measured = floor is not None
    if not measured:  # the round-off of one value, assumed from eps
        floor = eps * float(np.abs(finite).max()) if finite.size else math.nan
    deepest = out["min_second_difference"]
    if math.isnan(deepest) or math.isnan(floor):
        ratio = math.nan
    elif deepest >= 0:
        ratio = 0.0
    else:
        ratio = -deepest / floor if floor > 0 else math.inf
    out.update(floor=floor, floor_measured=measured, n_negative=out["violations"],
               deepest=deepest, ratio=ratio)
    out["bound"] = k * 4.0 * floor if measured else math.nan


def _beyond(r: dict[str, Any], assumed: str) -> str:
    """How many second differences count, how deep, and against which round-off."""
    n, s = r["n_negative"], "s" if r["n_negative"] != 1 else ""
    if r["floor_measured"]:
        return (f"{n} second difference{s} below {-r['bound']:.1e}, the measured round-off "
                f"bound (deepest {r['deepest']:.1e}, {r['ratio']:.3g}× the measured round-off "
                f"{r['floor']:.1e})")
    return (f"{n} second difference{s} beyond round-off (deepest {r['deepest']:.1e}, "
            f"{r['ratio']:.3g}× the round-off {r['floor']:.1e}); {assumed}")


def _verdict(r: dict[str, Any], slice_text: str, assumed: str) -> tuple[bool | None, str]:
    if r["violations"]:
        return False, "this slice is not convex, so the surface is not convex: " + _beyond(
            r, assumed)
    if not r["checked"]:
        return None, "undetermined: no three consecutive finite points along a grid line"
    if r["floor_measured"]:
        return True, (f"convex {slice_text}: no second difference below {-r['bound']:.1e} "
                      "(the measured round-off bound)")
    return True, f"convex {slice_text} (within round-off; {assumed})"


def convexity(
    surface: Surface,
    variable: str,
    *,
    safety: float = CONVEXITY_SAFETY,
    eps: float | None = None,
    floor: float | None = None,
    floor_safety: float = ROUNDOFF_SAFETY,
) -> dict[str, Any]:
    """Whether a line, or every grid line of a plane, is convex beyond its round-off.

    A second difference counts as negative when it is below ``−floor_safety ·
    4 · floor``, with ``floor`` the scan's measured round-off
    (``surface.roundoff[variable]``); where none was measured, the round-off is
    assumed from ``eps`` and the verdict says so (rules in
    :mod:`lossmap.analysis.common`).

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str
        A stored variable, e.g. ``"train_loss"``.
    safety : float, default 32
        Multiple of the assumed (eps) round-off bound a negative second
        difference must exceed to count, where no floor was measured.
    eps : float, optional
        Machine epsilon of the values, for the assumed bound; default from
        ``surface.spec.dtype``.
    floor : float, optional
        The round-off of one value; default the measured floor
        ``surface.roundoff[variable]`` (None there: not measured).
    floor_safety : float, default 2
        The safety ``k`` on a measured floor.

    Returns
    -------
    dict
        ``convex`` (bool: no violation among the second differences that
        could be formed; None when none could be formed), ``verdict`` (a
        sentence with the evidence), ``violations`` (= ``n_negative``, the
        second differences below the bound), ``checked``, ``skipped`` (second
        differences that needed a missing point), ``min_second_difference``
        (= ``deepest``, raw, in loss units), ``min_curvature`` (that divided
        by the step squared), ``floor`` (the round-off of one value: measured,
        or ``eps · max|L|`` assumed), ``floor_measured`` (bool), ``bound``
        (``floor_safety · 4 · floor``; NaN when assumed, the bound then varies
        with ``L``) and ``ratio`` (``−deepest / floor``; 0 when no second
        difference is negative). A line adds ``step``, ``alpha_min`` (where
        the most negative difference sits) and ``violating_alpha`` (array); a
        plane adds, per dimension ``"alpha"`` and ``"beta"``, a dict with
        ``lines``, ``lines_not_convex`` and the counts above for the grid lines
        along that dimension. Both add ``n`` (the samples behind the values,
        None if unknown), ``scope`` (the sentence that the verdict is about the
        empirical loss on these samples), and, where standard errors were
        stored, ``se_typical`` (the median SE of one point), ``se_ratio``
        (``|deepest| / se_typical``) and ``noise`` (a sentence; informative
        only: the points share their samples, so a second difference varies
        far less than one point); None otherwise.

    Notes
    -----
    On a plane only grid lines are checked (parallel to α or to β); convex
    grid lines do not prove the plane convex, but one non-convex line proves
    it is not.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 41),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": a**4 - a**2}, np.ones(41, bool),
    ...                roundoff={"train_loss": 1e-7})
    >>> r = convexity(surf, "train_loss")
    >>> r["convex"], r["n_negative"], round(r["deepest"], 6), r["bound"]
    (False, 17, -0.004987, 8e-07)
    >>> print(r["verdict"])  # doctest: +NORMALIZE_WHITESPACE
    this slice is not convex, so the surface is not convex: 17 second differences below
    -8.0e-07, the measured round-off bound (deepest -5.0e-03, 4.99e+04× the measured
    round-off 1.0e-07)
    >>> print(convexity(surf, "train_loss", floor=0.01)["verdict"])
    convex along this slice: no second difference below -8.0e-02 (the measured round-off bound)
    >>> hand = Surface(spec, {"train_loss": a**2}, np.ones(41, bool))  # no floor measured
    >>> print(convexity(hand, "train_loss")["verdict"])
    convex along this slice (within round-off; round-off assumed from float32 eps, not measured)
    """
    _check_surface(surface, what="convexity")
    L = _values(surface, variable)
    if not (isinstance(safety, (int, float)) and safety >= 0):
        raise InputError(f"safety={safety!r} must be a number >= 0")
    if not (isinstance(floor_safety, (int, float)) and floor_safety >= 0):
        raise InputError(f"floor_safety={floor_safety!r} must be a number >= 0")
    eps = _eps(surface.spec.dtype) if eps is None else float(eps)
    fl, k, assumed = _floor(surface, variable, floor), float(floor_safety), _assumed(surface)
    coords = surface.coords
    if len(surface.dims) == 1:
        r = _line_convexity(L, coords["alpha"], eps, safety, fl, k)
        violating, d2 = r.pop("_violating"), r.pop("_d2")
        inner = coords["alpha"][1:-1]
        r["violating_alpha"] = inner[violating]
        r["alpha_min"] = float(inner[np.nanargmin(d2)]) if r["checked"] else math.nan
        _evidence(r, L, fl, eps, k)
        r["convex"], r["verdict"] = _verdict(r, "along this slice", assumed)
        _sampling(r, surface, variable)
        return {"variable": variable, **r}
    out: dict[str, Any] = {"variable": variable}
    for axis, dim in enumerate(surface.dims):
        r = _line_convexity(np.moveaxis(L, axis, -1), coords[dim], eps, safety, fl, k)
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
    _evidence(out, L, fl, eps, k)
    out["convex"], out["verdict"] = _verdict(out, "along every grid line of this slice", assumed)
    if out["convex"] is False:
        a, b = out["alpha"], out["beta"]
        out["verdict"] = (
            "this slice is not convex, so the surface is not convex "
            f"({a['lines_not_convex']} of {a['lines']} grid lines along alpha and "
            f"{b['lines_not_convex']} of {b['lines']} along beta have negative second "
            f"differences beyond round-off: {_beyond(out, assumed)})"
        )
    _sampling(out, surface, variable)
    return out


def _sampling(out: dict[str, Any], surface: Surface, variable: str) -> None:
    """Add ``n``, ``scope``, ``se_typical``, ``se_ratio`` and ``noise`` (informative only)."""
    scope = _sample_scope(surface, variable)
    ratio, noise = _second_difference_noise(out["min_second_difference"], scope["se_typical"])
    out.update(scope, se_ratio=ratio, noise=noise)
