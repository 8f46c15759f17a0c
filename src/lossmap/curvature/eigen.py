"""Extreme eigenpairs of a curvature operator by implicitly restarted Lanczos (ARPACK).

``scipy.sparse.linalg.eigsh`` on a ``LinearOperator`` whose products are the
engine's, on flat float64 vectors — the same route curvlinops takes through
its ``.to_scipy()`` export. Eigenvectors come back as unit-norm
:class:`~lossmap.directions.Direction` over all model parameters (zeros
outside ``params``), their sign fixed so the entry of largest magnitude is
positive, each with its eigenvalue in ``meta["eigenvalue"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..directions.result import Directions
from ..errors import InputError
from .checks import check_int

WHICH = {"largest": "LA", "smallest": "SA", "magnitude": "LM"}
ORDER = {
    "largest": lambda v: np.argsort(-v),
    "smallest": np.argsort,
    "magnitude": lambda v: np.argsort(-np.abs(v)),
}


def check_which(which: Any) -> None:
    if which not in WHICH:
        raise InputError(
            f"which={which!r} must be one of {', '.join(map(repr, WHICH))} "
            "(largest / smallest algebraic eigenvalues, or largest magnitude)"
        )


def linear_operator(op: Any) -> Any:
    """``op`` (an engine) as a SciPy ``LinearOperator`` on float64 NumPy vectors."""
    from scipy.sparse.linalg import LinearOperator

    def matmat(X: np.ndarray) -> np.ndarray:
        V = torch.as_tensor(np.ascontiguousarray(np.asarray(X, dtype=np.float64).T))
        return op.apply(V.to(op.device)).cpu().numpy().T

    def matvec(x: np.ndarray) -> np.ndarray:
        return matmat(np.asarray(x).reshape(-1, 1)).reshape(-1)

    return LinearOperator(
        (op.n, op.n), matvec=matvec, matmat=matmat, rmatvec=matvec, dtype=np.float64
    )


def eigenpairs(
    op: Any,
    k: int,
    *,
    which: str,
    tol: float,
    seed: int,
    maxiter: int,
    ncv: int | None,
    meta: dict,
    name: str = "k",
) -> Directions:
    """The ``k`` extreme eigenpairs of ``op`` as :class:`Directions` (see the module)."""
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    check_which(which)
    check_int(k, "k", minimum=1)
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
        raise InputError(f"tol={tol!r} must be a number >= 0 (relative accuracy)")
    check_int(maxiter, "maxiter", minimum=1)
    if k >= op.n:
        raise InputError(
            f"k={k} must be < the number of parameters ({op.n}): ARPACK (scipy's eigsh) "
            f"finds at most {op.n - 1} eigenpairs; lower k, or for a model this small "
            "take the dense matrix (operator.to_dense()) and use numpy.linalg.eigh"
        )
    if ncv is not None:
        check_int(ncv, "ncv", minimum=k + 1)
        if ncv > op.n:
            raise InputError(f"ncv={ncv} must be <= the number of parameters ({op.n})")
    v0 = np.random.default_rng(seed).standard_normal(op.n)  # private generator
    start = op.products
    try:
        vals, vecs = eigsh(
            linear_operator(op),
            k=k,
            which=WHICH[which],
            tol=float(tol),
            v0=v0,
            maxiter=maxiter,
            ncv=ncv,
        )  # (k,), (n, k)
    except ArpackNoConvergence as exc:
        raise InputError(
            f"eigsh found only {len(exc.eigenvalues)} of {name}={k} eigenpairs within "
            f"maxiter={maxiter} restarts ({op.products - start} matrix-vector products): raise "
            "maxiter, loosen tol, raise ncv, or pass dtype=torch.float64 if the model is "
            "float32 and the eigenvalues are small"
        ) from None
    order = ORDER[which](vals)
    vals, vecs = vals[order].astype(np.float64), vecs[:, order]
    products = op.products - start
    dirs = []
    for i in range(k):
        v = vecs[:, i] / np.linalg.norm(vecs[:, i])
        if v[np.argmax(np.abs(v))] < 0:
            v = -v
        dirs.append(
            op.direction(
                torch.from_numpy(v),
                {
                    **meta,
                    "index": i,
                    "eigenvalue": float(vals[i]),
                    "which": which,
                    "seed": seed,
                    "products": products,
                },
            )
        )
    return Directions(dirs, {"eigenvalues": vals, "which": which, "products": products})
