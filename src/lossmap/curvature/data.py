"""The batches a curvature operator reads, and the weight of each in the mean loss.

A split is read once (:func:`lossmap.data.splits.as_split`): ``(X, y)``
tensors, a loader, an iterable of batches, dict batches (``model(**batch)``)
or tuples of several inputs and a target. Each batch is kept on the device
(up to :data:`DEVICE_DATA_BUDGET` on an accelerator) in the compute dtype.
The loss of a batch is ``loss_fn(outputs, target)`` (a dict batch: ``loss_fn(
outputs, batch)``), a scalar batch mean, or the pair ``(total, count)`` that
:func:`lossmap.metrics.model_loss` returns; batches are weighted so that the
operator is the curvature of the exact mean over the split.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..backends.torch.structured import accepted, batches_of, call_at, metric_input, to_device
from ..data.batches import rows_of
from ..errors import InputError, InputTypeError
from .checks import check_loss, one_split

DEFAULT_BATCH = 1024
DEVICE_DATA_BUDGET = 2 * 1024**3  # keep the split on an accelerator up to this size


@dataclass
class Batch:
    """One batch on its way to the model: the batch, how it is called, its weight."""

    batch: Any
    weight: float  # its share of the split's mean (the weights sum to 1)
    rows: int


def _nbytes(batch: Any) -> int:
    vals = batch.values() if isinstance(batch, Mapping) else batch
    return sum(v.nbytes for v in vals if isinstance(v, torch.Tensor))


class Data:
    """A split as batches, called as ``lm.scan`` calls them; see the module docstring."""

    def __init__(
        self,
        data: Any,
        *,
        samples: int | None,
        seed: int,
        batch_size: int | None,
        device: torch.device,
        cast: Callable[[torch.Tensor], torch.Tensor],
    ):
        split = one_split(data, samples=samples, seed=seed)
        bs = batch_size or split.batch_size or DEFAULT_BATCH
        self.kind, raw = batches_of(split, bs)
        raw = list(raw)
        keep = device.type == "cpu" or sum(map(_nbytes, raw)) <= DEVICE_DATA_BUDGET
        self.device, self.cast, self.on_device = device, cast, keep
        self.batches = [to_device(b, device, cast) if keep else b for b in raw]
        self.rows = [rows_of(b) for b in raw]
        self.n = sum(self.rows)
        self.keys: set[str] | None = None
        self.counts: list[float] | None = None  # items each batch's loss averages (model_loss)

    def prepare(self, model: torch.nn.Module) -> None:
        """Record the keywords the model takes (dict batches)."""
        self.keys = accepted(model) if self.kind == "dict" else None

    def batch(self, i: int) -> Any:
        b = self.batches[i]
        return b if self.on_device else to_device(b, self.device, self.cast)

    def outputs(self, model: torch.nn.Module, state: Mapping[str, torch.Tensor], i: int) -> Any:
        """The model at ``state`` on batch ``i``."""
        return call_at(model, state, self.batch(i), self.kind, self.keys)

    def target(self, i: int) -> Any:
        """What the loss gets beside the outputs: the target, or the dict batch."""
        return metric_input(self.batch(i), self.kind)

    def loss(self, loss_fn: Callable, outputs: Any, i: int) -> tuple[torch.Tensor, float]:
        """``(mean loss of batch i, its weight in the split's mean)``, the loss checked."""
        result = loss_fn(outputs, self.target(i))
        if isinstance(result, tuple) and len(result) == 2:  # (total, count): model_loss
            total, count = result
            count = float(count)
            if self.counts is None:
                raise InputError(
                    "loss_fn returned (total, count): call Data.count(...) before the products"
                )
            check_loss(total, i)
            return total / count, count / sum(self.counts)
        check_loss(result, i)
        return result, self.rows[i] / self.n

    def count(
        self, model: torch.nn.Module, state: Mapping[str, torch.Tensor], loss_fn: Callable
    ) -> None:
        """One pass without gradients: the items each batch's loss averages over."""
        counts = []
        with torch.no_grad():
            for i in range(len(self.batches)):
                result = loss_fn(self.outputs(model, state, i), self.target(i))
                if not (isinstance(result, tuple) and len(result) == 2):
                    return  # a plain batch mean: rows weight the batches
                counts.append(float(result[1]))
        if not all(c > 0 for c in counts):
            raise InputError(
                "a batch's loss averages over no items (count 0): every batch "
                "needs at least one scored label"
            )
        self.counts = counts


def logits_of(outputs: Any) -> torch.Tensor:
    """The output tensor the loss reads: the outputs, or their ``.logits``."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    found = getattr(outputs, "logits", None)
    if found is None and isinstance(outputs, Mapping):
        found = outputs.get("logits")
    if not isinstance(found, torch.Tensor):
        raise InputTypeError(
            f"the model returns a {type(outputs).__name__}, not a tensor or outputs with "
            "`.logits`: the GGN and Fisher need the output tensor the loss reads"
        )
    return found
