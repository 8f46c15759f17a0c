"""Losses and metrics for the JAX backend, and how a metric's result on a batch is read.

A metric is ``f(outputs, targets)`` and may return (as on the PyTorch path,
:mod:`lossmap.backends.torch.metrics`):

* a scalar batch mean: the split's value is the mean weighted by batch size,
  with no standard error (:data:`MEAN`);
* a 1-D array of one value per example (:data:`VALUES`): tᵢ = vᵢ, cᵢ = 1;
* a pair ``(totals, counts)`` of 1-D arrays (:data:`PAIR`): per-example totals
  and counts (token losses summed per sequence, the number of real tokens);
  or of two scalars (:data:`TOTAL`), the batch's exact total and count (no
  standard error). The split's value is Σt / Σc.

The built-in :func:`cross_entropy`, :func:`mse` and :func:`accuracy` return the
batch mean and carry a ``per_sample`` attribute, ``per_sample(outputs,
targets)`` → (N,) values whose mean is the metric (:data:`BUILTIN`): their
values are the batch means, their standard errors come from the per-sample
values. A user's metric may carry one too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ...errors import InputError

#: How a metric's result is read (see the module docstring).
MEAN, BUILTIN, VALUES, PAIR, TOTAL = "mean", "builtin", "values", "pair", "total"
#: The kinds with per-example terms, hence a standard error and a slope.
PER_EXAMPLE = (BUILTIN, VALUES, PAIR)


def _ce_per_sample(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _mse_per_sample(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    sq = (outputs - targets.reshape(outputs.shape)) ** 2
    return sq.reshape(sq.shape[0], -1).mean(axis=1)


def _accuracy_per_sample(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits`` (N, C) against integer ``labels`` (N,).

    The same value as ``torch.nn.CrossEntropyLoss()`` on the same numbers.
    ``cross_entropy.per_sample(logits, labels)`` gives the (N,) per-sample losses.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1).mean()


def mse(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error over every element (as ``torch.nn.MSELoss()``).

    ``mse.per_sample(outputs, targets)`` gives each sample's mean over its elements.
    """
    return jnp.mean((outputs - targets.reshape(outputs.shape)) ** 2)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of samples whose arg-max output equals the integer label.

    ``accuracy.per_sample(logits, labels)`` gives 1.0 or 0.0 per sample.
    """
    return (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype).mean()


cross_entropy.per_sample = _ce_per_sample
mse.per_sample = _mse_per_sample
accuracy.per_sample = _accuracy_per_sample


def metric_kind(name: str, fn: Callable, result: Any, rows: int) -> str:
    """How ``fn``'s ``result`` on a batch of ``rows`` examples is read (arrays or shapes).

    Parameters
    ----------
    name : str
        The metric's name, for the error message.
    fn : callable
        The metric (a ``per_sample`` attribute makes a scalar result :data:`BUILTIN`).
    result : array, ShapeDtypeStruct or pair of them
        What ``fn`` returned (``jax.eval_shape`` gives its shapes without computing).
    rows : int
        The batch's number of examples.

    Returns
    -------
    str
        One of :data:`MEAN`, :data:`BUILTIN`, :data:`VALUES`, :data:`PAIR`, :data:`TOTAL`.

    Examples
    --------
    >>> metric_kind("loss", cross_entropy, jnp.zeros(()), 8)
    'builtin'
    >>> metric_kind("loss", lambda o, y: o, jnp.zeros(8), 8)
    'values'
    >>> metric_kind("tokens", lambda o, y: o, (jnp.zeros(8), jnp.ones(8)), 8)
    'pair'
    """
    def shape(v):
        return tuple(getattr(v, "shape", ()))

    if isinstance(result, (tuple, list)):
        if len(result) == 2:
            t, c = shape(result[0]), None if result[1] is None else shape(result[1])
            if t == (rows,) and c in (None, (rows,)):
                return PAIR
            if t in ((), (1,)) and c in ((), (1,)):
                return TOTAL
        shapes = [None if v is None else shape(v) for v in result]
    else:
        s = shape(result)
        if s == () or (s == (1,) and rows != 1):
            return BUILTIN if callable(getattr(fn, "per_sample", None)) else MEAN
        if s == (rows,):
            return VALUES
        shapes = s
    raise InputError(
        f"metric {name!r} returned shape {shapes} on a batch of {rows} examples; a metric "
        "returns the batch mean (a scalar), one value per example (shape (N,)), or a pair "
        "(totals, counts) of scalars or of shape (N,) each"
    )


def metric_terms(fn: Callable, kind: str, outputs: Any, targets: Any
                 ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """``(value, totals, counts)`` of a metric on a batch, read as its ``kind`` says.

    ``value`` is the metric's value on the batch (the batch mean for
    :data:`MEAN` and :data:`BUILTIN`, as ``fn`` returns it; Σt/Σc otherwise);
    ``totals`` and ``counts`` are the per-example terms (N,) (scalars for
    :data:`TOTAL`; None for :data:`MEAN`). Traceable (used inside ``jax.jit``).

    Parameters
    ----------
    fn : callable
    kind : str
        From :func:`metric_kind`.
    outputs, targets : array
        The model's outputs and the batch's targets.

    Returns
    -------
    tuple

    Examples
    --------
    >>> logits, labels = jnp.array([[2.0, 0.0], [0.0, 1.0]]), jnp.array([0, 0])
    >>> value, t, c = metric_terms(cross_entropy, "builtin", logits, labels)
    >>> bool(jnp.isclose(value, t.mean())), c.tolist()
    (True, [1.0, 1.0])
    """
    result = fn(outputs, targets)
    if kind == MEAN:
        return jnp.asarray(result).reshape(()), None, None
    if kind == BUILTIN:
        t = jnp.asarray(fn.per_sample(outputs, targets))
        return jnp.asarray(result).reshape(()), t, jnp.ones_like(t)
    if kind == VALUES:
        t = jnp.asarray(result)
        return t.mean(), t, jnp.ones_like(t)
    t = jnp.asarray(result[0])
    c = jnp.ones_like(t) if result[1] is None else jnp.asarray(result[1]).astype(t.dtype)
    if kind == TOTAL:
        t, c = t.reshape(()), c.reshape(())
    return t.sum() / c.sum(), t, c
