"""Entry points that go wrong, for tests/test_cli_errors.py (the model is tinynet's)."""

from __future__ import annotations

import torch
from torch import nn

NOT_A_FUNCTION = 3.14  # `--model faulty.py:NOT_A_FUNCTION`: importable, not callable
LATE_SAMPLE = 40  # the one sample whose label is out of range


def make_model() -> nn.Module:
    """tinynet's classifier: 8 features → 3 classes (labels 0..2)."""
    torch.manual_seed(1234)
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))


def make_data() -> dict:
    """64 samples with labels in 0..2 (the first two samples hold 0 and 1)."""
    g = torch.Generator().manual_seed(7)
    X = torch.randn(64, 8, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    y[:2] = torch.tensor([0, 1])
    return {"train": (X, y)}


def make_late_label_data() -> dict:
    """make_data with label 3 (outside 0..2) at sample 40 only: the first samples are fine."""
    X, y = make_data()["train"]
    y = y.clone()
    y[LATE_SAMPLE] = 3
    return {"train": (X, y)}


def raising_model() -> nn.Module:
    """A model function that fails when called (not at import)."""
    raise RuntimeError("weights server unreachable")


def raising_data() -> dict:
    """A data function that fails when called (not at import)."""
    raise KeyError("no split named 'val'")


def mean_of_shape_1(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy as a batch mean of shape (1,) instead of ()."""
    return nn.functional.cross_entropy(outputs, targets).reshape(1)
