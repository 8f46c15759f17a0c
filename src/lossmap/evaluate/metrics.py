"""Metrics: the built-in accuracy, and the network followed by the metrics as one module."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

#: ``f(outputs, targets)`` returning the batch mean (a scalar tensor or a float).
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max output equals the integer target (batch mean)."""
    return (outputs.argmax(dim=-1) == targets).to(outputs.dtype).mean()


class Metered(nn.Module):
    """The network followed by the metrics: one call evaluates a point."""

    def __init__(self, net: nn.Module, metrics: Mapping[str, Metric]):
        super().__init__()
        self.net = net
        self._metric_fns = list(metrics.values())

    def forward(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outputs = self.net(X)
        # reshape(()): a one-element mean of shape (1,) is the scalar it stands for
        return torch.stack(
            [torch.as_tensor(fn(outputs, y), device=X.device).to(torch.float64).reshape(())
             for fn in self._metric_fns]
        )
