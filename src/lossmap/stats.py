"""What a metric may return; values, standard errors, paired errors; accuracy's rule.

Framework-neutral: shapes, NumPy and duck-typed array methods only, so the
PyTorch and JAX backends read a metric's result, check its counts, finish its
statistics and score an accuracy by the same rules (each backend adds a thin
adapter: :mod:`lossmap.backends.torch.metrics`, :mod:`lossmap.backends.jax.metrics`).

What a metric may return on a batch of N examples (:func:`result_kind`):

* :data:`MEAN` — one number (shape ``()``, or any shape with one element): the
  batch mean. It counts as N examples (t = mean · N, c = N); there are no
  per-example terms, hence no standard error.
* :data:`VALUES` — shape ``(N,)``: one value per example, tᵢ = vᵢ, cᵢ = 1.
* :data:`PAIR` — ``(totals, counts)`` of shape ``(N,)`` each: per-example
  totals and counts (token losses summed per sequence and its number of scored
  tokens); ``counts`` None means every count is 1.
* :data:`TOTAL` — ``(total, count)`` of one element each: the batch's exact
  total and count (no per-example terms).

**The length-1 rule.** A result of shape ``(N,)`` on a batch of N examples is
one value per example, for N = 1 too: on a one-example batch a shape-(1,)
result is that example's value (:data:`VALUES`), and a pair of shape-(1,)
arrays that example's total and count (:data:`PAIR`). Any other one-element
result is a batch mean (:data:`MEAN`) or a batch's total and count
(:data:`TOTAL`). On one example the two readings give the same value; reading
it per example keeps a split's last, one-example batch the same kind as the
others, so its standard error is not lost.

Counts must be ≥ 0 (:func:`check_counts`); a split whose counts are all 0 has
no value (0/0) and is refused before any point (:func:`check_counted`).

The statistics: every backend reduces a metric's result on a batch to the six
float64 sums of :data:`STATS` (Σt, Σc, Σt², Σt·c, Σc², examples), optionally
followed by the :data:`PAIRED` sums of the differences from the centre. A
split's value is Σt/Σc over all its batches; :func:`finish` gives it with the
ratio estimator's standard error, :func:`finish_paired` the standard error of
its difference from the centre's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .errors import InputError

#: How a metric's result on a batch is read (see the module docstring).
MEAN, VALUES, PAIR, TOTAL = "mean", "values", "pair", "total"
#: The kinds with per-example terms, hence a standard error and a slope.
PER_EXAMPLE = (VALUES, PAIR)

#: The sums kept per metric, split and point: Σt, Σc, Σt², Σt·c, Σc², examples.
STATS = 6
#: With the centre's per-example totals t⁰ at hand, three more: Σδ, Σδ², Σδ·c for
#: δ = t − t⁰, which give the standard error of the difference from the centre.
PAIRED = 3

IGNORE_INDEX = -100  # torch's and transformers' label of positions that are not scored

WHAT = (
    "a metric returns the batch mean (a scalar), one value per example (shape (N,)), or "
    "a pair (totals, counts) of scalars or of shape (N,) each"
)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(n) for n in getattr(v, "shape", ()))


def _one(shape: tuple[int, ...]) -> bool:
    return int(np.prod(shape, dtype=np.int64)) == 1


def result_kind(name: str, result: Any, rows: int) -> str:
    """How a metric's result on a batch of ``rows`` examples is read (shapes only).

    Parameters
    ----------
    name : str
        The metric's name, for the error message.
    result : array, shape-like or pair of them
        What the metric returned: tensors, arrays, Python numbers, or objects
        with a ``shape`` (``jax.ShapeDtypeStruct``); a pair's counts may be None.
    rows : int
        The batch's number of examples.

    Returns
    -------
    str
        :data:`MEAN`, :data:`VALUES`, :data:`PAIR` or :data:`TOTAL`.

    Raises
    ------
    InputError
        For any other shape, naming the metric and what it may return.

    Examples
    --------
    >>> import numpy as np
    >>> result_kind("loss", np.float32(0.5), 8), result_kind("loss", np.zeros(8), 8)
    ('mean', 'values')
    >>> result_kind("loss", np.zeros(1), 1), result_kind("loss", np.zeros(1), 8)  # length 1
    ('values', 'mean')
    >>> result_kind("tokens", (np.zeros(8), np.ones(8)), 8), result_kind("t", (2.0, 3.0), 8)
    ('pair', 'total')
    """
    if isinstance(result, (tuple, list)):
        shapes: Any = [None if v is None else _shape(v) for v in result]
        if len(result) == 2 and shapes[0] is not None:
            t, c = shapes
            if t == (rows,) and c in (None, (rows,)):
                return PAIR
            if _one(t) and c is not None and _one(c):
                return TOTAL
    else:
        shapes = _shape(result)
        if shapes == (rows,):
            return VALUES
        if _one(shapes):
            return MEAN
    raise InputError(
        f"metric {name!r} returned shape {shapes} on a batch of {rows} examples; "
        f"{WHAT}, e.g. a loss with reduction='mean'"
    )


def check_counts(name: str, counts: Any, split: str | None = None) -> None:
    """Refuse negative counts (a ratio with them has no meaning and a negative error).

    Parameters
    ----------
    name : str
        The metric's name.
    counts : array-like or None
        A metric's counts (on the host), or the sum of its negative counts;
        None means all 1.
    split : str, optional
        Where they were seen, for the message.

    Examples
    --------
    >>> check_counts("tokens", [3.0, 0.0])
    >>> check_counts("tokens", [3.0, -1.0, -2.0])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: metric 'tokens' returned negative counts (-3.0 in all): ...
    """
    if counts is None:
        return
    c = np.asarray(counts, dtype=np.float64)
    if (c < 0).any():
        where = "" if split is None else f" on split {split!r}"
        raise InputError(
            f"metric {name!r} returned negative counts ({float(c[c < 0].sum())!r} "
            f"in all{where}): counts must be >= 0 (the number of items each total "
            "sums, e.g. scored tokens)"
        )


def check_counted(
    split: str,
    name: str,
    total_count: float,
    *,
    tokens: bool = False,
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Refuse a split on which a metric counts nothing: its value would be 0/0.

    Parameters
    ----------
    split, name : str
        The split and the metric.
    total_count : float
        Σc over every example of the split (at the centre).
    tokens : bool, default False
        The metric counts scored tokens (labels other than ``ignore_index``).
    ignore_index : int, default -100
        The label of unscored tokens, for the message.

    Examples
    --------
    >>> check_counted("train", "loss", 12.0)
    >>> check_counted("train", "loss", 0.0, tokens=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: split 'train' has no scored tokens: every label is -100 ...
    """
    if total_count != 0:
        return
    if tokens:
        raise InputError(
            f"split {split!r} has no scored tokens: every label is {ignore_index} "
            f"(ignore_index), so metric {name!r} is 0/0; give the split labels to score "
            f"({ignore_index} marks padding and prompts only) or leave the split out"
        )
    raise InputError(
        f"split {split!r}: metric {name!r} counts nothing there (every count is 0, e.g. every "
        "target is the loss's ignore_index), so its value is 0/0; give the split targets to "
        "score or leave it out"
    )


def _ratio_se(t, c, tt, tc, cc, n) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = t / c
        ss = np.maximum(tt - 2 * r * tc + r * r * cc, 0.0)
        se = np.sqrt(ss / (n * (n - 1))) / (c / n)
    return r, np.where(n >= 2, se, np.nan)


def finish(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values Σt/Σc and their standard errors from summed stats (..., ≥ :data:`STATS`).

    The standard error is the ratio estimator's: with r = Σt/Σc, n examples and
    c̄ = Σc/n, SE² = Σ(tᵢ − r·cᵢ)² / (n·(n − 1)·c̄²); for cᵢ = 1 it is the
    sample standard deviation over √n. NaN where the terms were not per
    example or n < 2.

    Examples
    --------
    >>> t, c = np.array([1.0, 2.0, 6.0]), np.array([1.0, 1.0, 2.0])
    >>> sums = np.array([t.sum(), c.sum(), t @ t, t @ c, c @ c, 3])
    >>> value, se = finish(sums)
    >>> by_hand = np.sqrt(np.sum((t - 2.25 * c) ** 2) / (3 * 2)) / (4 / 3)
    >>> float(value), bool(np.isclose(se, by_hand))  # 9/4; the ratio estimator
    (2.25, True)
    """
    sums = np.asarray(sums, dtype=np.float64)
    return _ratio_se(*np.moveaxis(sums[..., :STATS], -1, 0))


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
    d, dd, dc = np.moveaxis(sums[..., STATS : STATS + PAIRED], -1, 0)
    return _ratio_se(d, sums[..., 1], dd, dc, sums[..., 4], sums[..., 5])[1]


# -- accuracy: one rule for every backend and lm.metrics ----------------------------------


class AccuracyRule(NamedTuple):
    """How accuracy reads a batch: ``how`` and the class axis of the outputs.

    ``how`` is ``"index"`` (arg-max over ``axis`` against class indices),
    ``"onehot"`` (arg-max of outputs against arg-max of the targets over
    ``axis``) or ``"threshold"`` (one score per item: a logit, predicted
    positive above 0, against 0/1 targets; ``axis`` is None).
    """

    how: str
    axis: int | None


def accuracy_rule(
    outputs: Sequence[int], targets: Sequence[int], class_axis: int | None = None
) -> AccuracyRule:
    """How accuracy reads outputs and targets of these shapes.

    * Targets with one axis fewer than the outputs are class indices; the
      class axis is the outputs' axis 1 (torch's cross-entropy convention:
      (N, C), (N, C, H, W) against (N,), (N, H, W)), or the last one where
      only that fits ((N, T, V) logits against (N, T) tokens).
    * Targets of the outputs' own shape, with 2 or more classes on axis 1,
      are one-hot (or class probabilities): the target class is their arg-max.
    * One score per item (a class axis of size 1, or outputs (N,)) is a
      logit: predicted positive above 0, against targets 0/1.

    Parameters
    ----------
    outputs, targets : sequence of int
        The shapes.
    class_axis : int, optional
        The outputs' class axis, where the caller knows it (token metrics: -1).

    Returns
    -------
    AccuracyRule

    Examples
    --------
    >>> accuracy_rule((8, 10), (8,)), accuracy_rule((2, 5, 4, 4), (2, 4, 4))
    (AccuracyRule(how='index', axis=1), AccuracyRule(how='index', axis=1))
    >>> accuracy_rule((2, 7, 50), (2, 7)), accuracy_rule((8, 3), (8, 3))
    (AccuracyRule(how='index', axis=2), AccuracyRule(how='onehot', axis=1))
    >>> accuracy_rule((8, 1), (8,)), accuracy_rule((8,), (8,))
    (AccuracyRule(how='threshold', axis=None), AccuracyRule(how='threshold', axis=None))
    """
    O, T = tuple(int(n) for n in outputs), tuple(int(n) for n in targets)  # noqa: E741
    if O and T and O[0] == T[0]:
        if len(O) == len(T) + 1:
            axes = [class_axis % len(O)] if class_axis is not None else [1, len(O) - 1]
            for a in axes:
                if a > 0 and O[:a] + O[a + 1 :] == T:
                    return (
                        AccuracyRule("threshold", None) if O[a] == 1 else AccuracyRule("index", a)
                    )
        if O == T and (len(O) == 1 or O[1] == 1):
            return AccuracyRule("threshold", None)
        if O == T and class_axis is None:
            return AccuracyRule("onehot", 1)
        per = int(np.prod(O[1:], dtype=np.int64))
        if per == 1 and int(np.prod(T[1:], dtype=np.int64)) == 1:  # (N,) against (N, 1)
            return AccuracyRule("threshold", None)
    raise InputError(
        f"accuracy cannot read outputs of shape {O} against targets of shape {T}: it needs "
        "class scores (N, C, ...) with class indices (N, ...) or one-hot targets (N, C, ...), "
        "or one logit per example with 0/1 targets; pass a metric of your own for others"
    )


def accuracy_hits(
    outputs: Any,
    targets: Any,
    *,
    class_axis: int | None = None,
    ignore_index: int | None = IGNORE_INDEX,
) -> tuple[Any, Any]:
    """Per item: whether the prediction is right, and whether the item is scored.

    Works on PyTorch tensors and JAX arrays alike (their common methods only).

    Parameters
    ----------
    outputs, targets : Tensor or Array
        Shapes as :func:`accuracy_rule` reads them.
    class_axis : int, optional
        As in :func:`accuracy_rule`.
    ignore_index : int or None, default -100
        Class-index targets equal to it are not scored.

    Returns
    -------
    hit, scored : bool arrays
        Of the targets' item shape ((N, …) without a class axis); a hit is
        always scored.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    >>> hit, scored = accuracy_hits(out, np.array([0, 0, -100]))
    >>> hit.tolist(), scored.tolist()
    ([True, False, False], [True, True, False])
    """
    how, axis = accuracy_rule(_shape(outputs), _shape(targets), class_axis)
    if how == "threshold":
        n = _shape(outputs)[0]
        pred = outputs.reshape(n, -1) > 0
        truth = targets.reshape(n, -1) > 0.5
        return pred == truth, truth == truth
    pred = outputs.argmax(axis=axis)
    if how == "onehot":
        truth = targets.argmax(axis=axis)
        return pred == truth, truth == truth
    scored = targets == targets if ignore_index is None else targets != ignore_index
    return (pred == targets) & scored, scored


def accuracy_counts(
    outputs: Any,
    targets: Any,
    *,
    class_axis: int | None = None,
    ignore_index: int | None = IGNORE_INDEX,
) -> tuple[Any, Any]:
    """Per example: the number of right predictions and of scored items (N,) each.

    :func:`accuracy_hits` summed over each example's items (integers, in the
    arrays' own framework; the backend casts them). A split's accuracy is
    Σ correct / Σ scored: the fraction of its scored items predicted right.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.zeros((2, 3, 2, 2))  # segmentation: 3 classes, 2×2 pixels
    >>> out[:, 1] = 1.0  # class 1 everywhere
    >>> correct, scored = accuracy_counts(out, np.array([[[1, 1], [0, -100]], [[1, 2], [2, 2]]]))
    >>> correct.tolist(), scored.tolist()
    ([2, 1], [3, 4])
    """
    hit, scored = accuracy_hits(outputs, targets, class_axis=class_axis, ignore_index=ignore_index)
    n = _shape(hit)[0]
    return hit.reshape(n, -1).sum(axis=1), scored.reshape(n, -1).sum(axis=1)
