"""The 0.1 spectral functions: Hutchinson's trace and stochastic Lanczos quadrature.

Thin calls on :func:`lossmap.curvature_operator` (``.trace``,
``.nodes_weights``, ``.density``) that warn (``FutureWarning``) naming that
call; :func:`broaden` stays (it is :func:`lossmap.curvature.broaden`). See
:mod:`lossmap.curvature.spectrum` for the method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..curvature.checks import check_int
from ..curvature.operator import CurvatureOperator
from ..curvature.spectrum import MAX_BLOCK, broaden, rademacher
from .eigen import LossFn, hessian_of, moved

_rademacher = rademacher  # the 0.1 name (tests draw the same probes with it)

__all__ = ["broaden", "hessian_density", "hessian_trace", "slq_nodes_weights"]


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
    moved(
        "hessian_trace",
        "lm.curvature_operator(model, loss_fn, data).trace(probes=...)"
        " (a finding with .value and .se)",
    )
    if n_samples is not None:
        warnings.warn(
            "hessian_trace(n_samples=...) is deprecated: use probes=... (samples= is "
            "the data subset)",
            DeprecationWarning,
            stacklevel=2,
        )
        probes = n_samples
    check_int(probes, "probes", minimum=2)
    op = hessian_of(model, loss_fn, data, locals())
    # The 0.1 numbers, probe for probe (and probes >= dim, which op.trace refuses).
    return _hutchinson(op, probes, seed)


def _hutchinson(op: CurvatureOperator, probes: int, seed: int) -> tuple[float, float]:
    """0.1's Hutchinson: ``probes`` Rademacher probes drawn one by one, blocks of MAX_BLOCK."""
    gen = torch.Generator().manual_seed(seed)
    block = max(1, min(MAX_BLOCK, probes, op._block()))
    terms: list[float] = []
    while len(terms) < probes:
        m = min(block, probes - len(terms))
        R = torch.stack([rademacher(gen, op.dim) for _ in range(m)])  # (m, n)
        terms.extend((R * op.matmat(R)).sum(-1).tolist())  # rᵀHr, (m,)
    t = np.asarray(terms)
    return float(t.mean()), float(t.std(ddof=1) / np.sqrt(len(t)))


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
    moved(
        "slq_nodes_weights",
        "lm.curvature_operator(model, loss_fn, data).nodes_weights(n_lanczos=..., probes=...)",
    )
    probes = _renamed_probes(probes, n_probes, "slq_nodes_weights")
    check_int(n_lanczos, "n_lanczos", minimum=1)
    check_int(probes, "probes", minimum=1)
    op = hessian_of(model, loss_fn, data, locals())
    return op.nodes_weights(n_lanczos=n_lanczos, probes=probes, seed=seed)


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
    moved(
        "hessian_density",
        "lm.curvature_operator(model, loss_fn, data).density(n_lanczos=..., probes=...)",
    )
    probes = _renamed_probes(probes, n_probes, "hessian_density")
    check_int(n_lanczos, "n_lanczos", minimum=1)
    check_int(probes, "probes", minimum=1)
    op = hessian_of(model, loss_fn, data, locals())
    return op.density(n_lanczos=n_lanczos, probes=probes, seed=seed, grid=grid, sigma=sigma)


def _renamed_probes(probes: int, n_probes: int | None, fn: str) -> int:
    """``probes``, or the 0.1 keyword ``n_probes`` with a DeprecationWarning."""
    if n_probes is None:
        return probes
    warnings.warn(
        f"{fn}(n_probes=...) is deprecated: use probes=... (the same number)",
        DeprecationWarning,
        stacklevel=3,
    )
    return n_probes
