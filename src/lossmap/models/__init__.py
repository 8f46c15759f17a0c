"""Reference models for loss-surface experiments.

All builders return an ``nn.Sequential`` whose first module takes the raw input,
and take a keyword ``seed``: with it the initialisation is drawn in a forked RNG
(:func:`lossmap.seeding.seeded_rng`), so the same seed gives the same weights and
torch's global RNG state is left as it was; without it (None) the builders draw
from the global RNG, as PyTorch's layers do. With ``init="flax"`` they start from
Flax's default initialization instead of PyTorch's (LeCun normal, zero biases:
:func:`lossmap.models.init.lecun_normal_`), the original notebook's θ0 rule.
"""

from __future__ import annotations

from torch import nn

from .cnn import digits_cnn, fashion_cnn, mlp
from .init import lecun_normal_
from .resnet import resnet20

__all__ = ["count_parameters", "digits_cnn", "fashion_cnn", "lecun_normal_", "mlp", "resnet20"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Return the number of scalar parameters of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The model; buffers (e.g. BatchNorm running statistics) are not counted.
    trainable_only : bool
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
        The total number of elements of the parameter tensors (a tensor
        shared between modules counts once).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
