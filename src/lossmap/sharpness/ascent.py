"""Worst-case perturbations by Auto-PGD ascent in an ℓ2 ball or ℓ∞ box (Croce & Hein 2020).

The ascent is in γ (``δ = s ⊙ γ``, :mod:`lossmap.sharpness.objective`), over
``‖γ‖ ≤ ρ``: steepest-ascent steps (the gradient normalized to unit ℓ2 norm,
or its sign in ℓ∞), projected back, with Auto-PGD's schedule: step size
``η = 2ρ``, momentum ``α = 0.75`` after the first step, and at each checkpoint
``w_j = ⌈p_j · steps⌉`` (``p_0 = 0``, ``p_1 = 0.22``,
``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``) the step is halved, and
the ascent restarted from the best point so far, when fewer than 75 % of the
steps since the last checkpoint raised the loss or when neither the step nor
the best loss changed since then. Several units (batches of m examples)
ascend side by side, each with its own schedule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .objective import Gamma, Objective

MOMENTUM = 0.75
SUCCESS = 0.75


def checkpoints(steps: int) -> list[int]:
    """Auto-PGD's checkpoint iterations ``⌈p_j · steps⌉`` (j ≥ 1), within ``steps``.

    Examples
    --------
    >>> checkpoints(100)
    [22, 41, 57, 70, 80, 87, 93, 99]
    """
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = [math.ceil(round(x * steps, 9)) for x in p[1:]]  # round: 0.57 · 100 is 57.000…01
    out = sorted({x for x in w if x <= steps})
    return [w for w in out if w > 0]


def norms(g: Gamma, norm: str) -> torch.Tensor:
    """Each row's norm, (G,), over all tensors together."""
    flat = torch.cat([v.flatten(1) for v in g.values()], dim=1)  # (G, P)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def project(g: Gamma, rho: float, norm: str) -> Gamma:
    """Each row projected onto ``‖γ‖ ≤ ρ`` (ℓ2: scaled back; ℓ∞: clipped)."""
    if norm == "linf":
        return {k: v.clamp(-rho, rho) for k, v in g.items()}
    f = (rho / norms(g, norm).clamp_min(1e-30)).clamp(max=1.0)  # (G,)
    return {k: v * f.view(-1, *[1] * (v.dim() - 1)) for k, v in g.items()}


def steepest(g: Gamma, norm: str) -> Gamma:
    """The steepest-ascent direction of unit norm: ``g/‖g‖₂`` (ℓ2) or ``sign(g)`` (ℓ∞)."""
    if norm == "linf":
        return {k: v.sign() for k, v in g.items()}
    n = norms(g, norm).clamp_min(1e-30)
    return {k: v / n.view(-1, *[1] * (v.dim() - 1)) for k, v in g.items()}


def random_start(obj: Objective, n: int, rho: float, norm: str, gen: torch.Generator) -> Gamma:
    """``n`` random starts: on the sphere of radius ρ (ℓ2), uniform in the box (ℓ∞)."""
    z = {
        k: torch.randn(v.shape, generator=gen, dtype=v.dtype).to(obj.device)
        for k, v in obj.zeros(n).items()
    }
    if norm == "linf":
        return {
            k: rho * (2 * torch.rand(v.shape, generator=gen, dtype=v.dtype) - 1).to(obj.device)
            for k, v in z.items()
        }
    n_ = norms(z, norm).clamp_min(1e-30)
    return {k: rho * v / n_.view(-1, *[1] * (v.dim() - 1)) for k, v in z.items()}


def _where(mask: np.ndarray, a: Gamma, b: Gamma) -> Gamma:
    m = torch.as_tensor(mask)
    return {
        k: torch.where(m.to(v.device).view(-1, *[1] * (v.dim() - 1)), v, b[k]) for k, v in a.items()
    }


def _evaluate(obj: Objective, units: list[int], x: Gamma) -> tuple[np.ndarray, Gamma]:
    """Each unit's loss at its own γ, and the gradients, stacked."""
    fs, gs = [], []
    for i, u in enumerate(units):
        f, g = obj.loss(u, {k: v[i] for k, v in x.items()}, grad=True)
        fs.append(f)
        gs.append(g)
    return np.array(fs), {k: torch.stack([g[k] for g in gs]) for k in x}


def apgd(
    obj: Objective,
    units: list[int],
    centre: np.ndarray,
    *,
    rho: float,
    norm: str,
    steps: int,
    gen: torch.Generator,
) -> tuple[np.ndarray, Gamma]:
    """One Auto-PGD ascent per unit from a random start: ``(best loss (G,), best γ stacked)``.

    ``centre`` (G,) is each unit's loss at γ = 0, the best point before the ascent
    (the worst-case loss is never below it).
    """
    G = len(units)
    eta = np.full(G, 2.0 * rho)
    x = random_start(obj, G, rho, norm, gen)
    f, g = _evaluate(obj, units, x)
    best_f, best_x, best_g = (
        centre.copy(),
        obj.zeros(G),
        {k: torch.zeros_like(v) for k, v in g.items()},
    )
    up = f > best_f
    best_f, best_x, best_g = np.where(up, f, best_f), _where(up, x, best_x), _where(up, g, best_g)
    prev = x
    marks, last = checkpoints(steps), 0
    success = np.zeros(G)
    eta_mark, best_mark = eta.copy(), best_f.copy()
    for k in range(1, steps + 1):
        e = torch.as_tensor(eta, dtype=next(iter(x.values())).dtype)
        z = project(
            {
                n: v + e.to(v.device).view(-1, *[1] * (v.dim() - 1)) * s
                for (n, v), s in zip(x.items(), steepest(g, norm).values(), strict=True)
            },
            rho,
            norm,
        )
        a = 1.0 if k == 1 else MOMENTUM
        new = project(
            {n: x[n] + a * (z[n] - x[n]) + (1 - a) * (x[n] - prev[n]) for n in x}, rho, norm
        )
        prev, x = x, new
        f_new, g = _evaluate(obj, units, x)
        success += f_new > f
        f = f_new
        up = f > best_f
        best_f = np.where(up, f, best_f)
        best_x, best_g = _where(up, x, best_x), _where(up, g, best_g)
        if k in marks:
            halve = (success < SUCCESS * (k - last)) | ((eta == eta_mark) & (best_f == best_mark))
            eta = np.where(halve, eta / 2, eta)
            x, g, prev = (
                _where(halve, best_x, x),
                _where(halve, best_g, g),
                _where(halve, best_x, prev),
            )
            f = np.where(halve, best_f, f)
            success[:] = 0
            last, eta_mark, best_mark = k, eta.copy(), best_f.copy()
    return best_f, best_x
