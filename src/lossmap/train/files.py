"""The run folder of :func:`lossmap.train.train`: its files, what it records, reading back.

The layout is described in :mod:`lossmap.train`. Parameters are stored as
safetensors and everything else as JSON; nothing is pickled. Every file is
written to a temporary name and renamed into place (:mod:`lossmap.files`).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MissingFileError, StoreError
from ..files import OutputFolder, cpu_copies
from .checks import LossFn

#: The files a run writes at the top of its folder; ``checkpoints/`` holds the rest.
RUN_FILES = ("train.json", "history.json", "theta0.safetensors", "theta_hat.safetensors")

#: A run's folder: :data:`RUN_FILES` and ``checkpoints/epoch_NNN.safetensors``
#: (``RUN_FOLDER.check(out, overwrite)`` refuses a used folder, ``.clear(out)``
#: deletes an earlier run's files and nothing else).
RUN_FOLDER = OutputFolder(
    what="run",
    files=RUN_FILES,
    numbered=re.compile(r"epoch_\d+\.safetensors"),
    numbered_word="checkpoint",
    subfolder="checkpoints",
    out_hint="`out` / --out",
    overwrite_hint="overwrite=True / --overwrite",
)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of ``model.state_dict()`` (parameters and buffers)."""
    return cpu_copies(model.state_dict().items())


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


def _read_run(
    out_dir: str | os.PathLike[str],
    run_format: str,
    run_version: int,
    history_keys: tuple[str, ...],
) -> tuple[dict, dict, dict, list[Path], Path, dict]:
    """The fields of :class:`~lossmap.train.TrainResult` for the run in ``out_dir``.

    The body of :func:`lossmap.train.load_run`, which documents the errors;
    ``run_format``, ``run_version`` and ``history_keys`` are that module's
    ``RUN_FORMAT``, ``RUN_VERSION`` and ``HISTORY_KEYS``.
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
    if not isinstance(settings, dict) or settings.get("format") != run_format:
        raise StoreError(f"{str(spec_path)!r} is not a lossmap training run description")
    if settings.get("version") != run_version:
        raise StoreError(
            f"run {str(out)!r} has layout version {settings.get('version')!r}; this lossmap "
            f"reads version {run_version}: use the lossmap version that wrote it"
        )
    if not isinstance(raw, dict) or any(not isinstance(raw.get(k), list) for k in history_keys):
        raise StoreError(f"run {str(out)!r}: history.json lacks one of {', '.join(history_keys)}")
    history = {
        k: [math.nan if v is None else v for v in raw[k]] if k != "epoch" else list(raw[k])
        for k in history_keys
    }
    if not settings.get("complete") or not (out / "theta_hat.safetensors").exists():
        raise StoreError(
            f"run {str(out)!r} did not finish ({len(history['epoch']) - 1} of "
            f"{settings.get('epochs')} epochs recorded): train again into it with "
            "overwrite=True / --overwrite"
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
    return theta0, theta_hat, history, checkpoints, out, settings
