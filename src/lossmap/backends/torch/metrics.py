"""PyTorch's reading of a metric: the built-in accuracy, per-example terms, the metered network.

What a metric may return, the length-1 rule, the counts' check and the
statistics (value Σt/Σc, its standard error, the paired error) are
framework-neutral and live in :mod:`lossmap.stats`; this module is their
PyTorch adapter. Every metric's result on a batch is reduced, on the device,
to the :data:`~lossmap.stats.STATS` float64 sums (:func:`batch_stats`):

* a batch mean (:data:`~lossmap.stats.MEAN`): t = mean · rows, c = rows (no
  per-example terms, no standard error);
* one value per example (:data:`~lossmap.stats.VALUES`): tᵢ = vᵢ, cᵢ = 1;
* per-example ``(totals, counts)`` (:data:`~lossmap.stats.PAIR`), or a batch's
  exact ``(total, count)`` (:data:`~lossmap.stats.TOTAL`, no standard error).

Torch loss modules with a ``reduction`` (``nn.CrossEntropyLoss()``,
``nn.MSELoss()``, …) and their functional forms (``F.cross_entropy``, …) give
per-example terms by themselves (:func:`per_example`), with the same value as
their batch mean; the built-in :func:`accuracy` returns per-example counts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...stats import (
    IGNORE_INDEX,
    MEAN,
    PAIR,
    PAIRED,
    TOTAL,
    VALUES,
    accuracy_counts,
    check_counted,
    check_counts,
    result_kind,
)

#: ``f(outputs, targets)`` returning a batch mean, per-example values or ``(totals, counts)``.
Metric = Callable[[torch.Tensor, torch.Tensor], object]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right predictions and scored items per example: ``(correct, counts)``, (N,) each.

    The rule is :func:`lossmap.stats.accuracy_rule` (class indices, one-hot
    targets or one logit per example; targets -100 are not scored). The
    split's accuracy is Σ correct / Σ counts: for (N, C) outputs against (N,)
    labels the fraction of examples predicted right, for segmentation
    (N, C, H, W) against (N, H, W) the fraction of scored pixels.

    Examples
    --------
    >>> correct, counts = accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    >>> correct.tolist(), counts.tolist()
    ([1.0, 0.0], [1.0, 1.0])
    """
    correct, counts = accuracy_counts(outputs, targets)
    dtype = torch.float32 if outputs.device.type == "mps" else torch.float64
    return correct.to(dtype), counts.to(dtype)


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
    and drop ``ignore_index``, exactly as their mean does (segmentation outputs
    (N, C, H, W) included: an example's terms sum over its pixels); element-wise
    losses sum each example's elements and count them. Anything else (a user's
    function, ``reduction="sum"``, ``CTCLoss``) returns None: its own result is used.

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
    if fn.weight is None and v.dim() == 1:  # one label per example: the common case, few ops
        return v, (y != fn.ignore_index).to(v.dtype)
    ignored = y == fn.ignore_index  # any label (-100, 255, …): not an index into the weights
    w = (torch.ones_like(v) if fn.weight is None
         else fn.weight.to(v.dtype)[torch.where(ignored, torch.zeros_like(y), y)])
    w = torch.where(ignored, torch.zeros_like(w), w)
    return v.reshape(len(out), -1).sum(1), w.reshape(len(out), -1).sum(1)


def metric_terms(result: object, rows: int, device: torch.device):
    """``(t, c, per_example)``: a metric's result as totals and counts (float64)."""
    kind = result_kind("metric", result, rows)
    if kind in (MEAN, VALUES):
        v = torch.as_tensor(result, device=device).to(torch.float64)
        if kind == VALUES:
            return v, torch.ones_like(v), True
        v = v.reshape(())
        n = torch.full_like(v, rows)
        return v * n, n, False
    t = torch.as_tensor(result[0], device=device).to(torch.float64)
    c = (torch.ones_like(t) if result[1] is None
         else torch.as_tensor(result[1], device=device).to(torch.float64))
    if kind == TOTAL:  # the batch's exact total and count
        return t.reshape(()), c.reshape(()), False
    return t, c, True


def centre_terms(result: object, rows: int, device: torch.device) -> torch.Tensor:
    """A metric's result at the centre, (rows + 2,) float64: totals, then Σc and negatives.

    The first ``rows`` entries are the per-example totals (NaN where the metric
    has none), kept for the paired errors; the last two the batch's count Σc
    and the sum of its negative counts (0 when none), for :func:`check_centre`.
    """
    t, c, per = metric_terms(result, rows, device)
    totals = t if per else torch.full((rows,), math.nan, dtype=torch.float64, device=device)
    return torch.cat([totals, torch.stack([c.sum(), c.clamp(max=0).sum()])])


def centre_rows(results: Sequence[object], rows: int, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The metrics' results on a batch at the centre: what :func:`centre_terms` keeps
    (M, rows + 2), and the centre point's own :func:`batch_stats` (M, STATS + PAIRED),
    its paired differences from itself zero: the centre's grid point needs no pass of
    its own."""
    kept = [centre_terms(r, rows, device) for r in results]
    stats = [batch_stats(r, rows, device, k[:-2]) for r, k in zip(results, kept, strict=True)]
    return torch.stack(kept), torch.stack(stats)


def check_centre(splits: Sequence[str], metrics: Mapping[str, Metric],
                 kept: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """The centre's per-example totals, once its counts pass; refused before any point else.

    ``kept``: per split and batch, the (M, N + 2) rows of :func:`centre_terms`.
    Negative counts, and a split on which a metric counts nothing (Σc = 0: no
    scored tokens), are refused (:func:`lossmap.stats.check_counts`,
    :func:`lossmap.stats.check_counted`). Returns the totals (M, N) per split and batch.
    """
    from ...metrics import is_token_loss

    counted = torch.stack([torch.stack([b[:, -2:] for b in per]).sum(0) for per in kept])
    counted = counted.cpu().numpy()
    for s, split in enumerate(splits):
        for m, (name, fn) in enumerate(metrics.items()):
            total, negative = counted[s, m]
            check_counts(name, [negative], split)
            ignore = getattr(fn, "keywords", {}).get("ignore_index", IGNORE_INDEX)
            check_counted(split, name, float(total), tokens=is_token_loss(fn),
                          ignore_index=ignore)
    return [[b[:, :-2] for b in per] for per in kept]


def batch_stats(result: object, rows: int, device: torch.device,
                centre: torch.Tensor | None = None) -> torch.Tensor:
    """A metric's result on a batch of ``rows`` examples as the :data:`STATS` float64 sums.

    With ``centre``, the same examples' totals at the centre (:func:`centre_terms`),
    the :data:`PAIRED` sums of the differences follow (NaN without per-example terms).
    """
    t, c, per = metric_terms(result, rows, device)
    if per:  # every sum from one (k, N) @ (N, k) product: a few ops per batch, not fifteen
        rows_ = [t, c] if centre is None else [t, c, t - centre]
        S = torch.stack(rows_)
        flat = torch.cat([S.sum(1), (S @ S.T).reshape(-1), S.new_full((1,), len(t))])
        return flat[_PICK[len(rows_)].to(flat.device)]
    n = torch.full_like(t.sum(), rows)
    nan = torch.full_like(t, math.nan)
    stats = [t, c, nan, nan, nan, n]
    if centre is not None:
        stats += [torch.full_like(n, math.nan)] * PAIRED
    return torch.stack(stats)


# Where batch_stats finds each sum in [S.sum(1), (S·Sᵀ).flatten(), examples], by the rows of
# S: (t, c) gives Σt, Σc, Σt², Σt·c, Σc², n; (t, c, d) adds Σd, Σd², Σd·c.
_PICK = {2: torch.tensor([0, 1, 2, 3, 5, 6]),
         3: torch.tensor([0, 1, 3, 4, 7, 12, 2, 11, 10])}


def check_result(name: str, result: object, rows: int) -> None:
    """Refuse a metric result :func:`batch_stats` cannot read, or one with negative counts.

    The shapes by :func:`lossmap.stats.result_kind`; the counts (of a pair) by
    :func:`lossmap.stats.check_counts`. Run on a few samples before any point.
    """
    if result_kind(name, result, rows) in (PAIR, TOTAL) and result[1] is not None:
        check_counts(name, torch.as_tensor(result[1]).detach().double().cpu().numpy())


class Metered(nn.Module):
    """The network followed by the metrics: one call gives a batch's stats (M, STATS + PAIRED).

    ``centre`` (M, N): the batch's per-example totals at the centre, for the
    paired sums; ``terms=True`` returns, instead, :func:`centre_rows`: what
    :func:`centre_terms` keeps (M, N + 2) and the centre point's sums.
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
            return centre_rows([fn(outputs, y) for fn in self._metric_fns], len(y), X.device)
        return torch.stack([batch_stats(fn(outputs, y), len(y), X.device,
                                        None if centre is None else centre[i])
                            for i, fn in enumerate(self._metric_fns)])
