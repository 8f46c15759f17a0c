"""The Evaluator: loss and metrics at many points c + Σ aᵢ·dᵢ of weight space.

Parameters are built in preallocated buffers (never a model copy per point)
and passed to ``torch.func.functional_call``, so the user's module is only
read. The data of every split is moved to the device once. Sums are kept in
float64 on the device and read back once per point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .errors import InputError
from .splits import Split

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]

# Data of all splits is kept on the accelerator when it takes at most this much.
DEVICE_DATA_BUDGET = 2 * 1024**3
DEFAULT_BATCH = 1024


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of samples whose arg-max output equals the integer target (batch mean)."""
    return (outputs.argmax(dim=1) == targets).to(torch.float64).mean()


class Evaluator:
    """Evaluate named metrics on every split at points of a line or plane.

    Parameters
    ----------
    model : nn.Module
        Evaluated through ``functional_call``; put it in eval mode beforehand
        (``lossmap.guard.preserved`` does that and restores it).
    metrics : dict of str to callable
        ``f(outputs, targets)`` returning the batch mean.
    centre_params, centre_buffers : dict of str to Tensor
        The centre c (parameters) and the buffers used at every point.
    directions : sequence of mappings
        d₁, d₂, … keyed by parameter (or buffer) name.
    splits : sequence of Split
    device : torch.device
    batch_size : int, optional
        Evaluation batch size (default: the loader's, else 1024).
    """

    def __init__(
        self,
        model: nn.Module,
        metrics: Mapping[str, Metric],
        centre_params: Mapping[str, torch.Tensor],
        centre_buffers: Mapping[str, torch.Tensor],
        directions: Sequence[Mapping[str, torch.Tensor]],
        splits: Sequence[Split],
        device: torch.device,
        batch_size: int | None = None,
    ):
        self.model = model
        self.metrics = dict(metrics)
        self.device = device
        on = {"device": device}
        self.centre = {k: v.to(**on) for k, v in {**centre_params, **centre_buffers}.items()}
        # Only the tensors some direction moves need a buffer; the rest are shared.
        moved = sorted({k for d in directions for k in d})
        self.dirs = [
            {k: d[k].to(device=device, dtype=self.centre[k].dtype) for k in moved if k in d}
            for d in directions
        ]
        self.work = {k: torch.empty_like(self.centre[k]) for k in moved}
        self.params_names = set(centre_params)
        total = sum(s.X.nbytes + s.y.nbytes for s in splits)
        keep = device.type == "cpu" or total <= DEVICE_DATA_BUDGET
        self.batches: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for s in splits:
            bs = batch_size or s.batch_size or DEFAULT_BATCH
            xs, ys = s.X.split(bs), s.y.split(bs)
            if keep:
                xs = [x.to(device) for x in xs]
                ys = [y.to(device) for y in ys]
            self.batches.append(list(zip(xs, ys, strict=True)))
        self.n = [s.n for s in splits]
        self.split_names = [s.name for s in splits]

    @property
    def variables(self) -> list[str]:
        """Column names, ``split_metric``, in the order :meth:`evaluate` returns them."""
        return [f"{s}_{m}" for s in self.split_names for m in self.metrics]

    def _build(self, point: Sequence[float]) -> dict[str, torch.Tensor]:
        for k, buf in self.work.items():
            buf.copy_(self.centre[k])
            for a, d in zip(point, self.dirs, strict=True):
                if k in d and a != 0.0:
                    buf.add_(d[k], alpha=float(a))
        return {**self.centre, **self.work}

    @torch.no_grad()
    def evaluate(self, points: np.ndarray) -> np.ndarray:
        """Values at each point.

        Parameters
        ----------
        points : ndarray, shape (K, ndim)
            Coordinates (a, b, …) of K points.

        Returns
        -------
        ndarray, shape (K, len(variables)), float64
        """
        out = np.empty((len(points), len(self.variables)))
        for k, point in enumerate(points):
            state = self._build(point)
            row = []
            for batches, n in zip(self.batches, self.n, strict=True):
                sums = torch.zeros(len(self.metrics), dtype=torch.float64, device=self.device)
                for X, y in batches:
                    X = X.to(self.device, non_blocking=True)
                    y = y.to(self.device, non_blocking=True)
                    outputs = functional_call(self.model, state, (X,))
                    for j, fn in enumerate(self.metrics.values()):
                        value = fn(outputs, y)
                        sums[j] += torch.as_tensor(value, device=self.device).double() * len(y)
                row.append(sums / n)
            out[k] = torch.cat(row).cpu().numpy()
        return out


def check_on_sample(
    model: nn.Module,
    metrics: Mapping[str, Metric],
    state: Mapping[str, torch.Tensor],
    splits: Sequence[Split],
    device: torch.device,
) -> None:
    """Run the model and every metric on two samples of each split; explain failures.

    Catches a split whose shapes do not fit the model, or targets a metric
    cannot use, before any point is computed or stored.
    """
    state = {k: v.to(device) for k, v in state.items()}
    with torch.no_grad():
        for s in splits:
            X, y = s.X[:2].to(device), s.y[:2].to(device)
            try:
                outputs = functional_call(model, state, (X,))
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise InputError(
                    f"split {s.name!r}: the model fails on inputs of shape {tuple(s.X.shape[1:])} "
                    f"per sample ({_first_line(exc)}): the data does not match the model"
                ) from exc
            for name, fn in metrics.items():
                if name == "accuracy" and (
                    y.is_floating_point()
                    or not isinstance(outputs, torch.Tensor)
                    or outputs.dim() < 2
                ):
                    raise InputError(
                        f"metric 'accuracy' needs class logits (N, C) and integer targets; split "
                        f"{s.name!r} has targets of dtype {y.dtype}: use metrics=('loss',)"
                    )
                try:
                    value = fn(outputs, y)
                    v = torch.as_tensor(value)
                except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                    raise InputError(
                        f"split {s.name!r}: metric {name!r} fails on model outputs of shape "
                        f"{tuple(getattr(outputs, 'shape', ()))} and targets of shape "
                        f"{tuple(y.shape)} ({_first_line(exc)}): the targets do not match "
                        "the model or the loss"
                    ) from exc
                if v.numel() != 1:
                    raise InputError(
                        f"metric {name!r} returned {v.numel()} values; it must return the batch "
                        "mean (a scalar), e.g. a loss with reduction='mean'"
                    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
