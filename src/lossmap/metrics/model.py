"""The model's own loss (``outputs.loss``), weighted by the number of items it averages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import InputError
from .outputs import IGNORE_INDEX, acc_dtype, labels_of


def _loss_of(outputs: Any) -> Any:
    found = getattr(outputs, "loss", None)
    if found is None and isinstance(outputs, Mapping):
        found = outputs.get("loss")
    return found


def model_loss(outputs: Any, batch: Any, *, shift: bool | None = None,
               ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own ``outputs.loss``, weighted by the number of items it averages over.

    A ``transformers`` model called with ``labels`` returns the mean loss over the
    batch's scored items; this returns ``(loss × n, n)`` so that a split's value is
    ``Σ (loss × n) / Σ n``. ``n`` is counted from ``batch["labels"]``: for labels of
    shape (B,) (a sequence classifier) the rows; for token labels the positions not
    equal to ``ignore_index``, after the model's own shift for a causal LM
    (``labels[:, 1:]``). That is exact when the model's loss is the plain mean over
    those items: causal and masked LMs and sequence-to-sequence LMs called with
    ``labels``, sequence classifiers. It is not exact for a loss that is not such a
    mean: auxiliary terms (mixture-of-experts router losses), a ``num_items_in_batch``
    other than the batch's own count, or custom ``compute_loss`` code.

    Parameters
    ----------
    outputs : ModelOutput or dict
        The model's outputs, holding ``loss`` (a scalar).
    batch : dict
        The batch, holding ``labels``.
    shift : bool or None, default None
        Whether the model shifts token labels (a causal LM). None: read it from the
        outputs' class (``CausalLMOutput…`` shifts; ``MaskedLMOutput``,
        ``Seq2SeqLMOutput`` do not); pass it for outputs that do not say.
    ignore_index : int, default -100
        The label of unscored positions.

    Returns
    -------
    total, count : Tensor, Tensor
        Scalars: the batch's summed loss and its number of items.

    Examples
    --------
    >>> import torch
    >>> from lossmap.metrics import model_loss
    >>> out = {"loss": torch.tensor(2.0)}
    >>> labels = torch.tensor([[5, 6, 7, -100]])  # 2 scored next tokens after the shift
    >>> model_loss(out, {"labels": labels}, shift=True)
    (tensor(4., dtype=torch.float64), tensor(2., dtype=torch.float64))
    >>> model_loss(out, {"labels": torch.tensor([1, 0, 1])})  # classifier: 3 rows
    (tensor(6., dtype=torch.float64), tensor(3., dtype=torch.float64))
    """
    loss = _loss_of(outputs)
    if loss is None:
        got = (f"a batch with keys {', '.join(map(str, batch))}" if isinstance(batch, Mapping)
               else f"a {type(batch).__name__} batch")
        raise InputError(
            f"model_loss: the model returned no loss ({got}): give it dict batches with "
            "'labels', or use causal_lm_loss / masked_lm_loss"
        )
    loss = torch.as_tensor(loss)
    labels, _ = labels_of(batch, "model_loss", shift=False)
    dtype = acc_dtype(loss.device)
    if labels.dim() == 1:
        n = torch.tensor(float(labels.shape[0]), dtype=dtype, device=loss.device)
    else:
        if shift is None:
            shift = _shifts(outputs)
        scored = (labels[:, 1:] if shift else labels) != ignore_index
        n = scored.sum().to(dtype).to(loss.device)
    total = torch.where(n > 0, loss.to(dtype) * n, torch.zeros((), dtype=dtype, device=n.device))
    return total, n


def _shifts(outputs: Any) -> bool:
    name = type(outputs).__name__
    if "CausalLM" in name:
        return True
    if "MaskedLM" in name or "Seq2SeqLM" in name:
        return False
    raise InputError(
        f"model_loss: cannot tell whether a model returning {name} shifts its labels: "
        "use functools.partial(lm.metrics.model_loss, shift=True) for a causal LM, "
        "shift=False otherwise"
    )
