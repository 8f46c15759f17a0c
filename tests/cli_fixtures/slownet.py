"""Entry points for the SIGKILL resume test: a model that logs every forward.

Each forward sleeps ``LOSSMAP_TEST_DELAY`` seconds (default 0) and, when
``LOSSMAP_TEST_FORWARD_LOG`` names a file, appends one line to it: the number
of samples in the batch and the sum of the output layer's weight as the
forward sees it. Under ``torch.func.functional_call`` that is the weight of
the grid point being evaluated, so the log tells which points a run computed.
(The output layer, not the first: an evaluator may compute the first layer
outside the module.)
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

LOG_ENV = "LOSSMAP_TEST_FORWARD_LOG"
DELAY_ENV = "LOSSMAP_TEST_DELAY"


class LoggingNet(nn.Module):
    """Linear(8, 6) → ReLU → Linear(6, 3), logging each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get(DELAY_ENV, "0"))
        if delay:
            time.sleep(delay)
        log = os.environ.get(LOG_ENV)
        if log:
            with open(log, "a") as f:
                f.write(f"{x.shape[0]} {float(self.out.weight.double().sum())!r}\n")
        return self.out(torch.relu(self.lin(x)))


def make_model() -> nn.Module:
    """The logging network with a fixed initialization."""
    torch.manual_seed(2024)
    return LoggingNet()


def make_data() -> dict:
    """One split of 48 samples (one batch at --batch-size 64)."""
    g = torch.Generator().manual_seed(11)
    X = torch.randn(48, 8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    return {"train": (X, y)}
