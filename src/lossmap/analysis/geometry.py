"""Geometry read off a Surface: barriers, convexity maps, gradient fields, basin widths.

Everything but :func:`sharpness` only reads a :class:`~lossmap.surface.Surface`
(pure numpy, no evaluation), following the rules of :mod:`lossmap.analysis`:
a missing or diverged point (not finite) is never interpolated across, and a
quantity that would need it is NaN (arrays) or None (numbers). Round-off
tolerances use the scan's measured round-off floor (``Surface.roundoff``) times
the number of values a quantity combines and a safety ``k``
(:data:`lossmap.analysis.ROUNDOFF_SAFETY`), as :func:`lossmap.analysis.convexity`
does; where no floor was measured, the machine epsilon of the scan's dtype times
a safety factor (:data:`lossmap.analysis.CONVEXITY_SAFETY`), and the verdict
says that the round-off was assumed. ε-sharpness, which needs evaluations, is
in :mod:`lossmap.analysis.sharpness`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from .common import (
    CONVEXITY_SAFETY,
    EPS64,
    ROUNDOFF_SAFETY,
    _assumed,
    _centre_or_closest,
    _check_surface,
    _eps,
    _floor,
    _values,
)
from .uncertainty import Z, _basin_band, _basin_words, _check_z, _excess_noise

__all__ = ["barrier", "basin_width", "convexity_map", "gradient_field"]


def _line(surface: Any, variable: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    _check_surface(surface, what=what)
    if len(surface.dims) != 1:
        raise InputError(f"{what} needs a line (1 direction); this surface is a plane")
    return surface.coords["alpha"], _values(surface, variable)


def _index(a: np.ndarray, at: float, what: str) -> int:
    hit = np.flatnonzero(np.isclose(a, at, rtol=0.0, atol=1e-9 * (a[-1] - a[0])))
    if not hit.size:
        raise InputError(
            f"{what}: alpha = {at:g} is not a grid point; scan a grid that holds 0 and 1, "
            "e.g. grid=(-0.5, 1.5, 41)"
        )
    return int(hit[0])


def barrier(surface: Any, variable: str, *, safety: float = CONVEXITY_SAFETY,
            floor_safety: float = ROUNDOFF_SAFETY, z: float = Z) -> dict[str, Any]:
    """Loss barrier and monotonicity of an interpolation line (α = 0 and 1 are the two models).

    The barrier is ``max over grid points α in [0, 1] of L(α) − [(1 − α)·L(0) + α·L(1)]``,
    the largest excess over the straight chord between the end losses (0 when
    the path never rises above it). The path is *monotone* when, walking the
    grid points of [0, 1] from the worse end (higher loss; α = 0 on a tie) to
    the better end, the loss never rises by more than round-off:
    ``L_next − L_prev <= k · 2 · f`` with ``f`` the measured round-off floor
    (``surface.roundoff``; a barrier must pass the same bound to count), or
    where none was measured ``safety · eps · (|L_prev| + |L_next|)``, and the
    verdict says so.

    Where standard errors were stored, the barrier carries the conservative
    standard error of ``L(t) − [(1 − t) L(0) + t L(1)]`` at its peak,
    ``sqrt(se_t² + ((1 − t) se_0 + t se_1)²)``
    (:mod:`lossmap.analysis.uncertainty`), and is *resolved* when it exceeds
    ``z`` of them ("not resolved at this sample size" otherwise). The peak is
    the largest of many noisy excesses, so a small barrier is biased upwards:
    read an unresolved one as no evidence of a barrier.

    Parameters
    ----------
    surface : Surface
        A line whose grid holds α = 0 and α = 1, e.g. from ``lm.interpolation``.
    variable : str
        E.g. ``"train_loss"``.
    safety : float, default 32
        Multiple of the assumed (eps) round-off bound a rise (or an excess) must
        pass to count, where no floor was measured.
    floor_safety : float, default 2
        The safety ``k`` on a measured floor.
    z : float, default 2
        Standard errors the barrier must exceed to be resolved.

    Returns
    -------
    dict
        ``barrier`` (float, NaN if an end is missing), ``alpha`` (where),
        ``loss_a`` = L(0), ``loss_b`` = L(1), ``chord`` (the chord there),
        ``peak_over_ends`` (max L on [0, 1] − max(L(0), L(1))), ``monotone``
        (bool, None if undetermined), ``start`` (α of the worse end),
        ``max_rise`` and ``rise_alpha`` (the largest step up on that walk and
        where it ends), ``skipped`` (missing points in [0, 1]), ``floor`` (the
        measured round-off floor, None if not measured), ``verdict`` (a sentence),
        ``se`` (of the barrier, conservative; None where not measured), ``z``,
        ``z_score``, ``resolved`` (None without SEs) and ``n`` (samples).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((-0.5, 1.5, 41),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": 1 - a + 4 * a * (1 - a)}, np.ones(41, bool))
    >>> r = barrier(surf, "train_loss")
    >>> round(r["barrier"], 6), round(r["alpha"], 6), r["monotone"]
    (1.0, 0.5, False)
    """
    a, L = _line(surface, variable, "barrier")
    z = _check_z(z)
    i0, i1 = _index(a, 0.0, "barrier"), _index(a, 1.0, "barrier")
    inside = np.flatnonzero((a >= a[i0]) & (a <= a[i1]))  # grid points of [0, 1]
    out: dict[str, Any] = {"variable": variable, "loss_a": float(L[i0]), "loss_b": float(L[i1])}
    finite = np.isfinite(L[inside])
    out["skipped"] = int((~finite).sum())
    if not (np.isfinite(L[i0]) and np.isfinite(L[i1])):
        out.update(barrier=math.nan, alpha=None, chord=None, peak_over_ends=math.nan,
                   monotone=None, start=None, max_rise=math.nan, rise_alpha=None,
                   se=None, z=z, z_score=None, resolved=None, n=None,
                   verdict=f"{variable}: undetermined, the loss at an end model is missing")
        return out
    eps, fl, k = _eps(surface.spec.dtype), _floor(surface, variable), float(floor_safety)
    out["floor"] = fl
    idx = inside[finite]
    t = (a[idx] - a[i0]) / (a[i1] - a[i0])
    chord = (1 - t) * L[i0] + t * L[i1]
    excess = L[idx] - chord
    top = int(np.argmax(excess))
    h = max(float(excess[top]), 0.0)
    out.update(barrier=h, alpha=float(a[idx[top]]), chord=float(chord[top]),
               peak_over_ends=float(L[idx].max() - max(L[i0], L[i1])))
    walk = idx if L[i0] >= L[i1] else idx[::-1]
    rise = np.diff(L[walk])
    mag = np.abs(L[walk][:-1]) + np.abs(L[walk][1:])
    tol = safety * eps * mag if fl is None else k * 2.0 * fl + EPS64 * mag
    j = int(np.argmax(rise)) if rise.size else 0
    out.update(start=float(a[walk[0]]), max_rise=float(rise[j]) if rise.size else 0.0,
               rise_alpha=float(a[walk[j + 1]]) if rise.size else None,
               monotone=bool((rise <= tol).all()))
    big = max(abs(L[i0]), abs(L[i1]), abs(L[idx[top]]))
    noise, words = _excess_noise(surface, variable, int(idx[top]), i0, i1, float(t[top]), h, z)
    out.update(noise)
    if h <= (safety * eps * big if fl is None else k * 2.0 * fl + EPS64 * big):
        text = "no barrier: the loss stays on or below the chord between the end losses"
        out["resolved"] = False if out["se"] is not None else None
    else:
        text = f"a barrier of {h:.4g} above the chord at alpha = {out['alpha']:.3g}{words}"
    mono = (f"it decreases monotonically from alpha = {out['start']:g} (the worse end)"
            if out["monotone"] else
            f"it is not monotone (it rises by {out['max_rise']:.3g} at alpha = "
            f"{out['rise_alpha']:.3g} on the way from the worse end, alpha = {out['start']:g})")
    out["verdict"] = f"{variable}: {text}; {mono}" + (
        f" ({_assumed(surface)})" if fl is None else "")
    return out


def convexity_map(
    surface: Any, variable: str, *, safety: float = CONVEXITY_SAFETY,
    floor_safety: float = ROUNDOFF_SAFETY,
) -> dict[str, Any]:
    """The 2×2 discrete Hessian of a plane at every interior grid point, its eigenvalues and kind.

    Central second differences ``L_αα``, ``L_ββ`` and the mixed
    ``L_αβ = (L[i+1,j+1] − L[i+1,j−1] − L[i−1,j+1] + L[i−1,j−1]) / (4 h_α h_β)``
    (all exact on quadratics). A point is *convex* when ``λmin >= −tol``,
    *concave* when ``λmax <= tol`` and not convex, a *saddle* otherwise, with
    ``tol = k · 5 · f / min(h_α, h_β)²`` for a measured round-off floor ``f``
    (``surface.roundoff``: each entry of the 2×2 matrix is off by at most
    ``4f/h_α²``, ``4f/h_β²``, ``f/(h_α h_β)``, so an eigenvalue by at most
    ``5f/min(h)²``), and where none was measured
    ``tol = safety · eps · 4 · max|L| over the 3×3 stencil / min(h_α, h_β)²``
    (the verdict then says that the round-off was assumed).
    Li et al.'s ``ratio = |λmin / λmax|`` (small where the negative curvature
    is weak against the positive).

    Parameters
    ----------
    surface : Surface
        A plane.
    variable : str
    safety : float, default 32
        On the assumed (eps) round-off, where no floor was measured.
    floor_safety : float, default 2
        The safety ``k`` on a measured floor.

    Returns
    -------
    dict
        Arrays of shape ``(n_alpha, n_beta)`` (NaN on the border and wherever
        a stencil point is missing): ``lambda_min``, ``lambda_max``, ``ratio``,
        ``kind`` (1 convex, 0 saddle, −1 concave); ``hessian`` of shape
        (n_alpha, n_beta, 2, 2); ``valid`` (bool); the fractions
        ``convex_fraction``, ``saddle_fraction``, ``concave_fraction`` of the
        valid points; ``floor`` (the measured round-off floor, None if not
        measured); ``verdict`` (a sentence).
    """
    _check_surface(surface, what="convexity_map")
    if len(surface.dims) != 2:
        raise InputError("convexity_map needs a plane (2 directions); this surface is a line")
    L = _values(surface, variable)
    a, b = surface.coords["alpha"], surface.coords["beta"]
    ha, hb = float(a[1] - a[0]), float(b[1] - b[0])
    nan = np.full(L.shape, np.nan)
    laa, lbb, lab, big = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    c = (slice(1, -1), slice(1, -1))
    with np.errstate(invalid="ignore"):
        laa[c] = (L[2:, 1:-1] - 2 * L[1:-1, 1:-1] + L[:-2, 1:-1]) / ha**2
        lbb[c] = (L[1:-1, 2:] - 2 * L[1:-1, 1:-1] + L[1:-1, :-2]) / hb**2
        lab[c] = (L[2:, 2:] - L[2:, :-2] - L[:-2, 2:] + L[:-2, :-2]) / (4 * ha * hb)
        stencil = np.stack([np.abs(L[1 + di:L.shape[0] - 1 + di, 1 + dj:L.shape[1] - 1 + dj])
                            for di in (-1, 0, 1) for dj in (-1, 0, 1)])  # (9, na-2, nb-2)
        big[c] = stencil.max(axis=0)
    valid = np.isfinite(laa) & np.isfinite(lbb) & np.isfinite(lab) & np.isfinite(big)
    mean, half = (laa + lbb) / 2, np.hypot((laa - lbb) / 2, lab)
    lmin, lmax = mean - half, mean + half
    fl = _floor(surface, variable)
    if fl is None:
        tol = safety * _eps(surface.spec.dtype) * 4 * big / min(ha, hb) ** 2
    else:
        tol = (float(floor_safety) * 5 * fl + EPS64 * 4 * big) / min(ha, hb) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(valid & (lmax != 0), np.abs(lmin / lmax), np.nan)
        kind = np.where(lmin >= -tol, 1.0, np.where(lmax <= tol, -1.0, 0.0))
    kind[~valid] = np.nan
    H = np.stack([np.stack([laa, lab], -1), np.stack([lab, lbb], -1)], -2)  # (na, nb, 2, 2)
    n = int(valid.sum())
    frac = {k: float((kind == v).sum() / n) if n else math.nan
            for k, v in (("convex", 1), ("saddle", 0), ("concave", -1))}
    verdict = (f"{variable}: of {n} interior points, {frac['convex']:.0%} convex, "
               f"{frac['saddle']:.0%} saddle, {frac['concave']:.0%} concave"
               if n else f"{variable}: undetermined, no interior point with a full stencil")
    verdict += f" ({_assumed(surface)})" if n and fl is None else ""
    return {"variable": variable, "alpha": a, "beta": b, "hessian": H, "lambda_min": lmin,
            "lambda_max": lmax, "ratio": ratio, "kind": kind, "valid": valid,
            **{f"{k}_fraction": v for k, v in frac.items()}, "floor": fl, "verdict": verdict}


def gradient_field(surface: Any, variable: str) -> tuple[np.ndarray, ...]:
    """Partial derivatives of the loss on the grid, from the stored values only.

    :func:`numpy.gradient` with the grid coordinates: central differences
    inside, second-order one-sided differences at the edges (exact on
    quadratics). A component is NaN where the point or a neighbour it needs
    is missing.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str

    Returns
    -------
    tuple of ndarray
        ``(dL/dα,)`` for a line, ``(dL/dα, dL/dβ)`` for a plane, each of
        the surface's shape. The steepest descent is ``−gradient``.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((-1, 1, 5), (-1, 1, 5)), splits=("train",), metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> ga, gb = gradient_field(Surface(spec, {"train_loss": A**2 + 3 * B}, np.ones((5, 5), bool)),
    ...                         "train_loss")
    >>> float(ga[4, 0]), float(gb[2, 2])
    (2.0, 3.0)
    """
    _check_surface(surface, what="gradient_field")
    L = _values(surface, variable)
    coords = [surface.coords[d] for d in surface.dims]
    if min(len(c) for c in coords) < 3:
        raise InputError("gradient_field needs at least 3 points along each direction")
    grads = np.gradient(L, *coords, edge_order=2)
    grads = [grads] if L.ndim == 1 else list(grads)
    for g in grads:
        g[~np.isfinite(L)] = np.nan
    return tuple(grads)


def basin_width(surface: Any, variable: str, delta: float, *, z: float = Z) -> dict[str, Any]:
    """Distance from the centre, each way along a line, until the loss exceeds L(0) + δ.

    Walking out from the centre's grid point, the first point with
    ``L > L(0) + δ`` and the one before it bracket the crossing, placed by
    linear interpolation between them. A side is None when the loss stays
    within ``L(0) + δ`` up to the end of the grid, or a missing point comes
    first. Distances are in α units (multiply by the direction's norm for
    weight-space units).

    Where standard errors were stored, the same walk on ``L(α) − L(0) ± z · se``
    (``se`` of the difference, conservative: ``sqrt(se_α² + se_0²)``) gives
    the interval of widths the sample's noise allows: the upper band crosses
    δ first (the narrowest), the lower band last (the widest). The width is
    *resolved* when the lower band crosses on the grid on both sides.

    Parameters
    ----------
    surface : Surface
        A line.
    variable : str
    delta : float
        The allowed rise δ > 0, in loss units.
    z : float, default 2
        Half-width of the band, in standard errors.

    Returns
    -------
    dict
        ``left``, ``right`` (distances >= 0, or None), ``width`` (their sum,
        or None), ``left_alpha``, ``right_alpha`` (the crossings),
        ``centre_value``, ``threshold``, ``left_missing``, ``right_missing``
        (α of the missing point that stops a side, or None), ``note`` (why a
        side is None, or None), ``verdict`` (a sentence); ``z``, ``se_centre``,
        ``left_range``, ``right_range`` (``[narrowest, widest]`` distance each
        way, None parts where a band does not cross on the grid),
        ``width_range`` (their sums), ``resolved`` (all None without SEs) and
        ``uncertainty`` (a sentence: the interval, or that it was not measured).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((-2, 2, 41),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> r = basin_width(Surface(spec, {"train_loss": a**2}, np.ones(41, bool)), "train_loss", 0.25)
    >>> round(r["left"], 9), round(r["right"], 9)
    (0.5, 0.5)
    """
    a, L = _line(surface, variable, "basin_width")
    if not (isinstance(delta, (int, float)) and not isinstance(delta, bool)
            and math.isfinite(delta) and delta > 0):
        raise InputError(f"delta={delta!r} must be a positive number (the allowed loss rise)")
    z = _check_z(z)
    (i,), note = _centre_or_closest(surface)
    notes = [note] if note else []
    out: dict[str, Any] = {"variable": variable, "delta": float(delta),
                           "centre_value": float(L[i]), "threshold": float(L[i] + delta)}
    if not np.isfinite(L[i]):
        out.update(left=None, right=None, width=None, left_alpha=None, right_alpha=None,
                   left_missing=None, right_missing=None, note="the loss at the centre is missing",
                   z=z, se_centre=None, left_range=None, right_range=None, width_range=None,
                   resolved=None,
                   verdict=f"{variable}: undetermined, the loss at the centre is missing")
        return out
    thr = L[i] + delta
    for side, step in (("left", -1), ("right", 1)):
        j, cross, out[f"{side}_missing"] = i, None, None
        while 0 <= j + step < len(a):
            j += step
            if not np.isfinite(L[j]):
                out[f"{side}_missing"] = float(a[j])
                notes.append(f"a missing point at alpha = {a[j]:.4g} stops the {side} side")
                break
            if L[j] > thr:
                p = j - step
                cross = float(a[p] + (thr - L[p]) / (L[j] - L[p]) * (a[j] - a[p]))
                break
        else:
            notes.append(f"the loss stays within L(0) + delta to the {side} end of the grid")
        out[f"{side}_alpha"] = cross
        out[side] = None if cross is None else abs(cross - float(a[i]))
    both = out["left"] is not None and out["right"] is not None
    out["width"] = out["left"] + out["right"] if both else None
    out["note"] = "; ".join(notes) or None
    fmt = lambda v: "beyond the grid" if v is None else f"{v:.4g}"  # noqa: E731
    out["verdict"] = (f"{variable}: the loss stays within {L[i]:.4g} + {delta:g} for "
                      f"{fmt(out['left'])} to the left and {fmt(out['right'])} to the right")
    out.update(_basin_band(surface, variable, a, L, i, float(delta), z, out["width"]))
    out["uncertainty"] = _basin_words(out, out["width"])
    out["verdict"] += "; " + out["uncertainty"]
    return out
