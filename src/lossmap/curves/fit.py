"""Trained curves between two minima (Garipov et al. 2018): :func:`curve`.

The bends of a Bézier curve or a polygonal chain are trained with the
endpoints fixed, minimizing ``E_{t ~ U(0, 1)} L(state(t))``: each mini-batch
draws a fresh ``t``, evaluates the model at the curve's point there and takes
an SGD step on the bends. Garipov et al., "Loss Surfaces, Mode Connectivity,
and Fast Ensembling of DNNs", NeurIPS 2018.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import params as P
from ..backends.torch.restore import preserved
from ..errors import InputError
from ..scan.progress import bar
from ..seeding import check_seed, seeded_rng
from .basis import KINDS, basis_matrix, combine
from .common import (
    LossFn,
    batch_loss,
    check_float,
    check_int,
    check_loss,
    check_models,
    train_tensors,
)
from .curve import Curve


def lr_factor(frac: float) -> float:
    """Garipov et al.'s schedule: 1 for the first half, down linearly to 0.01 at 90 %, then 0.01.

    ``frac`` is the share of the training done (0 to 1).
    """
    if frac <= 0.5:
        return 1.0
    if frac <= 0.9:
        return 1.0 - 0.99 * (frac - 0.5) / 0.4
    return 0.01


def curve(
    model_a: nn.Module,
    model_b: nn.Module | dict[str, torch.Tensor],
    loss_fn: LossFn,
    data: Any,
    *,
    kind: str = "bezier",
    bends: int = 1,
    epochs: int = 20,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Curve:
    """Train a low-loss curve between two models with the endpoints fixed (Garipov et al. 2018).

    The bends start on the straight line (bend j at ``(1 − j/m)·θ_a + (j/m)·θ_b``)
    and are trained by SGD with momentum on ``E_{t ~ U(0,1)} L(state(t))``, a
    fresh ``t`` per mini-batch; the learning rate follows Garipov et al.'s
    schedule (constant for half the steps, down linearly to 1 % by 90 %). The
    model runs in train mode through ``torch.func.functional_call`` with the
    curve's parameters and copies of ``model_a``'s buffers, so BatchNorm
    normalizes each batch with its own statistics (as in Garipov et al.'s code);
    dropout is active, drawn from a seeded fork of torch's RNG.

    Neither model is changed (their tensors are only read; ``model_a``'s
    modes are restored, even after an error). Only parameters lie on the
    curve; scan it with ``bn="recompute"`` for a BatchNorm network.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The endpoints (t = 0 and t = 1), of the same architecture and dtype.
        ``model_b`` may also be its state dict. ``model_a``'s forward is used.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch-mean loss, e.g.
        ``torch.nn.functional.cross_entropy``.
    data : (X, y), DataLoader, or dict of splits
        The training samples (of a dict, the ``"train"`` split, else the first).
        Read once into memory.
    kind : {"bezier", "polychain"}
        The curve's form (default a Bézier curve).
    bends : int
        Control points between the endpoints, >= 0 (default 1: a quadratic
        Bézier curve, or a chain with one bend). 0 returns the straight line.
    epochs : int
        Passes over the data, >= 1 (default 20).
    lr : float
        Initial SGD learning rate, > 0 (default 0.05).
    momentum : float
        SGD momentum in [0, 1) (default 0.9).
    batch_size : int
        Mini-batch size, >= 1 (default 128).
    seed : int
        Seeds the batch order, each batch's ``t`` and dropout (default 0). The
        same seed gives the same curve on the same machine.
    device : str or torch.device, optional
        Where to train (default: the device of ``model_a``'s parameters).
    progress : bool
        Show steps, steps/s and the time left (default True).

    Returns
    -------
    Curve
        ``kind``, ``bends + 2`` control points on the CPU, the endpoints exact
        copies of the models' parameters; ``meta`` holds the settings, the
        mean loss of each epoch (``history``) and the time taken.

    Raises
    ------
    InputError, InputTypeError
        For models of different layouts, a bad ``kind`` or ``bends``, data the
        model cannot take, or a loss that turns NaN (lower ``lr``).

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> from torch import nn
    >>> X = torch.randn(64, 4); y = (X[:, 0] > 0).long()
    >>> a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    >>> c = lm.curve(a, b, nn.functional.cross_entropy, (X, y), epochs=2, progress=False)
    >>> c
    Curve(bezier, 3 control points, 2 tensors, 10 values each)
    >>> torch.equal(c.state(1.0)["weight"], b.weight)
    True
    """
    if kind not in KINDS:
        raise InputError(f"kind={kind!r} is not a curve kind: use 'bezier' or 'polychain'")
    bends = check_int("bends", bends, 0, "control points between the endpoints, e.g. 1")
    epochs = check_int("epochs", epochs, 1, "passes over the data")
    lr = check_float("lr", lr)
    momentum = check_float("momentum", momentum, strict=False, high=1.0)
    batch_size = check_int("batch_size", batch_size, 1, "samples per step")
    seed = check_seed(seed)
    loss_fn = check_loss(loss_fn)
    pa, pb, buffers_a = check_models(model_a, model_b)
    X, y = train_tensors(data)
    device = P.resolve_device(model_a, device)
    m = bends + 1
    settings = {"made_by": "lossmap.curve", "kind": kind, "bends": bends, "epochs": epochs,
                "lr": lr, "momentum": momentum, "batch_size": batch_size, "seed": seed,
                "samples": int(X.shape[0])}
    if bends == 0:
        return Curve([pa, pb], kind, meta={**settings, "steps": 0, "history": [],
                                           "seconds": 0.0})

    a = {k: v.to(device) for k, v in pa.items()}
    b = {k: v.to(device) for k, v in pb.items()}
    bend_points = [
        {k: (a[k] + (b[k] - a[k]) * (j / m)).detach().clone().requires_grad_(True) for k in a}
        for j in range(1, m)
    ]
    points = [a, *bend_points, b]
    buffers = {k: v.to(device).clone() for k, v in buffers_a.items()}  # written by BatchNorm
    X, y = X.to(device), y.to(device)
    knots = np.linspace(0.0, 1.0, m + 1)
    opt = torch.optim.SGD([t for p in bend_points for t in p.values()], lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)  # batch order and t: nothing global
    n = int(X.shape[0])
    per_epoch = -(-n // batch_size)
    total = epochs * per_epoch
    history: list[float] = []
    started = time.perf_counter()
    with preserved(model_a), seeded_rng(seed, device), bar(
        total, enabled=progress, desc=f"curve ({kind})", unit="steps"
    ) as pbar:
        model_a.train()
        step = 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen).to(device)
            losses = []
            for i in range(0, n, batch_size):
                for group in opt.param_groups:
                    group["lr"] = lr * lr_factor(step / total)
                t = float(torch.rand((), generator=gen, dtype=torch.float64))
                state = combine(points, basis_matrix(kind, t, knots)[0])
                idx = order[i:i + batch_size]
                loss = batch_loss(model_a, state, buffers, loss_fn, X[idx], y[idx],
                                  first=step == 0)
                if not torch.isfinite(loss):
                    raise InputError(
                        f"the loss at t={t:.3f} (step {step + 1} of {total}) is {loss.item()}: "
                        f"the training diverged; lower lr (now {lr:g})"
                    )
                if loss.requires_grad:  # t == 0.0 exactly (p ~ 1e-16) moves no bend
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                losses.append(loss.item())
                step += 1
                pbar.update(1)
                if step % 10 == 0:
                    pbar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}", refresh=False)
            history.append(float(np.mean(losses)))
    seconds = time.perf_counter() - started
    out = [pa, *[{k: v.detach().to("cpu") for k, v in p.items()} for p in bend_points], pb]
    return Curve(out, kind, meta={**settings, "steps": total, "history": history,
                                  "seconds": round(seconds, 3)})
