"""The original notebook's training loop in JAX: optax SGD with momentum, jitted steps.

:func:`train` trains a Flax (linen) classifier with mini-batch SGD (lr 0.01,
momentum 0.9, batch 512 by default, as the original), a seeded shuffle every
epoch and softmax cross-entropy, and records the trajectory the way
:func:`lossmap.train.train` does. Given ``out`` it writes::

    out/
      train.json                 settings and sizes; "complete" once finished
      history.json               {"epoch": [...], "train_loss": [...], ...}
      theta0.safetensors         the variables before training
      theta_hat.safetensors      the variables after the last epoch
      checkpoints/epoch_000.safetensors ... epoch_NNN.safetensors   (epoch 0 = θ0)

Each safetensors file holds the variables flattened to ``/``-joined names
(``"params/Conv_0/kernel"`` …, the names lossmap's JAX backend uses), written
with ``safetensors.numpy``; :func:`load_variables` reads one back as nested
variables. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from ..files import json_safe, write_atomic, write_json
from ..train.files import RUN_FOLDER
from ..train.result import HISTORY_KEYS, TrainResult
from .convert import flatten_variables, unflatten_variables

__all__ = ["HISTORY_KEYS", "TrainResult", "load_variables", "save_variables", "train"]

RUN_FORMAT = "lossmap-jax-train-run"
_EVAL_BATCH = 1024


def save_variables(variables: Mapping[str, Any], path: str | os.PathLike[str],
                   metadata: Mapping[str, str] | None = None) -> Path:
    """Write variables as safetensors keyed by flattened names (atomically).

    Parameters
    ----------
    variables : mapping
        Nested variables (or already flat ``name → array``).
    path : str or os.PathLike
        The file to write.
    metadata : mapping of str to str, optional
        Stored in the file's header.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    flat = {n: np.ascontiguousarray(np.asarray(a)) for n, a in flatten_variables(variables).items()}
    write_atomic(path, lambda tmp: save_file(flat, tmp, metadata=dict(metadata or {})))
    return path


def load_variables(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`save_variables` back as nested variables of ``jax.Array``."""
    return unflatten_variables({n: jnp.asarray(a) for n, a in load_file(str(path)).items()})


def _arrays(data: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        X, y = data
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be an (X, y) pair; got {type(data).__name__}") from None
    X, y = (a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a) for a in (X, y))
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"{what}: X has {len(X)} samples and y {len(y)}; need the same, > 0")
    return X.astype(np.float32, copy=False), y.astype(np.int32, copy=False)


@functools.lru_cache(maxsize=8)
def _programs(module: nn.Module, lr: float, momentum: float) -> tuple[Any, Any, Any]:
    """The optimizer and the jitted train step and evaluation, shared by calls with equal args."""
    tx = optax.sgd(lr, momentum=momentum)

    def loss_fn(p, rest, x, y, key):
        logits = module.apply({"params": p, **rest}, x, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, rest, opt_state, x, y, key):
        loss, grads = jax.value_and_grad(loss_fn)(p, rest, x, y, key)
        updates, opt_state = tx.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    @jax.jit
    def eval_sums(p, rest, x, y):
        logits = module.apply({"params": p, **rest}, x, train=False)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return losses.sum(), (jnp.argmax(logits, -1) == y).sum()

    return tx, step, eval_sums


def train(
    module: nn.Module,
    variables: Mapping[str, Any],
    train_data: Any,
    test_data: Any = None,
    *,
    epochs: int = 25,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 512,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train a Flax classifier with seeded mini-batch SGD, recording the trajectory.

    Each epoch visits every training sample once, in the order
    ``jax.random.permutation(fold_in(key, epoch), N)`` with
    ``key = PRNGKey(seed)`` (the last batch may be smaller). One jitted step
    computes the mean softmax cross-entropy, its gradient and the optax
    ``sgd(lr, momentum)`` update (the same update as ``torch.optim.SGD``).
    Dropout, if the module has any, draws its masks from keys folded from
    ``seed`` and the step number. Before the first epoch and after each one the
    model is evaluated (``train=False``) on the whole train and test sets. The
    same arguments give the same result on the same machine.

    Parameters
    ----------
    module : flax.linen.Module
        Called as ``module.apply(variables, x, train=...)``, returning logits
        (N, C); e.g. :func:`lossmap.jax.cnn.fashion_cnn`.
    variables : mapping
        The initial variables (``{"params": …}``); not modified. Collections
        other than ``params`` are passed through unchanged.
    train_data : (array_like, array_like)
        Inputs X (N, ...) in the module's layout (NHWC for the CNN) and integer
        labels y (N,); NumPy, JAX or CPU torch arrays.
    test_data : (array_like, array_like), optional
        Evaluated after each epoch; without it the test entries are NaN.
    epochs : int
        Passes over the training data, >= 1 (default 25).
    lr : float
        Learning rate, > 0 (default 0.01).
    momentum : float
        Momentum, in [0, 1) (default 0.9).
    batch_size : int
        Training mini-batch size, >= 1 (default 512).
    seed : int
        Seed of the shuffle and the dropout masks (default 0).
    out : str or os.PathLike, optional
        Folder to write the run to (see the module docstring); new or empty
        unless ``overwrite``, as for :func:`lossmap.train.train`.
    overwrite : bool
        Replace the run files of an earlier run in ``out`` (other files are
        kept); default False: refuse a folder that is not empty.
    progress : bool
        Show a progress bar over the batches (default True).

    Returns
    -------
    TrainResult
        θ0, θ̂, the history (``epochs + 1`` entries) and the checkpoint paths.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.jax.cnn import digits_cnn, init
    >>> X = np.random.default_rng(0).random((64, 8, 8, 1), np.float32)
    >>> y = np.arange(64) % 10
    >>> r = train(digits_cnn(), init(0, digits_cnn()), (X, y), epochs=2, lr=0.1,
    ...           batch_size=16, progress=False)
    >>> r.history["epoch"]
    [0, 1, 2]
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} must be an integer >= 1")
    if not lr > 0 or not 0 <= momentum < 1 or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"need lr > 0, 0 <= momentum < 1, batch_size >= 1; got {lr}, "
                         f"{momentum}, {batch_size}")
    X_train, y_train = _arrays(train_data, "train_data")
    X_test, y_test = (None, None) if test_data is None else _arrays(test_data, "test_data")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite={overwrite!r} must be True or False")
    out_dir = None if out is None else Path(out)
    if out_dir is not None:
        RUN_FOLDER.check(out_dir, overwrite)  # before anything is deleted
    variables = {k: v for k, v in variables.items()}
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    try:
        hash(module)
        programs = _programs
    except TypeError:  # an unhashable module: compile for this call only
        programs = _programs.__wrapped__
    tx, step, eval_sums = programs(module, float(lr), float(momentum))

    def evaluate(p, X, y) -> tuple[float, float]:
        if X is None:
            return math.nan, math.nan
        loss = correct = 0.0
        for i in range(0, len(X), _EVAL_BATCH):
            s, c = eval_sums(p, rest, X[i : i + _EVAL_BATCH], y[i : i + _EVAL_BATCH])
            loss, correct = loss + float(s), correct + float(c)
        return loss / len(X), correct / len(X)

    n, n_batches = len(X_train), -(-len(X_train) // batch_size)
    settings: dict[str, Any] = {
        "format": RUN_FORMAT, "complete": False, "epochs": epochs, "lr": lr,
        "momentum": momentum, "batch_size": batch_size, "seed": seed, "loss": "cross_entropy",
        "optimizer": "optax.sgd", "module": repr(module),
        "data": {"train": n, "test": 0 if X_test is None else len(X_test),
                 "input_shape": list(X_train.shape[1:])},
        "jax": jax.__version__, "backend": jax.default_backend(),
    }
    history: dict[str, list] = {k: [] for k in HISTORY_KEYS}
    checkpoints: list[Path] = []

    def record(epoch: int, p, started: float) -> None:
        values = (epoch, *evaluate(p, X_train, y_train), *evaluate(p, X_test, y_test),
                  time.perf_counter() - started)
        for key, value in zip(HISTORY_KEYS, values, strict=True):
            history[key].append(value)
        if out_dir is not None:
            path = out_dir / "checkpoints" / f"epoch_{epoch:03d}.safetensors"
            save_variables({"params": p, **rest}, path, {"format": RUN_FORMAT, "epoch": str(epoch)})
            checkpoints.append(path)
            write_json(out_dir / "history.json", {k: json_safe(v) for k, v in history.items()})

    if out_dir is not None:
        RUN_FOLDER.clear(out_dir)  # one folder, one run; refused above unless overwrite
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "train.json", settings, default=str)
        save_variables(variables, out_dir / "theta0.safetensors", {"format": RUN_FORMAT})

    key = jax.random.PRNGKey(seed)
    shuffle_key, dropout_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    opt_state = tx.init(params)
    bar = tqdm(total=epochs * n_batches, disable=not progress, desc="train (jax)", unit="batch",
               dynamic_ncols=True, file=sys.stderr)
    try:
        record(0, params, time.perf_counter())
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
            for b in range(n_batches):
                index = perm[b * batch_size : (b + 1) * batch_size]
                k = jax.random.fold_in(dropout_key, (epoch - 1) * n_batches + b)
                params, opt_state, loss = step(params, rest, opt_state, X_train[index],
                                               y_train[index], k)
                bar.update(1)
                if progress and (b % 10 == 9 or b == n_batches - 1):
                    bar.set_postfix_str(f"epoch {epoch} loss {float(loss):.4f}", refresh=False)
            record(epoch, params, started)
    finally:
        bar.close()

    theta_hat = {"params": params, **rest}
    settings.update(complete=True, seconds=sum(history["seconds"]),
                    final=dict(zip(HISTORY_KEYS[1:], json_safe(
                        [history[k][-1] for k in HISTORY_KEYS[1:]]), strict=True)))
    if out_dir is not None:
        save_variables(theta_hat, out_dir / "theta_hat.safetensors",
                       {"format": RUN_FORMAT, "epoch": str(epochs)})
        write_json(out_dir / "train.json", settings, default=str)
    return TrainResult(dict(variables), theta_hat, history, checkpoints, out_dir, settings)
