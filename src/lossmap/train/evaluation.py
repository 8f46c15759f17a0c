"""The exact whole-split evaluation that :func:`lossmap.train.train` records each epoch."""

from __future__ import annotations

import math

import torch
from torch import nn

from .checks import LossFn


@torch.no_grad()
def _evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, batch_size: int
) -> tuple[float, float]:
    """Mean loss and accuracy over all of (X, y), the model in its current mode.

    Batch means are weighted by batch size and summed in float64, so the result
    is the mean over samples whatever ``batch_size`` is. Accuracy is NaN when the
    outputs are not (N, C) class scores for integer targets.
    """
    n = len(X)
    loss_sum = torch.zeros((), dtype=torch.float64, device=X.device)
    correct = torch.zeros((), dtype=torch.float64, device=X.device)
    classes = not (y.is_floating_point() or y.is_complex()) and y.ndim == 1
    for start in range(0, n, batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        outputs = model(xb)  # (B, C) for a classifier
        loss_sum += loss_fn(outputs, yb).double() * len(xb)
        if classes and outputs.ndim == 2:
            correct += (outputs.argmax(dim=1) == yb).sum().double()
        else:
            classes = False
    return float(loss_sum) / n, (float(correct) / n if classes else math.nan)
