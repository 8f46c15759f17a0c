"""Slope of a line at its centre; the rules are stated in :mod:`lossmap.analysis`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..surface import Surface
from .common import (
    SLOPE_TOL,
    _centre_evidence,
    _centre_or_closest,
    _check_surface,
    _require_line,
    _values,
)
from .finding import Slope
from .uncertainty import Z, _check_z, _resolve


def slope_at_centre(surface: Surface, variable: str, *, tol: float = SLOPE_TOL,
                    z: float = Z) -> Slope:
    """Slope of a line at α = 0, and whether it is significantly non-zero.

    Where the scan measured the slope at the centre from per-sample
    directional slopes (``surface.slopes[variable][0]``: ``slope``, its
    standard error ``se`` and ``n``), the centre is *on a slope* when
    ``|slope| > z · se``, else *at a stationary point along this direction*
    within the sample's noise (not resolved at this sample size). Otherwise
    the slope is the grid's central difference and the fixed rule of
    :mod:`lossmap.analysis.common` decides (``measured`` False, ``se`` None).

    Parameters
    ----------
    surface : Surface
        A line (one direction).
    variable : str
        A stored variable, e.g. ``"train_loss"``.
    tol : float, default 1e-2
        The point is stationary when ``|slope| · span < tol · max(|L(0)|, 1)``
        (see the module docstring); used only where the slope was not measured.
    z : float, default 2
        A measured slope is significant when ``|slope| > z · se``.

    Returns
    -------
    Slope
        ``value`` (the slope: measured, or the grid's difference; None when
        it cannot be formed), ``se``, ``resolved`` (None where not
        measured), ``at`` (where it is taken), ``step``, ``method``
        (``"central"``, ``"forward"``/``"backward"`` when a neighbour is
        missing or off the grid, or None), ``stationary`` (None:
        undetermined), ``difference`` (the grid's), ``measured``,
        ``curvature`` and ``vertex`` (``at − difference / curvature``, where
        the parabola through the three points is lowest; None unless the
        curvature is positive), ``tol``, ``span``, ``scale``; the evidence
        says the centre's state (finite, diverged, not computed) and the
        grid point standing in for 0 when 0 is not on the grid.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": 2 + 3 * a + 5 * a**2}, np.ones(21, bool))
    >>> r = slope_at_centre(surf, "train_loss")
    >>> round(r.value, 6), r.stationary
    (3.0, False)
    """

    _check_surface(surface, what="slope_at_centre")
    _require_line(surface, "slope_at_centre")
    L = _values(surface, variable)
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise InputError(f"tol={tol!r} must be a positive number")
    z = _check_z(z)
    a = surface.coords[surface.dims[0]]
    (i,), stand_in = _centre_or_closest(surface)
    n = len(a)
    ok = np.isfinite(L)
    lo, hi = i - 1, i + 1
    if ok[i] and lo >= 0 and hi < n and ok[lo] and ok[hi]:
        method, j, k = "central", lo, hi
    elif ok[i] and hi < n and ok[hi]:
        method, j, k = "forward", i, hi
    elif ok[i] and lo >= 0 and ok[lo]:
        method, j, k = "backward", lo, i
    else:
        method, j, k = None, i, i
    measured = _measured(surface, variable)
    step = float(a[k] - a[j]) if method else None
    difference = float((L[k] - L[j]) / step) if method else None
    span, scale = float(a[-1] - a[0]), max(abs(float(L[i])), 1.0) if ok[i] else 1.0
    curvature = vertex = None
    if method == "central":
        h = float(a[hi] - a[i])
        curvature = float((L[lo] - 2.0 * L[i] + L[hi]) / h**2)
        if curvature > 0:
            vertex = float(a[i] - difference / curvature)
    if measured is not None:
        value, se, n_s, at = measured["slope"], measured["se"], measured["n"], 0.0
        r = _resolve(value, se, z)
        stationary: bool | None = not r["resolved"]
    else:
        value, n_s, at = difference, None, float(a[i])
        r = _resolve(value, None, z)
        stationary = None if value is None else bool(abs(value) * span < tol * scale)
    ev = _centre_evidence(surface, variable, L, i, stand_in, points=0 if method is None else 2)
    if n_s is not None:
        ev = dataclasses.replace(ev, n=n_s)
    return Slope(variable=variable, value=value, **r, evidence=ev, at=at, step=step,
                 method=method, stationary=stationary, difference=difference,
                 measured=measured is not None, curvature=curvature, vertex=vertex,
                 tol=float(tol), span=span, scale=scale)


def _measured(surface: Surface, variable: str) -> dict[str, Any] | None:
    """The slope measured at the centre (``surface.slopes[variable][0]``), or None."""
    entries = (surface.slopes or {}).get(variable)
    if not entries:
        return None
    e = entries[0]
    slope, se = float(e.get("slope", math.nan)), e.get("se")
    if not math.isfinite(slope):
        return None
    if se is None or not (math.isfinite(float(se)) and se >= 0):
        return None  # a slope without its standard error: the grid's rule decides
    n = e.get("n")
    return {"slope": slope, "se": float(se), "n": int(n) if n else None}
