"""The PyTorch backend: ``nn.Module`` models evaluated through ``torch.func.functional_call``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .. import params as P
from ..evaluate.checks import check_on_sample
from ..evaluate.evaluator import Evaluator
from ..evaluate.metrics import accuracy
from ..evaluate.restore import preserved
from .base import PROBE_SAMPLES, Backend, Plan, ScanOptions


class TorchBackend(Backend):
    """``torch.nn.Module`` models; weights named as in ``named_parameters()``."""

    name = "torch"
    filter_axis = 0  # a Linear row, a Conv output channel

    def owns(self, model: Any) -> bool:
        return isinstance(model, nn.Module)

    def state(self, model: nn.Module, centre: Any = None) -> tuple[dict, dict]:
        return P.resolve_centre(model, centre)

    def builtin_metrics(self) -> Mapping[str, Callable]:
        return {"accuracy": accuracy}

    def check_options(self, options: ScanOptions) -> None:
        pass  # the Evaluator refuses the combinations it cannot run (compile with vmap, …)

    def guard(self, model: nn.Module) -> contextlib.AbstractContextManager:
        return preserved(model)

    def loss(self, name: str) -> Callable:
        losses = {"cross_entropy": torch.nn.CrossEntropyLoss, "mse": torch.nn.MSELoss}
        if name not in losses:
            return super().loss(name)
        return losses[name]()

    def evaluator(self, plan: Plan) -> Evaluator:
        o = plan.options
        device = P.resolve_device(plan.model, o.device)
        check_on_sample(plan.model, plan.metrics, {**plan.params, **plan.buffers}, plan.splits,
                        device)
        return Evaluator(
            plan.model,
            plan.metrics,
            plan.params,
            plan.buffers,
            plan.directions,
            plan.splits,
            device,
            o.batch_size,
            strategy=o.strategy,
            reuse_first_layer=o.reuse_first_layer,
            bn_data=plan.bn_data,
            channels_last=o.channels_last,
            compile=o.compile,
            autocast=getattr(torch, o.autocast) if o.autocast else None,
        )

    @torch.no_grad()
    def probe(self, plan: Plan, evaluator: Evaluator) -> dict[str, float]:
        device = P.resolve_device(plan.model, plan.options.device)
        state = {k: v.to(device) for k, v in {**plan.params, **plan.buffers}.items()}
        out = {}
        for s in plan.splits:
            X, y = s.X[:PROBE_SAMPLES].to(device), s.y[:PROBE_SAMPLES].to(device)
            outputs = functional_call(plan.model, state, (X,))
            for name, fn in plan.metrics.items():
                out[f"{s.name}_{name}"] = float(torch.as_tensor(fn(outputs, y)).double().mean())
        return out
