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
Nothing is pickled. :func:`load_run` reads a finished run back.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import __version__
from .errors import InputError, InputTypeError, MissingFileError, StoreError

__all__ = ["HISTORY_KEYS", "TrainResult", "load_run", "train"]

#: Identifies ``train.json``; bump ``RUN_VERSION`` when the folder layout changes.
RUN_FORMAT = "lossmap-train-run"
RUN_VERSION = 1

#: The lists of :attr:`TrainResult.history`, one entry per epoch (epoch 0 first).
HISTORY_KEYS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "seconds",
)

# Evaluation batch sizes; the recorded means are exact whatever they are. On CPU
# moderate batches keep activations in cache: fashion_cnn forward over 10k
# images took 1.8 CPU-s at 256, 2.7 at 512 and 3.7 at 1024 (1 thread). On an
# accelerator, without gradients, bigger batches are faster.
_CPU_EVAL_BATCH = 256
_MIN_DEVICE_EVAL_BATCH = 1024

Data = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced (or :func:`load_run` read back).

    Attributes
    ----------
    theta0 : dict of str to torch.Tensor
        ``model.state_dict()`` before training (parameters and buffers), CPU
        clones.
    theta_hat : dict of str to torch.Tensor
        ``model.state_dict()`` after the last epoch, CPU clones.
    history : dict of str to list
        ``HISTORY_KEYS`` → one value per epoch, epoch 0 (before training)
        first: the mean loss and accuracy on the whole train and test sets in
        eval mode, and ``seconds``, the wall time of that epoch (training plus
        its evaluation; for epoch 0 the evaluation only). Without test data the
        test entries are NaN; an accuracy that does not apply (outputs that are
        not class scores) is NaN.
    checkpoints : list of pathlib.Path
        ``out/checkpoints/epoch_000.safetensors`` … one per entry of
        ``history``; empty when ``out`` was not given.
    out : pathlib.Path or None
        The run folder, or None when nothing was written.
    settings : dict
        What ``train.json`` holds: the training settings, model and data
        description, versions.
    """

    theta0: dict[str, torch.Tensor]
    theta_hat: dict[str, torch.Tensor]
    history: dict[str, list]
    checkpoints: list[Path]
    out: Path | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's entries of ``history`` (``train_loss`` … ``seconds``)."""
        return {k: self.history[k][-1] for k in HISTORY_KEYS if k != "epoch"}


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: Any, minimum: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"`{name}`={value!r} must be an int ({why})")
    if value < minimum:
        raise InputError(f"`{name}`={value} must be >= {minimum} ({why})")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputTypeError(f"`{name}`={value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"`{name}`={value} must be finite")
    return value


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
    if device is None:
        for t in (*model.parameters(), *model.buffers()):
            return t.device
        return torch.device("cpu")
    if not isinstance(device, str | torch.device):
        raise InputTypeError(f"`device`={device!r} must be a str or torch.device, e.g. 'cpu'")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise InputError(
            f"`device`={device!r} is not a device ({exc}); use 'cpu', 'cuda', …"
        ) from None


# --------------------------------------------------------------------------- helpers


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generator(s) for the block, then restore the caller's state.

    Dropout and other random layers draw from the global generator of the
    device they run on, which cannot be swapped for a private one. Forking
    makes their masks a function of ``seed`` while leaving the caller's global
    RNG state exactly as it was. On CUDA the device's generator is forked and
    seeded too; on other accelerators only the CPU generator is.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.default_generator.manual_seed(seed)
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU clones of ``model.state_dict()`` (parameters and buffers)."""
    return {
        name: t.detach().cpu().clone(memory_format=torch.contiguous_format)
        for name, t in model.state_dict().items()
    }


@torch.no_grad()
def _evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, batch_size: int
) -> tuple[float, float]:
    """Mean loss and accuracy over all of (X, y), the model in its current mode.

    Batch means are weighted by batch size and summed in float64, so the result
    is the mean over samples whatever ``batch_size`` is. Accuracy is NaN when the
    outputs are not (N, C) class scores for integer targets.
    """
    n = len(X)
    loss_sum = torch.zeros((), dtype=torch.float64, device=X.device)
    correct = torch.zeros((), dtype=torch.float64, device=X.device)
    classes = not (y.is_floating_point() or y.is_complex()) and y.ndim == 1
    for start in range(0, n, batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        outputs = model(xb)  # (B, C) for a classifier
        loss_sum += loss_fn(outputs, yb).double() * len(xb)
        if classes and outputs.ndim == 2:
            correct += (outputs.argmax(dim=1) == yb).sum().double()
        else:
            classes = False
    return float(loss_sum) / n, (float(correct) / n if classes else math.nan)


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


def _json_safe(values: list) -> list:
    """NaN/inf → None, since JSON has no such numbers (read back as NaN)."""
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path`` (same folder, so atomic)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.write("\n")

    _write_atomic(path, write)


def _write_state(path: Path, state: Mapping[str, torch.Tensor], meta: Mapping[str, str]) -> None:
    from safetensors.torch import save

    blob = save(dict(state), metadata=dict(meta))  # safetensors bytes, never a pickle

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    _write_atomic(path, write)


def _checkpoint_path(out: Path, epoch: int) -> Path:
    return out / "checkpoints" / f"epoch_{epoch:03d}.safetensors"


def _describe_model(model: nn.Module) -> dict[str, Any]:
    params = list(model.parameters())
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "state_tensors": len(model.state_dict()),
        "repr": repr(model),
    }


def _loss_name(loss_fn: LossFn | None) -> str:
    if loss_fn is None:
        return "cross_entropy"
    name = getattr(loss_fn, "__qualname__", None) or type(loss_fn).__qualname__
    return f"{getattr(loss_fn, '__module__', None) or type(loss_fn).__module__}.{name}"


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
        model's initialisation is the caller's (``lossmap train`` seeds it).
    out : str or os.PathLike, optional
        Folder to write the run to (created if needed); see the module docstring
        for the layout. Checkpoints of an earlier run in the same folder are
        removed first so that the folder describes one run.
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

    criterion: LossFn = F.cross_entropy if loss_fn is None else loss_fn
    model.to(device)
    X_train, y_train = X_train.to(device), y_train.to(device)
    if test_data is not None:
        X_test, y_test = X_test.to(device), y_test.to(device)
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
        if epoch == 0 and loss_fn is None:
            _check_outputs(model, X_train, y_train, "train_data")
            if test_data is not None:
                _check_outputs(model, X_test, y_test, "test_data")
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
            _write_state(path, _cpu_state(model), {"format": RUN_FORMAT, "epoch": str(epoch)})
            checkpoints.append(path)
            _write_json(out_dir / "history.json", {k: _json_safe(v) for k, v in history.items()})

    started = time.perf_counter()
    theta0 = _cpu_state(model)
    if out_dir is not None:
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        # One folder, one run: drop an earlier run's trajectory and end point.
        for old in (out_dir / "checkpoints").glob("epoch_*.safetensors"):
            old.unlink()
        (out_dir / "theta_hat.safetensors").unlink(missing_ok=True)
        _write_json(out_dir / "train.json", settings)
        _write_state(out_dir / "theta0.safetensors", theta0, {"format": RUN_FORMAT, "epoch": "0"})

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
        with _seeded_global_rng(seed, device):
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
    settings["final"] = dict(zip(finals, _json_safe([history[k][-1] for k in finals]), strict=True))
    if out_dir is not None:
        _write_state(
            out_dir / "theta_hat.safetensors",
            theta_hat,
            {"format": RUN_FORMAT, "epoch": str(epochs)},
        )
        _write_json(out_dir / "train.json", settings)
    return TrainResult(theta0, theta_hat, history, checkpoints, out_dir, settings)


# --------------------------------------------------------------------------- load


def load_run(out_dir: str | os.PathLike[str]) -> TrainResult:
    """Read back a run that :func:`train` wrote to ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The folder given as ``out`` (or ``lossmap train --out``).

    Returns
    -------
    TrainResult
        θ0, θ̂ and the checkpoint paths of the saved run; ``history`` with NaN
        where the file holds null; ``settings`` from ``train.json``.

    Raises
    ------
    MissingFileError
        If the folder or its ``train.json`` does not exist.
    StoreError
        If the folder is not a lossmap training run, the run did not finish, or
        a file is missing or malformed.
    """
    from safetensors.torch import load_file

    out = Path(out_dir)
    if not out.is_dir():
        raise MissingFileError(f"run folder {str(out)!r} does not exist: check the path")
    spec_path = out / "train.json"
    if not spec_path.exists():
        raise MissingFileError(
            f"{str(out)!r} has no train.json, so it is not a training run: "
            "pass the folder given to lossmap train --out"
        )
    try:
        settings = json.loads(spec_path.read_text(encoding="utf-8"))
        raw = json.loads((out / "history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"run {str(out)!r} cannot be read: {exc}") from None
    if not isinstance(settings, dict) or settings.get("format") != RUN_FORMAT:
        raise StoreError(f"{str(spec_path)!r} is not a lossmap training run description")
    if settings.get("version") != RUN_VERSION:
        raise StoreError(
            f"run {str(out)!r} has layout version {settings.get('version')!r}; this lossmap "
            f"reads version {RUN_VERSION}: use the lossmap version that wrote it"
        )
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), list) for k in HISTORY_KEYS):
        raise StoreError(f"run {str(out)!r}: history.json lacks one of {', '.join(HISTORY_KEYS)}")
    history = {
        k: [math.nan if v is None else v for v in raw[k]] if k != "epoch" else list(raw[k])
        for k in HISTORY_KEYS
    }
    if not settings.get("complete") or not (out / "theta_hat.safetensors").exists():
        raise StoreError(
            f"run {str(out)!r} did not finish ({len(history['epoch']) - 1} of "
            f"{settings.get('epochs')} epochs recorded): train again with the same --out"
        )
    checkpoints = [_checkpoint_path(out, int(e)) for e in history["epoch"]]
    missing = [p for p in checkpoints if not p.exists()]
    if missing:
        raise StoreError(
            f"run {str(out)!r} lacks {len(missing)} checkpoint(s), e.g. {str(missing[0])!r}"
        )
    try:
        theta0 = load_file(str(out / "theta0.safetensors"))
        theta_hat = load_file(str(out / "theta_hat.safetensors"))
    except Exception as exc:  # safetensors raises its own error types
        raise StoreError(f"run {str(out)!r}: a parameter file cannot be read ({exc})") from None
    return TrainResult(theta0, theta_hat, history, checkpoints, out, settings)
