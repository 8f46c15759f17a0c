"""Entry points for the ``torchrun --max-restarts`` test: a rank that SIGKILLs itself once.

Each forward sleeps ``LOSSMAP_TEST_DELAY`` seconds (default 0) and, when
``LOSSMAP_TEST_FORWARD_LOG`` names a file, appends one line to it: the
torchrun attempt (``TORCHELASTIC_RESTART_COUNT``), the rank, the sum of
the output layer's weight as the forward sees it and its dtype (on the CPU each
float32 forward is one grid point, so the log tells which points each attempt
computed; float64 forwards measure the round-off floor).

With ``LOSSMAP_TEST_KILL_AT=N``, rank ``LOSSMAP_TEST_KILL_RANK`` (default 1)
sends itself SIGKILL at its N-th forward of the first attempt only, so the
restarted attempt runs through. With ``LOSSMAP_TEST_SKEW=S``, rank 0 of every
later attempt waits S seconds in :func:`make_model`, so the ranks of the
restarted attempt reach the process group seconds apart, as on a real cluster
(arriving together hid the stale-rendezvous bug this test guards against).
"""

from __future__ import annotations

import os
import signal
import time

import torch
from torch import nn


class KillNet(nn.Module):
    """Linear(8, 6) → ReLU → Linear(6, 3); logs each forward, may kill its process once."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 6)
        self.out = nn.Linear(6, 3)
        self.calls = [0]  # a list: shared with shallow copies an evaluator may make

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get("LOSSMAP_TEST_DELAY", "0"))
        if delay:
            time.sleep(delay)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "-")
        rank = os.environ.get("RANK", "0")
        log = os.environ.get("LOSSMAP_TEST_FORWARD_LOG")
        if log:
            with open(log, "a") as f:
                w = self.out.weight
                f.write(f"{attempt} {rank} {float(w.double().sum())!r} {w.dtype}\n")
        self.calls[0] += 1
        kill_at = int(os.environ.get("LOSSMAP_TEST_KILL_AT", "0"))
        if (
            kill_at
            and self.calls[0] >= kill_at
            and attempt == "0"
            and rank == os.environ.get("LOSSMAP_TEST_KILL_RANK", "1")
        ):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.out(torch.relu(self.lin(x)))


def make_model() -> nn.Module:
    """The network with a fixed initialization."""
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0" and os.environ.get("RANK") == "0":
        time.sleep(float(os.environ.get("LOSSMAP_TEST_SKEW", "0")))
    torch.manual_seed(2024)
    return KillNet()


def make_data() -> dict:
    """One split of 48 samples (one batch at the default batch size)."""
    g = torch.Generator().manual_seed(11)
    X = torch.randn(48, 8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    return {"train": (X, y)}
