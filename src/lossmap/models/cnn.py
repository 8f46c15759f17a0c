"""Small convolutional and fully connected classifiers, as ``nn.Sequential``.

Each model's first module is applied to the raw input (a ``Conv2d`` for the
CNNs, a parameter-free ``Flatten`` for the MLP): there is no preprocessing
layer in front of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from torch import nn

from ..seeding import seeded_rng
from .init import apply_init, check_init

__all__ = ["digits_cnn", "fashion_cnn", "mlp"]


def _small_cnn(
    side: int,
    channels: tuple[int, int],
    hidden: int,
    num_classes: int,
    dropout: float,
    seed: int | None,
) -> nn.Sequential:
    """Two conv/ReLU/avg-pool stages, then a two-layer classifier head."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1); got {dropout}")
    if seed is not None:
        with seeded_rng(seed):
            return _small_cnn(side, channels, hidden, num_classes, dropout, None)
    c1, c2 = channels
    flat = c2 * (side // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(1, c1, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        # Always present (p=0 is the identity) so that module indices, hence
        # state-dict keys, do not depend on ``dropout``.
        nn.Dropout(dropout),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def fashion_cnn(
    dropout: float = 0.0, *, seed: int | None = None, init: str = "torch"
) -> nn.Sequential:
    """CNN for 28x28 grey images (Fashion-MNIST, MNIST), 105,866 parameters.

    ``Conv2d(1, 16, 3, padding=1)``, ReLU, ``AvgPool2d(2)``;
    ``Conv2d(16, 32, 3, padding=1)``, ReLU, ``AvgPool2d(2)``; ``Flatten``
    (32 x 7 x 7 = 1568); ``Dropout(dropout)``; ``Linear(1568, 64)``, ReLU;
    ``Linear(64, 10)``.

    Parameters
    ----------
    dropout : float
        Dropout probability before the first linear layer, in [0, 1).
    seed : int, optional
        Seed of the initialisation (PyTorch's default initializers), drawn in
        a forked RNG: the same seed gives the same weights and torch's global
        RNG state is left untouched. None (default) draws from the global RNG.
    init : {"torch", "flax"}
        ``"torch"`` (default): PyTorch's layer defaults (Kaiming uniform weights
        and biases). ``"flax"``: Flax's defaults, as the original notebook's
        θ0 (LeCun normal, truncated, zero biases; :func:`lossmap.models.init.lecun_normal_`),
        drawn from ``seed``.

    Returns
    -------
    torch.nn.Sequential
        Maps (N, 1, 28, 28) images to (N, 10) logits.

    Examples
    --------
    >>> import torch
    >>> a, b = fashion_cnn(seed=0), fashion_cnn(seed=0)
    >>> torch.equal(a[0].weight, b[0].weight)
    True
    >>> flax = fashion_cnn(seed=228, init="flax")  # the original notebook's θ0 rule
    >>> bool((flax[-1].bias == 0).all())
    True
    """
    check_init(init)
    return apply_init(_small_cnn(28, (16, 32), 64, 10, dropout, seed), init, seed)


def digits_cnn(
    dropout: float = 0.0, *, seed: int | None = None, init: str = "torch"
) -> nn.Sequential:
    """CNN for scikit-learn's 8x8 digits, same layout as :func:`fashion_cnn`, 3,658 parameters.

    ``Conv2d(1, 8, 3, padding=1)``, ReLU, ``AvgPool2d(2)``;
    ``Conv2d(8, 16, 3, padding=1)``, ReLU, ``AvgPool2d(2)``; ``Flatten``
    (16 x 2 x 2 = 64); ``Dropout(dropout)``; ``Linear(64, 32)``, ReLU;
    ``Linear(32, 10)``.

    Parameters
    ----------
    dropout : float
        Dropout probability before the first linear layer, in [0, 1).
    seed : int, optional
        Seed of the initialisation, as for :func:`fashion_cnn`; None (default)
        draws from the global RNG.
    init : {"torch", "flax"}
        The initialization, as for :func:`fashion_cnn`.

    Returns
    -------
    torch.nn.Sequential
        Maps (N, 1, 8, 8) images to (N, 10) logits.
    """
    check_init(init)
    return apply_init(_small_cnn(8, (8, 16), 32, 10, dropout, seed), init, seed)


def mlp(
    sizes: Sequence[int] = (784, 512, 512, 10), *, seed: int | None = None, init: str = "torch"
) -> nn.Sequential:
    """Fully connected ReLU network: ``Flatten`` then ``Linear``/``ReLU`` layers.

    Parameters
    ----------
    sizes : sequence of int
        Input size, hidden sizes, output size (at least two entries). The last
        ``Linear`` has no ReLU after it.
    seed : int, optional
        Seed of the initialisation, as for :func:`fashion_cnn`; None (default)
        draws from the global RNG.
    init : {"torch", "flax"}
        The initialization, as for :func:`fashion_cnn`.

    Returns
    -------
    torch.nn.Sequential
        Maps inputs of ``sizes[0]`` elements per sample (any shape after the
        batch dimension) to ``sizes[-1]`` outputs. The default has 669,706
        parameters.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes needs at least two positive entries; got {sizes}")
    check_init(init)
    if init != "torch":
        return apply_init(mlp(sizes, seed=seed), init, seed)
    if seed is not None:
        with seeded_rng(seed):
            return mlp(sizes)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
