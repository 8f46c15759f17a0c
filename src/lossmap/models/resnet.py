"""CIFAR-style ResNet-20 (He et al., "Deep Residual Learning", 2016, section 4.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..seeding import seeded_rng
from .init import apply_init, check_init

__all__ = ["BasicBlock", "PadShortcut", "resnet20"]


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride``, zero-pad the channels.

    It has no parameters, as in the paper's CIFAR-10 networks.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        before = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, before, self.extra - before))


class BasicBlock(nn.Module):
    """Two 3x3 conv/BatchNorm layers with an identity (or option-A) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet20(
    num_classes: int = 10, in_channels: int = 3, *, seed: int | None = None, init: str = "torch"
) -> nn.Sequential:
    """ResNet-20 for 32x32 images, as in He et al. (2016) for CIFAR-10.

    A 3x3 conv (16 channels), BatchNorm, ReLU; three stages of three
    :class:`BasicBlock` with 16, 32 and 64 channels (the 2nd and 3rd stages
    start with stride 2); global average pooling; a linear classifier.
    Shortcuts that change the shape use **option A** (parameter-free
    subsampling and zero padding, :class:`PadShortcut`), as the paper does on
    CIFAR-10. With the defaults the network has 269,722 parameters
    (the paper's "0.27M"). Conv weights use He (Kaiming) normal initialisation.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    in_channels : int
        Channels of the input images (3 for CIFAR, 1 for grey images).
    seed : int, optional
        Seed of the initialisation, drawn in a forked RNG: the same seed gives
        the same weights and torch's global RNG state is left untouched. None
        (default) draws from the global RNG.
    init : {"torch", "flax"}
        ``"torch"`` (default): He normal convolutions (as in the paper) and
        PyTorch's defaults elsewhere; ``"flax"``: Flax's defaults (LeCun
        normal, zero biases; :func:`lossmap.models.init.lecun_normal_`) from ``seed``.

    Returns
    -------
    torch.nn.Sequential
        Maps (N, in_channels, H, W) images to (N, num_classes) logits; the
        first module is the input ``Conv2d``. Any H, W work thanks to the global
        pooling; the design assumes 32x32.
    """
    check_init(init)
    if init != "torch":
        return apply_init(resnet20(num_classes, in_channels, seed=seed), init, seed)
    if seed is not None:
        with seeded_rng(seed):
            return resnet20(num_classes, in_channels)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
    ]
    channels = 16
    for stage, width in enumerate((16, 32, 64)):
        blocks = [BasicBlock(channels, width, stride=1 if stage == 0 else 2)]
        blocks += [BasicBlock(width, width) for _ in range(2)]
        layers.append(nn.Sequential(*blocks))
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model
