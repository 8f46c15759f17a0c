"""Record θ along a training loop: one safetensors file per recorded step, and an index.

:class:`TrajectoryRecorder` is the whole mechanism; the Hugging Face and
Lightning callbacks only decide when to call it. The folder it writes is read
directly by :func:`lossmap.pca_directions` and :func:`lossmap.project` (the
layout is described in :mod:`lossmap.callbacks.index`). Every file is written
to a temporary name and renamed into place, the step file before the index
that lists it, so a run stopped at any moment leaves a readable trajectory.
"""

from __future__ import annotations

import math
import operator
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, InputTypeError
from ..files import OutputFolder, cpu_copies, json_safe, write_json, write_state
from ..version import __version__
from .index import INDEX_FORMAT, INDEX_NAME, INDEX_VERSION, STEP_FILE, step_file

KEEP = ("parameters", "state")
#: A recording's folder: the index and one file per step, all at the top.
RECORDING = OutputFolder(
    what="recording", files=(INDEX_NAME,), numbered=STEP_FILE, numbered_word="step file"
)


class TrajectoryRecorder:
    """Record a model's weights at chosen steps of a training loop.

    ``rec.record(model, step, loss)`` (or ``rec(model, step, loss)``) writes
    ``out/step_000123.safetensors`` (CPU copies, named as in
    ``named_parameters()`` or ``state_dict()``) and updates
    ``out/trajectory.json`` (the steps, files and training losses).
    ``lm.pca_directions(out, 2)`` and ``lm.project(out, dirs)`` read the folder.

    Parameters
    ----------
    out : str or path
        The folder to record into; created if missing. A folder that holds
        another recording or other files is refused unless ``overwrite``.
    every : int, default 1
        Record the 1st, (every+1)-th, (2·every+1)-th … call of :meth:`record`
        (``force=True`` records any call). Calling once per optimizer step with
        ``every=10`` records steps 0, 10, 20, … when the first call is step 0.
    keep : {"parameters", "state"}, default "parameters"
        ``"parameters"``: the model's parameters only (what PCA uses).
        ``"state"``: the whole ``state_dict()``, buffers too (the index still
        names the parameters, so PCA leaves the buffers out).
    overwrite : bool, default False
        Record into a folder that holds another recording: its step files and
        index are deleted now; other files are kept.

    Examples
    --------
    >>> import torch
    >>> import lossmap as lm
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(3, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> X, y = torch.randn(32, 3), torch.randn(32, 1)
    >>> rec = lm.TrajectoryRecorder("my_run", every=5)
    >>> for step in range(21):
    ...     loss = torch.nn.functional.mse_loss(model(X), y)
    ...     _ = rec(model, step, loss)  # θ at `step`, and the loss computed there
    ...     opt.zero_grad(); loss.backward(); opt.step()
    >>> rec.steps
    [0, 5, 10, 15, 20]
    >>> dirs = lm.pca_directions("my_run", 2)  # dirs.explained_variance_ratio: each share
    >>> lm.project("my_run", dirs).shape  # each recorded step on the PCA plane
    (5, 2)
    """

    def __init__(
        self,
        out: str | os.PathLike,
        *,
        every: int = 1,
        keep: str = "parameters",
        overwrite: bool = False,
    ) -> None:
        self.out = Path(out)
        self.every = check_every(every, "every")
        self.keep = check_keep(keep)
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"out={str(self.out)!r} is a file: choose a folder to record into")
        RECORDING.check(self.out, overwrite)
        RECORDING.clear(self.out)  # only finds files with overwrite=True
        self.out.mkdir(parents=True, exist_ok=True)
        self._calls = 0
        self._steps: list[int] = []
        self._losses: list[float] = []
        self._parameters: list[str] = []
        self._write_index()  # claims the folder: a second recorder into it is refused

    @property
    def steps(self) -> list[int]:
        """The recorded steps, in order."""
        return list(self._steps)

    @property
    def losses(self) -> list[float]:
        """The training loss recorded with each step (NaN where none was given)."""
        return list(self._losses)

    @property
    def files(self) -> list[Path]:
        """The safetensors file of each recorded step, in step order."""
        return [self.out / step_file(s) for s in self._steps]

    def __repr__(self) -> str:
        return (
            f"TrajectoryRecorder({str(self.out)!r}, every={self.every}, keep={self.keep!r}; "
            f"{len(self._steps)} steps recorded)"
        )

    def __call__(
        self, model: nn.Module, step: int, loss: float | torch.Tensor | None = None
    ) -> Path | None:
        """``rec(model, step, loss)`` is ``rec.record(model, step, loss)``."""
        return self.record(model, step, loss)

    def record(
        self,
        model: nn.Module,
        step: int,
        loss: float | torch.Tensor | None = None,
        *,
        force: bool = False,
    ) -> Path | None:
        """Record θ of ``model`` at ``step`` (on every ``every``-th call, or when ``force``).

        Parameters
        ----------
        model : nn.Module
            The model being trained; read, never changed. Its tensors are
            copied to the CPU.
        step : int
            The training step (>= 0). Steps must not decrease; recording the
            step recorded last again replaces its weights (and its loss, when
            one is given).
        loss : float or 0-d tensor, optional
            The training loss at that step, stored in the index.
        force : bool, default False
            Record even when ``every`` would skip this call (e.g. the last step).

        Returns
        -------
        Path or None
            The file written, or None when this call was skipped.

        Examples
        --------
        >>> import torch
        >>> import lossmap as lm
        >>> rec = lm.TrajectoryRecorder("record_example", every=100)
        >>> model = torch.nn.Linear(2, 1)
        >>> rec.record(model, 0, loss=2.5).name
        'step_000000.safetensors'
        >>> rec.record(model, 1) is None  # the 2nd call: skipped with every=100
        True
        >>> rec.record(model, 7, force=True).name, rec.steps, rec.losses
        ('step_000007.safetensors', [0, 7], [2.5, nan])
        """
        if not isinstance(model, nn.Module):
            raise InputTypeError(
                f"model is a {type(model).__name__}, not a torch nn.Module: pass the model "
                "being trained"
            )
        try:
            step = operator.index(step)
        except TypeError:
            raise InputTypeError(f"step={step!r} must be an integer") from None
        if step < 0 or isinstance(step, bool):
            raise InputError(f"step={step!r} must be an integer >= 0")
        call, self._calls = self._calls, self._calls + 1
        if call % self.every and not force:
            return None
        value = _loss_value(loss)
        last = self._steps[-1] if self._steps else None
        if last is not None and step < last:
            raise InputError(
                f"step {step} comes before step {last}, recorded already: record steps "
                "in increasing order (a trajectory is read in step order)"
            )
        names = [name for name, _ in model.named_parameters()]
        if not names:
            raise InputError(f"the {type(model).__name__} has no parameters to record")
        if self._parameters and names != self._parameters:
            raise InputError(
                "the model's parameters are not those recorded so far (e.g. "
                f"{sorted(set(names) ^ set(self._parameters))[:3]}): record one model per "
                "folder"
            )
        items = model.state_dict().items() if self.keep == "state" else model.named_parameters()
        path = self.out / step_file(step)
        write_state(path, cpu_copies(items), {"format": INDEX_FORMAT, "step": str(step)})
        self._parameters = names
        if step == last:
            if loss is not None:
                self._losses[-1] = value
        else:
            self._steps.append(step)
            self._losses.append(value)
        self._write_index()
        return path

    def set_loss(self, step: int, loss: float | torch.Tensor) -> None:
        """Set the training loss of a step already recorded (e.g. one logged after it).

        Parameters
        ----------
        step : int
            A recorded step.
        loss : float or 0-d tensor
            Its training loss.

        Examples
        --------
        >>> import torch
        >>> import lossmap as lm
        >>> rec = lm.TrajectoryRecorder("set_loss_example")
        >>> _ = rec.record(torch.nn.Linear(2, 1), 10)
        >>> rec.set_loss(10, 0.5)
        >>> rec.losses
        [0.5]
        """
        if step not in self._steps:
            raise InputError(
                f"step {step!r} was not recorded (recorded: {_span(self._steps)}): "
                "record it first"
            )
        self._losses[self._steps.index(step)] = _loss_value(loss)
        self._write_index()

    def _write_index(self) -> None:
        write_json(
            self.out / INDEX_NAME,
            {
                "format": INDEX_FORMAT,
                "version": INDEX_VERSION,
                "lossmap": __version__,
                "keep": self.keep,
                "every": self.every,
                "parameters": self._parameters,
                "steps": self._steps,
                "loss": json_safe(self._losses),
                "files": [step_file(s) for s in self._steps],
            },
        )


def check_every(every: int, name: str) -> int:
    """``every`` if it is an integer >= 1; else an InputError naming ``name``."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InputError(f"{name}={every!r} must be an integer >= 1 (1 records every step)")
    return every


def check_keep(keep: str) -> str:
    """``keep`` if it is one of :data:`KEEP`."""
    if keep not in KEEP:
        raise InputError(
            f"keep={keep!r} must be 'parameters' (θ only) or 'state' (the whole "
            "state_dict, buffers too)"
        )
    return keep


def _loss_value(loss: float | torch.Tensor | None) -> float:
    """The loss as a float (NaN for None); a tensor must hold one value."""
    if loss is None:
        return math.nan
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise InputError(
                f"loss is a tensor of shape {tuple(loss.shape)}: pass the scalar training "
                "loss (e.g. loss.mean())"
            )
        return float(loss.detach().item())
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"loss={loss!r} is a {type(loss).__name__}, not a number: pass a float or a "
            "0-d tensor"
        ) from None


def _span(steps: list[int]) -> str:
    return "none" if not steps else f"{len(steps)} steps from {steps[0]} to {steps[-1]}"
