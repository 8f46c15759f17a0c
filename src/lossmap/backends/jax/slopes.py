"""The slope of the loss at the centre along each direction, with its standard error (JAX).

The JAX twin of :mod:`lossmap.backends.torch.slopes`, with the same output: for
every example i and direction d, ``gᵢ = d/dα tᵢ(c + α·d)`` at α = 0 by
``jax.jvp`` (one jitted forward pass with tangents per batch and direction),
where tᵢ are the metric's per-example terms (:func:`lossmap.backends.jax.metrics.metric_terms`);
the slope is Σg/Σc and its standard error the ratio estimator's (std(g)/√n
when every count is 1), summed in float64 by
:func:`lossmap.backends.torch.slopes.slope_summary`. Metrics returning only a batch
mean, and accuracy (zero derivative almost everywhere), get no entry. The
model runs as its ``apply_fn`` runs it: in evaluation mode, BatchNorm with
the centre's statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ...data.splits import Split
from ...jax.model import as_model, to_jnp
from ..torch.slopes import slope_summary
from . import metrics as M
from .evaluate import DEFAULT_BATCH, jax_device


def centre_slopes(
    model: Any,
    metrics: Mapping[str, Callable],
    centre: Mapping[str, torch.Tensor],
    directions: Sequence[Mapping[str, torch.Tensor]],
    splits: Sequence[Split],
    batch_size: int | None = None,
    *,
    device: Any = None,
) -> dict[str, list[dict[str, float]]]:
    """Per variable and direction: the slope at the centre, its standard error and n.

    Parameters
    ----------
    model : JaxModel or any JAX model form
        ``lossmap.jax.JaxModel``, a ``(linen.Module, variables)`` tuple, an ``nnx.Module``.
    metrics : dict of str to callable
        The scan's metrics, ``f(outputs, targets)`` in ``jax.numpy``.
    centre : dict of str to Tensor
        Every weight of the centre (parameters and buffers) by flattened name.
    directions : sequence of mappings
        d₁, d₂… keyed by flattened name.
    splits : sequence of Split
        Every sample of each split is used.
    batch_size : int, optional
        Samples per jitted call (default 512).
    device : str or torch.device, optional
        As for the evaluator (default: JAX's default device).

    Returns
    -------
    dict of str to list of dict
        Keyed by variable ``split_metric``, one ``{"slope", "se", "n"}`` per
        direction, as :func:`lossmap.backends.torch.slopes.centre_slopes` returns.

    Examples
    --------
    >>> from lossmap.data.splits import Split
    >>> from lossmap.jax import JaxModel, accuracy, cross_entropy
    >>> m = JaxModel(lambda v, x: x @ v["params"]["w"], {"params": {"w": jnp.ones((3, 2))}})
    >>> rng = np.random.default_rng(0)
    >>> X, y = torch.from_numpy(rng.normal(size=(40, 3)).astype("float32")), torch.arange(40) % 2
    >>> centre = {"params/w": torch.ones(3, 2)}
    >>> d = {"params/w": torch.from_numpy(rng.normal(size=(3, 2)).astype("float32"))}
    >>> out = centre_slopes(m, {"loss": cross_entropy, "accuracy": accuracy}, centre, [d],
    ...                     [Split("train", X, y)])
    >>> sorted(out), out["train_loss"][0]["n"]
    (['train_loss'], 40)
    """
    jm = as_model(model)
    dev = jax_device(device)
    leaves = jm.flat()

    def put(a):
        return jax.device_put(a, dev)

    moved = sorted(k for k in centre if any(k in d for d in directions)
                   and jnp.issubdtype(leaves[k].dtype, jnp.floating))
    primal = {k: put(to_jnp(centre[k], leaves[k].dtype)) for k in moved}
    tangents = [{k: put(to_jnp(d[k], leaves[k].dtype) if k in d
                        else jnp.zeros(leaves[k].shape, leaves[k].dtype)) for k in moved}
                for d in directions]
    fixed = {k: put(to_jnp(centre[k], leaves[k].dtype) if k in centre else leaves[k])
             for k in leaves if k not in primal}
    names = [n for n, fn in metrics.items() if fn is not M.accuracy]
    fns = [metrics[n] for n in names]
    out: dict[str, list[dict[str, float]]] = {}
    for split in splits:
        bs = min(split.n, batch_size or DEFAULT_BATCH)
        X, y = split.X.numpy(), split.y.numpy()
        batches = [(put(X[i : i + bs]), put(y[i : i + bs])) for i in range(0, split.n, bs)]
        kinds = _kinds(jm, names, fns, {**fixed, **primal}, *batches[0])
        keep = [j for j, k in enumerate(kinds) if k in M.PER_EXAMPLE]
        if not keep:
            continue
        program = jax.jit(_program(jm, [fns[j] for j in keep], [kinds[j] for j in keep]))
        g: list[list[list[np.ndarray]]] = [[[] for _ in tangents] for _ in keep]
        c: list[list[np.ndarray]] = [[] for _ in keep]
        for Xb, yb in batches:
            for i, tangent in enumerate(tangents):
                counts, dots = program(primal, tangent, fixed, Xb, yb)
                for j in range(len(keep)):
                    g[j][i].append(np.asarray(dots[j], dtype=np.float64))
                    if i == 0:
                        c[j].append(np.asarray(counts[j], dtype=np.float64))
        for j, m in enumerate(keep):
            per_direction = [np.concatenate(parts) for parts in g[j]]
            if all(not d.any() for d in per_direction):
                continue  # zero on every example: piecewise constant (an accuracy)
            counts = np.concatenate(c[j])
            out[f"{split.name}_{names[m]}"] = [slope_summary(d, counts) for d in per_direction]
    return out


def _kinds(jm, names, fns, variables, X, y) -> list[str]:
    """Each metric's kind, from the shapes it returns on the batch (nothing is computed)."""
    def results(X, y):
        outputs = jm(jm.unflatten(variables), X)
        return [fn(outputs, y) for fn in fns]

    shapes = jax.eval_shape(results, X, y)
    return [M.metric_kind(n, fn, r, len(y)) for n, fn, r in zip(names, fns, shapes, strict=True)]


def _program(jm, fns, kinds):
    """``(primal, tangent, fixed, X, y) -> (counts, slopes)``: per metric, (N,) each."""
    def program(primal, tangent, fixed, X, y):
        def totals(moved):
            outputs = jm(jm.unflatten({**fixed, **moved}), X)
            terms = [M.metric_terms(fn, kind, outputs, y) for fn, kind in zip(fns, kinds,
                                                                              strict=True)]
            return [t for _, t, _ in terms], [c for _, _, c in terms]

        (_, counts), (dots, _) = jax.jvp(totals, (primal,), (tangent,))
        return counts, dots

    return program
