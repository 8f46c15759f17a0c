"""Spectral estimates of the Hessian: Hutchinson's trace and stochastic Lanczos quadrature.

Both use only Hessian-vector products (see :mod:`lossmap.hessian` for what H
is, the evaluation mode and the precision) and draw their random probe vectors
from a private seeded generator, probe by probe, so a probe never depends on
how many are drawn with it.

**Stochastic Lanczos quadrature** (Ghorbani, Krishnan & Xiao 2019; Ubaru, Chen
& Saad 2017). For a unit probe v, m steps of Lanczos from v give a tridiagonal
T whose eigenvalues θⱼ (nodes) and squared first eigenvector components τⱼ
(weights) form the Gauss quadrature of the spectral measure seen from v:
Σⱼ τⱼ f(θⱼ) = vᵀ f(H) v, exactly for polynomials f of degree < 2m. With
v = r/√n, r a Rademacher vector, E[vᵀ f(H) v] = tr f(H) / n, so the average
over probes of these discrete measures estimates the normalized spectral
density (1/n) Σᵢ δ(λ − λᵢ). The Lanczos vectors are fully reorthogonalized
(twice, classical Gram–Schmidt), which keeps the nodes free of the spurious
copies plain Lanczos produces in floating point.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .checks import _check_int
from .operator import LossFn, _Hessian, _hessian_of

MAX_BLOCK = 16  # probes sharing one forward + first backward per batch
BLOCK_BUDGET = 256 * 1024**2  # bytes of float64 probe vectors and products per block
BASIS_BUDGET = 512 * 1024**2  # bytes of Lanczos basis kept for full reorthogonalization
GRID_POINTS = 1000
MARGIN = 6.0  # default grid reaches this many σ beyond the extreme nodes


def _rademacher(gen: torch.Generator, n: int) -> torch.Tensor:
    """One Rademacher vector (n,) of ±1 in float64, drawn from ``gen``."""
    return torch.randint(0, 2, (n,), generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    probes: int = 100,
    seed: int = 0,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    n_samples: int | None = None,
) -> tuple[float, float]:
    """Hutchinson's estimate of tr(H) with Rademacher probes, and its standard error.

    tr(H) ≈ (1/S) Σₛ rₛᵀ H rₛ with rₛ ∈ {−1, +1}ⁿ; the standard error is the
    sample standard deviation of the S terms over √S (it shrinks as 1/√S;
    it is 0 only when H is diagonal, where every term is exact).

    Parameters
    ----------
    model, loss_fn, data, centre, device, batch_size, samples, params, dtype
        As in :func:`lossmap.hessian.hvp`. With ``params``, the trace of
        that diagonal block (a per-layer trace).
    probes : int, default 100
        Number of probe vectors S (>= 2, for the standard error). Not to be
        confused with ``samples``, the data subset.
    n_samples : int, optional
        Deprecated name of ``probes`` (lossmap 0.1); warns.
    seed : int, default 0
        Seed of the probes (a private generator) and of ``samples``.

    Returns
    -------
    estimate : float
    standard_error : float

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> est, se = hessian_trace(net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double()),
    ...                         probes=10)
    >>> round(est, 6), se  # H = diag(2/3, 8/3, 6) is diagonal: every probe is exact
    (9.333333, 0.0)
    """
    if n_samples is not None:
        warnings.warn("hessian_trace(n_samples=...) is deprecated: use probes=... (samples= is "
                      "the data subset)", DeprecationWarning, stacklevel=2)
        probes = n_samples
    _check_int(probes, "probes", minimum=2)
    with _hessian_of(
        model, loss_fn, data, centre=centre, device=device, batch_size=batch_size,
        samples=samples, seed=seed, params=params, dtype=dtype,
    ) as op:  # fmt: skip
        gen = torch.Generator().manual_seed(seed)
        block = max(1, min(MAX_BLOCK, probes, BLOCK_BUDGET // (16 * op.n)))
        terms: list[float] = []
        while len(terms) < probes:
            m = min(block, probes - len(terms))
            R = torch.stack([_rademacher(gen, op.n) for _ in range(m)]).to(op.device)  # (m, n)
            terms.extend((R * op.apply(R)).sum(-1).tolist())  # rᵀHr, (m,)
    t = np.asarray(terms)
    return float(t.mean()), float(t.std(ddof=1) / np.sqrt(len(t)))


def _lanczos(op: _Hessian, Q0: torch.Tensor, m: int) -> list[tuple[np.ndarray, np.ndarray]]:
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


def slq_nodes_weights(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    n_lanczos: int = 80,
    probes: int = 10,
    seed: int = 0,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    n_probes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic Lanczos quadrature of the Hessian's spectrum: a discrete measure.

    Parameters
    ----------
    model, loss_fn, data, centre, device, batch_size, samples, params, dtype
        As in :func:`lossmap.hessian.hvp`.
    n_lanczos : int, default 80
        Lanczos steps per probe (capped at the number of parameters n; with
        n_lanczos = n the nodes are the exact eigenvalues). Each step is one
        Hessian-vector product; the basis of n_lanczos vectors per probe is
        kept in float64 for reorthogonalization.
    probes : int, default 10
        Number of random probes averaged.
    seed : int, default 0
        Seed of the probes (a private generator) and of ``samples``.
    n_probes : int, optional
        Deprecated name of ``probes`` (lossmap 0.1); warns.

    Returns
    -------
    nodes : ndarray, shape (M,)
        Quadrature nodes of all probes, concatenated (M <= probes × n_lanczos).
    weights : ndarray, shape (M,)
        Their weights, divided by probes: they sum to 1, and Σ wᵢ θᵢᵖ
        estimates tr(Hᵖ)/n (exactly in expectation for p < 2·n_lanczos).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> nodes, w = slq_nodes_weights(net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double()),
    ...                              n_lanczos=3, probes=2)
    >>> sorted(set(nodes.round(6).tolist())), round(float(w.sum()), 6)
    ([0.666667, 2.666667, 6.0], 1.0)
    """
    probes = _renamed_probes(probes, n_probes, "slq_nodes_weights")
    _check_int(n_lanczos, "n_lanczos", minimum=1)
    _check_int(probes, "probes", minimum=1)
    with _hessian_of(
        model, loss_fn, data, centre=centre, device=device, batch_size=batch_size,
        samples=samples, seed=seed, params=params, dtype=dtype,
    ) as op:  # fmt: skip
        m = min(n_lanczos, op.n)
        block = max(1, min(MAX_BLOCK, probes, BASIS_BUDGET // (8 * (m + 2) * op.n)))
        gen = torch.Generator().manual_seed(seed)
        nodes, weights = [], []
        done = 0
        while done < probes:
            b = min(block, probes - done)
            Q0 = torch.stack([_rademacher(gen, op.n) for _ in range(b)]) / op.n**0.5  # (b, n)
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
        _check_int(n_grid, "n_grid", minimum=2)
        grid = np.linspace(nodes.min() - MARGIN * sigma, nodes.max() + MARGIN * sigma, n_grid)
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)  # (G,)
    z = (grid[:, None] - nodes[None, :]) / sigma  # (G, M)
    density = (np.exp(-0.5 * z**2) @ weights) / (sigma * np.sqrt(2 * np.pi))  # (G,)
    return grid, density


def hessian_density(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    n_lanczos: int = 80,
    probes: int = 10,
    seed: int = 0,
    grid: np.ndarray | None = None,
    sigma: float | None = None,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    n_probes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian's spectral density by stochastic Lanczos quadrature, Gaussian-broadened.

    :func:`slq_nodes_weights` followed by :func:`broaden`; call those two to
    keep the exact discrete measure or to re-broaden without new products.

    Parameters
    ----------
    model, loss_fn, data, centre, device, batch_size, samples, params, dtype
        As in :func:`lossmap.hessian.hvp`.
    n_lanczos, probes, seed
        As in :func:`slq_nodes_weights`.
    n_probes : int, optional
        Deprecated name of ``probes`` (lossmap 0.1); warns.
    grid, sigma
        As in :func:`broaden`.

    Returns
    -------
    grid : ndarray, shape (G,)
        Eigenvalue axis.
    density : ndarray, shape (G,)
        Normalized density: on the default grid it integrates to 1.

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> x, p = hessian_density(net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double()),
    ...                        n_lanczos=3, probes=2)
    >>> round(float(np.trapezoid(p, x)), 6)
    1.0
    """
    probes = _renamed_probes(probes, n_probes, "hessian_density")
    nodes, weights = slq_nodes_weights(
        model, loss_fn, data, n_lanczos=n_lanczos, probes=probes, seed=seed,
        centre=centre, device=device, batch_size=batch_size, samples=samples,
        params=params, dtype=dtype,
    )  # fmt: skip
    return broaden(nodes, weights, grid=grid, sigma=sigma)


def _renamed_probes(probes: int, n_probes: int | None, fn: str) -> int:
    """``probes``, or the 0.1 keyword ``n_probes`` with a DeprecationWarning."""
    if n_probes is None:
        return probes
    warnings.warn(f"{fn}(n_probes=...) is deprecated: use probes=... (the same number)",
                  DeprecationWarning, stacklevel=3)
    return n_probes
