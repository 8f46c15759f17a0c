"""Token losses and accuracies: per-example (totals, counts), exact under any padding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..stats import accuracy_hits
from .outputs import IGNORE_INDEX, acc_dtype, aligned, labels_of, logits_of


def _check_range(labels: torch.Tensor, mask: torch.Tensor, vocab: int, who: str) -> None:
    bad = mask & ((labels < 0) | (labels >= vocab))
    if bool(bad.any()):
        value = int(labels[bad][0])
        raise InputError(
            f"{who}: label {value} is outside the vocabulary 0..{vocab - 1} of the logits: "
            "mark unscored positions with -100 and check the tokenizer matches the model"
        )


def _token_losses(outputs: Any, batch: Any, shift: bool, who: str, ignore_index: int):
    """Per-token cross-entropy (B, L) in float32 or wider, zero where ignored, and the mask.

    With the causal shift, the cross-entropy runs on the unshifted logits (B, T, V)
    against the labels moved one place left, the last position ignored, and the
    last column is dropped after: each row's value is the one ``logits[:, :-1]``
    gives (the rows are independent), without copying the shifted slice of the
    logits — a copy as large as the logits, which a plain ``reshape`` of the
    slice makes (for GPT-2's 50,257 tokens it took ~40 % of the loss's time).
    """
    full = logits_of(outputs)
    labels, shift = labels_of(batch, who, shift=shift)
    logits, labels = aligned(full, labels, shift, who)
    mask = labels != ignore_index  # (B, L)
    _check_range(labels, mask, logits.shape[-1], who)
    rows, target = logits, labels
    if shift:  # (B, T, V) and (B, T): position t scored against label t + 1, the last not at all
        rows = full
        target = torch.cat([labels, labels.new_full((len(labels), 1), ignore_index)], dim=1)
    wide = rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows
    losses = F.cross_entropy(  # (B*T,)
        wide.reshape(-1, wide.shape[-1]), target.reshape(-1).long(),
        ignore_index=ignore_index, reduction="none",
    ).reshape(target.shape)
    return (losses[:, :-1] if shift else losses), mask, logits, labels


def causal_lm_loss(outputs: Any, batch: Any, *, ignore_index: int = IGNORE_INDEX
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy, per example, as ``transformers`` computes it.

    Position ``t`` of the logits predicts label ``t + 1`` (``logits[:, :-1]`` against
    ``labels[:, 1:]``); labels equal to ``ignore_index`` are not scored. The labels are
    ``batch["labels"]`` (or ``batch["shift_labels"]``, already shifted); without either,
    ``input_ids`` with the positions where ``attention_mask`` is 0 ignored.

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs; the logits (B, T, V) are taken by :func:`~lossmap.metrics.logits_of`.
    batch : dict
        The batch the model was called with.
    ignore_index : int, default -100
        The label of unscored positions (padding, prompts).

    Returns
    -------
    totals, counts : Tensor, Tensor
        Shape (B,) each, float64 (float32 on MPS): the summed token losses of each
        example and its number of scored tokens. The split's loss is
        ``Σ totals / Σ counts``.

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import causal_lm_loss
    >>> logits = torch.zeros(1, 3, 4)
    >>> logits[0, 0, 2] = 10.0  # position 0 is sure the next token is 2
    >>> totals, counts = causal_lm_loss(logits, {"labels": torch.tensor([[0, 2, 1]])})
    >>> counts.tolist()  # labels 2 and 1 are predicted; label 0 starts the sequence
    [2.0]
    >>> round(float(totals[0]), 4)  # ~0 for the sure token, ln 4 for the uniform one
    1.3864
    """
    losses, mask, logits, _ = _token_losses(outputs, batch, True, "causal_lm_loss", ignore_index)
    dtype = acc_dtype(logits.device)
    return losses.to(dtype).sum(dim=1), mask.to(dtype).sum(dim=1)


def masked_lm_loss(outputs: Any, batch: Any, *, ignore_index: int = IGNORE_INDEX
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy at the masked positions, per example (no shift), as BERT computes it.

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs; the logits (B, T, V) are taken by :func:`~lossmap.metrics.logits_of`.
    batch : dict
        The batch, with ``labels`` (B, T): the original token at each masked
        position, ``ignore_index`` elsewhere.
    ignore_index : int, default -100
        The label of unscored positions.

    Returns
    -------
    totals, counts : Tensor, Tensor
        Shape (B,) each: summed token losses and number of scored tokens per example.

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import masked_lm_loss
    >>> labels = torch.tensor([[-100, 3, -100], [1, -100, -100]])
    >>> totals, counts = masked_lm_loss(torch.zeros(2, 3, 8), {"labels": labels})
    >>> counts.tolist(), round(float(totals.sum() / counts.sum()), 4)  # ln 8
    ([1.0, 1.0], 2.0794)
    """
    losses, mask, logits, _ = _token_losses(outputs, batch, False, "masked_lm_loss", ignore_index)
    dtype = acc_dtype(logits.device)
    return losses.to(dtype).sum(dim=1), mask.to(dtype).sum(dim=1)


def _hits(outputs: Any, batch: Any, shift: bool, who: str, ignore_index: int):
    """Right and scored tokens (B, L), by the one accuracy rule (:mod:`lossmap.stats`)."""
    logits = logits_of(outputs)
    labels, shift = labels_of(batch, who, shift=shift)
    logits, labels = aligned(logits, labels, shift, who)
    hit, mask = accuracy_hits(logits, labels, class_axis=-1, ignore_index=ignore_index)
    return hit, mask, acc_dtype(logits.device)


def token_accuracy(outputs: Any, batch: Any, *, ignore_index: int = IGNORE_INDEX
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of next tokens whose arg-max prediction is right, per example.

    Counted as :func:`~lossmap.metrics.causal_lm_loss` counts (shifted, -100 ignored).

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs (logits (B, T, V)).
    batch : dict
        The batch, with ``labels`` as for :func:`~lossmap.metrics.causal_lm_loss`.
    ignore_index : int, default -100
        The label of unscored positions.

    Returns
    -------
    correct, counts : Tensor, Tensor
        Shape (B,) each: right predictions and scored tokens per example.

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import token_accuracy
    >>> logits = torch.zeros(1, 3, 4)
    >>> logits[0, 0, 2] = logits[0, 1, 3] = 1.0  # predicts 2, then 3
    >>> token_accuracy(logits, {"labels": torch.tensor([[0, 2, 1]])})
    (tensor([1.], dtype=torch.float64), tensor([2.], dtype=torch.float64))
    """
    hit, mask, dtype = _hits(outputs, batch, True, "token_accuracy", ignore_index)
    return hit.to(dtype).sum(dim=1), mask.to(dtype).sum(dim=1)


def masked_token_accuracy(outputs: Any, batch: Any, *, ignore_index: int = IGNORE_INDEX
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of masked tokens predicted right, per example.

    Counted as :func:`~lossmap.metrics.masked_lm_loss` counts (no shift, -100 ignored).

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs (logits (B, T, V)).
    batch : dict
        The batch, with ``labels`` as for :func:`~lossmap.metrics.masked_lm_loss`.
    ignore_index : int, default -100
        The label of unscored positions.

    Returns
    -------
    correct, counts : Tensor, Tensor
        Shape (B,) each.

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import masked_token_accuracy
    >>> logits = torch.zeros(1, 2, 4)
    >>> logits[0, 1, 3] = 1.0
    >>> masked_token_accuracy(logits, {"labels": torch.tensor([[-100, 3]])})[0].tolist()
    [1.0]
    """
    hit, mask, dtype = _hits(outputs, batch, False, "masked_token_accuracy", ignore_index)
    return hit.to(dtype).sum(dim=1), mask.to(dtype).sum(dim=1)


def sequence_accuracy(outputs: Any, batch: Any, *, ignore_index: int = IGNORE_INDEX
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of sequences whose every scored next token is predicted right.

    A sequence with no scored token does not count.

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs (logits (B, T, V)).
    batch : dict
        The batch, with ``labels`` as for :func:`~lossmap.metrics.causal_lm_loss`.
    ignore_index : int, default -100
        The label of unscored positions.

    Returns
    -------
    correct, counts : Tensor, Tensor
        Shape (B,) each, 0 or 1.

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import sequence_accuracy
    >>> logits = torch.zeros(2, 2, 4)
    >>> logits[0, 0, 1] = 1.0  # row 0 predicts its one next token right; row 1 does not
    >>> sequence_accuracy(logits, {"labels": torch.tensor([[0, 1], [0, 3]])})[0].tolist()
    [1.0, 0.0]
    """
    hit, mask, dtype = _hits(outputs, batch, True, "sequence_accuracy", ignore_index)
    counts = mask.any(dim=1)
    correct = (hit == mask).all(dim=1) & counts
    return correct.to(dtype), counts.to(dtype)
