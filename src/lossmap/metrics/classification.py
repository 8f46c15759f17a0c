"""Sequence-classifier metrics: logits (B, C) against ``labels`` (B,), one value per example."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..stats import accuracy_hits
from .outputs import acc_dtype, labels_of, logits_of


def _class_logits(outputs: Any, batch: Any, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits_of(outputs)
    labels, _ = labels_of(batch, who, shift=False)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise InputError(
            f"{who}: logits of shape {tuple(logits.shape)} and labels of shape "
            f"{tuple(labels.shape)}: expected (batch, classes) and (batch,)"
        )
    return logits, labels.to(logits.device)


def classification_loss(outputs: Any, batch: Any) -> torch.Tensor:
    """Cross-entropy of a sequence classifier, per example (logits (B, C), ``labels`` (B,)).

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs (logits (B, C)).
    batch : dict
        The batch, with integer ``labels`` (B,).

    Returns
    -------
    Tensor
        Shape (B,): each example's loss (the split's value is their mean).

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import classification_loss
    >>> classification_loss(torch.zeros(2, 3), {"labels": torch.tensor([0, 2])})
    tensor([1.0986, 1.0986], dtype=torch.float64)
    """
    logits, labels = _class_logits(outputs, batch, "classification_loss")
    wide = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    losses = F.cross_entropy(wide, labels.long(), reduction="none")  # (B,)
    return losses.to(acc_dtype(logits.device))


def classification_accuracy(outputs: Any, batch: Any) -> torch.Tensor:
    """Whether a sequence classifier's arg-max class is right, per example (1.0 or 0.0).

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        The model's outputs (logits (B, C)).
    batch : dict
        The batch, with integer ``labels`` (B,).

    Returns
    -------
    Tensor
        Shape (B,).

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import classification_accuracy
    >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    >>> classification_accuracy(logits, {"labels": torch.tensor([0, 1])}).tolist()
    [1.0, 0.0]
    """
    logits, labels = _class_logits(outputs, batch, "classification_accuracy")
    hit, _ = accuracy_hits(logits, labels, class_axis=-1, ignore_index=None)
    return hit.to(acc_dtype(logits.device))
