"""BatchNorm statistics re-estimated at every grid point (``bn="recompute"``).

With ``bn="eval"`` (the default and the field's convention) a perturbed
network normalizes with the running statistics stored at the centre, which no
longer match its activations. ``bn="recompute"`` first passes a fixed set of
training samples through the network at that point with only the BatchNorm
layers in training mode (dropout stays off) and momentum ``None`` (an exact
cumulative average over those batches, as ``torch.optim.swa_utils.update_bn``
does), then evaluates with the fresh statistics. Everything happens on
lossmap's own buffer tensors; the user's modules get their ``training`` flag
and ``momentum`` back at once, even after an error or Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call

from ...data.splits import Split
from ...errors import InputError

_BN = nn.modules.batchnorm._BatchNorm


class Recalibration:
    """Callable ``(net, state) -> state`` with BatchNorm buffers recomputed at that state."""

    def __init__(self, model: nn.Module, data: Split, device: torch.device, batch_size: int):
        self.layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _BN)]
        if not self.layers:
            raise InputError(
                "bn='recompute' but the model has no BatchNorm layer: use bn='eval'"
            )
        for name, m in self.layers:
            if not m.track_running_stats:
                raise InputError(f"BatchNorm layer {name!r} keeps no running statistics "
                                 "(track_running_stats=False): bn='recompute' has nothing to set")
        self.batches = [x.to(device) for x in data.X.split(batch_size)]

    @torch.no_grad()
    def __call__(self, net: nn.Module, state: Mapping[str, torch.Tensor]) -> dict:
        fresh = dict(state)
        for name, _ in self.layers:
            p = f"{name}." if name else ""
            fresh[p + "running_mean"] = torch.zeros_like(state[p + "running_mean"])
            fresh[p + "running_var"] = torch.ones_like(state[p + "running_var"])
            fresh[p + "num_batches_tracked"] = torch.zeros_like(state[p + "num_batches_tracked"])
        saved = [(m, m.training, m.momentum) for _, m in self.layers]
        try:
            for m, _, _ in saved:
                m.train()
                m.momentum = None  # cumulative average over the recalibration batches
            for X in self.batches:
                functional_call(net, fresh, (X,))
        finally:
            for m, training, momentum in saved:
                m.train(training)
                m.momentum = momentum
        return fresh
