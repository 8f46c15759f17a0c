"""Nudged elastic bands (Draxler et al. 2018): the band, its force and its relaxation.

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
Network Energy Landscape", ICML 2018. :mod:`lossmap.curves.neb` runs this
relaxation on a function of a vector and on the parameters of a network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import InputError
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


def band_curve(points: list, x: torch.Tensor, info: dict, meta: dict) -> Curve:
    """The relaxed band as a polychain on arc-length knots, with its values and saddle in meta."""
    knots = _arc_knots(x)
    top = 1 + int(np.argmax(info["values"][1:-1]))
    saddle = {"value": info["values"][top], "index": top, "t": knots[top]}
    return Curve(points, "polychain", knots=knots, meta={**meta, **info, "saddle": saddle})

