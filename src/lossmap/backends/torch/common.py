"""What every PyTorch evaluator reports the same way: its columns, precision and errors."""

from __future__ import annotations

import contextlib

import torch

from ..base import Evaluator


class EvaluatorBase(Evaluator):
    """Shared by :class:`~lossmap.backends.torch.evaluator.Evaluator` and the batch evaluator.

    Subclasses set ``metrics`` (dict), ``split_names`` (list), ``device`` and
    ``autocast`` (a dtype or None).
    """

    metrics: dict
    split_names: list[str]
    device: torch.device
    autocast: torch.dtype | None = None

    @property
    def variables(self) -> list[str]:
        """Column names, ``split_metric``, in the order ``evaluate`` returns them."""
        return [f"{s}_{m}" for s in self.split_names for m in self.metrics]

    @property
    def precision(self) -> str:
        """"full", or the autocast dtype's name."""
        return str(self.autocast).replace("torch.", "") if self.autocast else "full"

    @property
    def errors(self) -> bool:
        """Standard errors are given (NaN for a metric without per-example terms)."""
        return True

    def _precision(self) -> contextlib.AbstractContextManager:
        """``torch.autocast`` with the chosen dtype, or nothing (full precision)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)
