"""Losses and metrics for the JAX backend: ``f(outputs, targets)`` returning the batch mean."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,).

    The same value as ``torch.nn.CrossEntropyLoss()`` on the same numbers.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1).mean()


def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over every element (as ``torch.nn.MSELoss()``)."""
    return jnp.mean((outputs - targets.reshape(outputs.shape)) ** 2)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of samples whose arg-max output equals the integer label."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype).mean()
