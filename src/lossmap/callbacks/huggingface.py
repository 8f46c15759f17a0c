"""Record a trajectory from the Hugging Face ``Trainer``: ``LossmapCallback``.

Needs ``transformers`` (``pip install lossmap[hf]``), which this module imports;
``import lossmap`` and ``lossmap.callbacks`` never do::

    from lossmap.callbacks.huggingface import LossmapCallback

    trainer = Trainer(model, args, train_dataset=ds,
                      callbacks=[LossmapCallback("runs/trajectory", every_steps=100)])
    trainer.train()
    dirs = lm.pca_directions("runs/trajectory", 2)  # lm.scan(..., directions=dirs)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from .recorder import TrajectoryRecorder, check_every, check_keep
from .sharpness import SharpnessRecorder


class LossmapCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that records θ of the trainer's model as it trains.

    It records the start (θ before the first step), every ``every_steps``-th
    optimizer step (``state.global_step``) and the end, through a
    :class:`~lossmap.TrajectoryRecorder` into ``out``, on the main process only.
    The loss stored with a step is the training loss the Trainer logs at that
    step: its mean since the previous log (the start has none). With
    ``log_loss=True`` the callback asks the Trainer to log at every recorded
    step, so every recorded step but the start has a loss.

    Parameters
    ----------
    out : str or path
        The folder to record into (see :class:`~lossmap.TrajectoryRecorder`);
        checked when training begins.
    every_steps : int, default 100
        Record every ``every_steps`` optimizer steps (counted by the Trainer,
        so gradient accumulation is taken into account).
    keep : {"parameters", "state"}, default "parameters"
        Record the parameters only, or the whole ``state_dict()``.
    overwrite : bool, default False
        Replace a recording already in ``out`` (e.g. of an earlier ``train()``).
    log_loss : bool, default True
        Make the Trainer log (and so compute) the training loss at every
        recorded step, in addition to its own ``logging_steps``.

    Notes
    -----
    The end point is the model when training ends: after the last optimizer
    step (recorded then, before ``load_best_model_at_end`` can swap the
    weights), or when training stops early, the model the Trainer holds at
    ``on_train_end``. The weights are read with ``model.named_parameters()`` on
    the main process, so parameters sharded across processes (FSDP, DeepSpeed
    ZeRO-3) are not supported.

    Examples
    --------
    Not run as a doctest (importing ``transformers`` takes seconds);
    ``tests/test_callbacks.py`` trains a small GPT-2 with it.

    >>> from lossmap.callbacks.huggingface import LossmapCallback  # doctest: +SKIP
    >>> callback = LossmapCallback("hf_trajectory", every_steps=50)  # doctest: +SKIP
    >>> trainer = Trainer(model, args, train_dataset=ds, callbacks=[callback])  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    >>> callback.recorder.steps  # max_steps=237  # doctest: +SKIP
    [0, 50, 100, 150, 200, 237]
    >>> dirs = lm.pca_directions("hf_trajectory", 2)  # doctest: +SKIP
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        every_steps: int = 100,
        keep: str = "parameters",
        overwrite: bool = False,
        log_loss: bool = True,
    ) -> None:
        self.out = out
        self.every_steps = check_every(every_steps, "every_steps")
        self.keep = check_keep(keep)
        self.overwrite = overwrite
        self.log_loss = log_loss
        #: The :class:`~lossmap.TrajectoryRecorder`, made when training begins (main process).
        self.recorder: TrajectoryRecorder | None = None

    def _record(self, model, step: int) -> None:
        if self.recorder is None or model is None:
            return
        if not self.recorder.steps or self.recorder.steps[-1] != step:
            self.recorder.record(model, step, force=True)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        """Make the recorder (checking ``out``) and record the starting point."""
        if not state.is_world_process_zero:
            return
        self.recorder = TrajectoryRecorder(self.out, keep=self.keep, overwrite=self.overwrite)
        self._record(kwargs.get("model"), state.global_step)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        """Record every ``every_steps``-th optimizer step and the last one."""
        step = state.global_step
        if step % self.every_steps and step < state.max_steps:
            return
        if self.log_loss:
            control.should_log = True  # on every process: logging gathers the loss
        self._record(kwargs.get("model"), step)

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        """Store the logged training loss with the step just recorded."""
        logs = kwargs.get("logs") or {}
        rec = self.recorder
        if rec is not None and "loss" in logs and rec.steps and rec.steps[-1] == state.global_step:
            rec.set_loss(state.global_step, logs["loss"])

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        """Record the end point, if training stopped before a recorded step."""
        self._record(kwargs.get("model"), state.global_step)


class SharpnessCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that records λmax every ``every_steps`` optimizer steps.

    A :class:`~lossmap.callbacks.sharpness.SharpnessRecorder` into ``out``
    (made when training begins, on the main process), called after each
    ``every_steps``-th optimizer step (``state.global_step``) with the
    Trainer's model and optimizer; draw the file with
    :func:`lossmap.plot.eos.plot_eos`. Training is left bit-identical.

    Parameters
    ----------
    out : str or path
        The JSON file to write.
    data : list of dict batches, DataLoader or (X, y)
        The fixed measurement split.
    loss_fn : callable or None, default None
        None: the model's own ``outputs.loss`` (batches carry ``labels``).
    every_steps : int, default 10
    **options
        Passed to :class:`~lossmap.callbacks.sharpness.SharpnessRecorder`
        (``preconditioned``, ``params``, ``tol``, ``max_hvps``, ``overwrite``, …).

    Examples
    --------
    >>> from lossmap.callbacks.huggingface import SharpnessCallback  # doctest: +SKIP
    >>> cb = SharpnessCallback("sharpness.json", batch, every_steps=20)  # doctest: +SKIP
    >>> Trainer(model, args, train_dataset=ds, callbacks=[cb]).train()  # doctest: +SKIP
    """

    def __init__(
        self,
        out: str | os.PathLike,
        data: Any,
        *,
        loss_fn: Callable | None = None,
        every_steps: int = 10,
        **options: Any,
    ) -> None:
        self.out, self.data, self.loss_fn, self.options = out, data, loss_fn, options
        self.every_steps = check_every(every_steps, "every_steps")
        #: The :class:`~lossmap.callbacks.sharpness.SharpnessRecorder`, made when training begins.
        self.recorder: SharpnessRecorder | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        """Make the recorder (checking ``out``)."""
        if state.is_world_process_zero:
            self.recorder = SharpnessRecorder(
                self.out, self.loss_fn, self.data, every=1, **self.options
            )

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ):
        """Measure at every ``every_steps``-th optimizer step."""
        model, optimizer = kwargs.get("model"), kwargs.get("optimizer")
        if self.recorder is None or model is None or state.global_step % self.every_steps:
            return
        self.recorder.record(model, state.global_step, getattr(optimizer, "optimizer", optimizer))
