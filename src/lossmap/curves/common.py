"""What :func:`lossmap.curve` and :func:`lossmap.neb` share: argument checks, data, the loss.

Both evaluate the model through ``torch.func.functional_call`` with a state of
their own (parameters along the path, copies of ``model_a``'s buffers) in
train mode, so BatchNorm normalizes each batch with its own statistics (as
Garipov et al. do) and the user's tensors are never written. The user's model
is held by :func:`lossmap.backends.torch.restore.preserved`, which puts back its
modes and tensors whatever happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .. import checks
from .. import params as P
from ..errors import InputError, InputTypeError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_int(name: str, value: Any, minimum: int, why: str) -> int:
    """``value`` if it is an int >= ``minimum``; else a message naming the rule."""
    return checks.check_int(value, f"`{name}`", minimum=minimum, why=why)


def check_float(name: str, value: Any, *, low: float = 0.0, strict: bool = True,
                high: float = math.inf) -> float:
    """``value`` as a float in (low, high) (or [low, high) unless ``strict``)."""
    return checks.check_float(value, f"`{name}`", low=low, high=high, strict=strict)


def check_models(model_a: Any, model_b: Any) -> tuple[dict, dict, dict]:
    """The two models' parameters and ``model_a``'s buffers, after checking they match.

    Returns detached views (never written): ``(params_a, params_b, buffers_a)``.
    """
    if not isinstance(model_a, nn.Module):
        raise InputTypeError(
            f"model_a is a {type(model_a).__name__}; pass the torch.nn.Module (its forward is "
            "what the path is evaluated with)"
        )
    if isinstance(model_b, nn.Module):
        pb = P.parameters_of(model_b)
    elif isinstance(model_b, Mapping):
        pb = P.parameter_state(model_b)
    else:
        raise InputTypeError(
            f"model_b is a {type(model_b).__name__}; pass an nn.Module or its state dict"
        )
    pa = P.parameters_of(model_a)
    if not pa:
        raise InputError("model_a has no parameters: there is no path to find")
    try:
        P.check_same_layout(pa, pb, what="model_b", ref_what="model_a")
    except InputError as exc:
        raise InputError(f"{exc}; pass two models of the same architecture") from None
    for name, t in pa.items():
        if not t.is_floating_point() or pb[name].dtype != t.dtype:
            raise InputError(
                f"model_b has dtype {pb[name].dtype} for {name!r} but model_a has {t.dtype}: "
                "convert both to one floating-point dtype (model.float())"
            )
    return pa, pb, P.buffers_of(model_a)


def train_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The training samples: an (X, y) pair, a DataLoader, or a dict of splits ("train")."""
    from ..data.splits import as_split

    if isinstance(data, Mapping):
        if not data:
            raise InputError("data is empty: pass (X, y) or {'train': (X, y)}")
        name = "train" if "train" in data else next(iter(data))
        split = as_split(data[name], str(name))
    else:
        split = as_split(data, "train")
    return split.X, split.y


def check_loss(loss_fn: Any) -> LossFn:
    """``loss_fn`` if callable."""
    return checks.check_loss_fn(loss_fn)


def batch_loss(model: nn.Module, state: dict, buffers: dict, loss_fn: LossFn,
               X: torch.Tensor, y: torch.Tensor, *, first: bool = False) -> torch.Tensor:
    """``loss_fn(model(X), y)`` with the model's tensors replaced by ``state`` and ``buffers``.

    ``first``: wrap an exception (the first batch) in a message about model and data.
    """
    if not first:
        return loss_fn(functional_call(model, {**state, **buffers}, (X,)), y)
    try:
        loss = loss_fn(functional_call(model, {**state, **buffers}, (X,)), y)
    except Exception as exc:
        raise InputError(
            f"the loss of model_a on the data failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}): check that the data fits the "
            "model and loss_fn(outputs, targets) returns a scalar"
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InputTypeError(
            "loss_fn must return the batch's mean loss as a one-element tensor, got "
            f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}"
        )
    return loss.reshape(())
