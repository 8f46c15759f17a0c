"""Metrics: the built-in accuracy, per-example terms, and the network followed by its metrics.

Every metric's result on a batch is reduced to six float64 sums (:data:`STATS`):
the total Σt and count Σc of its per-example terms, Σt², Σt·c, Σc² and the
number of examples. A split's value is Σt / Σc over all its batches; where the
metric gave per-example terms, the standard error of that value follows from
the other sums (:func:`finish`). What a metric may return:

* a scalar batch mean: t = mean · rows, c = rows (no per-example terms, no
  standard error; the split's value is the row-weighted mean, as in 0.1);
* a 1-D tensor of per-example values: tᵢ = vᵢ, cᵢ = 1;
* a pair ``(totals, counts)`` of 1-D tensors: per-example totals and counts
  (token losses summed per sequence and the number of real tokens in it), or
  of two scalars: the batch's exact total and count (no standard error).

Torch loss modules with a ``reduction`` (``nn.CrossEntropyLoss()``,
``nn.MSELoss()``, …), their functional forms (``F.cross_entropy``, …) and
:func:`accuracy` give per-example terms by themselves (:func:`per_example`),
with the same value as their batch mean.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: ``f(outputs, targets)`` returning a batch mean, per-example values or ``(totals, counts)``.
Metric = Callable[[torch.Tensor, torch.Tensor], object]

#: The sums kept per metric, split and point: Σt, Σc, Σt², Σt·c, Σc², examples.
STATS = 6
#: With the centre's per-example totals t⁰ at hand, three more: Σδ, Σδ², Σδ·c for δ = t − t⁰,
#: which give the standard error of the difference from the centre (:func:`finish_paired`).
PAIRED = 3


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max output equals the integer target (batch mean)."""
    return (outputs.argmax(dim=-1) == targets).to(outputs.dtype).mean()


def _accuracy_terms(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(dim=-1) == targets).to(outputs.dtype).reshape(len(targets), -1).mean(1)


_FUNCTIONAL = {F.cross_entropy: nn.CrossEntropyLoss, F.nll_loss: nn.NLLLoss,
               F.mse_loss: nn.MSELoss, F.l1_loss: nn.L1Loss,
               F.smooth_l1_loss: nn.SmoothL1Loss, F.huber_loss: nn.HuberLoss,
               F.binary_cross_entropy: nn.BCELoss,
               F.binary_cross_entropy_with_logits: nn.BCEWithLogitsLoss}


def per_example(fn: Callable) -> Callable | None:
    """A function giving ``fn``'s per-example ``(totals, counts)`` with the same value, or None.

    For a torch loss module whose ``reduction`` is ``"mean"`` (or ``"batchmean"``)
    it evaluates a copy with ``reduction="none"``: class losses
    (``CrossEntropyLoss``, ``NLLLoss``) count each target by its class weight
    and drop ``ignore_index``, exactly as their mean does; element-wise losses
    sum each example's elements and count them. :func:`accuracy` gives 1 or 0
    per sample. Anything else (a user's function, ``reduction="sum"``,
    ``CTCLoss``) returns None: its own result is used.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> terms = per_example(nn.CrossEntropyLoss())
    >>> out, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> t, c = terms(out, y)
    >>> bool(torch.isclose(t.sum() / c.sum(), nn.CrossEntropyLoss()(out, y)))
    True
    >>> per_example(lambda out, y: (out - y).abs().mean()) is None
    True
    """
    if fn is accuracy:
        return lambda out, y: (_accuracy_terms(out, y), None)
    if fn in _FUNCTIONAL:
        fn = _FUNCTIONAL[fn]()
    if not isinstance(fn, nn.modules.loss._Loss) or isinstance(fn, nn.CTCLoss):
        return None
    if fn.reduction == "batchmean" and isinstance(fn, nn.KLDivLoss):
        none = copy.copy(fn)
        none.reduction = "none"
        return lambda out, y: (none(out, y).reshape(len(out), -1).sum(1), None)
    if fn.reduction != "mean":
        return None
    none = copy.copy(fn)
    none.reduction = "none"
    if isinstance(fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return lambda out, y: _class_terms(none, fn, out, y)
    return lambda out, y: _element_terms(none(out, y), len(out))


def _element_terms(v: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    v = v.reshape(n, -1)
    return (v.sum(1), None) if v.shape[1] == 1 else (v.sum(1), torch.full_like(v[:, 0], v.shape[1]))


def _class_terms(none: nn.Module, fn: nn.Module, out: torch.Tensor, y: torch.Tensor):
    """Per-example totals and counts of a class loss: weights and ignored targets as its mean."""
    v = none(out, y)
    if y.is_floating_point():  # class probabilities: the mean is over samples
        return _element_terms(v, len(out))
    w = torch.ones_like(v) if fn.weight is None else fn.weight.to(v.dtype)[y.clamp(min=0)]
    w = torch.where(y == fn.ignore_index, torch.zeros_like(w), w)
    return v.reshape(len(out), -1).sum(1), w.reshape(len(out), -1).sum(1)


def _terms(result: object, rows: int, device: torch.device):
    """``(t, c, per_example)``: a metric's result as totals and counts (float64)."""
    if isinstance(result, (tuple, list)) and len(result) == 2:
        t, c = result
        t = torch.as_tensor(t, device=device).to(torch.float64)
        c = torch.ones_like(t) if c is None else torch.as_tensor(c, device=device).to(t.dtype)
        if t.dim() == 0:  # the batch's exact total and count
            return t, c, False
        return t.reshape(-1), c.reshape(-1), True
    v = torch.as_tensor(result, device=device).to(torch.float64)
    if v.dim() == 1 and len(v) == rows:  # per-example values
        return v, torch.ones_like(v), True
    v = v.reshape(())  # a batch mean (a one-element mean of shape (1,) is the scalar)
    n = torch.full_like(v, rows)
    return v * n, n, False


def example_terms(result: object, rows: int, device: torch.device) -> torch.Tensor:
    """A metric's per-example totals (``rows`` of them; NaN where it has none)."""
    t, _, per = _terms(result, rows, device)
    return t if per else torch.full((rows,), math.nan, dtype=torch.float64, device=device)


def batch_stats(result: object, rows: int, device: torch.device,
                centre: torch.Tensor | None = None) -> torch.Tensor:
    """A metric's result on a batch of ``rows`` examples as the :data:`STATS` float64 sums.

    With ``centre``, the same examples' totals at the centre (:func:`example_terms`),
    the :data:`PAIRED` sums of the differences follow (NaN without per-example terms).
    """
    t, c, per = _terms(result, rows, device)
    n = torch.full_like(t.sum(), len(t) if per else rows)
    if per:
        stats = [t.sum(), c.sum(), (t * t).sum(), (t * c).sum(), (c * c).sum(), n]
    else:
        nan = torch.full_like(t, math.nan)
        stats = [t, c, nan, nan, nan, n]
    if centre is not None:
        if per:
            d = t - centre
            stats += [d.sum(), (d * d).sum(), (d * c).sum()]
        else:
            stats += [torch.full_like(n, math.nan)] * PAIRED
    return torch.stack(stats)


def check_result(name: str, result: object, rows: int) -> None:
    """Refuse a metric result of a shape :func:`batch_stats` cannot read, saying what it can."""
    def size(v: object) -> int:
        return torch.as_tensor(v).numel() if v is not None else rows

    if isinstance(result, (tuple, list)):
        if len(result) == 2 and {size(result[0]), size(result[1])} <= {1, rows} and (
            size(result[0]) == size(result[1]) or result[1] is None
        ):
            return
        shapes = [tuple(torch.as_tensor(v).shape) if v is not None else None for v in result]
    else:
        n = size(result)
        if n == 1 or (n == rows and torch.as_tensor(result).dim() == 1):
            return
        shapes = tuple(torch.as_tensor(result).shape)
    from ...errors import InputError

    raise InputError(
        f"metric {name!r} returned shape {shapes} on a batch of {rows} examples; a metric "
        "returns the batch mean (a scalar), one value per example (shape (N,)), or a pair "
        "(totals, counts) of scalars or of shape (N,) each, e.g. a loss with reduction='mean'"
    )


def finish(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values Σt/Σc and their standard errors from summed stats (..., STATS).

    The standard error is the ratio estimator's: with r = Σt/Σc, n examples and
    c̄ = Σc/n, SE² = Σ(tᵢ − r·cᵢ)² / (n·(n − 1)·c̄²); for cᵢ = 1 it is the sample
    standard deviation over √n. NaN where the terms were not per example or
    n < 2.
    """
    sums = np.asarray(sums, dtype=np.float64)
    t, c, tt, tc, cc, n = np.moveaxis(sums[..., :STATS], -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = t / c
        ss = np.maximum(tt - 2 * r * tc + r * r * cc, 0.0)
        se = np.sqrt(ss / (n * (n - 1))) / (c / n)
    se = np.where(n >= 2, se, np.nan)
    return r, se


def finish_paired(sums: np.ndarray) -> np.ndarray:
    """The standard error of each value's difference from the centre's, from summed stats.

    With δᵢ = tᵢ − tᵢ⁰ (this point's per-example totals less the centre's, the
    counts being the same), the difference of the two ratios is Σδ/Σc and its
    standard error the ratio estimator's over the δᵢ: the paired standard
    error, much smaller than the two points' own errors combined when their
    per-example values are correlated (nearby points). NaN where not measured.
    """
    sums = np.asarray(sums, dtype=np.float64)
    if sums.shape[-1] < STATS + PAIRED:
        return np.full(sums.shape[:-1], np.nan)
    c, n = sums[..., 1], sums[..., 5]
    d, dd, dc = np.moveaxis(sums[..., STATS:STATS + PAIRED], -1, 0)
    cc = sums[..., 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = d / c
        ss = np.maximum(dd - 2 * r * dc + r * r * cc, 0.0)
        se = np.sqrt(ss / (n * (n - 1))) / (c / n)
    return np.where(n >= 2, se, np.nan)


class Metered(nn.Module):
    """The network followed by the metrics: one call gives a batch's stats (M, STATS + PAIRED).

    ``centre`` (M, N): the batch's per-example totals at the centre, for the
    paired sums; ``terms=True`` returns those totals (M, N) instead.
    """

    def __init__(self, net: nn.Module, metrics: Mapping[str, Metric]):
        super().__init__()
        self.net = net
        fns = list(metrics.values())
        self._metric_fns = [per_example(fn) or fn for fn in fns]

    def forward(self, X: torch.Tensor, y: torch.Tensor, centre: torch.Tensor | None = None,
                terms: bool = False) -> torch.Tensor:
        outputs = self.net(X)
        if terms:
            return torch.stack([example_terms(fn(outputs, y), len(y), X.device)
                                for fn in self._metric_fns])
        return torch.stack([batch_stats(fn(outputs, y), len(y), X.device,
                                        None if centre is None else centre[i])
                            for i, fn in enumerate(self._metric_fns)])
