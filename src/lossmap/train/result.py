"""What a training run produced: :class:`TrainResult`, and :func:`load_run` to read one back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .files import _read_run

__all__ = ["HISTORY_KEYS", "RUN_FORMAT", "RUN_VERSION", "TrainResult", "load_run"]

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


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced (or :func:`load_run` read back).

    :func:`lossmap.jax.train.train` returns one too, with nested Flax
    variables (``jax.Array`` leaves) as ``theta0`` and ``theta_hat``.

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
    return TrainResult(*_read_run(out_dir, RUN_FORMAT, RUN_VERSION, HISTORY_KEYS))
