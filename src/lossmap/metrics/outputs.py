"""Reading a model's outputs and a dict batch: the logits, the labels, the accumulation dtype."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import InputError, InputTypeError

IGNORE_INDEX = -100  # what transformers' collators put on padding and unscored positions


def logits_of(outputs: Any) -> torch.Tensor:
    """The logits in a model's outputs: ``outputs.logits``, ``["logits"]``, ``[0]`` or itself.

    Parameters
    ----------
    outputs : Tensor, tuple, dict or ModelOutput
        What the model returned.

    Returns
    -------
    Tensor
        The logits, as the model returned them (not copied).

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import logits_of
    >>> t = torch.ones(2, 3)
    >>> logits_of(t) is t and logits_of({"logits": t}) is t and logits_of((t, None)) is t
    True
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    found = getattr(outputs, "logits", None)
    if found is None and isinstance(outputs, Mapping):
        found = outputs.get("logits")
    if found is None and isinstance(outputs, tuple | list) and outputs:
        found = outputs[0]
    if not isinstance(found, torch.Tensor):
        raise InputTypeError(
            f"the model's outputs ({type(outputs).__name__}) hold no logits: expected a tensor, "
            "an object with .logits, a dict with 'logits' or a tuple whose first item is the "
            "logits; pass a metric of your own for other outputs"
        )
    return found


def acc_dtype(device: torch.device) -> torch.dtype:
    """float64 for the per-example sums, except where the device has none (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def labels_of(batch: Any, who: str, *, shift: bool) -> tuple[torch.Tensor, bool]:
    """The batch's token labels and whether they still need the causal shift.

    ``batch`` is the dict the model was called with, or, for ``(X, y)`` data, the
    targets ``y`` themselves (a tensor of labels).
    """
    if isinstance(batch, torch.Tensor):
        return batch, shift
    if not isinstance(batch, Mapping):
        raise InputTypeError(
            f"{who} needs a dict batch with 'labels' or a tensor of labels (got "
            f"{type(batch).__name__}): make the loader yield dicts such as "
            "{'input_ids': ..., 'labels': ...}"
        )
    if shift and batch.get("shift_labels") is not None:  # transformers' pre-shifted labels
        return batch["shift_labels"], False
    if batch.get("labels") is not None:
        return batch["labels"], shift
    if shift and batch.get("input_ids") is not None:  # labels = input_ids, padding ignored
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        return (ids if mask is None else ids.masked_fill(mask == 0, IGNORE_INDEX)), True
    raise InputError(
        f"{who}: the batch has no 'labels' (keys: {', '.join(map(str, batch))}): "
        "add them, with -100 at positions that are not scored"
    )


def aligned(logits: torch.Tensor, labels: torch.Tensor, shift: bool, who: str):
    """Logits (B, L, V) and labels (B, L) paired position by position (shifted if asked)."""
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise InputError(
            f"{who}: logits of shape {tuple(logits.shape)} do not fit labels of shape "
            f"{tuple(labels.shape)}: expected (batch, length, vocabulary) and (batch, length)"
        )
    labels = labels.to(logits.device)
    if shift:  # as transformers: tokens < n predict token n
        return logits[:, :-1], labels[:, 1:]  # (B, T-1, V), (B, T-1)
    return logits, labels
