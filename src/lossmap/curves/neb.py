"""Nudged elastic bands (Draxler et al. 2018) on a function of a vector: :func:`neb_function`.

A band is a polygonal chain ``x_0 … x_{P+1}`` with the endpoints fixed. Each
step moves every pivot ``x_i`` along the force

    F_i = −(∇f(x_i) − (∇f(x_i)·τ_i) τ_i) + k (|x_{i+1} − x_i| − |x_i − x_{i−1}|) τ_i,

the loss gradient's part perpendicular to the band's tangent ``τ_i`` (the
improved upwind tangent of Henkelman & Jónsson 2000) plus a spring along it
that keeps the pivots evenly spaced. With ``climbing=True`` the highest pivot
feels ``−∇f + 2 (∇f·τ) τ`` instead, for the second half of the steps: it
climbs along the band to the saddle point, whose height it then gives
exactly. AutoNEB-style insertion (``insert``) probes each segment after a
relaxation and adds a pivot where the loss between two neighbours rises above
both, then relaxes again. Draxler et al., "Essentially No Barriers in Neural
Network Energy Landscape", ICML 2018. :func:`lossmap.neb` (``curves/band.py``)
runs the same relaxation on the flattened parameters of a network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import InputError, InputTypeError
from ..scan.progress import bar
from .common import check_float, check_int
from .curve import Curve

#: ``value_grad(points (K, D), step) -> (values (K,), gradients (K, D))``
ValueGrad = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def _tangents(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unit tangents at the interior pivots (upwind, Henkelman & Jónsson 2000): (P, D)."""
    fwd, bwd = x[2:] - x[1:-1], x[1:-1] - x[:-2]  # (P, D) each
    vp, vi, vm = v[2:], v[1:-1], v[:-2]  # (P,)
    dmax = torch.maximum((vp - vi).abs(), (vm - vi).abs())
    dmin = torch.minimum((vp - vi).abs(), (vm - vi).abs())
    mixed = torch.where((vp > vm)[:, None], fwd * dmax[:, None] + bwd * dmin[:, None],
                        fwd * dmin[:, None] + bwd * dmax[:, None])
    up = ((vp > vi) & (vi > vm))[:, None]
    down = ((vp < vi) & (vi < vm))[:, None]
    tau = torch.where(up, fwd, torch.where(down, bwd, mixed))
    norm = tau.norm(dim=1, keepdim=True)
    fallback = (x[2:] - x[:-2])  # flat: the chord of the neighbours
    tau = torch.where(norm > 0, tau, fallback)
    return tau / tau.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _forces(x: torch.Tensor, v: torch.Tensor, g: torch.Tensor, spring: float,
            climb: bool) -> torch.Tensor:
    """The NEB force on each interior pivot: (P, D)."""
    tau = _tangents(x, v)  # (P, D)
    gi = g[1:-1]
    along = (gi * tau).sum(1, keepdim=True)  # (P, 1)
    lengths = (x[1:] - x[:-1]).norm(dim=1)  # (P + 1,)
    f = -(gi - along * tau) + spring * (lengths[1:] - lengths[:-1])[:, None] * tau
    if climb:
        top = int(torch.argmax(v[1:-1]))
        f[top] = -gi[top] + 2 * along[top] * tau[top]
    return f


def relax_band(
    value_grad: ValueGrad,
    x: torch.Tensor,
    *,
    steps: int,
    lr: float,
    spring: float,
    momentum: float = 0.0,
    climbing: bool = False,
    insert: int = 0,
    probes: int = 3,
    value: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, dict]:
    """Relax the band ``x`` (P + 2, D) in place of a copy; returns the band and what happened.

    ``value`` (default: ``value_grad`` at step -1) gives the values used to
    decide insertions and the final values (a fixed batch for networks).
    """
    value = value or (lambda pts: value_grad(pts, -1)[0])
    x = x.clone()
    added = 0
    rounds = 0
    total_steps = 0
    pbar = bar(steps, enabled=progress, desc="neb", unit="steps")
    with pbar:
        while True:
            rounds += 1
            velocity = torch.zeros_like(x[1:-1])
            for s in range(steps):
                v, g = value_grad(x, total_steps)
                if not bool(torch.isfinite(v).all()):
                    raise InputError(
                        f"the loss at a pivot is {v.tolist()} at step {total_steps + 1}: the band "
                        f"diverged; lower lr (now {lr:g}) or spring (now {spring:g})"
                    )
                f = _forces(x, v, g, spring, climbing and s >= steps // 2)
                velocity = momentum * velocity + lr * f
                x[1:-1] += velocity
                total_steps += 1
                pbar.update(1)
            if added >= insert:
                break
            new = _insertions(x, value, probes, insert - added)
            if not new:
                break
            for seg, point in sorted(new, reverse=True):  # from the end: indices stay valid
                x = torch.cat([x[:seg + 1], point[None], x[seg + 1:]])
            added += len(new)
            pbar.total += steps
            pbar.refresh()
    values = value(x)
    return x, {"steps": total_steps, "rounds": rounds, "inserted": added,
               "values": [float(u) for u in values]}


def _insertions(x: torch.Tensor, value: Callable, probes: int, budget: int) -> list:
    """(segment, new pivot) where the loss inside a segment rises above both its ends."""
    v = value(x)  # (P + 2,)
    fracs = torch.arange(1, probes + 1, dtype=x.dtype, device=x.device) / (probes + 1)
    found = []
    for i in range(len(x) - 1):
        pts = x[i] + fracs[:, None] * (x[i + 1] - x[i])[None]  # (probes, D)
        pv = value(pts)
        j = int(torch.argmax(pv))
        excess = float(pv[j] - torch.maximum(v[i], v[i + 1]))
        if excess > 0:
            found.append((excess, i, pts[j]))
    found.sort(key=lambda e: -e[0])
    return [(i, p) for _, i, p in found[:budget]]


def _arc_knots(x: torch.Tensor) -> list[float]:
    """Cumulative length along the band, from 0 to 1 (the polychain's knots)."""
    lengths = (x[1:] - x[:-1]).to(torch.float64).norm(dim=1)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), lengths.cumsum(0).cpu()])
    if float(cum[-1]) == 0.0:
        raise InputError("the two endpoints are the same point: there is no band between them")
    knots = (cum / cum[-1]).tolist()
    knots[-1] = 1.0
    return knots


def check_band(steps: Any, lr: Any, spring: Any, momentum: Any, insert: Any,
                pivots: Any) -> tuple:
    """The band's settings, checked: (pivots, steps, lr, spring, momentum, insert)."""
    return (check_int("pivots", pivots, 1, "movable pivots between the endpoints, e.g. 8"),
            check_int("steps", steps, 1, "relaxation steps"), check_float("lr", lr),
            check_float("spring", spring, strict=False),
            check_float("momentum", momentum, strict=False, high=1.0),
            check_int("insert", insert, 0, "pivots AutoNEB may add, 0 for none"))


def straight_band(a: torch.Tensor, b: torch.Tensor, pivots: int) -> torch.Tensor:
    """The straight band: ``pivots`` evenly spaced points between ``a`` and ``b``: (P + 2, D)."""
    s = torch.linspace(0, 1, pivots + 2, dtype=a.dtype, device=a.device)[:, None]
    x = a[None] + s * (b - a)[None]
    x[0], x[-1] = a, b  # exactly
    return x


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


def band_curve(points: list, x: torch.Tensor, info: dict, meta: dict) -> Curve:
    """The relaxed band as a polychain on arc-length knots, with its values and saddle in meta."""
    knots = _arc_knots(x)
    top = 1 + int(np.argmax(info["values"][1:-1]))
    saddle = {"value": info["values"][top], "index": top, "t": knots[top]}
    return Curve(points, "polychain", knots=knots, meta={**meta, **info, "saddle": saddle})

