"""Convexity of a line or of every grid line of a plane; rules in :mod:`lossmap.analysis`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..surface import Surface
from .common import CONVEXITY_SAFETY, _check_surface, _eps, _values


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
    >>> spec = ScanSpec(grid=((-1, 1, 41),), splits=("train",), metrics=("loss",))
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
