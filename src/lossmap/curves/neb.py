"""Nudged elastic bands (Draxler et al. 2018): :func:`neb` and :func:`neb_function`.

:func:`neb` relaxes a band between two networks, :func:`neb_function` one
between two points of a function of a vector; the band, its force and its
relaxation are in :mod:`lossmap.curves.band`. For a network, the band's pivots
are the models' parameters flattened into one vector each, with the loss and
its gradient of each pivot computed on a mini-batch through
``torch.func.functional_call``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import params as P
from ..backends.torch.restore import preserved
from ..errors import InputError, InputTypeError
from ..seeding import check_seed, seeded_rng
from .band import band_curve, check_band, relax_band, straight_band
from .common import batch_loss, check_int, check_loss, check_models, train_tensors
from .curve import Curve


def _flat(state: dict) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in state.values()])


def _unflat(vec: torch.Tensor, like: dict) -> dict[str, torch.Tensor]:
    sizes = [t.numel() for t in like.values()]
    return {k: c.view(t.shape) for (k, t), c in zip(like.items(), vec.split(sizes), strict=True)}


def neb(
    model_a: nn.Module,
    model_b: nn.Module | dict[str, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    *,
    pivots: int = 8,
    steps: int = 200,
    lr: float = 0.05,
    spring: float = 1.0,
    momentum: float = 0.5,
    climbing: bool = False,
    insert: int = 0,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Curve:
    """Relax a nudged elastic band between two models (Draxler et al. 2018).

    ``pivots`` points start evenly spaced on the straight line between the
    models and move by the NEB force of :mod:`lossmap.curves.band` (the loss
    gradient perpendicular to the band plus springs along it), one fresh
    mini-batch per step shared by all pivots. The model runs in train mode
    through ``torch.func.functional_call`` with copies of ``model_a``'s
    buffers, as in :func:`lossmap.curve`; neither model is changed.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The endpoints, fixed; same architecture and dtype (``model_b`` may be
        a state dict).
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch-mean loss.
    data : (X, y), DataLoader, or dict of splits
        The samples (of a dict, ``"train"``, else the first). The pivots'
        values in ``meta`` (and insertion decisions) use all of them.
    pivots : int
        Movable pivots between the endpoints, >= 1 (default 8).
    steps : int
        Relaxation steps, each one mini-batch (default 200).
    lr : float
        Step size of ``x += lr · F`` (default 0.05).
    spring : float
        Spring constant (default 1.0).
    momentum : float
        Heavy-ball momentum in [0, 1) (default 0.5).
    climbing : bool
        Climbing image for the second half of the steps (default False).
    insert : int
        Pivots AutoNEB-style insertion may add where the loss between
        neighbours rises above both (default 0).
    batch_size : int
        Samples per step (default 256).
    seed : int
        Seeds the batches and dropout (default 0).
    device : str or torch.device, optional
        Where to compute (default: ``model_a``'s device).
    progress : bool
        Show steps, steps/s and the time left (default True).

    Returns
    -------
    Curve
        A polychain through the pivots (knots at their arc length), the
        endpoints exact; ``meta`` holds ``values`` (the loss at each pivot),
        ``saddle`` (the highest pivot: value, index, t), the settings and the
        time taken.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> from torch import nn
    >>> X = torch.randn(64, 4); y = (X[:, 0] > 0).long()
    >>> a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    >>> band = lm.neb(a, b, nn.functional.cross_entropy, (X, y), pivots=3, steps=5,
    ...               progress=False)
    >>> band.kind, len(band), len(band.meta["values"])
    ('polychain', 5, 5)
    """
    pivots, steps, lr, spring, momentum, insert = check_band(steps, lr, spring, momentum,
                                                              insert, pivots)
    batch_size = check_int("batch_size", batch_size, 1, "samples per step")
    seed = check_seed(seed)
    loss_fn = check_loss(loss_fn)
    pa, pb, buffers_a = check_models(model_a, model_b)
    X, y = train_tensors(data)
    device = P.resolve_device(model_a, device)
    X, y = X.to(device), y.to(device)
    like = {k: v.to(device) for k, v in pa.items()}
    buffers = {k: v.to(device).clone() for k, v in buffers_a.items()}
    n = int(X.shape[0])
    gen = torch.Generator().manual_seed(seed)
    order: list[torch.Tensor] = []

    def batch(step: int) -> torch.Tensor:
        per_epoch = -(-n // batch_size)
        while len(order) <= step // per_epoch:
            order.append(torch.randperm(n, generator=gen).to(device))
        i = (step % per_epoch) * batch_size
        return order[step // per_epoch][i:i + batch_size]

    def value_grad(x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = batch(step)
        vals, grads = [], []
        for p in x:
            p = p.detach().requires_grad_(True)
            loss = batch_loss(model_a, _unflat(p, like), buffers, loss_fn, X[idx], y[idx],
                              first=step == 0)
            (g,) = torch.autograd.grad(loss, p)
            vals.append(loss.detach())
            grads.append(g)
        return torch.stack(vals), torch.stack(grads)

    def value(x: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for p in x:
                state = _unflat(p, like)
                total = sum(float(batch_loss(model_a, state, buffers, loss_fn, X[i:i + batch_size],
                                             y[i:i + batch_size])) * len(X[i:i + batch_size])
                            for i in range(0, n, batch_size))
                out.append(total / n)
        return torch.tensor(out, dtype=torch.float64)

    started = time.perf_counter()
    with preserved(model_a), seeded_rng(seed, device):
        model_a.train()
        start = straight_band(_flat(like), _flat(pb).to(device), pivots)  # (P + 2, D)
        band, info = relax_band(value_grad, start,
                                steps=steps, lr=lr, spring=spring, momentum=momentum,
                                climbing=climbing, insert=insert, value=value, progress=progress)
    points = [pa] + [{k: v.cpu() for k, v in _unflat(p.detach(), like).items()}
                     for p in band[1:-1]] + [pb]
    meta = {"made_by": "lossmap.neb", "pivots": pivots, "steps": steps, "lr": lr,
            "spring": spring, "momentum": momentum, "climbing": climbing, "insert": insert,
            "batch_size": batch_size, "seed": seed, "samples": n,
            "seconds": round(time.perf_counter() - started, 3)}
    return band_curve(points, band, info, meta)


def neb_function(
    f: Callable[[torch.Tensor], torch.Tensor],
    x_a: Any,
    x_b: Any,
    *,
    pivots: int = 8,
    steps: int = 1000,
    lr: float = 0.01,
    spring: float = 1.0,
    momentum: float = 0.0,
    climbing: bool = False,
    insert: int = 0,
) -> Curve:
    """Relax a nudged elastic band between two points of a function of a vector.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar tensor`` for a 1-D float64 tensor ``x``, differentiable
        by autograd.
    x_a, x_b : array-like
        The endpoints (1-D, same length), fixed.
    pivots : int
        Movable pivots between the endpoints, >= 1 (default 8), placed evenly
        on the straight line to start.
    steps : int
        Steps of ``x += lr · F`` per relaxation (default 1000).
    lr : float
        Step size (default 0.01).
    spring : float
        Spring constant ``k`` (default 1.0); ``lr · spring`` should stay below ~0.5.
    momentum : float
        Heavy-ball momentum on the steps, in [0, 1) (default 0).
    climbing : bool
        Let the highest pivot climb to the saddle for the second half of the
        steps (default False).
    insert : int
        Pivots AutoNEB-style insertion may add (default 0: none).

    Returns
    -------
    Curve
        A polychain with one tensor ``"x"``, knots at the pivots' arc length;
        ``meta["values"]`` holds ``f`` at the pivots and ``meta["saddle"]`` the
        highest: ``{"value", "index", "t"}``.

    Examples
    --------
    >>> import torch
    >>> f = lambda p: (p[0] ** 2 - 1) ** 2 + (p[1] - p[0] ** 2) ** 2
    >>> band = neb_function(f, [-1.0, 1.0], [1.0, 1.0], pivots=7, steps=2000, climbing=True)
    >>> round(band.meta["saddle"]["value"], 4)  # the saddle (0, 0) has height 1
    1.0
    """
    pivots, steps, lr, spring, momentum, insert = check_band(steps, lr, spring, momentum,
                                                              insert, pivots)
    if not callable(f):
        raise InputTypeError(f"f is a {type(f).__name__}; pass a function x -> scalar tensor")
    a = torch.as_tensor(np.asarray(x_a, dtype=np.float64)).reshape(-1)
    b = torch.as_tensor(np.asarray(x_b, dtype=np.float64)).reshape(-1)
    if a.shape != b.shape:
        raise InputError(f"x_a has {a.numel()} values but x_b has {b.numel()}: give two points "
                         "of the same space")

    batched = torch.func.vmap(torch.func.grad_and_value(f))

    def value_grad(x: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal batched
        if batched is not None:
            try:  # all pivots at once; a function vmap cannot trace falls back to a loop
                g, vals = batched(x)
                return vals.detach(), g.detach()
            except Exception:
                batched = None
        vals, grads = [], []
        for p in x:
            p = p.detach().requires_grad_(True)
            out = f(p)
            (g,) = torch.autograd.grad(out, p)
            vals.append(out.detach())
            grads.append(g)
        return torch.stack(vals), torch.stack(grads)

    def value(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([torch.as_tensor(f(p), dtype=x.dtype) for p in x])

    x, info = relax_band(value_grad, straight_band(a, b, pivots), steps=steps, lr=lr, spring=spring,
                         momentum=momentum, climbing=climbing, insert=insert, value=value)
    return band_curve([{"x": p} for p in x], x, info, {"made_by": "lossmap.neb_function"})
