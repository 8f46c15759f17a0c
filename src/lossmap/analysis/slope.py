"""Slope of a line at its centre; the rules are stated in :mod:`lossmap.analysis`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..surface import Surface
from .common import SLOPE_TOL, _centre_or_closest, _check_surface, _require_line, _values
from .uncertainty import NOT_RESOLVED, Z, _check_z, _pm, _resolve


def slope_at_centre(surface: Surface, variable: str, *, tol: float = SLOPE_TOL,
                    z: float = Z) -> dict[str, Any]:
    """Slope of a line at α = 0, and whether it is significantly non-zero.

    Where the scan measured the slope at the centre from per-sample
    directional slopes (``surface.slopes[variable][0]``: ``slope``, its
    standard error ``se`` and ``n``), the centre is *on a slope* when
    ``|slope| > z · se``, else *at a stationary point along this direction*
    within the sample's noise ("not resolved at this sample size"); the
    message states the numbers. Otherwise the slope is the grid's central
    difference and the fixed rule of :mod:`lossmap.analysis.common` decides,
    and the message says that the slope's uncertainty was not measured.

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
        the curvature is positive). Added: ``difference`` (the grid's
        difference quotient, = ``slope`` unless measured), ``measured`` (bool:
        ``slope`` is the measured derivative), ``se``, ``n``, ``z``,
        ``z_score`` (``|slope| / se``), ``significant`` and ``resolved`` (the
        same bool; None where not measured).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
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
    z = _check_z(z)
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
    measured = _measured(surface, variable)
    if method is None and measured is None:
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
            difference=math.nan,
            measured=False,
            **_resolve(math.nan, None, z),
            n=None,
            significant=None,
        )
        return out
    if method not in (None, "central"):
        notes.append(
            f"a {method} difference is used: a neighbour of alpha = {a[i]:.4g} is missing "
            "or off the grid"
        )
    step = float(a[k] - a[j]) if method else math.nan
    difference = float((L[k] - L[j]) / step) if method else math.nan
    if measured is not None:
        slope, r, n_s = measured["slope"], _resolve(measured["slope"], measured["se"], z), \
            measured["n"]
        out["alpha"] = 0.0
        stationary, verdict, message = _measured_verdict(variable, slope, r, n_s)
    else:
        slope, r, n_s = difference, _resolve(difference, None, z), None
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
            message = (
                f"{variable}: slope {slope:.3g} at alpha = {a[i]:.3g}, {verdict}: "
                f"the loss decreases towards {_downhill(slope)} alpha"
            )
        message += "; the slope's uncertainty was not measured"
    curvature = vertex = None
    if method == "central":
        h = float(a[hi] - a[i])
        curvature = float((L[lo] - 2.0 * L[i] + L[hi]) / h**2)
        if curvature > 0:
            vertex = float(a[i] - difference / curvature)
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
        difference=difference,
        measured=measured is not None,
        **r,
        n=n_s,
        significant=r["resolved"],
    )
    return out


def _downhill(slope: float) -> str:
    return "positive" if slope < 0 else "negative"


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


def _measured_verdict(variable: str, slope: float, r: dict[str, Any],
                      n: int | None) -> tuple[bool, str, str]:
    """(stationary, verdict, message) of a slope measured with its standard error."""
    said = _pm(slope, r, n)
    if r["resolved"]:
        return False, "on a slope", (
            f"{variable}: on a slope: dL/dα = {said}; the loss decreases towards "
            f"{_downhill(slope)} alpha")
    verdict = "at a stationary point along this direction"
    return True, verdict, (
        f"{variable}: {verdict} within the sample's noise: dL/dα = {said}, "
        f"{NOT_RESOLVED} (|slope| <= {r['z']:g} s.e.)")
