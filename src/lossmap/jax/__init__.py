"""The JAX/Flax backend of lossmap (``pip install lossmap[jax]``).

``lm.scan``, ``lm.random_directions`` and ``lm.interpolation`` accept JAX models
directly and dispatch here; the directions, store, ``Surface``, plots and
report are lossmap's own. A JAX model is any of:

* ``lossmap.jax.JaxModel(apply_fn, variables)`` — ``apply_fn(variables, x)``;
* a ``(flax.linen.Module, variables)`` tuple — run as ``module.apply``;
* an ``flax.nnx.Module`` — split into parameters and batch statistics and run
  in ``eval()`` mode on a copy.

Weights are named by their ``/``-joined pytree path (``"params/Conv_0/kernel"``).
Flax kernels keep their output axis last, so ``norm="filter"`` slices units
along the last axis.

Examples
--------
>>> import jax, jax.numpy as jnp, numpy as np, lossmap as lm
>>> from flax import linen
>>> net = linen.Dense(3)
>>> variables = net.init(jax.random.key(0), jnp.ones((1, 4)))
>>> X, y = np.random.default_rng(0).normal(size=(32, 4)).astype("float32"), np.arange(32) % 3
>>> d = lm.random_direction((net, variables), seed=0)
>>> surf = lm.scan((net, variables), lm.jax.cross_entropy, data={"train": (X, y)},
...                directions=d, grid=(-1, 1, 5), progress=False)
>>> surf["train_loss"].shape
(5,)
"""

from .metrics import accuracy, cross_entropy, mse
from .model import JaxModel, as_model, is_jax_model

__all__ = ["JaxModel", "accuracy", "as_model", "cross_entropy", "is_jax_model", "mse"]
