"""Entry points for the CLI tests: a tiny classifier, its data, and variants.

``lossmap scan --model tests/cli_fixtures/tinynet.py:make_model`` loads this
file by path; with this folder on ``sys.path`` the same functions are
``tinynet:make_model``.
"""

from __future__ import annotations

import torch
from torch import nn


def make_model() -> nn.Module:
    """8 features → 3 classes, with a fixed initialization."""
    torch.manual_seed(1234)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))


def make_other_model() -> nn.Module:
    """Same layer names as make_model, other hidden width (another model's checkpoint)."""
    torch.manual_seed(1234)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def make_other_init() -> nn.Module:
    """make_model's architecture with other initial weights (another centre)."""
    torch.manual_seed(4321)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))


def make_regressor() -> nn.Module:
    """8 features → 1 output, for MSE on float targets."""
    torch.manual_seed(99)
    return nn.Sequential(nn.Linear(8, 4), nn.Tanh(), nn.Linear(4, 1))


def not_a_model() -> dict:
    """A model function that forgets to return a module."""
    return {"weight": torch.zeros(3)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_data() -> dict:
    """A train and a test split of 64 samples each, integer class targets."""
    g = _gen(7)
    X = torch.randn(64, 8, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    X2 = torch.randn(64, 8, generator=g)
    y2 = torch.randint(0, 3, (64,), generator=g)
    return {"train": (X, y), "test": (X2, y2)}


def make_data_shuffled_labels() -> dict:
    """make_data with the train labels permuted (other data, same shapes)."""
    data = make_data()
    X, y = data["train"]
    data["train"] = (X, y.roll(1))
    return data


def make_regression_data() -> dict:
    """64 samples with float targets of shape (N, 1)."""
    g = _gen(8)
    X = torch.randn(64, 8, generator=g)
    y = (X[:, :1] * 0.5 - X[:, 1:2]).contiguous()
    return {"train": (X, y)}


def make_mismatched_data() -> dict:
    """X has 64 samples but y has 60."""
    g = _gen(9)
    return {"train": (torch.randn(64, 8, generator=g), torch.randint(0, 3, (60,), generator=g))}


def make_wrong_width_data() -> dict:
    """5 features per sample: does not fit Linear(8, …)."""
    g = _gen(10)
    return {"train": (torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g))}


def half_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Half the mean squared error: a user's own loss, for ``--loss MODULE:NAME``."""
    return 0.5 * ((outputs - targets) ** 2).mean()


class InterruptingSequential(nn.Sequential):
    """A Sequential that raises KeyboardInterrupt (as Ctrl-C does) at its ``limit``-th forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls[0] += 1  # a list: shared with shallow copies an evaluator may make
        if self.calls[0] >= self.limit:
            raise KeyboardInterrupt
        return super().forward(x)


def make_interrupting_model() -> nn.Module:
    """make_model's network and weights, interrupted at the 250th forward."""
    torch.manual_seed(1234)
    net = InterruptingSequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    net.calls = [0]
    net.limit = 250
    return net
