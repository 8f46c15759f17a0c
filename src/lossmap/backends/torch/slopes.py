"""The slope of the loss at the centre along each direction, with its standard error.

A scan's line says "the centre is on a slope" or "at a minimum" from a few
grid values; how sure that is depends on the sample. The directional
derivative of a mean over examples is the mean of per-example derivatives,
so its uncertainty is measured the way a mean's is:

1. **Per-example slopes.** For every example i of a split and every
   direction d, ``gᵢ = d/dα tᵢ(c + α·d)`` at α = 0 by forward-mode automatic
   differentiation (``torch.func.jvp`` through ``torch.func.functional_call``:
   one forward pass with tangents per batch and direction), where tᵢ are the
   metric's per-example terms (:func:`lossmap.backends.torch.persample.per_example_terms`;
   their counts cᵢ do not depend on the weights).
2. **Slope and standard error.** The split's value is Σt/Σc, so its slope is
   ``Σg / Σc`` and its standard error the ratio estimator's,
   ``SE² = Σ(gᵢ − slope·cᵢ)² / (n(n−1)c̄²)``; with every cᵢ = 1 that is
   ``mean(g)`` and ``std(g, ddof=1)/√n``. Summed in float64.

A scan computes them through its own evaluator (:func:`evaluator_slopes`):
its batches, and, where the first layer is reused, its kept first-layer
outputs, which are that layer's exact derivatives along each direction, so
forward-mode differentiation runs only the layers after it. On a
784-512-512-10 MLP with 10,000 samples and two directions that measured the
time of about 4.5 grid points instead of 11–17 (``benchmarks/mlp_plane.py``).

Only metrics with per-example terms get an entry: a loss module with a
``reduction``, a metric returning one value per example or per-example
``(totals, counts)``; not a metric that returns only a batch mean, and not a
piecewise-constant metric such as accuracy, whose derivative is zero almost
everywhere (recognized as lossmap's accuracy, or as per-example slopes that
are all exactly zero). BatchNorm runs in eval mode with the centre's
statistics fixed (the model is put in eval mode for the computation and
restored exactly after it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp

from ...data.splits import Split
from .attention import differentiable_attention
from .metrics import accuracy
from .persample import per_example_terms
from .restore import preserved

#: Metrics whose derivative is zero almost everywhere: no slope is computed for them.
PIECEWISE_CONSTANT = (accuracy,)


def slope_summary(g: np.ndarray, c: np.ndarray | None = None) -> dict[str, float]:
    """``{"slope", "se", "n"}`` from per-example slopes ``g`` and counts ``c``.

    Parameters
    ----------
    g : ndarray, shape (n,)
        Per-example directional derivatives of the totals tᵢ.
    c : ndarray, shape (n,), optional
        Per-example counts (default: 1 each).

    Returns
    -------
    dict
        ``slope = Σg / Σc``; ``se`` the ratio estimator's standard error,
        ``std(g, ddof=1) / √n`` when every count is 1; NaN for fewer than 2
        examples.

    Examples
    --------
    >>> s = slope_summary(np.array([1.0, 2.0, 3.0]))
    >>> s["slope"], round(s["se"], 6), s["n"]  # se = std / √n = 1 / √3
    (2.0, 0.57735, 3)
    >>> round(slope_summary(np.array([2.0, 4.0, 6.0]), np.array([2.0, 2.0, 2.0]))["se"], 6)
    0.57735
    """
    g = np.asarray(g, dtype=np.float64)
    c = np.ones_like(g) if c is None else np.asarray(c, dtype=np.float64)
    n = len(g)
    if n == 0 or c.sum() == 0:
        return {"slope": float("nan"), "se": float("nan"), "n": int(n)}
    slope = float(g.sum() / c.sum())
    se = float("nan")
    if n > 1:
        cbar = c.sum() / n
        se = float(np.sqrt(np.sum((g - slope * c) ** 2) / (n * (n - 1))) / cbar)
    return {"slope": slope, "se": se, "n": int(n)}


@torch.no_grad()  # forward-mode AD needs no graph; the model sees no grad mode
def centre_slopes(
    model: nn.Module,
    metrics: Mapping[str, Callable],
    centre_params: Mapping[str, torch.Tensor],
    centre_buffers: Mapping[str, torch.Tensor],
    directions: Sequence[Mapping[str, torch.Tensor]],
    splits: Sequence[Split],
    device: torch.device,
    batch_size: int,
) -> dict[str, list[dict[str, float]]]:
    """Per variable and direction: the slope at the centre, its standard error and n.

    Parameters
    ----------
    model : nn.Module
        Run through ``functional_call``; it is put in eval mode for the
        computation and restored exactly afterwards.
    metrics : dict of str to callable
        The scan's metrics, ``f(outputs, targets)``.
    centre_params, centre_buffers : dict of str to Tensor
        The centre c.
    directions : sequence of mappings
        d₁, d₂… keyed by parameter (or buffer) name; a tensor a direction
        does not name does not move along it.
    splits : sequence of Split
        Every sample of each split is used.
    device : torch.device
    batch_size : int
        Samples per forward pass (a forward pass with tangents takes about
        twice the memory of a plain one).

    Returns
    -------
    dict of str to list of dict
        Keyed by variable ``split_metric`` (as :attr:`Evaluator.variables`),
        one ``{"slope", "se", "n"}`` per direction (n: examples). A metric
        without per-example terms on some batch of a split, or with a
        derivative that is zero on every example (accuracy), has no entry.

    Examples
    --------
    >>> from lossmap.data.splits import Split
    >>> torch.manual_seed(0) and None
    >>> net = nn.Linear(3, 2)
    >>> X, y = torch.randn(50, 3), torch.randint(0, 2, (50,))
    >>> params = {k: v.detach() for k, v in net.named_parameters()}
    >>> d = {k: torch.randn_like(v) for k, v in params.items()}
    >>> out = centre_slopes(net, {"loss": nn.CrossEntropyLoss(), "accuracy": accuracy},
    ...                     params, {}, [d], [Split("train", X, y)], torch.device("cpu"), 16)
    >>> sorted(out), out["train_loss"][0]["n"]
    (['train_loss'], 50)
    """
    state = {k: v.to(device) for k, v in {**centre_params, **centre_buffers}.items()}
    moved = sorted(k for k in state
                   if state[k].is_floating_point() and any(k in d for d in directions))
    tangents = [{k: (d[k].to(device, state[k].dtype) if k in d else torch.zeros_like(state[k]))
                 for k in moved} for d in directions]
    fixed = {k: v for k, v in state.items() if k not in moved}
    primal = {k: state[k].detach() for k in moved}

    def forward(params, X, Y):
        return functional_call(model, {**fixed, **params}, (X,))

    def batches(split):
        for X, y in zip(split.X.split(batch_size), split.y.split(batch_size), strict=True):
            yield X.to(device), y.to(device), None

    with preserved(model):
        return _slopes(forward, metrics, primal, tangents, splits, batches, device)


@torch.no_grad()
def evaluator_slopes(evaluator: Any, metrics: Mapping[str, Callable], splits: Sequence[Split]
                     ) -> dict[str, list[dict[str, float]]]:
    """:func:`centre_slopes` through a scan's own evaluator: its batches and first-layer reuse.

    The first layer is affine in its weights, so its output at c + α·dᵢ is
    ``Y_c + α·Yᵢ`` exactly: its derivative along dᵢ is Yᵢ, the output the
    evaluator already keeps for every batch (:mod:`lossmap.backends.torch.firstlayer`).
    Forward-mode differentiation therefore starts after the first layer, with
    primal Y_c and tangent Yᵢ, and runs only the layers after it; the other
    tensors enter as in :func:`centre_slopes`. Same values, to round-off, for
    a fraction of the work (on a 784-512-512-10 MLP the first layer holds 60 %
    of the multiply-adds).

    Parameters
    ----------
    evaluator : lossmap.backends.torch.evaluator.Evaluator
        With first-layer reuse active (``evaluator.reuses_first_layer``) and
        ``bn="eval"``; its batches are those of ``splits``.
    metrics : dict of str to callable
    splits : sequence of Split
        The splits the evaluator was built on (their names).

    Returns
    -------
    dict of str to list of dict
        As :func:`centre_slopes`.
    """
    ev = evaluator
    centre = ev.centre
    tangents = [{k: ds[i].to(centre[k].dtype) for k, ds in ev.D.items()}
                for i in range(ev._ndims)]
    primal = dict(centre)

    def forward(params, X, Y):
        ev.given.take(Y)  # through the fused ReLU, if any (a new tensor: Y is kept)
        try:
            return functional_call(ev.net, {**ev.fixed, **params}, (X,))
        finally:
            ev.given.value = None  # a tensor of the jvp never outlives it

    def batches(split):
        s = ev.split_names.index(split.name)
        for b, (X, y) in enumerate(ev.batches[s]):
            X, y = X.to(ev.device), y.to(ev.device)
            Ys = ev.cache[s][b] if ev.cache is not None else ev._first_outputs(X, y)
            yield X, y, Ys

    return _slopes(forward, metrics, primal, tangents, splits, batches, ev.device)


def _slopes(forward, metrics, primal, tangents, splits, batches, device
            ) -> dict[str, list[dict[str, float]]]:
    """Per variable and direction the slope summary, from ``forward(params, X, Y)``."""
    candidates = {name: fn for name, fn in metrics.items()
                  if not any(fn is p for p in PIECEWISE_CONSTANT)}
    out: dict[str, list[dict[str, float]]] = {}
    # fused attention kernels have no forward-mode rule: the math kernel, once for the pass
    with torch.autocast(device.type, enabled=False), differentiable_attention():
        for split in splits:
            slopes = _split_slopes(forward, candidates, primal, tangents, batches(split))
            for name, (per_direction, c) in slopes.items():
                if all(not g.any() for g in per_direction):
                    continue  # zero on every example: piecewise constant (an accuracy)
                out[f"{split.name}_{name}"] = [slope_summary(g, c) for g in per_direction]
    return out


def _split_slopes(forward, metrics, primal, tangents, batches
                  ) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Per metric with per-example terms: every example's slope per direction, and counts.

    ``batches`` yields ``(X, y, Ys)``: ``Ys`` None (the model runs whole) or the first
    layer's outputs ``(Y_c, Y_1, …)``, whose ``Yᵢ`` is the tangent of ``Y_c`` along dᵢ.
    """
    names = list(metrics)
    kept = set(names)
    slopes: dict[str, list[list[np.ndarray]]] = {n: [[] for _ in tangents] for n in names}
    counts: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def as_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().to(torch.float64).cpu().numpy()

    for X, y, Ys in batches:

        def terms(moved, Y=None, X=X, y=y):
            """(t₁, c₁, t₂, c₂, …): each metric's per-example totals and counts."""
            outputs = forward(moved, X, Y)
            out: list[torch.Tensor] = []
            for n in names:
                tc = per_example_terms(metrics[n], outputs, y) if n in kept else None
                if tc is None or not tc[0].is_floating_point():
                    kept.discard(n)  # no per-example terms on this batch: none for the split
                    out += [X.new_zeros(()), X.new_zeros(())]
                    continue
                t, c = tc
                out += [t, torch.ones_like(t) if c is None else c]
            return tuple(out)

        for i, tangent in enumerate(tangents):
            if Ys is None:
                values, dots = jvp(terms, (primal,), (tangent,))
            else:
                values, dots = jvp(terms, (primal, Ys[0]), (tangent, Ys[i + 1]))
            for j, n in enumerate(names):
                if n in kept:
                    slopes[n][i].append(as_numpy(dots[2 * j]))
                    if i == 0:
                        counts[n].append(as_numpy(values[2 * j + 1]))
        if not kept:
            break
    return {n: ([np.concatenate(p) for p in slopes[n]], np.concatenate(counts[n]))
            for n in names if n in kept}
