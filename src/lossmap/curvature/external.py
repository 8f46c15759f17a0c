"""curvlinops as the product engine (``engine="curvlinops"``).

curvlinops 3 builds the Hessian, GGN, empirical Fisher and Monte Carlo Fisher
of ``loss_func(model_func(X), y)`` over a list of ``(X, y)`` batches, with
respect to a module's own parameters. So it gets a deep copy of the model set
to lossmap's centre (in the compute dtype, evaluation mode): ``centre=``,
``params=`` subsets and ``dtype=`` work as with lossmap's own engine, and the
user's model is never handed over (at the cost of one more copy of the
weights); the products are curvlinops'. What it cannot take, lossmap's engine
does: dict batches and tuples of several inputs (``model(**batch)``), a loss
given as a plain function (curvlinops reads ``loss_func.reduction``), the
model's own ``outputs.loss`` (a ``(total, count)`` pair). The exact type-2
Fisher is curvlinops' GGN, equal to it for ``CrossEntropyLoss`` and ``MSELoss``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..backends.torch.attention import differentiable_attention
from ..errors import InputError
from .engine import Engine


def check_served(loss_fn: Any, engine: Engine) -> None:
    """Refuse, naming why, what curvlinops cannot take."""
    if engine.data.kind != "tuple" or any(len(b) != 2 for b in engine.data.batches):
        raise InputError(
            "engine='curvlinops' takes (X, y) batches only; dict batches and "
            "several inputs run on engine='lossmap'"
        )
    if not isinstance(loss_fn, nn.Module) or getattr(loss_fn, "reduction", None) not in (
        "mean",
        "sum",
    ):
        raise InputError(
            "engine='curvlinops' needs loss_fn to be a torch loss module "
            "(e.g. torch.nn.CrossEntropyLoss()) with reduction 'mean' or 'sum'; "
            "use engine='lossmap' for other losses"
        )


class CurvlinopsEngine(Engine):
    """:class:`~lossmap.curvature.engine.Engine` whose products are curvlinops'."""

    def _twin(self) -> nn.Module:
        """A copy of the model at lossmap's centre (compute dtype), in evaluation mode.

        curvlinops differentiates with respect to a module's own parameters, so
        it gets this copy: the user's model is never handed over.
        """
        twin = copy.deepcopy(self.model).eval()
        state = {**self.fixed, **{k: v.detach() for k, v in self.leaves.items()}}
        with torch.no_grad():
            for k, t in (*twin.named_parameters(), *twin.named_buffers()):
                t.data = state[k].to(self.device)
            for k, t in twin.named_parameters():
                t.requires_grad_(k in self.leaves)
        return twin

    def _operator(self) -> Any:
        import curvlinops

        twin = self._twin()
        named = dict(twin.named_parameters())
        leaves = [named[k] for k in self.names]
        data = [self.data.batch(i) for i in range(len(self.data.batches))]
        common = {"progressbar": False, "check_deterministic": False, "num_data": self.data.n}
        args = (twin, self.loss_fn, leaves, data)
        if self.kind == "hessian":
            return curvlinops.HessianLinearOperator(*args, **common)
        if self.kind == "ggn" or (self.kind == "fisher" and self.fisher_type == "exact"):
            return curvlinops.GGNLinearOperator(*args, **common)
        if self.kind == "empirical_fisher":
            return curvlinops.EFLinearOperator(*args, **common)
        return curvlinops.FisherMCLinearOperator(
            *args, seed=self.seed, mc_samples=self.mc_samples, **common
        )

    def apply(self, V: torch.Tensor) -> torch.Tensor:
        """C·vᵣ for every row of V (m, n) float64; curvlinops works in the compute dtype."""
        if getattr(self, "_op", None) is None or self._op_names != self.names:
            with differentiable_attention():
                self._op, self._op_names = self._operator(), list(self.names)
        with torch.enable_grad(), differentiable_attention():
            out = self._op @ V.T.to(self.dtype)  # (n, m)
        self.products += V.shape[0]
        return out.T.to(torch.float64)

    def restricted(self, params: Any) -> Engine:
        sub = super().restricted(params)
        sub._op = None
        return sub
