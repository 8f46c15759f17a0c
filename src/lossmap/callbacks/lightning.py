"""Record a trajectory from a PyTorch Lightning ``Trainer``: ``LossmapCallback``.

Needs Lightning 2 (``pip install lossmap[lightning]``), which this module
imports; ``import lossmap`` and ``lossmap.callbacks`` never do::

    from lossmap.callbacks.lightning import LossmapCallback

    trainer = L.Trainer(max_steps=1000,
                        callbacks=[LossmapCallback("runs/trajectory", every_steps=100)])
    trainer.fit(module, loader)
    dirs = lm.pca_directions("runs/trajectory", 2)  # lm.scan(..., directions=dirs)

The callback derives from ``lightning.pytorch.Callback`` (the ``lightning``
package) or, where only the older ``pytorch_lightning`` package is installed,
from ``pytorch_lightning.Callback``: each trainer accepts its own package's
callbacks only. :data:`FRAMEWORK` says which one was found.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

try:
    import lightning.pytorch as pl

    FRAMEWORK = "lightning.pytorch"
except ImportError:  # the older distribution of the same framework
    import pytorch_lightning as pl

    FRAMEWORK = "pytorch_lightning"

from .recorder import TrajectoryRecorder, check_every, check_keep
from .sharpness import SharpnessRecorder


class LossmapCallback(pl.Callback):
    """A Lightning ``Callback`` that records θ of the LightningModule as it trains.

    It records the start (θ before the first step), every ``every_steps``-th
    optimizer step (``trainer.global_step``) and the end, through a
    :class:`~lossmap.TrajectoryRecorder` into ``out``, on the global-zero
    process only. The loss stored with a step is the training loss of the
    optimizer step that led to it: the ``"loss"`` that ``training_step``
    returned, summed over the batches of that step as Lightning scales them
    (their mean under gradient accumulation). The start has none.

    Parameters
    ----------
    out : str or path
        The folder to record into (see :class:`~lossmap.TrajectoryRecorder`);
        checked when training starts.
    every_steps : int, default 100
        Record every ``every_steps`` optimizer steps.
    keep : {"parameters", "state"}, default "parameters"
        Record the parameters only, or the whole ``state_dict()``.
    overwrite : bool, default False
        Replace a recording already in ``out`` (e.g. of an earlier ``fit``).

    Notes
    -----
    The weights are those of the whole LightningModule, named as in its
    ``named_parameters()`` (``"model.fc.weight"`` for a network kept in
    ``self.model``). Parameters sharded across processes (FSDP, DeepSpeed
    ZeRO-3) are not supported.

    Examples
    --------
    Not run as a doctest (importing Lightning takes seconds);
    ``tests/test_callbacks.py`` trains a small network with it.

    >>> from lossmap.callbacks.lightning import LossmapCallback  # doctest: +SKIP
    >>> callback = LossmapCallback("pl_trajectory", every_steps=50)  # doctest: +SKIP
    >>> trainer = L.Trainer(max_steps=200, callbacks=[callback])  # doctest: +SKIP
    >>> trainer.fit(module, loader)  # doctest: +SKIP
    >>> callback.recorder.steps  # doctest: +SKIP
    [0, 50, 100, 150, 200]
    >>> dirs = lm.pca_directions("pl_trajectory", 2)  # doctest: +SKIP
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        every_steps: int = 100,
        keep: str = "parameters",
        overwrite: bool = False,
    ) -> None:
        super().__init__()
        self.out = out
        self.every_steps = check_every(every_steps, "every_steps")
        self.keep = check_keep(keep)
        self.overwrite = overwrite
        #: The :class:`~lossmap.TrajectoryRecorder`, made when training starts (global zero).
        self.recorder: TrajectoryRecorder | None = None
        self._step = 0  # the global step the pending loss leads to
        # The loss summed over the batches since the last optimizer step, kept as a
        # tensor (on the model's device: no synchronisation until it is recorded).
        self._pending: torch.Tensor | float = 0.0
        self._last_loss: tuple[int | None, torch.Tensor | float] = (None, math.nan)

    def _record(self, module: torch.nn.Module, step: int, loss: torch.Tensor | float) -> None:
        rec = self.recorder
        if rec is not None and (not rec.steps or rec.steps[-1] != step):
            rec.record(module, step, loss, force=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Make the recorder (checking ``out``) and record the starting point."""
        self._step, self._pending = trainer.global_step, 0.0
        if trainer.is_global_zero:
            self.recorder = TrajectoryRecorder(self.out, keep=self.keep, overwrite=self.overwrite)
            self._record(pl_module, trainer.global_step, math.nan)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Add the batch's loss; record every ``every_steps``-th optimizer step."""
        self._pending = self._pending + _loss_of(outputs)
        step = trainer.global_step
        if step == self._step:
            return  # gradients are still accumulating
        self._step, loss, self._pending = step, self._pending, 0.0
        self._last_loss = (step, loss)
        if step % self.every_steps == 0:
            self._record(pl_module, step, loss)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Record the end point (with its loss) unless its step is recorded already."""
        step, loss = self._last_loss
        self._record(
            pl_module, trainer.global_step, loss if step == trainer.global_step else math.nan
        )


def _loss_of(outputs: Any) -> torch.Tensor | float:
    """The loss in what ``training_step`` returned (a tensor or a dict with "loss"), or NaN."""
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
        return outputs.detach().reshape(())
    return math.nan


class SharpnessCallback(pl.Callback):
    """A Lightning ``Callback`` that records λmax every ``every_steps`` optimizer steps.

    A :class:`~lossmap.callbacks.sharpness.SharpnessRecorder` into ``out``
    (made when training starts, on global zero), called after each
    ``every_steps``-th optimizer step (``trainer.global_step``) with the
    LightningModule (its ``forward`` gives the outputs ``loss_fn`` reads) and
    ``trainer.optimizers[0]``; draw the file with
    :func:`lossmap.plot.eos.plot_eos`. Training is left bit-identical.

    Parameters
    ----------
    out : str or path
        The JSON file to write.
    loss_fn : callable
        ``loss_fn(outputs, targets)``, the batch mean.
    data : (X, y), DataLoader or iterable of batches
        The fixed measurement split.
    every_steps : int, default 10
    **options
        Passed to :class:`~lossmap.callbacks.sharpness.SharpnessRecorder`.

    Examples
    --------
    >>> from lossmap.callbacks.lightning import SharpnessCallback  # doctest: +SKIP
    >>> cb = SharpnessCallback("sharpness.json", loss_fn, (X, y), every_steps=20)  # doctest: +SKIP
    >>> L.Trainer(max_steps=500, callbacks=[cb]).fit(module, loader)  # doctest: +SKIP
    """

    def __init__(
        self,
        out: str | os.PathLike,
        loss_fn: Any,
        data: Any,
        *,
        every_steps: int = 10,
        **options: Any,
    ) -> None:
        super().__init__()
        self.out, self.loss_fn, self.data, self.options = out, loss_fn, data, options
        self.every_steps = check_every(every_steps, "every_steps")
        #: The :class:`~lossmap.callbacks.sharpness.SharpnessRecorder`, made when training starts.
        self.recorder: SharpnessRecorder | None = None
        self._step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Make the recorder (checking ``out``)."""
        self._step = trainer.global_step
        if trainer.is_global_zero:
            self.recorder = SharpnessRecorder(
                self.out, self.loss_fn, self.data, every=1, **self.options
            )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Measure after every ``every_steps``-th optimizer step."""
        step = trainer.global_step
        if step == self._step:
            return  # gradients are still accumulating
        self._step = step
        if self.recorder is not None and step % self.every_steps == 0:
            self.recorder.record(pl_module, step, trainer.optimizers[0], _loss_of(outputs))
