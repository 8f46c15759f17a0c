"""The barrier of a line or of a path Surface (dim ``t``), where 0 and 1 are the ends.

:func:`barrier` (``lm.barrier``) reads any line-like Surface — an
interpolation line (dim ``alpha``) or a scan along a path (dim ``t``,
``lm.scan(path=curve)``). Barriers between N models are
:mod:`lossmap.analysis.minima`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import InputError
from .common import (
    CONVEXITY_SAFETY,
    EPS64,
    ROUNDOFF_SAFETY,
    _check_surface,
    _eps,
    _evidence,
    _floor,
    _state,
    _values,
)
from .finding import Barrier
from .uncertainty import Z, _check_z, _excess_noise, _resolve

__all__ = ["as_line", "barrier"]


def barrier(surface: Any, variable: str, *, safety: float = CONVEXITY_SAFETY,
            floor_safety: float = ROUNDOFF_SAFETY, z: float = Z) -> Barrier:
    """The loss barrier of an interpolation line or a path, and whether the loss is monotone.

    The barrier is ``max over grid points x in [0, 1] of L(x) − [(1 − x)·L(0) + x·L(1)]``,
    the largest excess over the straight chord between the end losses (0 when
    the path never rises above it), with x the line's α (``lm.interpolation``:
    α = 0 and 1 are the two models) or a path's t (``lm.scan(path=curve)``).
    The path is *monotone* when, walking the grid points of [0, 1] from the
    worse end (higher loss; 0 on a tie) to the better end, the loss never
    rises by more than round-off: ``L_next − L_prev <= k · 2 · f`` with ``f``
    the measured round-off floor (``surface.roundoff``; a barrier must pass
    the same bound to count), or where none was measured
    ``safety · eps · (|L_prev| + |L_next|)`` (the evidence then says the
    round-off was assumed).

    Where standard errors were stored, the barrier carries the conservative
    standard error of ``L(t) − [(1 − t) L(0) + t L(1)]`` at its peak,
    ``sqrt(se_t² + ((1 − t) se_0 + t se_1)²)``
    (:mod:`lossmap.analysis.uncertainty`), and is *resolved* when it exceeds
    ``z`` of them. The peak is the largest of many noisy excesses, so a small
    barrier is biased upwards: read an unresolved one as no evidence of a
    barrier.

    Parameters
    ----------
    surface : Surface
        A line whose grid holds α = 0 and 1, or a path scan holding t = 0 and 1.
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
    Barrier
        ``value`` (the height; None if an end's loss is not finite), ``at``
        (where it sits, in ``evidence.coordinate``: ``"alpha"`` or ``"t"``),
        ``loss_a`` = L(0), ``loss_b`` = L(1), ``chord`` (the chord there),
        ``above_roundoff`` (False: no barrier beyond round-off),
        ``peak_over_ends`` (max L on [0, 1] − max(L(0), L(1))), ``monotone``
        (None if undetermined), ``start`` (the worse end), ``max_rise`` and
        ``rise_at`` (the largest step up on that walk and where it ends),
        ``end_states``, ``se`` (None where not measured), ``resolved``; the
        evidence holds the missing points in [0, 1] (``skipped``), the floor
        and ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((0, 1, 21),), splits=("train",), metrics=("loss",),
    ...                 path={"kind": "bezier", "control_points": 3})
    >>> t = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": 1 + 4 * t * (1 - t)}, np.ones(21, bool))
    >>> r = barrier(surf, "train_loss")
    >>> surf.dims, round(r.value, 6), r.at, r.evidence.coordinate
    (('t',), 1.0, 0.5, 't')
    """
    _check_surface(surface, what="barrier")
    coordinate = "t" if surface.spec.path is not None else "alpha"
    line = as_line(surface)
    if len(line.dims) != 1:
        raise InputError("barrier needs a line (1 direction); this surface is a plane")
    a, L = line.coords["alpha"], _values(line, variable)
    z = _check_z(z)
    i0, i1 = _index(a, 0.0, coordinate), _index(a, 1.0, coordinate)
    inside = np.flatnonzero((a >= a[i0]) & (a <= a[i1]))  # grid points of [0, 1]
    finite = np.isfinite(L[inside])
    fl = _floor(line, variable)
    eps, k = _eps(line.spec.dtype), float(floor_safety)
    ev = _evidence(line, variable, coordinate=coordinate, points=int(finite.sum()),
                   skipped=int((~finite).sum()), floor=fl, floor_measured=fl is not None)
    ends = (_state(line, L, i0), _state(line, L, i1))
    if ends != ("finite", "finite"):
        return Barrier(variable=variable, value=None, z=z, evidence=ev, loss_a=float(L[i0]),
                       loss_b=float(L[i1]), end_states=ends)
    idx = inside[finite]
    t = (a[idx] - a[i0]) / (a[i1] - a[i0])
    chord = (1 - t) * L[i0] + t * L[i1]
    excess = L[idx] - chord
    top = int(np.argmax(excess))
    h = max(float(excess[top]), 0.0)
    walk = idx if L[i0] >= L[i1] else idx[::-1]
    rise = np.diff(L[walk])
    mag = np.abs(L[walk][:-1]) + np.abs(L[walk][1:])
    tol = safety * eps * mag if fl is None else k * 2.0 * fl + EPS64 * mag
    j = int(np.argmax(rise)) if rise.size else 0
    big = max(abs(L[i0]), abs(L[i1]), abs(L[idx[top]]))
    above = bool(h > (safety * eps * big if fl is None else k * 2.0 * fl + EPS64 * big))
    err, rule = _excess_noise(line, variable, int(idx[top]), i0, i1, float(t[top]))
    r = _resolve(h, err, z)
    if not above and r["se"] is not None:
        r["resolved"] = False
    if err is not None:
        ev = dataclasses.replace(ev, se_rule=rule)
    return Barrier(variable=variable, value=h, **r, evidence=ev, at=float(a[idx[top]]),
                   loss_a=float(L[i0]), loss_b=float(L[i1]), chord=float(chord[top]),
                   above_roundoff=above,
                   peak_over_ends=float(L[idx].max() - max(L[i0], L[i1])),
                   monotone=bool((rise <= tol).all()), start=float(a[walk[0]]),
                   max_rise=float(rise[j]) if rise.size else 0.0,
                   rise_at=float(a[walk[j + 1]]) if rise.size else None, end_states=ends)


def _index(a: np.ndarray, at: float, coordinate: str) -> int:
    hit = np.flatnonzero(np.isclose(a, at, rtol=0.0, atol=1e-9 * (a[-1] - a[0])))
    if not hit.size:
        raise InputError(
            f"barrier: {coordinate} = {at:g} is not a grid point; scan a grid that holds 0 and "
            "1, e.g. grid=(-0.5, 1.5, 41)"
        )
    return int(hit[0])


def as_line(surface: Any) -> Any:
    """A path Surface seen as a line (dim ``alpha`` = t), for functions written for lines.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((0, 1, 3),), splits=("s",), metrics=("loss",),
    ...                 path={"kind": "polychain", "control_points": 2})
    >>> as_line(Surface(spec, {"s_loss": np.zeros(3)}, np.ones(3, bool))).dims
    ('alpha',)
    """
    if surface.spec.path is None:
        return surface
    spec = dataclasses.replace(surface.spec, path=None)
    return dataclasses.replace(surface, spec=spec)
