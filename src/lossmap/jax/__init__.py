"""The JAX/Flax backend of lossmap (``pip install lossmap[jax]``).

``lm.scan``, ``lm.random_directions`` and ``lm.interpolation`` accept JAX models
directly and dispatch here; the directions, store, ``Surface``, plots and
report are lossmap's own. A JAX model is any of:

* ``lossmap.jax.JaxModel(apply_fn, variables)`` — ``apply_fn(variables, x)``;
* a ``(flax.linen.Module, variables)`` tuple — run as ``module.apply``;
* an ``flax.nnx.Module`` — split into parameters and batch statistics and run
  in ``eval()`` mode on a copy.

Also here: the original notebook's Flax CNN (:mod:`lossmap.jax.cnn`), its
training loop (:func:`lossmap.jax.train.train`) and exact conversion of weights
and directions to and from the PyTorch CNN (:mod:`lossmap.jax.convert`).

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

from ..backends.jax.metrics import accuracy, cross_entropy, mse
from .cnn import CNN, digits_cnn, fashion_cnn, init, to_nhwc
from .convert import (
    direction_to_flax,
    direction_to_torch,
    flatten_variables,
    flax_to_torch,
    torch_to_flax,
    unflatten_variables,
)
from .model import JaxModel, as_model, is_jax_model
from .train import TrainResult, load_variables, save_variables

__all__ = [
    "CNN",
    "JaxModel",
    "TrainResult",
    "accuracy",
    "as_model",
    "cross_entropy",
    "digits_cnn",
    "direction_to_flax",
    "direction_to_torch",
    "fashion_cnn",
    "flatten_variables",
    "flax_to_torch",
    "init",
    "is_jax_model",
    "load_variables",
    "mse",
    "save_variables",
    "to_nhwc",
    "torch_to_flax",
    "unflatten_variables",
]
