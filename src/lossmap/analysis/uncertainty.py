"""How far the findings are from the sample's noise: standard errors of values and differences.

Every stored value is a mean over a finite sample (``Surface.samples``), and
the scan may store its standard error at every point (``Surface.errors``,
``Surface.se(variable)``). A finding is an *effect* (a difference of values, a
slope) with a standard error; it is **resolved** when ``|effect| > z · se``
(``z = 2`` by default, :data:`Z`), and otherwise "not resolved at this sample
size". The rules for the standard error of a difference:

* **Two points of the same split** share their samples, so their errors are
  correlated. ``Var(A − B) = Var A + Var B − 2 Cov(A, B)`` is at most
  ``se_A² + se_B²`` when the covariance is non-negative, which is practically
  always the case for nearby points (the same images are hard at both), so
  ``sqrt(se_A² + se_B²)`` is used: **conservative**, it may overstate the
  error of a difference (and so call a real effect unresolved), never
  understate it.
* **A point and a chord** (a barrier ``L(t) − [(1 − t) L0 + t L1]``): the
  chord's error is at most ``(1 − t) se0 + t se1`` whatever the correlation of
  the ends (Cauchy-Schwarz), and with a non-negative covariance between
  ``L(t)`` and the chord the excess has a standard error of at most
  ``sqrt(se_t² + ((1 − t) se0 + t se1)²)`` (conservative).
* **Train against test** are independent samples: ``sqrt(se_a² + se_b²)`` is
  exact.
* **A point against the centre**, where the scan measured it (``Surface.paired``,
  the standard error of each point's difference from the centre over the same
  samples): that **paired** error is used instead, exact and usually far
  smaller than the bound above for nearby points. Two points neither of which
  is the centre: ``sqrt(d_A² + d_B²)`` of their paired errors (conservative,
  as above); a barrier's excess ``δ_t − t·δ_1`` about the centre at t = 0:
  ``d_t + t·d_1`` (Cauchy-Schwarz: no assumption on the correlation).

These errors are of the sampling only (which n samples were drawn); round-off
is the other, separate noise (:mod:`lossmap.analysis.common`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..surface import Surface
from .common import _centre_or_closest, _check_surface, _evidence, _n, _state, _values
from .finding import Gap

__all__ = ["Z", "gap"]

Z = 2.0
"""Default ``z``: an effect is resolved when it is more than ``z`` standard errors from zero."""


def _check_z(z: Any) -> float:
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not (0 < z < math.inf):
        raise InputError(f"z={z!r} must be a positive number (standard errors, e.g. 2)")
    return float(z)


def _se_array(surface: Surface, variable: str) -> np.ndarray | None:
    se = surface.se(variable) if surface.errors is not None else None
    return None if se is None else np.asarray(se, dtype=np.float64)


def _se_at(se: np.ndarray | None, idx: Any) -> float | None:
    """The standard error at a grid index, None where not measured or not finite."""
    if se is None:
        return None
    v = float(se[idx])
    return v if math.isfinite(v) and v >= 0 else None


def _diff_se(*ses: float | None) -> float | None:
    """``sqrt(Σ se²)``; None when any is unknown (see the module docstring for when it bounds)."""
    if any(s is None for s in ses):
        return None
    return math.sqrt(sum(s * s for s in ses))  # type: ignore[operator]


def _paired(surface: Surface, variable: str) -> np.ndarray | None:
    got = surface.paired.get(variable) if surface.paired else None
    return None if got is None else np.asarray(got, dtype=np.float64)


def _pair_se(surface: Surface, variable: str, a: Any, b: Any) -> tuple[float | None, str]:
    """The SE of ``L(a) − L(b)`` and how it was had (``"paired"`` or the bound's rule)."""
    d = _paired(surface, variable)
    centre = surface.centre_index()
    if d is not None and centre is not None:
        da, db = _se_at(d, a), _se_at(d, b)
        if tuple(b) == tuple(centre) and da is not None:
            return da, "paired"
        if tuple(a) == tuple(centre) and db is not None:
            return db, "paired"
        if da is not None and db is not None:
            return math.sqrt(da * da + db * db), "paired, conservative"
    se = _se_array(surface, variable)
    return _diff_se(_se_at(se, a), _se_at(se, b)), "conservative"


def _chord_se(se_t: float | None, se0: float | None, se1: float | None, t: float) -> float | None:
    """Conservative SE of ``L(t) − [(1 − t) L0 + t L1]`` (module docstring)."""
    if se_t is None or se0 is None or se1 is None:
        return None
    return math.sqrt(se_t**2 + ((1 - t) * se0 + t * se1) ** 2)


def _resolve(effect: float | None, se: float | None, z: float) -> dict[str, Any]:
    """``se``, ``z`` and ``resolved`` (``|effect| > z · se``; None where not measured)."""
    if se is None or effect is None or not math.isfinite(effect):
        return {"se": se, "z": z, "resolved": None}
    return {"se": se, "z": z, "resolved": bool(abs(effect) > z * se)}


def gap(surface: Surface, metric: str = "loss", *, splits: tuple[str, str] = ("train", "test"),
        z: float = Z) -> Gap:
    """The gap between two splits at the centre (test above train), with its standard error.

    ``gap = L_b(c) − L_a(c)`` at the centre (or the grid point closest to it).
    The two splits are independent samples, so ``se = sqrt(se_a² + se_b²)``
    is exact; the gap is resolved when ``|gap| > z · se``.

    Parameters
    ----------
    surface : Surface
        A line or a plane with both splits.
    metric : str, default "loss"
    splits : (str, str), default ("train", "test")
        ``(a, b)``: the gap is b − a.
    z : float, default 2

    Returns
    -------
    Gap
        ``value`` (b − a; None where a value is not finite), ``se`` (None
        when either split has no standard errors), ``resolved``, ``splits``,
        ``split_values``, ``split_n``, ``split_states``, ``coords``;
        ``variable`` is the metric.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 5),), splits=("train", "test"), metrics=("loss",),
    ...                 samples=400)
    >>> ones = np.ones(5)
    >>> surf = Surface(spec, {"train_loss": 0.30 * ones, "test_loss": 0.36 * ones},
    ...                np.ones(5, bool), errors={"train_loss": 0.02 * ones,
    ...                                          "test_loss": 0.02 * ones})
    >>> r = gap(surf)
    >>> round(r.value, 6), round(r.se, 6), r.resolved
    (0.06, 0.028284, True)
    """
    _check_surface(surface, what="gap")
    z = _check_z(z)
    if (not isinstance(splits, (tuple, list)) or len(splits) != 2
            or splits[0] == splits[1]):
        raise InputError(f"splits={splits!r} must be two different splits, e.g. ('train', 'test')")
    names = [f"{s}_{metric}" for s in splits]
    for s, v in zip(splits, names, strict=True):
        if v not in surface.values:
            raise InputError(f"gap needs {v!r} (split {s!r}, metric {metric!r}); this surface "
                             f"has {', '.join(surface.values)}")
    la, lb = (_values(surface, v) for v in names)
    idx, stand_in = _centre_or_closest(surface)
    a, b = float(la[idx]), float(lb[idx])
    g = b - a if math.isfinite(a) and math.isfinite(b) else None
    se = _diff_se(_se_at(_se_array(surface, names[0]), idx),
                  _se_at(_se_array(surface, names[1]), idx))
    ev = _evidence(surface, names[1], se_rule="exact", stand_in=stand_in, points=2, n=None,
                   split=None)
    return Gap(variable=metric, value=g, **_resolve(g, se, z), evidence=ev,
               splits=(str(splits[0]), str(splits[1])), split_values=(a, b),
               split_n=(_n(surface, names[0]), _n(surface, names[1])),
               split_states=(_state(surface, la, idx), _state(surface, lb, idx)),
               coords={d: float(surface.coords[d][i])
                       for d, i in zip(surface.dims, idx, strict=True)})


def _se_typical(surface: Surface, variable: str) -> float | None:
    """The median finite standard error of one point of ``variable`` (None where not measured)."""
    se = _se_array(surface, variable)
    finite = se[np.isfinite(se)] if se is not None else np.empty(0)
    return float(np.median(finite)) if finite.size else None


def _second_difference_noise(deepest: float | None, se_typical: float | None) -> float | None:
    """``|deepest| / se_typical``: the deepest second difference against one point's SE."""
    if se_typical is None or deepest is None or not math.isfinite(deepest):
        return None
    return abs(deepest) / se_typical if se_typical > 0 else math.inf


def _excess_noise(surface: Surface, variable: str, top: int, i0: int, i1: int,
                  t: float) -> tuple[float | None, str]:
    """A barrier's ``se`` at its peak (conservative, chord rule; paired where measured) and rule."""
    se = _se_array(surface, variable)
    d, centre = _paired(surface, variable), surface.centre_index()
    if d is not None and centre is not None and tuple(centre) == (i0,) and np.isfinite(
            d[top]) and np.isfinite(d[i1]):  # δ_t − t·δ_1 about the centre at t = 0
        return float(d[top] + t * d[i1]), "paired, conservative"
    return _chord_se(_se_at(se, top), _se_at(se, i0), _se_at(se, i1), t), "conservative"


def _crossing(a: np.ndarray, D: np.ndarray, i: int, step: int, thr: float) -> float | None:
    """α where ``D`` first rises above ``thr`` walking from ``i`` by ``step`` (None: never)."""
    j = i
    while 0 <= j + step < len(a):
        j += step
        if not np.isfinite(D[j]):
            return None
        if D[j] > thr:
            p = j - step
            return float(a[p] + (thr - D[p]) / (D[j] - D[p]) * (a[j] - a[p]))
    return None


def _basin_band(surface: Surface, variable: str, a: np.ndarray, L: np.ndarray, i: int,
                delta: float, z: float, width: float | None) -> dict[str, Any]:
    """Where ``L(α) − L(0) ± z·se`` crosses δ on each side: the width's interval.

    ``se`` of ``L(α) − L(0)`` is the paired one where measured (``Surface.paired``),
    else the conservative ``sqrt(se_α² + se_0²)``. The
    upper band crosses first (the narrowest width the noise allows), the lower
    band last (the widest); a side whose lower band never crosses on the grid
    has no upper end. ``resolved``: the width and the widest one are on the
    grid (None when the width itself is beyond the grid: a matter of range,
    not of sample size).
    """
    se = _se_array(surface, variable)
    if se is None or not np.isfinite(se[i]):
        return {"se_centre": None, "left_range": None, "right_range": None,
                "width_range": None, "resolved": None}
    d, centre = _paired(surface, variable), surface.centre_index()
    with np.errstate(invalid="ignore"):
        D = L - L[i]
        if d is not None and centre is not None and tuple(centre) == (i,):
            s = d.copy()  # paired: each point's difference from the centre, measured
        else:
            s = np.sqrt(se**2 + se[i] ** 2)
        s[i] = 0.0
    out: dict[str, Any] = {"se_centre": float(se[i])}
    for side, step in (("left", -1), ("right", 1)):
        near = _crossing(a, D + z * s, i, step, delta)
        far = _crossing(a, D - z * s, i, step, delta)
        out[f"{side}_range"] = tuple(None if x is None else abs(x - float(a[i]))
                                     for x in (near, far))
    lo = [out[f"{s}_range"][0] for s in ("left", "right")]
    hi = [out[f"{s}_range"][1] for s in ("left", "right")]
    out["width_range"] = (None if None in lo else sum(lo), None if None in hi else sum(hi))
    out["resolved"] = None if width is None else out["width_range"][1] is not None
    return out


def _rise_noise(surface: Surface, variable: str, centre: Any, worst: Any, rise: float,
                z: float) -> tuple[dict[str, Any], str]:
    """A rise ``L(worst) − L(c)``'s ``se``/``z``/``resolved`` and the rule of its SE."""
    err, rule = _pair_se(surface, variable, tuple(np.atleast_1d(worst)),
                         tuple(np.atleast_1d(centre)))
    return _resolve(rise, err, z), rule
