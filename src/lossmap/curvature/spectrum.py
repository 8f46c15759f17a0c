"""Stochastic Lanczos quadrature and Gaussian broadening of a curvature operator's spectrum.

**Stochastic Lanczos quadrature** (Ghorbani, Krishnan & Xiao 2019; Ubaru, Chen
& Saad 2017). For a unit probe v, m steps of Lanczos from v give a tridiagonal
T whose eigenvalues θⱼ (nodes) and squared first eigenvector components τⱼ
(weights) form the Gauss quadrature of the spectral measure seen from v:
Σⱼ τⱼ f(θⱼ) = vᵀ f(C) v, exactly for polynomials f of degree < 2m. With
v = r/√n, r a Rademacher vector, E[vᵀ f(C) v] = tr f(C) / n, so the average
over probes of these discrete measures estimates the normalized spectral
density (1/n) Σᵢ δ(λ − λᵢ). The Lanczos vectors are fully reorthogonalized
(twice, classical Gram–Schmidt), which keeps the nodes free of the spurious
copies plain Lanczos produces in floating point. Probes come from a private
seeded generator, probe by probe, so a probe never depends on how many are
drawn with it. (curvlinops' ``lanczos_approximate_spectrum`` runs one probe
at a time without reorthogonalization; this one runs a block of probes per
pass over the data.)
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .checks import check_int
from .engine import Engine

MAX_BLOCK = 16  # probes sharing one forward + first backward per batch
BASIS_BUDGET = 512 * 1024**2  # bytes of Lanczos basis kept for full reorthogonalization
GRID_POINTS = 1000
MARGIN = 6.0  # default grid reaches this many σ beyond the extreme nodes


def rademacher(gen: torch.Generator, n: int) -> torch.Tensor:
    """One Rademacher vector (n,) of ±1 in float64, drawn from ``gen``."""
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1


def _lanczos(op: Engine, Q0: torch.Tensor, m: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """m Lanczos steps from each unit row of Q0 (B, n) at once, fully reorthogonalized.

    Returns, per probe, the diagonal α (s,) and off-diagonal β (s − 1,) of its
    tridiagonal matrix; s < m where the Krylov space became invariant
    (β below √eps of the compute dtype times the largest entry so far).
    """
    B, n = Q0.shape
    Q = Q0.new_zeros(m, B, n)  # (m, B, n) Lanczos basis
    Q[0] = Q0
    alpha = np.zeros((B, m))
    beta = np.zeros((B, m))  # beta[:, j] couples steps j and j + 1
    steps = np.full(B, m)
    active = np.ones(B, dtype=bool)
    small = float(torch.finfo(op.dtype).eps) ** 0.5
    for j in range(m):
        idx = torch.from_numpy(np.flatnonzero(active))
        W = torch.zeros_like(Q0)  # (B, n)
        W[idx] = op.apply(Q[j, idx])
        a = (W * Q[j]).sum(-1)  # (B,)
        alpha[active, j] = a.cpu().numpy()[active]
        if j == m - 1:
            break
        W -= a[:, None] * Q[j]
        if j > 0:
            W -= torch.from_numpy(beta[:, j - 1]).to(W)[:, None] * Q[j - 1]
        for _ in range(2):
            C = torch.einsum("jbn,bn->jb", Q[: j + 1], W)  # (j + 1, B)
            W -= torch.einsum("jb,jbn->bn", C, Q[: j + 1])
        b = W.norm(dim=-1).cpu().numpy()  # (B,)
        scale = np.maximum(np.abs(alpha[:, : j + 1]).max(1), beta[:, :j].max(1, initial=0.0))
        done = active & (b <= small * np.maximum(scale, np.finfo(np.float64).tiny))
        steps[done] = j + 1
        active &= ~done
        beta[active, j] = b[active]
        keep = torch.from_numpy(active).to(W.device)[:, None]  # (B, 1)
        Q[j + 1] = torch.where(
            keep, W / torch.from_numpy(np.where(active, b, 1.0)).to(W)[:, None], 0
        )
        if not active.any():
            break
    return [(alpha[i, : steps[i]], beta[i, : steps[i] - 1]) for i in range(B)]


def _gauss_quadrature(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (eigenvalues of T) and weights (squared first components) of one probe."""
    from scipy.linalg import eigh_tridiagonal

    if len(alpha) == 1:
        return alpha.copy(), np.ones(1)
    theta, S = eigh_tridiagonal(alpha, beta)  # (s,), (s, s)
    return theta, S[0] ** 2


def nodes_weights(
    op: Engine, *, n_lanczos: int, probes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """SLQ nodes and weights (weights sum to 1) of ``op``; see the module docstring."""
    check_int(n_lanczos, "n_lanczos", minimum=1)
    check_int(probes, "probes", minimum=1)
    m = min(n_lanczos, op.n)
    block = max(1, min(MAX_BLOCK, probes, BASIS_BUDGET // (8 * (m + 2) * op.n)))
    gen = torch.Generator().manual_seed(seed)
    nodes, weights = [], []
    done = 0
    while done < probes:
        b = min(block, probes - done)
        Q0 = torch.stack([rademacher(gen, op.n) for _ in range(b)]) / op.n**0.5  # (b, n)
        for alpha, beta in _lanczos(op, Q0.to(op.device), m):
            theta, tau = _gauss_quadrature(alpha, beta)
            nodes.append(theta)
            weights.append(tau / probes)
        done += b
    return np.concatenate(nodes), np.concatenate(weights)


def broaden(
    nodes: np.ndarray,
    weights: np.ndarray,
    *,
    grid: np.ndarray | None = None,
    sigma: float | None = None,
    n_grid: int = GRID_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth density from a discrete measure: Σ wᵢ · N(x; θᵢ, σ²).

    Parameters
    ----------
    nodes, weights : array_like, shape (M,)
        The measure, e.g. from :func:`slq_nodes_weights` (weights sum to 1).
    grid : array_like, shape (G,), optional
        Where to evaluate. Default: ``n_grid`` evenly spaced points from the
        smallest node − 6σ to the largest + 6σ, on which the density
        integrates (trapezoid rule) to Σ wᵢ within 1e-6.
    sigma : float, optional
        Gaussian width. Default: 1 % of the node range (1e-3 · max(1, |θ|max)
        if all nodes coincide).
    n_grid : int, default 1000
        Points of the default grid.

    Returns
    -------
    grid : ndarray, shape (G,)
    density : ndarray, shape (G,)

    Examples
    --------
    >>> import numpy as np
    >>> x, p = broaden(np.array([0.0, 1.0]), np.array([0.5, 0.5]))
    >>> round(float(np.trapezoid(p, x)), 6)
    1.0
    """
    nodes = np.asarray(nodes, dtype=np.float64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if nodes.shape != weights.shape or nodes.size == 0:
        raise InputError(
            f"nodes {nodes.shape} and weights {weights.shape} must be 1-D, non-empty, of one length"
        )
    if not (np.isfinite(nodes).all() and np.isfinite(weights).all()):
        raise InputError("nodes and weights must be finite")
    if sigma is None:
        spread = float(nodes.max() - nodes.min())
        sigma = spread / 100 if spread > 0 else 1e-3 * max(1.0, float(np.abs(nodes).max()))
    elif not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
        raise InputError(f"sigma={sigma!r} must be a positive number (the Gaussian width)")
    if grid is None:
        check_int(n_grid, "n_grid", minimum=2)
        grid = np.linspace(nodes.min() - MARGIN * sigma, nodes.max() + MARGIN * sigma, n_grid)
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)  # (G,)
    z = (grid[:, None] - nodes[None, :]) / sigma  # (G, M)
    density = (np.exp(-0.5 * z**2) @ weights) / (sigma * np.sqrt(2 * np.pi))  # (G,)
    return grid, density
