"""The four measures on an :class:`~lossmap.sharpness.objective.Objective`, unit by unit.

Each returns ``(value, se, centre loss, perturbed loss, δ, per-unit values,
examples)``: with one unit (``m=None``) the standard error is the paired one
over its examples (worst, random) or over the draws (average, PAC-Bayes);
with several, the ratio estimator's over the units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.batches import rows_of
from ..stats import finish
from .ascent import apgd
from .gaussian import average_rises, pac_bayes_sigma, random_rises
from .objective import Objective


def se_rule(kind: str, units: int) -> str:
    """What the standard error of a measure is over (``Evidence.se_rule``)."""
    if kind == "pac-bayes":
        return "over draws, delta method"
    if units > 1:
        return "over m-batches"
    return "over draws" if kind == "average" else "paired, over examples"


def _sizes(obj: Objective) -> np.ndarray:
    return np.array([sum(rows_of(b) for b in u) for u in obj.units], dtype=float)


def obj_examples(obj: Objective) -> int:
    """The examples of all units."""
    return int(_sizes(obj).sum())


def _pooled(obj: Objective, rises: np.ndarray, centres: np.ndarray) -> tuple:
    """``(value, se, centre loss, perturbed loss)``: the example-weighted mean over units.

    The standard error is the ratio estimator's over the units (m-batches).
    """
    sizes = _sizes(obj)
    t, c = rises * sizes, sizes
    value, se = finish(np.array([t.sum(), c.sum(), t @ t, t @ c, c @ c, len(t)]))
    centre = float(centres @ sizes / sizes.sum())
    return float(value), float(se), centre, centre + float(value)


def _finish(
    obj: Objective, rises: np.ndarray, centres: np.ndarray, gammas: list, best: int
) -> tuple:
    """Per-unit rises (worst or random) → value, s.e., losses, δ of unit ``best``."""
    delta = obj.delta(gammas[best])
    if len(rises) == 1:
        perturbed, se, n = obj.paired(0, gammas[0])
        return (perturbed - centres[0], se, float(centres[0]), perturbed, delta, rises, n)
    return (*_pooled(obj, rises, centres), delta, rises, obj_examples(obj))


def _worst(obj: Objective, *, rho, norm, steps, restarts, seed, **_: Any) -> tuple:
    gen = torch.Generator().manual_seed(int(seed))
    units = list(range(len(obj.units)))
    centres = np.array([obj.loss(u)[0] for u in units])
    best_f, best_x = centres.copy(), obj.zeros(len(units))
    for _r in range(restarts):
        f, x = apgd(obj, units, best_f, rho=rho, norm=norm, steps=steps, gen=gen)
        up = f > best_f
        best_f = np.where(up, f, best_f)
        best_x = {
            k: torch.where(torch.as_tensor(up).view(-1, *[1] * (v.dim() - 1)).to(v.device), x[k], v)
            for k, v in best_x.items()
        }
    rises = best_f - centres
    gammas = [{k: v[u] for k, v in best_x.items()} for u in units]
    return _finish(obj, rises, centres, gammas, int(np.argmax(rises)))


def _random(obj: Objective, *, rho, norm, draws, seed, **_: Any) -> tuple:
    rises, gammas, centres = [], [], []
    for u in range(len(obj.units)):
        c = obj.loss(u)[0]
        r, g = random_rises(obj, u, c, rho=rho, norm=norm, draws=draws, seed=seed + u)
        i = int(np.argmax(r))
        sign, k = (1 if i < draws else -1), i % draws
        rises.append(r[i])
        gammas.append({n: sign * v[k] for n, v in g.items()})
        centres.append(c)
    rises = np.array(rises)
    return _finish(obj, rises, np.array(centres), gammas, int(np.argmax(rises)))


def _average(obj: Objective, *, rho, draws, seed, **_: Any) -> tuple:
    per, typical, centres = [], [], []
    for u in range(len(obj.units)):
        c = obj.loss(u)[0]
        r, gammas = average_rises(obj, u, c, rho=rho, draws=draws, seed=seed + u)
        per.append(r)
        typical.append(gammas[int(np.argsort(r)[len(r) // 2])])
        centres.append(c)
    centres = np.array(centres)
    if len(per) == 1:
        r = per[0]
        value, se = float(r.mean()), float(r.std(ddof=1) / math.sqrt(len(r)))
        n = obj_examples(obj)
        return value, se, float(centres[0]), float(centres[0]) + value, obj.delta(typical[0]), r, n
    rises = np.array([r.mean() for r in per])
    delta = obj.delta(typical[int(np.argmax(rises))])
    return (*_pooled(obj, rises, centres), delta, rises, obj_examples(obj))


def _pac_bayes(obj: Objective, *, rho, adaptive, draws, seed, **_: Any) -> tuple:
    c = obj.loss(0)[0]
    sigma, se, at = pac_bayes_sigma(obj, c, target=rho, adaptive=adaptive, draws=draws, seed=seed)
    n = obj_examples(obj)
    return sigma, se, c, at, None, np.array([sigma]), n


KINDS = {"worst": _worst, "average": _average, "pac-bayes": _pac_bayes, "random": _random}
"""Each kind's measure: ``f(obj, **options)`` -> (value, se, centre, perturbed, δ, per-unit, n)."""
