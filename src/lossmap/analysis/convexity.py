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
    _check_surface,
    _eps,
    _evidence,
    _floor,
    _values,
)
from .finding import Convexity, ConvexityAxis
from .uncertainty import Z, _se_typical, _second_difference_noise


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
    deepest = float(np.nanmin(d2)) if valid.any() else None
    return {"checked": int(valid.sum()), "skipped": int((~valid).sum()),
            "n_negative": int(violating.sum()), "deepest": deepest,
            "min_curvature": None if deepest is None else deepest / h**2, "step": h,
            "violating": violating, "d2": d2}


def _floor_ratio(L: np.ndarray, floor: float | None, eps: float,
                 deepest: float | None) -> tuple[float | None, float | None]:
    """(the round-off of one value — measured, or ``eps · max|L|`` assumed —, −deepest / it)."""
    finite = L[np.isfinite(L)]
    if floor is None:
        floor = eps * float(np.abs(finite).max()) if finite.size else None
    if deepest is None or floor is None:
        return floor, None
    if deepest >= 0:
        return floor, 0.0
    return floor, -deepest / floor if floor > 0 else math.inf


def convexity(
    surface: Surface,
    variable: str,
    *,
    safety: float = CONVEXITY_SAFETY,
    eps: float | None = None,
    floor: float | None = None,
    floor_safety: float = ROUNDOFF_SAFETY,
) -> Convexity:
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
    Convexity
        ``convex`` (True: no second difference below the bound among those
        that could be formed; None when none could), ``value`` (the deepest
        second difference, raw, in loss units; None when none was formed),
        ``n_negative`` (below the bound), ``min_curvature`` (value / step²), ``bound``
        (``floor_safety · 4 · floor`` for a measured floor; None when assumed:
        the bound then varies with ``L``), ``ratio`` (``−value / floor``; 0 when
        no second difference is negative). A line adds ``step``, ``at`` (where
        the deepest sits) and ``violating`` (where each negative one sits); a
        plane adds ``axes``: per dimension a :class:`ConvexityAxis` with
        ``lines`` and ``lines_not_convex``. ``se_typical`` (the median s.e. of
        one point) and ``se_ratio`` (``|value| / se_typical``) are informative
        only: the points share their samples, so a second difference varies
        far less than one point; None where no standard errors were stored.
        The evidence holds the second differences checked (``points``) and
        skipped (they needed a missing point), the floor (measured, or
        ``eps · max|L|`` assumed), ``n`` and the split.

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
    >>> r.convex, r.n_negative, round(r.value, 6), r.bound
    (False, 17, -0.004987, 8e-07)
    >>> convexity(surf, "train_loss", floor=0.01).convex
    True
    """
    _check_surface(surface, what="convexity")
    L = _values(surface, variable)
    if not (isinstance(safety, (int, float)) and safety >= 0):
        raise InputError(f"safety={safety!r} must be a number >= 0")
    if not (isinstance(floor_safety, (int, float)) and floor_safety >= 0):
        raise InputError(f"floor_safety={floor_safety!r} must be a number >= 0")
    eps = _eps(surface.spec.dtype) if eps is None else float(eps)
    fl, k = _floor(surface, variable, floor), float(floor_safety)
    coords = surface.coords
    extra: dict[str, Any] = {}
    if len(surface.dims) == 1:
        dim = surface.dims[0]
        r = _line_convexity(L, coords[dim], eps, safety, fl, k)
        inner = coords[dim][1:-1]
        extra.update(step=r["step"], violating=tuple(float(x) for x in inner[r["violating"]]),
                     at=float(inner[np.nanargmin(r["d2"])]) if r["checked"] else None)
    else:
        axes = {}
        for axis, dim in enumerate(surface.dims):
            p = _line_convexity(np.moveaxis(L, axis, -1), coords[dim], eps, safety, fl, k)
            axes[dim] = ConvexityAxis(
                lines=int(p["violating"].shape[0]),
                lines_not_convex=int(p["violating"].any(axis=-1).sum()),
                n_negative=p["n_negative"], checked=p["checked"], skipped=p["skipped"],
                deepest=p["deepest"], min_curvature=p["min_curvature"], step=p["step"])
        parts = list(axes.values())
        deep = [p.deepest for p in parts if p.deepest is not None]
        curv = [p.min_curvature for p in parts if p.min_curvature is not None]
        r = {"n_negative": sum(p.n_negative for p in parts),
             "checked": sum(p.checked for p in parts), "skipped": sum(p.skipped for p in parts),
             "deepest": min(deep) if deep else None, "min_curvature": min(curv) if curv else None}
        extra["axes"] = axes
    floor_used, ratio = _floor_ratio(L, fl, eps, r["deepest"])
    convex = False if r["n_negative"] else (True if r["checked"] else None)
    se_typical = _se_typical(surface, variable)
    ev = _evidence(surface, variable, points=r["checked"], skipped=r["skipped"],
                   floor=floor_used, floor_measured=fl is not None)
    return Convexity(variable=variable, value=r["deepest"], z=Z, evidence=ev, convex=convex,
                     n_negative=r["n_negative"], min_curvature=r["min_curvature"],
                     bound=k * 4.0 * fl if fl is not None else None, ratio=ratio,
                     se_typical=se_typical,
                     se_ratio=_second_difference_noise(r["deepest"], se_typical), **extra)
