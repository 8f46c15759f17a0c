"""The Hessian operator behind :mod:`lossmap.hessian` and :mod:`lossmap.hessian.spectral`.

:class:`_Hessian` is H of the mean loss over one split, acting on flat float64
vectors through batched Hessian-vector products; :func:`_hessian_of` checks the
model, puts it in evaluation mode and yields the operator. See
:mod:`lossmap.hessian` for what H is and the precision of its products.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .. import params as P
from ..backends.torch.attention import differentiable_attention
from ..backends.torch.restore import preserved
from ..directions.direction import Direction, as_direction
from ..errors import InputError
from .checks import (
    _centre_state,
    _check_int,
    _check_loss,
    _check_model,
    _check_params,
    _device_of,
    _one_split,
)

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
        with torch.enable_grad(), differentiable_attention():  # fused kernels: no double backward
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
