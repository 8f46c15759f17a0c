"""Curvature of the loss: Hessian-vector products, eigenpairs, curvature along a direction.

Everything here is about the Hessian H of the *mean* loss over one split,

    L(θ) = Σ_b (n_b / N) · loss_fn(f(X_b; θ), y_b),

taken with respect to the model's parameters (all of ``named_parameters()``,
or the subset named by ``params=``) at a centre θ (default: the current
weights). The model runs in evaluation mode (BatchNorm uses its running
statistics, dropout is off) through ``torch.func.functional_call``; the
user's module comes back bit-identical. ``loss_fn(outputs, targets)`` must
return the batch *mean*, so that weighting batches by their sizes gives the
exact mean over the split whatever the batch size.

H is never formed: every function uses products H·v. The spectral estimates
(trace, density) live in :mod:`lossmap.spectral`.

Precision: products are computed in the parameters' dtype (or ``dtype=``) and
accumulated over batches in float64. In float32 they carry a relative error of
about 1e-6 of ‖H‖, which is enough for the largest eigenvalues but not for
small ones; pass ``dtype=torch.float64`` for those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from . import params as P
from .directions import Direction, as_direction
from .errors import InputError, InputTypeError
from .guard import preserved
from .splits import as_split

WHICH = {"largest": "LA", "smallest": "SA", "magnitude": "LM"}
DEFAULT_BATCH = 1024
DEVICE_DATA_BUDGET = 2 * 1024**3  # keep the split on an accelerator up to this size

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# -- the operator ---------------------------------------------------------------


class _Hessian:
    """H of the mean loss over one split, acting on flat float64 vectors (on ``device``).

    Built inside ``guard.preserved(model)`` (eval mode). Flat vectors follow
    the order of ``self.names``; each tensor is flattened in C order.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: Any,
        *,
        centre: Any,
        device: Any,
        batch_size: int | None,
        samples: int | None,
        seed: int,
        params: Sequence[str] | None,
        dtype: torch.dtype | None,
    ):
        _check_int(seed, "seed", minimum=None)
        if batch_size is not None:
            _check_int(batch_size, "batch_size", minimum=1)
        if samples is not None:
            _check_int(samples, "samples", minimum=1)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise InputError(f"dtype={dtype!r} must be a floating torch dtype, e.g. torch.float64")
        self.device = _device_of(model, device)
        c_params, c_buffers = _centre_state(model, centre)
        self.names = _check_params(params, c_params)
        cast = (lambda t: t.to(dtype) if t.is_floating_point() else t) if dtype else (lambda t: t)
        self.fixed = {
            k: cast(v).to(self.device)
            for k, v in {**c_params, **c_buffers}.items()
            if k not in self.names
        }
        # Leaves we differentiate with respect to, made once and reused.
        self.leaves = {
            k: cast(c_params[k]).to(self.device).detach().clone().requires_grad_(True)
            for k in self.names
        }
        self.shapes = {k: t.shape for k, t in self.leaves.items()}
        self.sizes = [t.numel() for t in self.leaves.values()]
        self.n = sum(self.sizes)
        self.dtype = next(iter(self.leaves.values())).dtype

        split = _one_split(data, samples=samples, seed=seed)
        self.n_samples = split.n
        bs = batch_size or split.batch_size or DEFAULT_BATCH
        X, y = cast(split.X), cast(split.y)
        on_device = self.device.type == "cpu" or X.nbytes + y.nbytes <= DEVICE_DATA_BUDGET
        self.batches = [
            (xb.to(self.device), yb.to(self.device)) if on_device else (xb, yb)
            for xb, yb in zip(X.split(bs), y.split(bs), strict=True)
        ]
        self.weights = [xb.shape[0] / split.n for xb, _ in self.batches]
        self.model, self.loss_fn = model, loss_fn
        self.param_dtypes = {k: t.dtype for k, t in c_params.items()}  # the model's own
        self.all_shapes = {k: t.shape for k, t in c_params.items()}
        self.products = 0  # H·v products computed so far (one per vector, all batches)

    # -- flat vectors <-> named tensors -------------------------------------
    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split one flat vector (n,) into tensors shaped like the parameters (their dtype)."""
        parts = v.split(self.sizes)
        return {
            k: p.reshape(self.shapes[k]).to(self.dtype)
            for k, p in zip(self.names, parts, strict=True)
        }

    def flatten(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One float64 vector (n,) on the device from tensors keyed by parameter name."""
        return torch.cat(
            [tensors[k].detach().to(self.device, torch.float64).reshape(-1) for k in self.names]
        )

    # -- products --------------------------------------------------------------
    def apply(self, V: torch.Tensor) -> torch.Tensor:
        """H·vᵢ for every row of V (m, n), float64 on the device; returns (m, n) float64.

        Double backward with ``torch.autograd.grad(create_graph=True)``, one
        first-order graph per batch shared by all m vectors. Measured on this
        project's CPU (torch 2.13, 2 threads): for one vector it ties with
        forward-over-reverse ``torch.func.jvp(grad(f))`` (MLP 784-256-10 on
        2000 samples: 0.20 s vs 0.25 s; a two-conv CNN with BatchNorm and
        max-pooling on 1000: 4.77 s vs 4.79 s),
        and for 8 vectors it wins because the forward and first backward run
        once per batch, not once per vector (CNN: 21 s vs 35 s; vmap over the
        jvp: 41 s). Hutchinson and the Lanczos probes use that sharing.
        """
        m = V.shape[0]
        out = torch.zeros_like(V)  # (m, n) float64
        vecs = [self.unflatten(v) for v in V]
        leaves = list(self.leaves.values())
        with torch.enable_grad():
            for i, ((X, y), w) in enumerate(zip(self.batches, self.weights, strict=True)):
                X, y = X.to(self.device), y.to(self.device)
                loss = self.loss_fn(
                    functional_call(self.model, {**self.fixed, **self.leaves}, (X,)), y
                )
                _check_loss(loss, i)
                grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
                live = [j for j, g in enumerate(grads) if g is not None and g.requires_grad]
                if not live:  # the loss is at most linear in the parameters: H = 0
                    continue
                for r in range(m):
                    gv = sum((grads[j] * vecs[r][self.names[j]]).sum() for j in live)  # scalar gᵀv
                    hv = torch.autograd.grad(gv, leaves, retain_graph=r < m - 1, allow_unused=True)
                    out[r] += w * torch.cat(
                        [
                            h.reshape(-1).double() if h is not None else out.new_zeros(s)
                            for h, s in zip(hv, self.sizes, strict=True)
                        ]
                    )
        self.products += m
        return out

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """H·x for a flat NumPy vector (n,) or (n, 1): scipy's LinearOperator hook."""
        v = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
        return self.apply(v.to(self.device)[None])[0].cpu().numpy()

    def direction(self, v: torch.Tensor, meta: dict) -> Direction:
        """A flat vector as a Direction over all model parameters (zeros where not selected)."""
        named = self.unflatten(v.to(self.device))
        full = {
            k: named[k].to("cpu", dt) if k in named else torch.zeros(self.all_shapes[k], dtype=dt)
            for k, dt in self.param_dtypes.items()
        }
        return Direction(full, meta=meta)


@contextmanager
def _hessian_of(model: nn.Module, loss_fn: LossFn, data: Any, **options: Any) -> Iterator[_Hessian]:
    """Check the model, put it in eval mode, yield its Hessian; restore the model after."""
    _check_model(model, loss_fn)
    with preserved(model):
        yield _Hessian(model, loss_fn, data, **options)


# -- validation ---------------------------------------------------------------------


def _check_int(value: Any, name: str, *, minimum: int | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputTypeError(f"{name}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise InputError(f"{name}={value} must be >= {minimum}")
    return value


def _check_model(model: Any, loss_fn: Any) -> None:
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model is a {type(model).__name__}; pass a torch.nn.Module")
    if not callable(loss_fn):
        raise InputTypeError(
            f"loss_fn is a {type(loss_fn).__name__}; pass a callable loss_fn(outputs, targets) "
            "returning the batch mean, e.g. torch.nn.CrossEntropyLoss()"
        )
    if not any(True for _ in model.parameters()):
        raise InputError("the model has no parameters: there is no Hessian to compute")


def _check_loss(loss: Any, batch: int) -> None:
    if not isinstance(loss, torch.Tensor):
        raise InputTypeError(
            f"loss_fn returned a {type(loss).__name__}; it must return a scalar tensor "
            "(the batch mean) that depends on the model's outputs"
        )
    if loss.dim() != 0:
        raise InputError(
            f"loss_fn returned shape {tuple(loss.shape)} on batch {batch}; it must return a "
            "scalar (the batch mean), e.g. a loss built with reduction='mean'"
        )
    if not loss.requires_grad:
        raise InputError(
            "the loss does not depend on the parameters (no gradient flows): loss_fn must not "
            "detach the outputs, call .item() or run under torch.no_grad()"
        )
    if not bool(torch.isfinite(loss.detach())):
        raise InputError(
            f"the loss is {float(loss.detach())} on batch {batch} at the centre: the Hessian "
            "is undefined there; check the centre and the data"
        )


def _check_params(params: Sequence[str] | None, c_params: Mapping[str, torch.Tensor]) -> list:
    """The names of the parameters to differentiate with respect to, in model order."""
    if params is None:
        return list(c_params)
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, Sequence) or not all(isinstance(p, str) for p in params):
        raise InputTypeError(
            f"params={params!r} must be a list of parameter names as in model.named_parameters()"
        )
    unknown = [p for p in params if p not in c_params]
    if unknown:
        raise InputError(
            f"params names {unknown[0]!r}, which the model does not have; choose from "
            f"{', '.join(list(c_params)[:8])}{' …' if len(c_params) > 8 else ''}"
        )
    if not params:
        raise InputError("params is empty: name at least one parameter, or pass None for all")
    chosen = set(params)
    return [k for k in c_params if k in chosen]


def _device_of(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(
                f"device {device!r} is not a torch device, e.g. 'cpu' or 'cuda:0'"
            ) from None
    return next(model.parameters()).device


def _centre_state(model: nn.Module, centre: Any) -> tuple[dict, dict]:
    """Detached copies of the centre's (parameters, buffers), checked against the model."""
    params, buffers = P.resolve_centre(model, centre)
    return ({k: v.clone() for k, v in params.items()},
            {k: v.clone() for k, v in buffers.items()})


def _one_split(data: Any, *, samples: int | None, seed: int):
    """One split from a DataLoader, an (X, y) tuple, an iterable, or a one-entry dict."""
    name = "data"
    if isinstance(data, Mapping):
        if len(data) != 1:
            raise InputError(
                f"data holds {len(data)} splits ({', '.join(map(str, data))}); the Hessian is "
                "of one split: pass that split alone, e.g. data=train_loader"
            )
        name, data = next(iter(data.items()))
    return as_split(data, name, samples=samples, seed=seed)


def _check_direction(direction: Any, op: _Hessian, *, what: str) -> dict[str, torch.Tensor]:
    """The selected parameters' entries of a direction (dict of tensors), layout checked."""
    d = as_direction(direction, name=what)
    model_names = set(op.param_dtypes) | {k for k, _ in op.model.named_buffers()}
    P.check_same_layout(
        {k: op.leaves[k] for k in op.names},
        d,
        what=what,
        allow_extra=model_names - set(op.names),
    )
    return {k: d[k] for k in op.names}


# -- public functions -------------------------------------------------------------


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
    with _hessian_of(
        model, loss_fn, data, centre=centre, device=device, batch_size=batch_size,
        samples=samples, seed=seed, params=params, dtype=dtype,
    ) as op:  # fmt: skip
        v = op.flatten(_check_direction(vector, op, what="vector"))
        hv = op.apply(v[None])[0]
        return {k: t.cpu() for k, t in op.unflatten(hv).items()}


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
    with _hessian_of(
        model, loss_fn, data, centre=centre, device=device, batch_size=batch_size,
        samples=samples, seed=seed, params=params, dtype=dtype,
    ) as op:  # fmt: skip
        d = op.flatten(_check_direction(direction, op, what="direction"))
        nn2 = float(d @ d)
        if nn2 == 0.0:
            raise InputError(
                "the direction is zero on the parameters: curvature needs a nonzero direction"
            )
        return float(d @ op.apply(d[None])[0]) / nn2


def hessian_eigenpairs(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    k: int = 1,
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
) -> tuple[np.ndarray, list[Direction]]:
    """Extreme eigenvalues of the Hessian and their eigenvectors as Directions.

    Implicitly restarted Lanczos (ARPACK, ``scipy.sparse.linalg.eigsh``) on
    a ``LinearOperator`` whose product is :func:`hvp` on flat float64 vectors.

    Parameters
    ----------
    model, loss_fn, data, centre, device, batch_size, samples, params, dtype
        As in :func:`hvp`.
    k : int, default 1
        Number of eigenpairs; ARPACK needs ``k`` < the number of parameters.
    which : {"largest", "smallest", "magnitude"}, default "largest"
        ``"largest"``: the k largest *algebraic* eigenvalues (ARPACK "LA":
        the sharpest directions); ``"smallest"``: the k smallest algebraic
        ones ("SA": the most negative curvature at a saddle);
        ``"magnitude"``: the k largest in absolute value ("LM").
    tol : float, default 1e-6
        Relative accuracy of the eigenvalues (ARPACK's ``tol``; 0 means
        machine precision). For small eigenvalues of a float32 model, use
        ``dtype=torch.float64``: float32 products are not accurate enough.
    seed : int, default 0
        Seed of the start vector (a private generator) and of ``samples``.
    maxiter : int, default 100
        ARPACK restarts allowed, each about ``ncv - k`` products. (scipy's
        own default, 10 × the number of parameters, never ends in practice
        when each product is a pass over the data.)
    ncv : int, optional
        Lanczos vectors kept (scipy's default: max(2k + 1, 20), at most n).

    Returns
    -------
    eigenvalues : ndarray, shape (k,)
        Sorted from the extreme inwards: descending for ``"largest"``,
        ascending for ``"smallest"``, by descending magnitude for
        ``"magnitude"``.
    directions : list of Direction
        Unit-norm eigenvectors over all model parameters (zeros outside
        ``params``), ``meta`` = ``{"kind": "hessian", "index", "eigenvalue",
        "which", "params", "seed", "samples", "products"}`` (products: the
        Hessian-vector products eigsh needed). The sign is fixed so the
        entry of largest magnitude is positive. Scan them with ``lm.scan``;
        being unit vectors, the grid is in parameter-space units (an axis
        ``(-1, 1, n)`` moves the weights by up to 1 in Euclidean norm).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> vals, dirs = hessian_eigenpairs(net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double()),
    ...                                 k=1)
    >>> round(float(vals[0]), 6)  # 2/N · XᵀX = diag(2/3, 8/3, 6)
    6.0
    >>> dirs[0].meta["kind"], round(dirs[0].norm(), 6)
    ('hessian', 1.0)
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    if which not in WHICH:
        raise InputError(
            f"which={which!r} must be one of {', '.join(map(repr, WHICH))} "
            "(largest / smallest algebraic eigenvalues, or largest magnitude)"
        )
    _check_int(k, "k", minimum=1)
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not tol >= 0:
        raise InputError(f"tol={tol!r} must be a number >= 0 (relative accuracy)")
    _check_int(maxiter, "maxiter", minimum=1)
    with _hessian_of(
        model, loss_fn, data, centre=centre, device=device, batch_size=batch_size,
        samples=samples, seed=seed, params=params, dtype=dtype,
    ) as op:  # fmt: skip
        if k >= op.n:
            raise InputError(
                f"k={k} must be < the number of parameters n={op.n}: ARPACK (scipy's eigsh) "
                f"finds at most n - 1 eigenpairs; lower k, or for a model this small compute "
                "the dense Hessian (torch.func.hessian) and use numpy.linalg.eigh"
            )
        if ncv is not None:
            _check_int(ncv, "ncv", minimum=k + 1)
            if ncv > op.n:
                raise InputError(f"ncv={ncv} must be <= the number of parameters n={op.n}")
        v0 = np.random.default_rng(seed).standard_normal(op.n)  # (n,) private generator
        A = LinearOperator((op.n, op.n), matvec=op.matvec, dtype=np.float64)
        try:
            vals, vecs = eigsh(
                A, k=k, which=WHICH[which], tol=float(tol), v0=v0, maxiter=maxiter, ncv=ncv
            )  # vals (k,), vecs (n, k)
        except ArpackNoConvergence as exc:
            raise InputError(
                f"eigsh found only {len(exc.eigenvalues)} of k={k} eigenpairs within "
                f"maxiter={maxiter} restarts ({op.products} Hessian-vector products): raise "
                "maxiter, loosen tol, raise ncv, or pass dtype=torch.float64 if the model is "
                "float32 and the eigenvalues are small"
            ) from None
        order = {
            "largest": np.argsort(-vals),
            "smallest": np.argsort(vals),
            "magnitude": np.argsort(-np.abs(vals)),
        }[which]
        vals, vecs = vals[order], vecs[:, order]
        dirs = []
        for i in range(k):
            v = vecs[:, i] / np.linalg.norm(vecs[:, i])
            if v[np.argmax(np.abs(v))] < 0:
                v = -v
            meta = {
                "kind": "hessian",
                "index": i,
                "eigenvalue": float(vals[i]),
                "which": which,
                "params": None if params is None else list(op.names),
                "seed": seed,
                "samples": samples,
                "products": op.products,
            }
            dirs.append(op.direction(torch.from_numpy(v), meta))
        return vals.astype(np.float64), dirs
