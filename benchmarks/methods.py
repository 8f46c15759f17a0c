"""The timed in-process methods: lossmap, a plain in-place loop, and a Li et al.-style loop.

Every method has the same signature ``(model, data, directions, axes, device)``
and returns a :class:`Run`: the wall time and the loss at each grid point (one
column per split, points in ``grid_points(axes)`` order), so that the methods
can be checked against each other as well as timed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lossmap as lm

from hardware import sync

Data = Mapping[str, tuple[torch.Tensor, torch.Tensor]]  # split name -> (X, y)
Axes = Sequence[tuple[float, float, int]]  # one (lo, hi, n) per direction

PLAIN_BATCH = 1024
LI_BATCH = 128


@dataclass
class Run:
    """One timed run of one method."""

    seconds: float
    values: np.ndarray | None = None  # (points, splits) mean loss, None where not comparable
    info: dict = field(default_factory=dict)


def grid_points(axes: Axes) -> np.ndarray:
    """All grid points, (P, ndim), in lossmap's flattened order (meshgrid 'ij')."""
    coords = [np.linspace(lo, hi, n) for lo, hi, n in axes]
    return np.stack(np.meshgrid(*coords, indexing="ij"), axis=-1).reshape(-1, len(axes))


def n_points(axes: Axes) -> int:
    return int(np.prod([n for _, _, n in axes]))


def _at(c: torch.Tensor, ds: Sequence[torch.Tensor], coef: Sequence[float]) -> torch.Tensor:
    """c + a·d1 (+ b·d2) as the plain loops write it."""
    out = c + coef[0] * ds[0]
    for a, d in zip(coef[1:], ds[1:], strict=True):
        out = out + a * d
    return out


def lossmap_scan(model, data: Data, directions, axes: Axes, device, **options) -> Run:
    """``lm.scan`` on the grid, loss only, no store, no progress bar.

    ``options`` go to ``lm.scan`` (``strategy``, ``reuse_first_layer``).
    """
    sync(device)
    t0 = time.perf_counter()
    surf = lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data=dict(data),
        directions=list(directions),
        grid=[tuple(a) for a in axes],
        metrics=("loss",),
        device=device,
        progress=False,
        **options,
    )
    sync(device)
    seconds = time.perf_counter() - t0
    values = np.stack([surf[f"{name}_loss"].reshape(-1) for name in data], axis=1)
    prof = surf.profile  # the evaluator's plan and timings
    info = {
        "strategy": prof["strategy"],
        "reuses_first_layer": prof["reuses_first_layer"],
        "first_layer_cached": prof.get("first_layer_cached", False),
        "chunk": prof["chunk"],
        "batch": prof.get("batch_size"),
        "timings": {k: round(v, 6) for k, v in prof["timings"].items()},
        # the passes before the first point (before issue 26: the floor and slopes together)
        "setup": {**prof.get("setup", {"roundoff+slopes": prof.get("roundoff_seconds", 0.0)}),
                  "centre_terms": prof["timings"].get("centre_terms", 0.0)},
    }
    return Run(seconds, values, info)


@torch.no_grad()
def plain_loop(model, data: Data, directions, axes: Axes, device) -> Run:
    """The brute-force rate: per point, set each parameter in place, one forward in batches.

    Data lives on the device for the whole run; the model is restored afterwards.
    """
    params = dict(model.named_parameters())
    centre = {k: p.detach().clone() for k, p in params.items()}
    dirs = {k: [d[k].to(device, p.dtype) for d in directions] for k, p in params.items()}
    batches = {
        name: list(
            zip(X.to(device).split(PLAIN_BATCH), y.to(device).split(PLAIN_BATCH), strict=True)
        )
        for name, (X, y) in data.items()
    }
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    points = grid_points(axes)
    counts = [sum(len(y) for _, y in split) for split in batches.values()]
    values = np.empty((len(points), len(batches)))
    sync(device)
    t0 = time.perf_counter()
    try:
        for i, coef in enumerate(points.tolist()):
            for k, p in params.items():
                p.copy_(_at(centre[k], dirs[k], coef))
            for s, split in enumerate(batches.values()):
                total = torch.zeros((), dtype=torch.float64, device=device)
                for X, y in split:
                    total += loss_fn(model(X), y)
                values[i, s] = total.item() / counts[s]
    finally:
        for k, p in params.items():
            p.copy_(centre[k])
    return Run(time.perf_counter() - t0, values)


@torch.no_grad()
def li_style_loop(model, data: Data, directions, axes: Axes, device) -> Run:
    """A loop the way Li et al.'s reference code evaluates a point.

    Per point: ``p.data = c + a·d1 + b·d2`` for every parameter, then a
    ``DataLoader(TensorDataset(X, y), batch_size=128)`` over host tensors, each
    batch moved to the device, loss summed as ``loss.item() * batch``.
    """
    params = list(model.named_parameters())
    centre = [p.data for _, p in params]
    dirs = [[d[k].to(device, p.dtype) for d in directions] for k, p in params]
    loaders = {
        name: DataLoader(TensorDataset(X.cpu(), y.cpu()), batch_size=LI_BATCH, shuffle=False)
        for name, (X, y) in data.items()
    }
    loss_fn = nn.CrossEntropyLoss()
    points = grid_points(axes)
    values = np.empty((len(points), len(loaders)))
    sync(device)
    t0 = time.perf_counter()
    try:
        for i, coef in enumerate(points.tolist()):
            for (_, p), c, ds in zip(params, centre, dirs, strict=True):
                p.data = _at(c, ds, coef)
            for s, loader in enumerate(loaders.values()):
                total, n = 0.0, 0
                for X, y in loader:
                    X, y = X.to(device), y.to(device)
                    total += loss_fn(model(X), y).item() * len(y)
                    n += len(y)
                values[i, s] = total / n
    finally:
        for (_, p), c in zip(params, centre, strict=True):
            p.data = c
    return Run(time.perf_counter() - t0, values)
