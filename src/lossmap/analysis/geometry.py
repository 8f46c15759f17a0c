"""Geometry read off a Surface: convexity maps, gradient fields, basin widths.

The barrier of a line or a path is :func:`lossmap.barrier`
(:mod:`lossmap.analysis.barriers`); ``geometry.barrier`` is its deprecated
former name. Everything here only reads a :class:`~lossmap.surface.Surface`
(pure numpy, no evaluation), following the rules of :mod:`lossmap.analysis`:
a missing or diverged point (not finite) is never interpolated across, and a
quantity that would need it is NaN (arrays) or None (numbers). Round-off
tolerances use the scan's measured round-off floor (``Surface.roundoff``) times
the number of values a quantity combines and a safety ``k``
(:data:`lossmap.analysis.ROUNDOFF_SAFETY`), as :func:`lossmap.analysis.convexity`
does; where no floor was measured, the machine epsilon of the scan's dtype times
a safety factor (:data:`lossmap.analysis.CONVEXITY_SAFETY`), and the evidence
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
    _centre_evidence,
    _centre_or_closest,
    _check_surface,
    _eps,
    _evidence,
    _floor,
    _values,
)
from .finding import Barrier, BasinWidth, ConvexityMap
from .uncertainty import Z, _basin_band, _check_z

__all__ = ["basin_width", "convexity_map", "gradient_field"]


def _line(surface: Any, variable: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    _check_surface(surface, what=what)
    if len(surface.dims) != 1:
        raise InputError(f"{what} needs a line (1 direction); this surface is a plane")
    return surface.coords["alpha"], _values(surface, variable)


def barrier(surface: Any, variable: str, **kwargs: Any) -> Barrier:
    """Deprecated: use :func:`lossmap.barrier` (the same, for lines and paths alike).

    Parameters
    ----------
    surface : Surface
    variable : str
    **kwargs
        As :func:`lossmap.analysis.barriers.barrier`.

    Returns
    -------
    Barrier
    """
    import warnings

    from .barriers import barrier as the_barrier

    warnings.warn("lossmap.analysis.geometry.barrier is deprecated and will be removed in the "
                  "next release: use lossmap.barrier (lossmap.analysis.barrier), which reads "
                  "interpolation lines and paths alike", DeprecationWarning, stacklevel=2)
    return the_barrier(surface, variable, **kwargs)


def convexity_map(
    surface: Any, variable: str, *, safety: float = CONVEXITY_SAFETY,
    floor_safety: float = ROUNDOFF_SAFETY,
) -> ConvexityMap:
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
    (the evidence then says the round-off was assumed).
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
    ConvexityMap
        Arrays of shape ``(n_alpha, n_beta)`` (NaN on the border and wherever
        a stencil point is missing): ``lambda_min``, ``lambda_max``, ``ratio``,
        ``classes`` (1 convex, 0 saddle, −1 concave); ``hessian`` of shape
        (n_alpha, n_beta, 2, 2); ``valid`` (bool); ``interior`` (the valid
        points) and the fractions of them: ``value`` (convex, also
        ``convex_fraction``), ``saddle_fraction``, ``concave_fraction`` (None
        without a valid point); the evidence holds the floor (None if not
        measured).
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
    frac = {k: float((kind == v).sum() / n) if n else None
            for k, v in (("convex", 1), ("saddle", 0), ("concave", -1))}
    ev = _evidence(surface, variable, points=n, skipped=int(L.size - n), floor=fl,
                   floor_measured=fl is not None)
    return ConvexityMap(variable=variable, value=frac["convex"], evidence=ev,
                        saddle_fraction=frac["saddle"], concave_fraction=frac["concave"],
                        interior=n, alpha=a, beta=b, hessian=H, lambda_min=lmin,
                        lambda_max=lmax, ratio=ratio, classes=kind, valid=valid)


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


def basin_width(surface: Any, variable: str, delta: float, *, z: float = Z) -> BasinWidth:
    """Distance from the centre, each way along a line, until the loss exceeds L(c) + δ.

    Walking out from the centre's grid point, the first point with
    ``L > L(c) + δ`` and the one before it bracket the crossing, placed by
    linear interpolation between them. A side is None when the loss stays
    within ``L(c) + δ`` up to the end of the grid, or a missing point comes
    first. Distances are in α units (multiply by the direction's norm for
    weight-space units).

    Where standard errors were stored, the same walk on ``L(α) − L(c) ± z · se``
    (``se`` of the difference: paired where measured, else conservative,
    ``sqrt(se_α² + se_c²)``) gives the interval of widths the sample's noise
    allows: the upper band crosses δ first (the narrowest), the lower band
    last (the widest). The width is *resolved* when the lower band crosses on
    the grid on both sides.

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
    BasinWidth
        ``value`` (the width, left + right, or None), ``left``, ``right``
        (distances >= 0, or None), ``left_at``, ``right_at`` (the crossings),
        ``left_stop``, ``right_stop`` (``"crossed"``, ``"missing"`` or
        ``"end"``), ``left_missing``, ``right_missing`` (the missing point that
        stops a side), ``delta``, ``threshold``; with standard errors
        ``se_centre``, ``left_range``, ``right_range`` (``(narrowest, widest)``
        distance each way, None parts where a band does not cross on the
        grid), ``width_range`` and ``resolved`` (all None without SEs).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((-2, 2, 41),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> r = basin_width(Surface(spec, {"train_loss": a**2}, np.ones(41, bool)), "train_loss", 0.25)
    >>> round(r.left, 9), round(r.right, 9)
    (0.5, 0.5)
    """
    a, L = _line(surface, variable, "basin_width")
    if not (isinstance(delta, (int, float)) and not isinstance(delta, bool)
            and math.isfinite(delta) and delta > 0):
        raise InputError(f"delta={delta!r} must be a positive number (the allowed loss rise)")
    z = _check_z(z)
    (i,), stand_in = _centre_or_closest(surface)
    ev = _centre_evidence(surface, variable, L, i, stand_in)
    if not np.isfinite(L[i]):
        return BasinWidth(variable=variable, value=None, z=z, evidence=ev, delta=float(delta))
    thr = L[i] + delta
    out: dict[str, Any] = {}
    for side, step in (("left", -1), ("right", 1)):
        j, cross, stop, missing = i, None, "end", None
        while 0 <= j + step < len(a):
            j += step
            if not np.isfinite(L[j]):
                stop, missing = "missing", float(a[j])
                break
            if L[j] > thr:
                p = j - step
                cross = float(a[p] + (thr - L[p]) / (L[j] - L[p]) * (a[j] - a[p]))
                stop = "crossed"
                break
        out.update({f"{side}_at": cross, f"{side}_stop": stop, f"{side}_missing": missing,
                    side: None if cross is None else abs(cross - float(a[i]))})
    both = out["left"] is not None and out["right"] is not None
    width = out["left"] + out["right"] if both else None
    band = _basin_band(surface, variable, a, L, i, float(delta), z, width)
    return BasinWidth(variable=variable, value=width, z=z, evidence=ev, delta=float(delta),
                      threshold=float(thr), **out, **band)
