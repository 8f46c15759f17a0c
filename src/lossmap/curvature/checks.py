"""Argument checks shared by the curvature operators (:mod:`lossmap.curvature`).

Each check raises :class:`~lossmap.errors.InputError` or
:class:`~lossmap.errors.InputTypeError` with a message that names the argument
and the fix; the helpers that resolve the centre, device and split live here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .. import params as P
from ..checks import (
    check_int,  # noqa: F401  (the one integer check)
    check_loss_fn,
)
from ..data.splits import as_split
from ..errors import InputError, InputTypeError


def check_model(model: Any, loss_fn: Any) -> None:
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model is a {type(model).__name__}; pass a torch.nn.Module")
    check_loss_fn(loss_fn)
    if not any(True for _ in model.parameters()):
        raise InputError("the model has no parameters: there is no curvature to compute")


def check_loss(loss: Any, batch: int) -> None:
    if not isinstance(loss, torch.Tensor):
        raise InputTypeError(
            f"loss_fn returned a {type(loss).__name__}; it must return a scalar tensor "
            "(the batch mean) that depends on the model's outputs"
        )
    if loss.dim() != 0:
        raise InputError(
            f"loss_fn returned shape {tuple(loss.shape)} on batch {batch}; it must return a "
            "scalar (the batch mean), e.g. a loss built with reduction='mean'"
        )
    if not loss.requires_grad:
        raise InputError(
            "the loss does not depend on the parameters (no gradient flows): loss_fn must not "
            "detach the outputs, call .item() or run under torch.no_grad()"
        )
    if not bool(torch.isfinite(loss.detach())):
        raise InputError(
            f"the loss is {float(loss.detach())} on batch {batch} at the centre: the curvature "
            "is undefined there; check the centre and the data"
        )


def check_params(params: Any, c_params: Mapping[str, torch.Tensor]) -> list:
    """The names of the parameters to differentiate with respect to, in model order.

    ``params`` is None (all), a list of names as in ``model.named_parameters()``,
    or a regular expression (a ``str`` that names no parameter, or an
    ``re.Pattern``) that selects every name it matches (``re.search``), e.g.
    ``"lora_"`` for LoRA adapters or ``r"^h\\.3\\."`` for one block.
    """
    if params is None:
        return list(c_params)
    if isinstance(params, re.Pattern) or (isinstance(params, str) and params not in c_params):
        try:
            pattern = re.compile(params)
        except re.error as exc:
            raise InputError(f"params={params!r} is neither a parameter name nor a valid regular "
                             f"expression ({exc})") from None
        chosen = [k for k in c_params if pattern.search(k)]
        if not chosen:
            raise InputError(
                f"params={params!r} matches no parameter name; names look like "
                f"{', '.join(list(c_params)[:6])}{' …' if len(c_params) > 6 else ''}"
            )
        return chosen
    if isinstance(params, str):
        params = [params]
    if not isinstance(params, Sequence) or not all(isinstance(p, str) for p in params):
        raise InputTypeError(
            f"params={params!r} must be a list of parameter names as in model.named_parameters()"
            " or a regular expression"
        )
    unknown = [p for p in params if p not in c_params]
    if unknown:
        raise InputError(
            f"params names {unknown[0]!r}, which the model does not have; choose from "
            f"{', '.join(list(c_params)[:8])}{' …' if len(c_params) > 8 else ''}"
        )
    if not params:
        raise InputError("params is empty: name at least one parameter, or pass None for all")
    chosen = set(params)
    return [k for k in c_params if k in chosen]


def device_of(model: nn.Module, device: Any) -> torch.device:
    return P.resolve_device(model, device)


def centre_state(model: nn.Module, centre: Any) -> tuple[dict, dict]:
    """Detached copies of the centre's (parameters, buffers), checked against the model."""
    params, buffers = P.resolve_centre(model, centre)
    return ({k: v.clone() for k, v in params.items()}, {k: v.clone() for k, v in buffers.items()})


def one_split(data: Any, *, samples: int | None, seed: int):
    """One split from a DataLoader, an (X, y) tuple, an iterable, or a one-entry dict."""
    name = "data"
    if isinstance(data, Mapping):
        if len(data) != 1:
            raise InputError(
                f"data holds {len(data)} splits ({', '.join(map(str, data))}); the curvature "
                "is of one split: pass that split alone, e.g. data=train_loader"
            )
        name, data = next(iter(data.items()))
    return as_split(data, name, samples=samples, seed=seed)

