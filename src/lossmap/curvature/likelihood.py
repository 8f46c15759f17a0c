"""The output-space matrices of the GGN, the Fisher and the empirical Fisher.

Each of these curvature matrices is Jᵀ M J, with J the Jacobian of the model's
outputs (the tensor the loss reads) with respect to the parameters, and M a
matrix on the outputs of one batch, applied here to ``x`` shaped like them:

* GGN: M = ∇²ₒ loss, by autograd through the loss alone (any loss);
* Fisher, exact (type 2): M = (1/N) Σᵢ Σ_c pᵢ_c gᵢ_c gᵢ_cᵀ, a sum over the
  classes c of the model's predictive distribution pᵢ = softmax(oᵢ), with
  gᵢ_c the gradient of the loss of example i had its label been c;
  for a Gaussian likelihood (``MSELoss``) it is the closed form 2 / (N·D)·I;
* Fisher, Monte Carlo: the same average over ``mc_samples`` labels drawn from
  the model's distribution (a seeded generator, drawn once per batch, so the
  operator is a fixed symmetric matrix);
* empirical Fisher: M = (1/N) Σᵢ gᵢ gᵢᵀ with gᵢ the gradient at the true label:
  Jᵀ M J = (1/N) Σᵢ ∇ℓᵢ ∇ℓᵢᵀ, the average outer product of per-example gradients.

N is the batch's rows; the loss is the batch mean over rows (``reduction=
"mean"``), so ``N · ∂loss/∂oᵢ`` is example i's own gradient. The Fisher needs a
likelihood: ``CrossEntropyLoss`` (categorical, logits (N, C), labels (N,)) or
``MSELoss`` (Gaussian, variance D/2 so that −log p matches the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

KINDS = ("hessian", "ggn", "fisher", "empirical_fisher")
FISHER_TYPES = ("exact", "mc")


def likelihood_of(loss_fn: Callable) -> str:
    """``"categorical"`` or ``"gaussian"``: the distribution whose −log is the loss."""
    if isinstance(loss_fn, nn.CrossEntropyLoss) or loss_fn is F.cross_entropy:
        bad = isinstance(loss_fn, nn.CrossEntropyLoss) and (
            loss_fn.reduction != "mean"
            or loss_fn.weight is not None
            or loss_fn.label_smoothing != 0.0
        )
        if not bad:
            return "categorical"
    if (isinstance(loss_fn, nn.MSELoss) and loss_fn.reduction == "mean") or loss_fn is F.mse_loss:
        return "gaussian"
    raise InputError(
        f"kind='fisher' needs the likelihood behind the loss, and loss_fn={loss_fn!r} names "
        "none: pass torch.nn.CrossEntropyLoss() or torch.nn.MSELoss() (reduction='mean', no "
        "weights or label smoothing), or use kind='ggn' (equal to the exact Fisher for these)"
    )


def _row_grads(loss_fn: Callable, o: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each example's own gradient ∂ℓᵢ/∂oᵢ for S sets of targets (S, N, ...) at once: (S, N, ...).

    The loss is a mean over rows, so on the S copies of the batch stacked
    (S·N rows) S·N times its gradient is every row's own gradient.
    """
    S, N = targets.shape[:2]
    big = o.detach().repeat(S, *([1] * (o.dim() - 1))).requires_grad_(True)  # (S·N, ...)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss_fn(big, targets.reshape(S * N, *targets.shape[2:])), big)
    return (g * (S * N)).reshape(S, *o.shape)


def _own_grads(loss_fn: Callable, o: torch.Tensor, target: Any) -> torch.Tensor:
    """Each example's gradient at its true target (a tensor or a dict batch): (1, N, ...)."""
    o = o.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss_fn(o, target), o)
    return (g * o.shape[0])[None]


class OutputMatrix:
    """M of one batch (see the module docstring), built once, applied to many ``x``."""

    def __init__(
        self,
        kind: str,
        loss_fn: Callable,
        o: torch.Tensor,
        target: Any,
        *,
        fisher_type: str = "exact",
        mc_samples: int = 1,
        generator: torch.Generator | None = None,
    ):
        self.kind, self.n = kind, o.shape[0]
        o = o.detach()
        if kind == "ggn":
            self.o = o.requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(loss_fn(self.o, target), self.o, create_graph=True)
            self.g = g
            if not g.requires_grad:  # the loss is linear in the outputs: M = 0
                self.g = None
        elif kind == "empirical_fisher":
            self.G = _own_grads(loss_fn, o, target)  # (1, N, ...)
            self.p = None
        elif kind == "fisher":
            dist = likelihood_of(loss_fn)
            if dist == "gaussian" and fisher_type == "exact":
                self.scale = 2.0 / o.numel()
                self.G = None
            elif dist == "gaussian":
                sd = (o[0].numel() / 2) ** 0.5
                noise = torch.randn(
                    (mc_samples, *o.shape), generator=generator, dtype=torch.float64
                ).to(o)
                self.G = _row_grads(loss_fn, o, o[None] + sd * noise)
                self.p = None
            else:
                if o.dim() != 2:
                    raise InputError(
                        f"kind='fisher' with CrossEntropyLoss reads logits of shape (N, C); the "
                        f"model returns {tuple(o.shape)}: flatten them in the model, or use "
                        "kind='ggn'"
                    )
                p = torch.softmax(o.double(), dim=1)  # (N, C)
                if fisher_type == "exact":  # every class, weighted by its probability
                    labels = torch.arange(o.shape[1], device=o.device)[:, None].expand(-1, self.n)
                    self.p = p.T.to(o)  # (C, N)
                else:  # mc_samples labels drawn from p
                    labels = torch.multinomial(
                        p.cpu(), mc_samples, replacement=True, generator=generator
                    ).T.to(o.device)  # (S, N)
                    self.p = None
                self.G = _row_grads(loss_fn, o, labels)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """M·x for x shaped like the outputs."""
        if self.kind == "ggn":
            if self.g is None:
                return torch.zeros_like(x)
            (hx,) = torch.autograd.grad(self.g, self.o, grad_outputs=x, retain_graph=True)
            return hx
        if self.G is None:  # Gaussian, exact
            return self.scale * x
        dims = tuple(range(2, self.G.dim()))
        s = (self.G * x[None]).sum(dims, keepdim=True) if dims else self.G * x[None]  # (S, N, 1..)
        w = s if self.p is None else s * self.p.reshape(s.shape[:2] + (1,) * len(dims))
        return (self.G * w).sum(0) / (self.n * (self.G.shape[0] if self.p is None else 1))
