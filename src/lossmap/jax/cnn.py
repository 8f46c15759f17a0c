"""The original notebook's Flax (linen) CNN: layer for layer :func:`lossmap.models.fashion_cnn`.

``Conv(16, 3x3, SAME)``, ReLU, ``avg_pool(2)``; ``Conv(32, 3x3, SAME)``,
ReLU, ``avg_pool(2)``; flatten (7 x 7 x 32 = 1568, in H, W, C order);
``Dropout`` (identity unless ``train=True`` and ``dropout > 0``);
``Dense(64)``, ReLU; ``Dense(10)``: 105,866 parameters. Inputs are NHWC,
(N, 28, 28, 1); :func:`to_nhwc` turns lossmap's (N, 1, H, W) tensors into that.

The parameters are named ``Conv_0``, ``Conv_1``, ``Dense_0``, ``Dense_1``
(flattened: ``"params/Conv_0/kernel"``, ``"params/Dense_1/bias"`` …), and
:mod:`lossmap.jax.convert` maps them to and from the PyTorch state dict.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

__all__ = ["CNN", "digits_cnn", "fashion_cnn", "init", "to_nhwc"]


class CNN(nn.Module):
    """Two conv/ReLU/avg-pool stages and a two-layer classifier head (NHWC input).

    Attributes
    ----------
    features : tuple of int
        Output channels of the two 3x3 convolutions.
    hidden : int
        Width of the hidden dense layer.
    num_classes : int
        Number of outputs (logits).
    side : int
        Height and width of the square input images (used by :func:`init`).
    dropout : float
        Dropout probability before the first dense layer, in [0, 1); applied
        only when called with ``train=True`` (which then needs a ``"dropout"``
        PRNG key).
    """

    features: tuple[int, int] = (16, 32)
    hidden: int = 64
    num_classes: int = 10
    side: int = 28
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits (N, num_classes) of NHWC images ``x`` (N, side, side, 1)."""
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout}")
        for c in self.features:
            x = nn.Conv(features=c, kernel_size=(3, 3), padding="SAME")(x)
            x = nn.relu(x)
            x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))  # (N, H*W*C), H, W, C order
        x = nn.Dropout(rate=self.dropout, deterministic=not train or self.dropout == 0.0)(x)
        x = nn.Dense(features=self.hidden)(x)
        x = nn.relu(x)
        return nn.Dense(features=self.num_classes)(x)


def fashion_cnn(dropout: float = 0.0) -> CNN:
    """The notebook's CNN for 28x28 grey images (Fashion-MNIST), 105,866 parameters.

    Parameters
    ----------
    dropout : float
        Dropout probability before the first dense layer, in [0, 1).

    Returns
    -------
    CNN
        Maps (N, 28, 28, 1) images to (N, 10) logits.
    """
    return CNN(features=(16, 32), hidden=64, num_classes=10, side=28, dropout=dropout)


def digits_cnn(dropout: float = 0.0) -> CNN:
    """CNN for scikit-learn's 8x8 digits, as :func:`lossmap.models.digits_cnn`, 3,658 parameters.

    Parameters
    ----------
    dropout : float
        Dropout probability before the first dense layer, in [0, 1).

    Returns
    -------
    CNN
        Maps (N, 8, 8, 1) images to (N, 10) logits.
    """
    return CNN(features=(8, 16), hidden=32, num_classes=10, side=8, dropout=dropout)


def init(seed: int = 0, module: CNN | None = None) -> dict[str, Any]:
    """Initial variables of ``module`` (default :func:`fashion_cnn`), Flax's default initializers.

    Parameters
    ----------
    seed : int
        Seed of ``jax.random.PRNGKey``; the same seed gives the same variables.
    module : CNN, optional
        The network (default ``fashion_cnn()``).

    Returns
    -------
    dict
        ``{"params": {"Conv_0": {"kernel", "bias"}, …, "Dense_1": {…}}}`` of
        float32 ``jax.Array``s: Flax's defaults (LeCun-normal kernels, zero
        biases), the same on every call with the same seed. They equal
        ``module.init(jax.random.PRNGKey(seed), x)`` up to float rounding (a few
        entries differ in the last bit, as the program is compiled unoptimized).

    Examples
    --------
    >>> import jax
    >>> v = init(0)
    >>> sum(x.size for x in jax.tree_util.tree_leaves(v))
    105866
    """
    module = fashion_cnn() if module is None else module
    x = jnp.zeros((1, module.side, module.side, 1), jnp.float32)
    # One program compiled without LLVM optimization: ~10x faster to build than the
    # default (seconds of CPU for the unrolled random-number code), and it runs once.
    return dict(_init_program(module)(jax.random.PRNGKey(seed), x))


@functools.lru_cache(maxsize=8)
def _init_program(module: CNN) -> Any:
    return jax.jit(module.init, compiler_options={"xla_backend_optimization_level": 0})


def to_nhwc(X: Any) -> np.ndarray:
    """Images (N, C, H, W) (a torch tensor or array, lossmap's layout) as NHWC float32 NumPy.

    Parameters
    ----------
    X : torch.Tensor or array_like
        Shape (N, C, H, W).

    Returns
    -------
    numpy.ndarray
        Shape (N, H, W, C), C-contiguous, float32.
    """
    if hasattr(X, "detach"):  # a torch tensor, without importing torch here
        X = X.detach().cpu().numpy()
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W); got shape {X.shape}")
    return np.ascontiguousarray(X.transpose(0, 2, 3, 1), dtype=np.float32)
