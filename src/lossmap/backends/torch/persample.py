"""A metric's per-example terms on a batch, as tensors (for derivatives and tests).

The evaluator reduces every metric's result on a batch to float64 sums
(:func:`lossmap.backends.torch.metrics.batch_stats`); the per-sample directional
slopes (:mod:`lossmap.backends.torch.slopes`) need the terms themselves, as
tensors that forward-mode differentiation can see through. Both read a
metric by the same rule, :func:`lossmap.stats.result_kind` (the length-1
rule included: a shape-(1,) result on a one-example batch is that example's
value):

* a torch loss module with a ``reduction`` (and its functional form) gives
  per-example totals and counts by itself
  (:func:`lossmap.backends.torch.metrics.per_example`: a copy with
  ``reduction="none"``; a class ``weight`` and ``ignore_index`` are counted
  exactly as the loss's mean counts them);
* a metric returning a 1-D tensor of one value per example: tᵢ = vᵢ, cᵢ = 1;
* a metric returning a pair ``(totals, counts)`` of 1-D tensors (lossmap's
  accuracy among them).

A metric returning a scalar batch mean (or a pair of scalars) has no
per-example terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ...errors import InputError
from ...stats import PAIR, VALUES, result_kind
from .metrics import per_example


def per_example_terms(
    metric: Callable[[Any, Any], Any], outputs: Any, targets: Any
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """A metric's per-example ``(totals, counts)`` on a batch, or None where it has none.

    A pure function: the metric (a module included) is not modified. The
    metric's value on the batch is ``totals.sum() / counts.sum()``
    (``counts`` None: every count is 1, the value is ``totals.mean()``). It
    works inside ``torch.func.jvp``, ``torch.func.vmap`` (over parameters)
    and ``torch.no_grad``.

    Parameters
    ----------
    metric : callable
        ``metric(outputs, targets)``, as the scan's metrics.
    outputs : Tensor or object
        The model's outputs for a batch of N examples.
    targets : Tensor or object
        The batch's targets (what the metric gets as its second argument).

    Returns
    -------
    (Tensor, Tensor or None) or None
        ``totals`` of shape (N,) and ``counts`` of shape (N,) or None; None
        for a metric whose result is a batch mean (a scalar) or a pair of
        scalars.

    Examples
    --------
    >>> from torch import nn
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> y = torch.tensor([0, 0, 1])
    >>> t, c = per_example_terms(nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0])), logits, y)
    >>> c.tolist()  # each example counted by its target's class weight
    [1.0, 1.0, 3.0]
    >>> bool(torch.isclose(t.sum() / c.sum(),
    ...                    nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0]))(logits, y)))
    True
    >>> per_example_terms(lambda o, t: (o.argmax(-1) == t).float().mean(), logits, y) is None
    True
    """
    terms = per_example(metric)
    result = terms(outputs, targets) if terms is not None else metric(outputs, targets)
    rows = _rows(outputs, targets, result)
    try:
        kind = result_kind("metric", result, rows)
    except InputError:
        return None
    if kind == VALUES and isinstance(result, torch.Tensor):
        return result, None
    if kind == PAIR and isinstance(result[0], torch.Tensor) and (
            result[1] is None or isinstance(result[1], torch.Tensor)):
        return result[0], result[1]
    return None


def per_sample_losses(metric: Callable[[Any, Any], Any], outputs: Any, targets: Any
                      ) -> torch.Tensor | None:
    """The metric's value for each example, where every example counts the same; else None.

    ``totals / counts`` of :func:`per_example_terms` where the counts are all
    equal (a loss without class weights or ignored targets, a metric returning
    one value per example): the values whose mean is the metric's batch value.

    Parameters
    ----------
    metric : callable
    outputs : Tensor or object
    targets : Tensor or object

    Returns
    -------
    Tensor of shape (N,), or None

    Examples
    --------
    >>> from torch import nn
    >>> per_sample_losses(nn.MSELoss(), torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2))
    tensor([5., 0.])
    """
    terms = per_example_terms(metric, outputs, targets)
    if terms is None:
        return None
    t, c = terms
    if c is None:
        return t
    return t / c if bool((c == c[0]).all()) and bool(c[0] > 0) else None


def _rows(outputs: Any, targets: Any, result: Any) -> int:
    """The batch's number of examples: from the targets or outputs, else from the result."""
    for v in (targets, outputs):
        if isinstance(v, torch.Tensor) and v.dim():
            return int(v.shape[0])
    first = result[0] if isinstance(result, (tuple, list)) and result else result
    shape = getattr(first, "shape", ())
    return int(shape[0]) if len(shape) == 1 else 1
