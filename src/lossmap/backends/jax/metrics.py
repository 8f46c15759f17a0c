"""Losses and metrics for the JAX backend, and its reading of a metric's result.

What a metric may return (a batch mean, one value per example, per-example
``(totals, counts)`` or a batch's ``(total, count)``), the length-1 rule and
the statistics are framework-neutral and live in :mod:`lossmap.stats`; this
module is their JAX adapter, as :mod:`lossmap.backends.torch.metrics` is
PyTorch's.

The built-in :func:`cross_entropy` and :func:`mse` return the batch mean and
carry a ``per_sample`` attribute, ``per_sample(outputs, targets)`` → (N,)
values whose mean is the metric; a user's metric may carry one too. Such a
metric is read per example (:data:`~lossmap.stats.VALUES`), so its value is
Σt/Σc and it has a standard error. :func:`accuracy` (the rule of
:func:`lossmap.stats.accuracy_rule`, shared with PyTorch) is read as its
per-example right predictions and scored items (:data:`~lossmap.stats.PAIR`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from ...stats import MEAN, PAIR, PER_EXAMPLE, TOTAL, VALUES, accuracy_counts, result_kind


def _ce_per_sample(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def _mse_per_sample(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    sq = (outputs - targets.reshape(outputs.shape)) ** 2
    return sq.reshape(sq.shape[0], -1).mean(axis=1)


def _accuracy_terms(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    correct, counts = accuracy_counts(logits, labels)
    dtype = jnp.promote_types(logits.dtype, jnp.float32)
    return correct.astype(dtype), counts.astype(dtype)


def _accuracy_per_sample(logits: jax.Array, labels: jax.Array) -> jax.Array:
    correct, counts = _accuracy_terms(logits, labels)
    return correct / jnp.maximum(counts, 1)


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
    """Fraction of scored items whose prediction is right (:func:`lossmap.stats.accuracy_rule`).

    For logits (N, C) against integer labels (N,), the fraction of samples
    whose arg-max output is the label; the same rule as PyTorch's built-in
    accuracy (segmentation outputs, one-hot targets, one logit per example).
    ``accuracy.per_sample(logits, labels)`` gives each example's fraction (1.0
    or 0.0 for one label per example).
    """
    correct, counts = _accuracy_terms(logits, labels)
    return correct.sum() / counts.sum()


cross_entropy.per_sample = _ce_per_sample
mse.per_sample = _mse_per_sample
accuracy.per_sample = _accuracy_per_sample


def per_example(fn: Callable) -> Callable | None:
    """``fn``'s per-example form, where its own result is a batch mean; else None.

    :func:`accuracy` gives ``(correct, counts)`` per example; a metric with a
    ``per_sample`` attribute its (N,) values.
    """
    if fn is accuracy:
        return _accuracy_terms
    per_sample = getattr(fn, "per_sample", None)
    return per_sample if callable(per_sample) else None


def metric_kind(name: str, fn: Callable, result: Any, rows: int) -> str:
    """How ``fn``'s ``result`` on a batch of ``rows`` examples is read (arrays or shapes).

    :func:`lossmap.stats.result_kind`, except that a batch mean of a metric
    with a per-example form (:func:`per_example`) is read through that form.

    Parameters
    ----------
    name : str
        The metric's name, for the error message.
    fn : callable
        The metric.
    result : array, ShapeDtypeStruct or pair of them
        What ``fn`` returned (``jax.eval_shape`` gives its shapes without computing).
    rows : int
        The batch's number of examples.

    Returns
    -------
    str
        One of :data:`~lossmap.stats.MEAN`, :data:`~lossmap.stats.VALUES`,
        :data:`~lossmap.stats.PAIR`, :data:`~lossmap.stats.TOTAL`.

    Examples
    --------
    >>> metric_kind("loss", cross_entropy, jnp.zeros(()), 8), metric_kind("acc", accuracy, 0.5, 8)
    ('values', 'pair')
    >>> metric_kind("loss", lambda o, y: o, jnp.zeros(8), 8)
    'values'
    >>> metric_kind("mean", lambda o, y: o, jnp.zeros(1), 8)  # one element on 8 examples
    'mean'
    """
    kind = result_kind(name, result, rows)
    if kind != MEAN or per_example(fn) is None:
        return kind
    return PAIR if fn is accuracy else VALUES


def metric_terms(fn: Callable, kind: str, outputs: Any, targets: Any
                 ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """``(value, totals, counts)`` of a metric on a batch, read as its ``kind`` says.

    ``value`` is the metric's value on the batch (the batch mean for
    :data:`~lossmap.stats.MEAN`, Σt/Σc otherwise); ``totals`` and ``counts``
    the per-example terms (N,) (scalars for :data:`~lossmap.stats.TOTAL`;
    None for :data:`~lossmap.stats.MEAN`). Traceable (used inside ``jax.jit``).

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
    >>> value, t, c = metric_terms(cross_entropy, "values", logits, labels)
    >>> bool(jnp.isclose(value, cross_entropy(logits, labels))), c.tolist()
    (True, [1.0, 1.0])
    """
    per = per_example(fn) if kind in PER_EXAMPLE else None
    result = fn(outputs, targets)
    if per is not None and not isinstance(result, (tuple, list)) and jnp.size(result) == 1:
        result = per(outputs, targets)  # a batch mean: read through its per-example form
    if kind == MEAN:
        return jnp.asarray(result).reshape(()), None, None
    if kind == VALUES:
        t = jnp.asarray(result)
        return t.mean(), t, jnp.ones_like(t)
    t = jnp.asarray(result[0])
    c = jnp.ones_like(t) if result[1] is None else jnp.asarray(result[1]).astype(t.dtype)
    if kind == TOTAL:
        t, c = t.reshape(()), c.reshape(())
    return t.sum() / c.sum(), t, c
