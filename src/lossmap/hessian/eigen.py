"""The 0.1 Hessian functions, now thin calls on :func:`lossmap.curvature_operator`.

Everything here is about the Hessian H of the *mean* loss over one split,

    L(θ) = Σ_b (n_b / N) · loss_fn(f(X_b; θ), y_b),

with respect to the model's parameters (all, or ``params=``) at a centre θ.
Each function builds ``lm.curvature_operator(model, loss_fn, data,
kind="hessian", ...)`` and calls one method on it, and warns once per call
site (``FutureWarning``) naming that call; they go in the next release.

Precision: products are computed in the parameters' dtype (or ``dtype=``) and
accumulated over batches in float64. In float32 they carry a relative error of
about 1e-6 of ‖H‖, which is enough for the largest eigenvalues but not for
small ones; pass ``dtype=torch.float64`` for those.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..curvature.api import curvature_operator
from ..curvature.data import DEFAULT_BATCH, DEVICE_DATA_BUDGET  # noqa: F401
from ..curvature.operator import CurvatureOperator
from ..directions.result import Directions

LossFn = Any


def moved(old: str, new: str) -> None:
    """The FutureWarning of a 0.1 Hessian function, pointing at the user's line."""
    warnings.warn(
        f"lm.{old}(...) is deprecated and goes in the next release: use {new}",
        FutureWarning,
        stacklevel=3,
    )


def hessian_of(model: nn.Module, loss_fn: Any, data: Any, options: dict) -> CurvatureOperator:
    """``lm.curvature_operator(..., kind="hessian")`` with the 0.1 functions' shared options."""
    shared = ("centre", "device", "batch_size", "samples", "seed", "params", "dtype")
    return curvature_operator(
        model, loss_fn, data, kind="hessian", **{k: options[k] for k in shared}
    )


def hvp(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    vector: Mapping[str, torch.Tensor],
    *,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """Hessian-vector product H·v of the mean loss over one split.

    Parameters
    ----------
    model : nn.Module
        The network; read only, through ``torch.func.functional_call``, in
        evaluation mode. It comes back bit-identical.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch mean (a scalar).
    data : DataLoader, (X, y) tuple of tensors, iterable of (X, y) batches, or one-entry dict
        One split, read once. H is of the exact mean over its samples
        (batches weighted by their sizes).
    vector : Direction or dict of str to Tensor
        v, keyed like ``model.named_parameters()``; entries for buffers or
        parameters outside ``params`` are ignored.
    centre : None, dict, nn.Module or path, optional
        Where H is taken; default the model's current weights (and buffers).
    device : str or torch.device, optional
        Default: the model's device.
    batch_size : int, optional
        Default: the loader's batch size, else 1024. The result does not
        depend on it (up to round-off).
    samples : int, optional
        Use a fixed random subset of this many samples (seeded by ``seed``).
    seed : int, default 0
        Seed of the ``samples`` subset.
    params : list of str, optional
        Differentiate with respect to these parameters only (the others stay
        at the centre): the diagonal block of H. Default all parameters.
    dtype : torch.dtype, optional
        Compute in this dtype (parameters, buffers and floating data are
        cast); default the parameters' dtype.

    Returns
    -------
    dict of str to Tensor
        H·v keyed by parameter name (those in ``params``), on the CPU, in the
        compute dtype; the batch sum is accumulated in float64.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    >>> Hv = hvp(net, torch.nn.MSELoss(), (X, y), {"weight": torch.ones(1, 3).double()})
    >>> bool(torch.allclose(Hv["weight"], (2 / 20) * X.T @ X @ torch.ones(3).double()))
    True
    """
    moved("hvp", "lm.curvature_operator(model, loss_fn, data).matvec(vector)")
    op = hessian_of(model, loss_fn, data, locals())
    hv = op.matvec(vector)
    return {k: hv[k].to(op._engine.dtype) for k in op.names}


def curvature(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    direction: Mapping[str, torch.Tensor],
    *,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
) -> float:
    """Curvature of the loss along a direction: dᵀHd / ‖d‖².

    The second derivative of ``t ↦ L(c + t·d/‖d‖)`` at t = 0. Only the
    parameter entries of ``d`` count (buffer entries, as in an interpolation
    direction, are ignored; so are parameters outside ``params``).

    Parameters
    ----------
    model, loss_fn, data, centre, device, batch_size, samples, seed, params, dtype
        As in :func:`hvp`.
    direction : Direction or dict of str to Tensor
        d, keyed like ``model.named_parameters()``; must not be zero.

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(2, 1, bias=False).double()
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    >>> y = torch.zeros(2, 1, dtype=torch.float64)
    >>> round(curvature(net, torch.nn.MSELoss(), (X, y), {"weight": torch.tensor([[0.0, 1.0]])}), 6)
    9.0
    """
    moved("curvature", "lm.curvature_operator(model, loss_fn, data).quadratic(direction)")
    op = hessian_of(model, loss_fn, data, locals())
    return op.quadratic(direction)


def hessian_eigenpairs(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    n: int = 1,
    which: str = "largest",
    tol: float = 1e-6,
    seed: int = 0,
    maxiter: int = 100,
    ncv: int | None = None,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    params: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    k: int | None = None,
) -> Directions:
    """Extreme eigenvalues of the Hessian and their eigenvectors, as Directions ``lm.scan`` takes.

    Implicitly restarted Lanczos (ARPACK, ``scipy.sparse.linalg.eigsh``) on
    a ``LinearOperator`` whose product is :func:`hvp` on flat float64 vectors.

    Parameters
    ----------
    model, loss_fn, data, centre, device, batch_size, samples, params, dtype
        As in :func:`hvp`.
    n : int, default 1
        Number of eigenpairs; ARPACK needs ``n`` < the number of parameters.
    k : int, optional
        Deprecated name of ``n`` (lossmap 0.1); warns.
    which : {"largest", "smallest", "magnitude"}, default "largest"
        ``"largest"``: the n largest *algebraic* eigenvalues (ARPACK "LA":
        the sharpest directions); ``"smallest"``: the n smallest algebraic
        ones ("SA": the most negative curvature at a saddle);
        ``"magnitude"``: the n largest in absolute value ("LM").
    tol : float, default 1e-6
        Relative accuracy of the eigenvalues (ARPACK's ``tol``; 0 means
        machine precision). For small eigenvalues of a float32 model, use
        ``dtype=torch.float64``: float32 products are not accurate enough.
    seed : int, default 0
        Seed of the start vector (a private generator) and of ``samples``.
    maxiter : int, default 100
        ARPACK restarts allowed, each about ``ncv - n`` products. (scipy's
        own default, 10 × the number of parameters, never ends in practice
        when each product is a pass over the data.)
    ncv : int, optional
        Lanczos vectors kept (scipy's default: max(2n + 1, 20), at most the
        number of parameters).

    Returns
    -------
    Directions
        ``n`` unit-norm eigenvectors over all model parameters (zeros
        outside ``params``), each with ``meta`` = ``{"kind": "hessian",
        "index", "eigenvalue", "which", "params", "seed", "samples",
        "products"}`` (products: the Hessian-vector products eigsh needed);
        ``.eigenvalues`` (ndarray, shape (n,)) sorted from the extreme
        inwards: descending for ``"largest"``, ascending for
        ``"smallest"``, by descending magnitude for ``"magnitude"``. The
        sign is fixed so the entry of largest magnitude is positive. Scan
        them with ``lm.scan`` as they are; being unit vectors, the grid is
        in parameter-space units (an axis ``(-1, 1, 21)`` moves the weights
        by up to 1 in Euclidean norm). (Unpacking the result into two names,
        ``values, dirs``, the 0.1 form, still gives those two with a
        DeprecationWarning, also for ``n=2``: index the directions.)

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> dirs = hessian_eigenpairs(net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double()), n=1)
    >>> round(float(dirs.eigenvalues[0]), 6)  # 2/N · XᵀX = diag(2/3, 8/3, 6)
    6.0
    >>> dirs[0].meta["kind"], round(dirs[0].norm(), 6)
    ('hessian', 1.0)
    """
    moved(
        "hessian_eigenpairs", "lm.curvature_operator(model, loss_fn, data).eigenpairs(k, which=...)"
    )
    if k is not None:
        warnings.warn(
            "hessian_eigenpairs(k=...) is deprecated: use n=... (the same number)",
            DeprecationWarning,
            stacklevel=2,
        )
        n = k
    from .. import checks as C
    from ..curvature.eigen import check_which

    check_which(which)
    C.check_int(n, "n", minimum=1)
    op = hessian_of(model, loss_fn, data, locals())
    if n >= op.dim:
        from ..errors import InputError

        raise InputError(
            f"n={n} must be < the number of parameters ({op.dim}): ARPACK (scipy's eigsh) "
            f"finds at most {op.dim - 1} eigenpairs; lower n, or for a model this small "
            "compute the dense Hessian (torch.func.hessian) and use numpy.linalg.eigh"
        )
    dirs = op.eigenpairs(n, which, tol=tol, seed=seed, maxiter=maxiter, ncv=ncv, _name="n")
    vals = dirs.eigenvalues
    return Directions(
        list(dirs),
        dict(dirs.meta),
        legacy=(
            (vals, list(dirs)),
            (
                "unpacking lm.hessian_eigenpairs(...) into (eigenvalues, directions) is "
                "deprecated: it returns the directions, which lm.scan takes as they are; "
                "the eigenvalues are result.eigenvalues. Write "
                "`dirs = lm.hessian_eigenpairs(...)` and index it (dirs[0], dirs[1])"
            ),
        ),
    )
