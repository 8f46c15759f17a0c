"""Seeded SGD training that records the trajectory: θ0, θ̂, one checkpoint per epoch, history.

:func:`train` trains the user's model in place (that is its purpose, unlike
the scan functions, which never change the model) and returns a
:class:`TrainResult`. Given ``out``, it also writes the run to a folder::

    out/
      train.json                 settings, sizes, versions; "complete" once finished
      history.json               {"epoch": [...], "train_loss": [...], ...}
      theta0.safetensors         state_dict() before training (parameters and buffers)
      theta_hat.safetensors      state_dict() after the last epoch
      checkpoints/epoch_000.safetensors ... epoch_NNN.safetensors   (epoch 0 = θ0)

Every file is written to a temporary name and renamed into place, so a run
that is interrupted leaves whole files only; ``history.json`` is rewritten
after each epoch, so it always matches the checkpoints already on disk.
Nothing is pickled. :func:`load_run` reads a finished run back. A folder that
already holds files is refused unless ``overwrite=True``, so a rerun never
deletes an earlier run by accident.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..files import json_safe, write_json, write_state
from ..seeding import seeded_rng
from ..version import __version__
from .checks import Data, LossFn, _check_arguments, _check_class_outputs
from .evaluation import _evaluate
from .files import RUN_FOLDER, _checkpoint_path, _cpu_state, _describe_model, _loss_name
from .result import HISTORY_KEYS, RUN_FORMAT, RUN_VERSION, TrainResult

__all__ = ["train"]

# Evaluation batch sizes; the recorded means are exact whatever they are. On CPU
# moderate batches keep activations in cache: fashion_cnn forward over 10k
# images took 1.8 CPU-s at 256, 2.7 at 512 and 3.7 at 1024 (1 thread). On an
# accelerator, without gradients, bigger batches are faster.
_CPU_EVAL_BATCH = 256
_MIN_DEVICE_EVAL_BATCH = 1024


# --------------------------------------------------------------------------- train


def train(
    model: nn.Module,
    train_data: Data,
    test_data: Data | None = None,
    *,
    epochs: int = 25,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 512,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    loss_fn: LossFn | None = None,
    meta: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place with seeded mini-batch SGD, recording the trajectory.

    Each epoch visits every training sample once in an order drawn from a
    private ``torch.Generator`` seeded with ``seed`` (the last batch may be
    smaller). After each epoch, and once before the first (epoch 0), the model
    is evaluated in eval mode under ``torch.no_grad()`` on the whole train and
    test sets. The model is in train mode during the epochs; when ``train``
    returns, every submodule's ``training`` flag is restored to what it was.

    Randomness: the batch order uses only the private generator. Random layers
    (dropout) must use torch's global generator; it is seeded with ``seed``
    inside ``torch.random.fork_rng``, so the masks are reproducible and the
    caller's global RNG state is the same after ``train`` as before. The same
    seed, data, initial model and settings give a bit-identical ``theta_hat``
    and ``history`` on the same machine and thread count (on CUDA, also set
    ``torch.use_deterministic_algorithms(True)``).

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place; moved to ``device`` if one is given. Only parameters
        with ``requires_grad`` are updated.
    train_data : (torch.Tensor, torch.Tensor)
        Inputs X, shape (N, ...), and targets y, shape (N,) (int64 class indices
        for the default cross-entropy loss).
    test_data : (torch.Tensor, torch.Tensor), optional
        Evaluated after each epoch; without it the test entries of the history
        are NaN. X must have the same per-sample shape as ``train_data``'s.
    epochs : int
        Number of passes over the training data, >= 1 (default 25).
    lr : float
        SGD learning rate, > 0 (default 0.01).
    momentum : float
        SGD momentum, in [0, 1) (default 0.9).
    batch_size : int
        Training mini-batch size, >= 1 (default 512). Evaluation uses its own
        batch size (256 on CPU, at least 1024 elsewhere); the recorded means do
        not depend on it.
    seed : int
        Seed of the batch order and the dropout masks, >= 0 (default 0). The
        model's initialisation is the caller's (the builders of
        :mod:`lossmap.models` take a ``seed``; ``lossmap train`` passes its own).
    out : str or os.PathLike, optional
        Folder to write the run to (created if needed); see the module docstring
        for the layout. It must be new or empty unless ``overwrite``: a folder
        that holds anything, an earlier run (even of the same settings; runs are
        not resumed) or other files, is refused with a message that names what
        it holds.
    overwrite : bool
        Write into a folder that is not empty (default False). The earlier
        run's own files (``train.json``, ``history.json``, ``theta0`` and
        ``theta_hat.safetensors``, ``checkpoints/epoch_NNN.safetensors``) are
        deleted, once every argument has been checked, so that the folder
        describes one run; any other file or subfolder is left alone.
    progress : bool
        Show a progress bar over the batches of all epochs, with the running
        training loss (default True).
    device : str or torch.device, optional
        Where to train; default: the device of the model's parameters. The data
        is moved there once.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)`` returning the batch-mean loss; default
        ``torch.nn.functional.cross_entropy``.
    meta : mapping, optional
        Extra JSON-serialisable facts recorded under ``"meta"`` in
        ``train.json`` (``lossmap train`` stores the data set and model names
        there, so the model can be rebuilt).

    Returns
    -------
    TrainResult
        θ0, θ̂, the history (``epochs + 1`` entries) and the checkpoint paths.

    Raises
    ------
    InputError, InputTypeError
        If an argument breaks a rule above; the message names it and the fix.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> X = torch.randn(64, 4); y = (X[:, 0] > 0).long()
    >>> model = nn.Sequential(nn.Linear(4, 2))
    >>> result = train(model, (X, y), epochs=2, lr=0.1, batch_size=16, progress=False)
    >>> result.history["epoch"]
    [0, 1, 2]
    >>> result.history["train_loss"][-1] < result.history["train_loss"][0]
    True
    """
    # ---- validate at the boundary
    (epochs, lr, momentum, batch_size, seed, X_train, y_train, X_test, y_test, trainable, meta,
     device, out_dir) = _check_arguments(
        model, train_data, test_data, epochs=epochs, lr=lr, momentum=momentum,
        batch_size=batch_size, seed=seed, out=out, overwrite=overwrite, progress=progress,
        device=device, loss_fn=loss_fn, meta=meta,
    )
    if out_dir is not None:
        RUN_FOLDER.check(out_dir, overwrite)

    criterion: LossFn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(device)
    X_train, y_train = X_train.to(device), y_train.to(device)
    if test_data is not None:
        X_test, y_test = X_test.to(device), y_test.to(device)
    if loss_fn is None:
        _check_class_outputs(model, X_train, y_train, X_test, y_test)
    n_train = len(X_train)
    n_batches = -(-n_train // batch_size)
    eval_batch = (
        _CPU_EVAL_BATCH if device.type == "cpu" else max(batch_size, _MIN_DEVICE_EVAL_BATCH)
    )
    flags = [(m, m.training) for m in model.modules()]

    settings: dict[str, Any] = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "complete": False,
        "epochs": epochs,
        "lr": lr,
        "momentum": momentum,
        "batch_size": batch_size,
        "seed": seed,
        "loss": _loss_name(loss_fn),
        "optimizer": "torch.optim.SGD",
        "device": str(device),
        "model": _describe_model(model),
        "data": {
            "train": n_train,
            "test": 0 if test_data is None else len(X_test),
            "input_shape": list(X_train.shape[1:]),
            "input_dtype": str(X_train.dtype).removeprefix("torch."),
        },
        "torch": torch.__version__,
        "lossmap": __version__,
        "threads": torch.get_num_threads(),
        "meta": meta or {},
    }
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    checkpoints: list[Path] = []

    def record(epoch: int, started: float) -> None:
        model.eval()
        train_loss, train_acc = _evaluate(model, X_train, y_train, criterion, eval_batch)
        if test_data is not None:
            test_loss, test_acc = _evaluate(model, X_test, y_test, criterion, eval_batch)
        else:
            test_loss = test_acc = math.nan
        for key, value in zip(
            HISTORY_KEYS,
            (epoch, train_loss, train_acc, test_loss, test_acc, time.perf_counter() - started),
            strict=True,
        ):
            history[key].append(value)
        if out_dir is not None:
            path = _checkpoint_path(out_dir, epoch)
            write_state(path, _cpu_state(model), {"format": RUN_FORMAT, "epoch": str(epoch)})
            checkpoints.append(path)
            write_json(out_dir / "history.json", {k: json_safe(v) for k, v in history.items()})

    started = time.perf_counter()
    theta0 = _cpu_state(model)
    if out_dir is not None:
        RUN_FOLDER.clear(out_dir)  # one folder, one run; refused above unless overwrite
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "train.json", settings)
        write_state(out_dir / "theta0.safetensors", theta0, {"format": RUN_FORMAT, "epoch": "0"})

    order = torch.Generator(device="cpu").manual_seed(seed)
    optimizer = torch.optim.SGD(trainable, lr=lr, momentum=momentum)
    bar = tqdm(
        total=epochs * n_batches,
        disable=not progress,
        desc="train",
        unit="batch",
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
    )
    warned = False
    try:
        with seeded_rng(seed, device):
            record(0, started)
            bar.set_postfix_str(f"epoch 0 loss {history['train_loss'][0]:.4f}", refresh=False)
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                perm = torch.randperm(n_train, generator=order).to(device)  # (N,)
                model.train()
                running = torch.zeros((), dtype=torch.float64, device=device)
                for b in range(n_batches):
                    index = perm[b * batch_size : (b + 1) * batch_size]  # (B,)
                    optimizer.zero_grad(set_to_none=True)
                    loss = criterion(model(X_train[index]), y_train[index])
                    loss.backward()
                    optimizer.step()
                    running += loss.detach().double()
                    bar.update(1)
                    if progress and (b % 10 == 9 or b == n_batches - 1):
                        bar.set_postfix_str(
                            f"epoch {epoch} loss {float(running) / (b + 1):.4f}", refresh=False
                        )
                record(epoch, started)
                bar.set_postfix_str(
                    f"epoch {epoch} train {history['train_loss'][-1]:.4f} "
                    f"test {history['test_loss'][-1]:.4f}",
                    refresh=False,
                )
                if not warned and not math.isfinite(history["train_loss"][-1]):
                    warned = True
                    warnings.warn(
                        f"training diverged at epoch {epoch} (train loss "
                        f"{history['train_loss'][-1]}); try a smaller lr than {lr}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
    finally:
        bar.close()
        optimizer.zero_grad(set_to_none=True)
        for m, was_training in flags:
            m.training = was_training

    theta_hat = _cpu_state(model)
    finals = [k for k in HISTORY_KEYS if k != "epoch"]
    settings["complete"] = True
    settings["seconds"] = sum(history["seconds"])
    settings["final"] = dict(zip(finals, json_safe([history[k][-1] for k in finals]), strict=True))
    if out_dir is not None:
        write_state(
            out_dir / "theta_hat.safetensors",
            theta_hat,
            {"format": RUN_FORMAT, "epoch": str(epochs)},
        )
        write_json(out_dir / "train.json", settings)
    return TrainResult(theta0, theta_hat, history, checkpoints, out_dir, settings)
