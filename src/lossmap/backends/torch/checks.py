"""Before any point is computed: the model and every metric run on a few samples; failures named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from ...data.splits import Split, check_samples
from ...errors import InputError
from .metrics import Metric, check_result


def check_on_sample(
    model: nn.Module,
    metrics: Mapping[str, Metric],
    state: Mapping[str, torch.Tensor],
    splits: Sequence[Split],
    device: torch.device,
) -> None:
    """Run the model and every metric on a few samples of each split; explain failures.

    Catches a split whose shapes do not fit the model, or targets a metric
    cannot use, before any point is computed or stored. The samples are the
    first two and those with the smallest and largest integer target
    (:func:`~lossmap.data.splits.check_samples`), so a label out of range in
    any sample is caught too.
    """
    state = {k: v.to(device) for k, v in state.items()}
    with torch.no_grad():
        for s in splits:
            idx = check_samples(s)
            X, y = s.X[idx].to(device), s.y[idx].to(device)
            try:
                outputs = functional_call(model, state, (X,))
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise InputError(
                    f"split {s.name!r}: the model fails on inputs of shape {tuple(s.X.shape[1:])} "
                    f"per sample ({_first_line(exc)}): the data does not match the model"
                ) from exc
            for name, fn in metrics.items():
                if name == "accuracy" and (
                    y.is_floating_point()
                    or not isinstance(outputs, torch.Tensor)
                    or outputs.dim() < 2
                ):
                    raise InputError(
                        f"metric 'accuracy' needs class logits (N, C) and integer targets; split "
                        f"{s.name!r} has targets of dtype {y.dtype}: use metrics=('loss',)"
                    )
                try:
                    result = fn(outputs, y)
                except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                    raise InputError(
                        f"split {s.name!r}: metric {name!r} fails on model outputs of shape "
                        f"{tuple(getattr(outputs, 'shape', ()))} and targets of shape "
                        f"{tuple(y.shape)} ({_first_line(exc)}){_label_range(outputs, y)}: the "
                        "targets do not match the model or the loss"
                    ) from exc
                check_result(name, result, len(y))


def _label_range(outputs: object, y: torch.Tensor) -> str:
    """``"; labels run 0..7 but ..."`` when integer targets fall outside the class scores."""
    if (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or not y.numel()
            or not isinstance(outputs, torch.Tensor) or outputs.dim() < 2):
        return ""
    lo, hi, c = int(y.min()), int(y.max()), outputs.shape[1]
    if lo >= 0 and hi < c:
        return ""
    return (f"; the labels run {lo}..{hi} but the model gives {c} class scores, "
            f"for labels 0..{c - 1}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
