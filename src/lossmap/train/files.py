"""The run folder of :func:`lossmap.train.train`: what it records, atomic writes, reading back.

The layout is described in :mod:`lossmap.train`. Parameters are stored as
safetensors and everything else as JSON; nothing is pickled. Every file is
written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, MissingFileError, StoreError
from .checks import LossFn

#: The files a run writes at the top of its folder; ``checkpoints/`` holds the rest.
RUN_FILES = ("train.json", "history.json", "theta0.safetensors", "theta_hat.safetensors")
_CHECKPOINT = re.compile(r"epoch_\d+\.safetensors")
# The temporary name of an atomic write cut short (:func:`_write_atomic`): ".train.json.tmp123".
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.tmp\d+")


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU clones of ``model.state_dict()`` (parameters and buffers)."""
    return {
        name: t.detach().cpu().clone(memory_format=torch.contiguous_format)
        for name, t in model.state_dict().items()
    }


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


def _is_ours(entry: Path, names: Callable[[str], bool]) -> bool:
    """A plain file (not a link) whose name, or the name its temporary stands for, is a run's."""
    leftover = _LEFTOVER.fullmatch(entry.name)
    name = leftover["name"] if leftover else entry.name
    return entry.is_file() and not entry.is_symlink() and names(name)


def _run_entries(out: Path) -> tuple[list[Path], list[Path]]:
    """(the run files lossmap wrote, every other entry) in ``out``, which may not exist.

    Ours: :data:`RUN_FILES` and ``checkpoints/epoch_NNN.safetensors`` as plain
    files, and the temporaries of an interrupted write of either. Anything else,
    including a subfolder or a link, is the user's.
    """
    ours: list[Path] = []
    other: list[Path] = []
    if not out.is_dir():
        return ours, other
    for entry in sorted(out.iterdir()):
        if entry.name == "checkpoints" and entry.is_dir() and not entry.is_symlink():
            for inner in sorted(entry.iterdir()):
                (ours if _is_ours(inner, _CHECKPOINT.fullmatch) else other).append(inner)
        else:
            (ours if _is_ours(entry, RUN_FILES.__contains__) else other).append(entry)
    return ours, other


def _names(out: Path, entries: list[Path], limit: int = 6) -> str:
    """``"train.json, theta_hat.safetensors, 26 checkpoints"``: entries relative to ``out``."""
    checkpoints = [p for p in entries if p.parent != out and _CHECKPOINT.fullmatch(p.name)]
    rest = [
        p.relative_to(out).as_posix() + ("/" if p.is_dir() else "")
        for p in entries
        if p not in checkpoints
    ]
    rest.sort(key=lambda n: (RUN_FILES.index(n) if n in RUN_FILES else len(RUN_FILES), n))
    shown = rest[:limit] + ([f"{len(rest) - limit} more"] if len(rest) > limit else [])
    if checkpoints:
        shown.append(f"{len(checkpoints)} checkpoint{'s' if len(checkpoints) > 1 else ''}")
    return ", ".join(shown)


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a folder that is not empty, unless ``overwrite`` (see ``train``'s ``overwrite``).

    Raises :class:`~lossmap.errors.InputError` naming what the folder holds and
    the way out. Deletes nothing.
    """
    ours, other = _run_entries(out)
    where = str(out)
    if overwrite:
        blocking = [p for p in other if p.parent == out and p.name in (*RUN_FILES, "checkpoints")]
        if blocking:
            raise InputError(
                f"{where} holds {_names(out, blocking)} where the run writes its own files "
                f"({', '.join(RUN_FILES)} must be plain files, checkpoints a folder): "
                "move them away or choose another `out` / --out"
            )
        return
    if ours and not other:
        raise InputError(
            f"{where} holds another run ({_names(out, ours)}): pass overwrite=True / "
            "--overwrite to replace it, or choose another `out` / --out"
        )
    if other:
        run = f", and another run ({_names(out, ours)})" if ours else ""
        raise InputError(
            f"{where} holds files that are not a lossmap run ({_names(out, other)}){run}: "
            "choose an empty or new folder for `out` / --out, or pass overwrite=True / "
            "--overwrite to write the run there (a run's own files are replaced, others kept)"
        )


def _clear_run(out: Path) -> None:
    """Delete the run files of :func:`_run_entries` in ``out``, and nothing else."""
    for path in _run_entries(out)[0]:
        path.unlink(missing_ok=True)


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
