"""Plain evaluation at a few points: ``functional_call`` batch by batch, nothing clever.

The reference that faster paths are checked against: no first-layer reuse, no
autocast, no vmap, batch means weighted by batch size and summed in float64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ...data.batches import rows_of
from ...data.splits import Split
from ...stats import STATS, finish
from .metrics import batch_stats
from .structured import accepted, call_at, metric_input, to_device


def as_float64(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 if it is floating point, else ``t`` (labels stay integers)."""
    return t.double() if t.is_floating_point() else t


@torch.no_grad()
def plain_values(
    model: nn.Module,
    metrics: Mapping[str, Callable],
    state: Mapping[str, torch.Tensor],
    directions: Sequence[Mapping[str, torch.Tensor]],
    splits: Sequence[Split],
    points: np.ndarray,
    device: torch.device,
    batch_size: int,
    *,
    float64: bool = True,
    first: int | None = None,
    reverse: bool = False,
    recalibrate: Callable | None = None,
) -> np.ndarray:
    """The metrics of every split at each point, evaluated plainly (float64 by default).

    No first-layer reuse, no autocast, no vmap: the reference the scan's own
    evaluator is measured against (:mod:`lossmap.backends.torch.roundoff`), and the
    probe a store records (:meth:`lossmap.backends.torch.backend.TorchBackend.probe`).

    Parameters
    ----------
    model : nn.Module
        Run through ``functional_call`` (its own tensors are never touched).
    metrics : dict of str to callable
        ``f(outputs, targets)`` returning the batch mean.
    state : dict of str to Tensor
        Every parameter and buffer of the centre.
    directions : sequence of mappings
        The scan's directions, keyed by tensor name.
    splits : sequence of Split
    points : ndarray, shape (K, ndim)
    device : torch.device
    batch_size : int
        Samples per forward pass.
    float64 : bool, default True
        Cast the state, directions and floating-point data to float64; False
        keeps their own dtype.
    first : int, optional
        Evaluate only the first ``first`` samples of each split.
    reverse : bool, default False
        Take the samples of each split in reversed order.
    recalibrate : callable, optional
        ``(model, state) -> state`` re-estimating BatchNorm statistics at each
        point (``bn="recompute"``), run on float64 data.

    Returns
    -------
    ndarray, shape (K, n_splits · n_metrics), float64
        Columns in the order of :attr:`Evaluator.variables` (split-major).
    """
    cast = as_float64 if float64 else (lambda t: t)
    if float64:  # a loss module's own tensors (class weights) in float64 too, on a copy
        metrics = {k: copy.deepcopy(fn).double() if isinstance(fn, nn.Module) else fn
                   for k, fn in metrics.items()}
    centre = {k: cast(v.to(device)) for k, v in state.items()}
    dirs = [{k: cast(d[k].to(device)).to(centre[k].dtype) for k in d if k in centre}
            for d in directions]
    parts = []  # each split's kind and batches on the device, cast once for every point
    for s in splits:
        if isinstance(s, Split):
            X, y = (s.X[:first], s.y[:first]) if first else (s.X, s.y)
            X, y = (X.flip(0), y.flip(0)) if reverse else (X, y)
            parts.append(("tuple", [(cast(xb.to(device)), cast(yb.to(device))) for xb, yb in
                                    zip(X.split(batch_size), y.split(batch_size), strict=True)]))
        elif s.streamed and not first:  # read again at each point, never held
            parts.append((s.kind, _Cast(s, device, cast, reverse)))
        else:
            held = s.head(first) if first else list(s)
            held = held[::-1] if reverse else held
            parts.append((s.kind, [to_device(b, device, cast) for b in held]))
    keys = accepted(model)
    rows = []
    with torch.autocast(device.type, enabled=False):
        moved = {k for d in dirs for k in d if centre[k].is_floating_point()}
        work = {k: torch.empty_like(centre[k]) for k in moved}  # one state, formed in place
        for point in np.asarray(points, dtype=np.float64):
            at = dict(centre)
            for k, buf in work.items():
                buf.copy_(centre[k])
                for a, d in zip(point.tolist(), dirs, strict=True):
                    if a != 0.0 and k in d:
                        buf.add_(d[k], alpha=a)
                at[k] = buf
            if recalibrate is not None:
                at = recalibrate(model, at)
            row = []
            for kind, batches in parts:
                sums = torch.zeros(len(metrics), STATS, dtype=torch.float64, device=device)
                for batch in batches:
                    outputs = call_at(model, at, batch, kind, keys)
                    target = metric_input(batch, kind)
                    for j, fn in enumerate(metrics.values()):  # the metric's own reduction
                        sums[j] += batch_stats(fn(outputs, target), rows_of(batch), device)
                row += finish(sums.cpu().numpy())[0].tolist()
            rows.append(row)
    return np.asarray(rows, dtype=np.float64)


class _Cast:
    """A streamed split's batches, moved and cast as they are read (``reverse``: not possible
    without holding them, so a stream is read in its order)."""

    def __init__(self, split, device, cast, reverse):
        self.split, self.device, self.cast = split, device, cast

    def __iter__(self):
        for b in self.split:
            yield to_device(b, self.device, self.cast)
