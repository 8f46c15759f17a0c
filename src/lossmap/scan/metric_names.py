"""Resolution of metric names: the loss and metrics of a scan, from what the caller gave.

One of the things lossmap calls "metrics": the functions themselves are in
:mod:`lossmap.metrics` (token metrics), the backends' built-ins and their reading of
a metric's result in :mod:`lossmap.backends.torch.metrics` and
:mod:`lossmap.backends.jax.metrics`, the rules in :mod:`lossmap.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..data.batches import Batches
from ..data.splits import Split
from ..errors import InputError, InputTypeError
from .spec import check_name


def resolve_metrics(metrics: Any, loss_fn: Callable,
                     builtin: Mapping[str, Callable]) -> dict[str, Callable]:
    if isinstance(metrics, (str, Mapping)) or callable(metrics):
        metrics = metrics.items() if isinstance(metrics, Mapping) else [metrics]
    out: dict[str, Callable] = {}
    for m in metrics:
        if isinstance(m, tuple) and len(m) == 2:
            name, fn = m
        elif m == "loss":
            name, fn = "loss", loss_fn
        elif isinstance(m, str) and m in builtin:
            name, fn = m, builtin[m]
        elif isinstance(m, str):
            raise InputError(
                f"unknown metric {m!r}: use 'loss', {', '.join(map(repr, builtin))} or a "
                "callable f(outputs, targets) returning the batch mean"
            )
        elif callable(m):
            name, fn = getattr(m, "__name__", type(m).__name__), m
        else:
            raise InputTypeError(f"metric {m!r} is neither a name nor a callable")
        check_name(name, what="metric")
        if name in out:
            raise InputError(f"metric {name!r} given twice")
        out[name] = fn
    if not out:
        raise InputError("metrics is empty: pass at least ('loss',)")
    return out


def default_loss(loss_fn: Callable | None, splits: list) -> Callable:
    """``loss_fn``, or for dict batches with None the model's own ``outputs.loss``."""
    if loss_fn is not None:
        return loss_fn
    if any(isinstance(s, Batches) and s.kind == "dict" for s in splits):
        from ..metrics import model_loss

        return model_loss
    raise InputTypeError("loss_fn is None: pass a callable loss_fn(outputs, targets), e.g. "
                         "torch.nn.CrossEntropyLoss() (None means the model's own outputs.loss, "
                         "for dict batches only)")


def no_accuracy(split: Split | Batches) -> bool:
    """Whether the built-in accuracy cannot apply: float targets or dict batches."""
    if isinstance(split, Batches):
        if split.kind == "dict":
            return True
        target = next(iter(split))[-1]
        return target.is_floating_point()
    return split.y.is_floating_point()


def loss_name(loss_fn: Callable) -> str:
    return getattr(loss_fn, "__name__", None) or type(loss_fn).__name__
