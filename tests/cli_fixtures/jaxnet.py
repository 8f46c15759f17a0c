"""Entry points for the JAX CLI tests: a tiny Flax classifier and its data (NumPy)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen


class Tiny(linen.Module):
    """8 features → 4 → 3 classes."""

    @linen.compact
    def __call__(self, x):
        return linen.Dense(3)(linen.relu(linen.Dense(4)(x)))


def make_model(seed: int = 0):
    """(module, variables) with a fixed initialization."""
    net = Tiny()
    return net, net.init(jax.random.key(seed), jnp.ones((1, 8)))


def make_other_init():
    """The same architecture, other weights."""
    return make_model(seed=5)


def make_data() -> dict:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    return {"train": (X[:30], rng.integers(0, 3, 30)), "test": (X[30:], rng.integers(0, 3, 10))}
