"""The largest eigenpair of a symmetric operator by Lanczos, warm-started from a vector.

Used by :class:`lossmap.callbacks.sharpness.SharpnessRecorder`: started from
the previous logged step's top eigenvector, Lanczos stops after a few
products when the curvature has moved little, and after one when the vector
is still exact (a quadratic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TopEigenpair:
    """λmax, its unit eigenvector, the products it took and ‖Hx − λx‖ / |λ|."""

    value: float
    vector: torch.Tensor
    products: int
    residual: float


def top_eigenpair(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    tol: float = 1e-3,
    max_products: int = 50,
) -> TopEigenpair:
    """The largest (algebraic) eigenpair of a symmetric operator by Lanczos from ``start``.

    Full reorthogonalisation (the Krylov basis is kept: ``max_products``
    vectors of the operator's size at most). Stops when the Ritz pair's
    residual ‖Hx − θx‖ (read from the tridiagonal matrix, no extra product)
    is at most ``tol · |θ|``, when the Krylov space is exhausted, or after
    ``max_products`` products.

    Parameters
    ----------
    matvec : callable
        v (dim,) float64 -> H·v (dim,).
    start : torch.Tensor
        The start vector (dim,), nonzero: the previous top eigenvector, or a
        random one.
    tol : float, default 1e-3
        Relative residual to stop at; the eigenvalue's relative error is then
        about tol² · λ/gap.
    max_products : int, default 50

    Returns
    -------
    TopEigenpair

    Examples
    --------
    >>> import torch
    >>> H = torch.diag(torch.tensor([3.0, 1.0, -5.0], dtype=torch.float64))
    >>> r = top_eigenpair(lambda v: H @ v, torch.ones(3, dtype=torch.float64))
    >>> round(r.value, 12), r.products
    (3.0, 3)
    >>> top_eigenpair(lambda v: H @ v, r.vector).products  # warm: one product
    1
    """
    q = start.to(torch.float64)
    q = q / q.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    theta, y, residual = 0.0, torch.ones(1, dtype=torch.float64), float("inf")
    for k in range(max_products):
        w = matvec(basis[-1]).to(torch.float64)
        alpha = float(basis[-1] @ w)
        Q = torch.stack(basis, 1)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - Q @ (Q.T @ w)
        beta = float(w.norm())
        alphas.append(alpha)
        T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        evals, evecs = torch.linalg.eigh(T)
        theta, y = float(evals[-1]), evecs[:, -1]
        residual = beta * abs(float(y[-1]))
        scale = max(abs(theta), 1e-300)
        if residual <= tol * scale or beta <= 1e-12 * max(abs(alpha), scale) or k + 1 == len(q):
            break
        betas.append(beta)
        basis.append(w / beta)
    x = torch.stack(basis[: len(alphas)], 1) @ y
    return TopEigenpair(
        value=theta,
        vector=x / x.norm(),
        products=len(alphas),
        residual=residual / max(abs(theta), 1e-300),
    )
