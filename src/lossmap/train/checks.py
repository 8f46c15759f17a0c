"""Argument checks of :func:`lossmap.train.train`.

Each check raises :class:`~lossmap.errors.InputError` or
:class:`~lossmap.errors.InputTypeError` with a message that names the argument
and the fix. :func:`_check_arguments` runs them at the boundary, in the order
``train`` documents; :func:`_check_class_outputs` runs once the model and data
are on the training device. Both run before anything is written or deleted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from .. import checks
from ..errors import InputError, InputTypeError
from ..params import resolve_device

#: A split given as tensors, and a loss ``f(outputs, targets) -> batch mean``.
Data = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_int(name: str, value: Any, minimum: int, why: str) -> int:
    return checks.check_int(value, f"`{name}`", minimum=minimum, why=why)


def _check_float(name: str, value: Any) -> float:
    return checks.check_float(value, f"`{name}`")


def _check_data(name: str, data: Any) -> Data:
    if isinstance(data, torch.utils.data.DataLoader | torch.utils.data.Dataset):
        raise InputTypeError(
            f"`{name}` is a {type(data).__name__}; train takes the tensors themselves: "
            "pass (X, y), e.g. lossmap.data.load('digits', 'train')"
        )
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise InputTypeError(
            f"`{name}` must be a pair (X, y) of tensors, got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
        )
    X, y = data
    for part, t in (("X", X), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(
                f"`{name}` {part} is a {type(t).__name__}, not a torch.Tensor: "
                f"convert it with torch.as_tensor({part.lower()})"
            )
        if t.ndim == 0:
            raise InputError(f"`{name}` {part} is a scalar; it needs a first (sample) dimension")
    if len(X) != len(y):
        raise InputError(
            f"`{name}` has {len(X)} inputs X but {len(y)} targets y: "
            "they must have the same first dimension (one target per sample)"
        )
    if len(X) == 0:
        raise InputError(f"`{name}` holds no samples (X has shape {tuple(X.shape)})")
    return X, y


def _check_class_targets(name: str, y: torch.Tensor) -> None:
    """Cross-entropy (the default loss) needs int64-like class indices >= 0."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputTypeError(
            f"`{name}` y has dtype {y.dtype}; the default cross-entropy loss needs integer "
            "class indices: pass y.long(), or give loss_fn= for other targets"
        )
    if y.ndim != 1:
        raise InputError(
            f"`{name}` y has shape {tuple(y.shape)}; class indices are one per sample, "
            "shape (N,): pass y.reshape(-1) or give loss_fn="
        )
    if int(y.min()) < 0:
        raise InputError(
            f"`{name}` y has a negative class index {int(y.min())}; classes are 0..C-1"
        )


def _check_device(device: Any, model: nn.Module) -> torch.device:
    return resolve_device(model, device)


def _check_outputs(model: nn.Module, X: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """For cross-entropy: the model must give (B, C) scores with C above every label."""
    with torch.no_grad():
        outputs = model(X[:2])
    if outputs.ndim != 2:
        raise InputError(
            f"the model returns outputs of shape {tuple(outputs.shape)} for 2 samples of "
            f"`{name}`; cross-entropy needs class scores of shape (N, C): give loss_fn= "
            "for other outputs"
        )
    if int(y.max()) >= outputs.shape[1]:
        raise InputError(
            f"`{name}` y has class index {int(y.max())} but the model gives only "
            f"{outputs.shape[1]} class scores: the labels must lie in 0..{outputs.shape[1] - 1}"
        )


def _check_class_outputs(
    model: nn.Module,
    X_train: torch.Tensor,
    y_train: torch.Tensor,
    X_test: torch.Tensor | None,
    y_test: torch.Tensor | None,
) -> None:
    """:func:`_check_outputs` on both splits in eval mode; every module's mode is restored."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        _check_outputs(model, X_train, y_train, "train_data")
        if X_test is not None and y_test is not None:
            _check_outputs(model, X_test, y_test, "test_data")
    finally:
        for m, was_training in flags:
            m.training = was_training


class _Arguments(NamedTuple):
    """:func:`~lossmap.train.train`'s arguments once checked, normalised where checking does."""

    epochs: int
    lr: float
    momentum: float
    batch_size: int
    seed: int
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor | None
    y_test: torch.Tensor | None
    trainable: list[nn.Parameter]
    meta: Any
    device: torch.device
    out_dir: Path | None


def _check_arguments(
    model: Any,
    train_data: Any,
    test_data: Any,
    *,
    epochs: Any,
    lr: Any,
    momentum: Any,
    batch_size: Any,
    seed: Any,
    out: Any,
    overwrite: Any,
    progress: Any,
    device: Any,
    loss_fn: LossFn | None,
    meta: Any,
) -> _Arguments:
    """Check :func:`~lossmap.train.train`'s arguments in order; return them normalised."""
    X_test = y_test = None
    if not isinstance(model, nn.Module):
        raise InputTypeError(
            f"`model` is a {type(model).__name__}, not a torch.nn.Module: pass the network itself"
        )
    epochs = _check_int("epochs", epochs, 1, "the number of passes over the training data")
    batch_size = _check_int("batch_size", batch_size, 1, "samples per SGD step")
    seed = _check_int("seed", seed, 0, "seeds the batch order and dropout")
    lr = _check_float("lr", lr)
    if lr <= 0:
        raise InputError(f"`lr`={lr} must be > 0 (the SGD step size), e.g. 0.01")
    momentum = _check_float("momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise InputError(f"`momentum`={momentum} must lie in [0, 1), e.g. 0.9 (0 for plain SGD)")
    if not isinstance(progress, bool):
        raise InputTypeError(f"`progress`={progress!r} must be True or False")
    if not isinstance(overwrite, bool):
        raise InputTypeError(f"`overwrite`={overwrite!r} must be True or False")
    if loss_fn is not None and not callable(loss_fn):
        raise InputTypeError(
            f"`loss_fn` is a {type(loss_fn).__name__}, not callable: pass a function "
            "loss_fn(outputs, targets) -> mean loss, or None for cross-entropy"
        )
    X_train, y_train = _check_data("train_data", train_data)
    if test_data is not None:
        X_test, y_test = _check_data("test_data", test_data)
        if X_test.shape[1:] != X_train.shape[1:]:
            raise InputError(
                f"`test_data` X has per-sample shape {tuple(X_test.shape[1:])} but `train_data` "
                f"X has {tuple(X_train.shape[1:])}: they must come from the same data set"
            )
    if loss_fn is None:
        _check_class_targets("train_data", y_train)
        if test_data is not None:
            _check_class_targets("test_data", y_test)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise InputError(
            "`model` has no parameter with requires_grad=True: nothing to train "
            "(unfreeze with p.requires_grad_(True))"
        )
    if meta is not None:
        if not isinstance(meta, Mapping):
            raise InputTypeError(f"`meta` must be a mapping, got {type(meta).__name__}")
        try:
            meta = json.loads(json.dumps(dict(meta), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"`meta` is not JSON-serialisable ({exc}): use str/int/float"
            ) from None
    device = _check_device(device, model)
    out_dir = None if out is None else Path(out)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"`out`={str(out_dir)!r} is a file; it must be a folder (or not exist)")
    return _Arguments(
        epochs,
        lr,
        momentum,
        batch_size,
        seed,
        X_train,
        y_train,
        X_test,
        y_test,
        trainable,
        meta,
        device,
        out_dir,
    )
