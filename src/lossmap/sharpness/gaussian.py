"""Sharpness under random perturbations: average-case (Gaussian), PAC-Bayes σ, random directions.

* :func:`average_rises` — ``L(w + s ⊙ ρz) − L(w)``, z ~ N(0, I), one per draw
  (the average-case sharpness of Andriushchenko et al. 2023 is their mean).
* :func:`pac_bayes_sigma` — the largest σ whose Gaussian noise raises the loss
  by ``target`` on average (Jiang et al. 2020, "Fantastic generalization
  measures"), found by bisection with the same draws at every σ (common random
  numbers, so the estimated rise is a smooth function of σ): plain noise
  N(0, σ²), or magnitude-aware N(0, σ²w² + ε²) with ε = :data:`FLOOR`.
* :func:`random_rises` — the rises at ±γ for γ drawn on the sphere of radius
  ρ (ℓ2) or at the corners of the box (ℓ∞): the random-direction ε-sharpness
  is the largest.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .ascent import random_start
from .objective import Gamma, Objective

FLOOR = 1e-3
"""ε of the magnitude-aware PAC-Bayes noise, σ²w² + ε² (Jiang et al.'s value)."""


def _gen(seed: int, k: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + k)


def normal(obj: Objective, seed: int, k: int) -> Gamma:
    """Draw ``k`` of z ~ N(0, I), the same for the same (seed, k): name -> tensor."""
    gen = _gen(seed, k)
    return {
        n: torch.randn(w.shape, generator=gen, dtype=w.dtype).to(obj.device)
        for n, w in obj.centre.items()
    }


def average_rises(
    obj: Objective, u: int, centre: float, *, rho: float, draws: int, seed: int
) -> tuple[np.ndarray, list[Gamma]]:
    """Per-draw rises (draws,) on unit ``u`` at γ = ρz, and the draws."""
    gammas = [{n: rho * v for n, v in normal(obj, seed, k).items()} for k in range(draws)]
    return np.array([obj.loss(u, g)[0] - centre for g in gammas]), gammas


def random_rises(
    obj: Objective, u: int, centre: float, *, rho: float, norm: str, draws: int, seed: int
) -> tuple[np.ndarray, Gamma]:
    """Rises (2·draws,) at +γ_k then −γ_k, and the γ stacked (draws, ...)."""
    g = random_start(obj, draws, rho, norm, _gen(seed, 0))
    if norm == "linf":
        g = {n: rho * v.sign() for n, v in g.items()}  # the box's corners
    rises = [
        obj.loss(u, {n: sign * v[k] for n, v in g.items()})[0] - centre
        for sign in (1, -1)
        for k in range(draws)
    ]
    return np.array(rises), g


def pac_bayes_sigma(
    obj: Objective,
    centre: float,
    *,
    target: float,
    adaptive: bool,
    draws: int,
    seed: int,
    iterations: int = 12,
) -> tuple[float, float, float]:
    """``(σ, its standard error, the mean loss at σ)`` for a rise of ``target``.

    ``obj`` must have s = 1 (the noise is formed here). The standard error is
    the delta method's: the s.e. of the mean rise over the draws at σ, divided
    by the slope dR/dσ measured with the same draws at σ(1 ± 5 %).
    """
    zs = [normal(obj, seed, k) for k in range(draws)]

    def rises(sigma: float) -> np.ndarray:
        out = []
        for z in zs:
            if adaptive:
                g = {
                    n: torch.sqrt(sigma**2 * obj.centre[n] ** 2 + FLOOR**2) * v
                    for n, v in z.items()
                }
            else:
                g = {n: sigma * v for n, v in z.items()}
            out.append(obj.loss(0, g)[0] - centre)
        return np.array(out)

    lo, hi = 0.0, 1e-2
    r = rises(hi).mean()
    for _ in range(60):  # bracket: rise(lo) < target <= rise(hi)
        if r >= target:
            break
        lo, hi = hi, hi * 2
        r = rises(hi).mean()
    if lo == 0.0:
        for _ in range(60):
            r = rises(hi / 2).mean()
            if r < target:
                lo = hi / 2
                break
            hi /= 2
    for _ in range(iterations):
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        if rises(mid).mean() < target:
            lo = mid
        else:
            hi = mid
    sigma = math.sqrt(lo * hi) if lo > 0 else hi
    at = rises(sigma)
    h = 0.05
    slope = (rises(sigma * (1 + h)).mean() - rises(sigma * (1 - h)).mean()) / (2 * h * sigma)
    se = float(at.std(ddof=1) / math.sqrt(draws) / slope) if draws > 1 and slope > 0 else None
    return sigma, se, centre + float(at.mean())
