"""The JAX Evaluator: loss and metrics at chunks of grid points, one jitted call per batch.

For a chunk of K points the parameters c + Σ aᵢ·dᵢ are built inside the
jitted function and the network runs over all K points with ``jax.vmap`` on
accelerators, or ``jax.lax.map`` (one point after another inside the same
program) on the CPU, where XLA's batched-kernel convolutions were measured
about 3× slower. Chunks are
padded to a fixed K and each split has at most two batch shapes, so XLA
compiles a handful of programs for the whole scan. Per-batch means come back
to the host and are summed there in float64, weighted by batch size, exactly
as the PyTorch Evaluator does.

Standard errors: a metric with per-example terms (the built-in metrics' per-sample
values, a metric returning one value per example or ``(totals, counts)``, see
:mod:`lossmap.backends.jax.metrics`) also returns, per batch, Σt, Σc and the sums of
squares about the batch's own ratio (accurate in float32); the host turns them
into the float64 sums Σt, Σc, Σt², Σt·c, Σc², n that :func:`lossmap.stats.finish`
reads, as the PyTorch Evaluator keeps them. On the first call the counts are
checked as PyTorch checks them at the centre: negative counts, or a split on
which a metric counts nothing, are refused before any point is returned.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ...data.splits import Split
from ...errors import InputError
from ...jax.model import JaxModel, to_jnp
from ...stats import MEAN, PER_EXAMPLE, STATS, TOTAL, check_counted, check_counts, finish
from ..base import Evaluator, check_strategy
from . import metrics as M

DEFAULT_BATCH = 512
ACTIVATION_BUDGET = 256 * 1024**2  # bytes of network activations per jitted call, about
MAX_CHUNK = 64


def jax_device(device: Any) -> Any:
    """The JAX device for ``None``, ``"cpu"``, ``"gpu"``, ``"cuda:1"`` or a torch.device."""
    if device is None:
        return jax.devices()[0]
    text = str(device)
    platform, _, index = text.partition(":")
    platform = {"cuda": "gpu"}.get(platform, platform)
    try:
        found = jax.devices(platform)
        return found[int(index or 0)]
    except (RuntimeError, ValueError, IndexError) as exc:
        raise InputError(f"device={text!r}: JAX has no such device ({exc}); it has "
                         f"{', '.join(str(d) for d in jax.devices())}") from None


class JaxEvaluator(Evaluator):
    """Evaluate named metrics on every split at points of a line or plane (JAX).

    Parameters
    ----------
    model : JaxModel
    metrics : dict of str to callable
        ``f(outputs, targets)`` in ``jax.numpy``, returning the batch mean, one
        value per example or ``(totals, counts)`` (:mod:`lossmap.backends.jax.metrics`).
    centre : dict of str to Tensor
        Every weight of the centre (parameters and buffers) by flattened name.
    directions : sequence of mappings
        d₁, d₂ keyed by flattened name.
    splits : sequence of Split
    batch_size : int, optional
        Samples per jitted call (default ``min(n, 512)`` per split).
    strategy : {"auto", "loop", "vmap"}
        ``vmap`` runs the K points of a chunk as one batched program, ``loop``
        one after another inside the same program (``jax.lax.map``; ``auto``:
        loop on the CPU, where it was measured faster, vmap on accelerators).
    chunk : int, optional
        Points per jitted call (default: from an activation budget).
    device : str or torch.device, optional
        ``"cpu"``, ``"gpu"``, ``"cuda:1"``…; default JAX's default device.
    """

    def __init__(
        self,
        model: JaxModel,
        metrics: Mapping[str, Callable],
        centre: Mapping[str, torch.Tensor],
        directions: Sequence[Mapping[str, torch.Tensor]],
        splits: Sequence[Split],
        batch_size: int | None = None,
        *,
        strategy: str = "auto",
        chunk: int | None = None,
        device: Any = None,
    ):
        check_strategy(strategy)
        self.jax_device = jax_device(device)
        self.device = torch.device("cpu")  # where a torchrun group (gloo) exchanges results
        # On the CPU, XLA runs a batched-kernel convolution (vmap over weights) several
        # times slower than the same points one after another (benchmarks/): map there.
        self.vmap = strategy == "vmap" or (strategy == "auto"
                                           and self.jax_device.platform != "cpu")
        self.reuses_first_layer = False  # no first-layer reuse on this backend
        self.compiled = True  # every chunk runs as one jitted program
        self.precision = "full"
        self.batch_size = batch_size or DEFAULT_BATCH
        self.metrics = dict(metrics)
        self.split_names = [s.name for s in splits]
        self.timings: dict[str, float] = defaultdict(float)
        self.model = model
        leaves = model.flat()
        put = lambda a: jax.device_put(a, self.jax_device)  # noqa: E731
        moved = [k for k in centre if any(k in d for d in directions)]
        self._C = {k: put(to_jnp(centre[k], leaves[k].dtype)) for k in moved}
        self._D = {
            k: put(jnp.stack([to_jnp(d[k], leaves[k].dtype) if k in d
                              else jnp.zeros(leaves[k].shape, leaves[k].dtype)
                              for d in directions]))
            for k in moved
        }
        # Leaves no direction moves: the centre's values (opaque leaves such as PRNG keys
        # are not in ``centre`` and keep the model's own).
        self._fixed = {
            k: put(to_jnp(centre[k], leaves[k].dtype) if k in centre else leaves[k])
            for k in leaves if k not in self._C
        }
        self.n = [s.n for s in splits]
        self.batches = []
        t0 = time.perf_counter()
        for s in splits:
            bs = min(s.n, batch_size or DEFAULT_BATCH)
            X, y = s.X.numpy(), s.y.numpy()
            self.batches.append([(put(X[i : i + bs]), put(y[i : i + bs]))
                                 for i in range(0, s.n, bs)])
        self.timings["data"] += time.perf_counter() - t0
        self._kinds: list[str] | None = None  # how each metric's result is read (lazily)
        self._checked = False  # the metrics' counts, checked on the first call
        self.chunk = chunk or self._auto_chunk()
        self._fn = jax.jit(self._program())

    @property
    def strategy(self) -> str:
        """"vmap" (a chunk as one batched program) or "loop" (``jax.lax.map``)."""
        return "vmap" if self.vmap else "loop"

    @property
    def variables(self) -> list[str]:
        """Column names, ``split_metric``, in the order :meth:`evaluate` returns them."""
        return [f"{s}_{m}" for s in self.split_names for m in self.metrics]

    @property
    def kinds(self) -> list[str]:
        """How each metric's result is read (:func:`lossmap.backends.jax.metrics.metric_kind`).

        Found from the shapes the metrics return on the first batch, by
        ``jax.eval_shape`` (nothing is computed).
        """
        if self._kinds is None:
            X, y = self.batches[0][0]
            model, fns = self.model, list(self.metrics.values())

            def results(X, y):
                out = model(model.unflatten({**self._fixed, **self._C}), X)
                return [fn(out, y) for fn in fns]

            shapes = jax.eval_shape(results, X, y)
            self._kinds = [M.metric_kind(name, fn, r, len(y)) for (name, fn), r
                           in zip(self.metrics.items(), shapes, strict=True)]
        return self._kinds

    def _check_counts(self, sums: np.ndarray, negative: np.ndarray) -> None:
        """Refuse negative counts, or a split on which a metric counts nothing (Σc = 0).

        ``sums`` (K, splits, M, STATS) and ``negative`` (K, splits, M), the sums
        of the negative counts, at the first call's points.
        """
        from ...metrics import is_token_loss

        for s, split in enumerate(self.split_names):
            for m, (name, fn) in enumerate(self.metrics.items()):
                worst = int(np.argmin(negative[:, s, m]))  # one point's sum, not K points'
                check_counts(name, negative[worst, s, m], split)
                if self.kinds[m] != MEAN:
                    # a count may depend on the predictions (0/0 at some points is a value
                    # the store keeps as missing); a split that counts nothing anywhere is not
                    check_counted(split, name, float(sums[:, s, m, 1].max()),
                                  tokens=is_token_loss(fn))
        self._checked = True

    @property
    def errors(self) -> bool:
        """Whether :meth:`evaluate` gives standard errors: some metric has per-example terms."""
        return any(k in PER_EXAMPLE for k in self.kinds)

    def _parts_fn(self):
        """``point(C, D, fixed, a, X, y) -> (values (M,), stats (M, 6))`` at one point."""
        model, fns = self.model, list(self.metrics.values())

        def point(C, D, fixed, a, X, y):
            moved = {k: C[k] + jnp.tensordot(a.astype(C[k].dtype), D[k], axes=1) for k in C}
            out = model(model.unflatten({**fixed, **moved}), X)
            kind = jnp.promote_types(out.dtype, jnp.float32)
            values, stats = [], []
            for fn, how in zip(fns, self.kinds, strict=True):
                v, t, c = M.metric_terms(fn, how, out, y)
                values.append(jnp.asarray(v).astype(kind))
                stats.append(_batch_stats(t, c, how, kind))
            return jnp.stack(values), jnp.stack(stats)

        return point

    def _point_fn(self):
        """``point(C, D, fixed, a, X, y) -> values (M,)``: every metric at one point."""
        parts = self._parts_fn()
        return lambda C, D, fixed, a, X, y: parts(C, D, fixed, a, X, y)[0]

    def _program(self):
        point = self._parts_fn()
        if self.vmap:
            def program(C, D, fixed, A, X, y):
                return jax.vmap(lambda a: point(C, D, fixed, a, X, y))(A)
        else:
            def program(C, D, fixed, A, X, y):
                return jax.lax.map(lambda a: point(C, D, fixed, a, X, y), A)
        return program

    def _auto_chunk(self) -> int:
        """Points per call so that K × batch activations stay near the budget."""
        if not self.vmap:
            return 16
        X, _ = self.batches[0][0]
        point = self._point_fn()
        a = jnp.zeros((len(next(iter(self._D.values()))) if self._D else 1,), jnp.float32)
        try:
            hlo = jax.jit(point).lower(self._C, self._D, self._fixed, a, X, self.batches[0][0][1])
            mem = hlo.compile().memory_analysis()
            per_point = max(int(getattr(mem, "temp_size_in_bytes", 0) or 0), 1)
        except Exception:  # memory analysis is best effort
            per_point = int(np.prod(X.shape)) * X.dtype.itemsize * 64
        return int(max(1, min(MAX_CHUNK, ACTIVATION_BUDGET // per_point)))

    def evaluate(self, points: np.ndarray, *, errors: bool = False):
        """Values at each point (and their standard errors).

        Parameters
        ----------
        points : ndarray, shape (K, ndim)
            Coordinates (a, b) of K ≤ ``chunk`` points.
        errors : bool, default False
            Also return the standard error of every value (NaN for a metric
            without per-example terms).

        Returns
        -------
        ndarray, shape (K, len(variables)), float64
            Or ``(values, errors)``, two such arrays, with ``errors=True``.
        """
        points = np.asarray(points, dtype=np.float64)
        K = len(points)
        size = 1
        while size < K:  # padded to 1, 4, 16, … points: a few compiled programs in all
            size *= 4
        A = np.zeros((min(max(size, K), max(self.chunk, K)), points.shape[1]), dtype=np.float64)
        A[:K] = points
        A = jax.device_put(jnp.asarray(A, next(iter(self._C.values())).dtype)
                           if self._C else jnp.asarray(A), self.jax_device)
        t0 = time.perf_counter()
        parts = [[(self._fn(self._C, self._D, self._fixed, A, X, y), len(y)) for X, y in b]
                 for b in self.batches]
        kinds = self.kinds
        nm = len(self.metrics)
        out = np.zeros((K, len(self.batches) * nm))
        sums = np.zeros((K, len(self.batches), nm, STATS))
        negative = np.zeros((K, len(self.batches), nm))
        for s, batches in enumerate(parts):
            for (vals, stats), n in batches:  # read back after all calls are queued
                out[:, s * nm : (s + 1) * nm] += np.asarray(vals, dtype=np.float64)[:K] * n
                stats = np.asarray(stats, dtype=np.float64)[:K]
                sums[:, s] += _raw_sums(stats[..., :6], n, kinds)
                negative[:, s] += np.nan_to_num(stats[..., 6])
            out[:, s * nm : (s + 1) * nm] /= self.n[s]
        if not self._checked:  # the counts, as PyTorch checks them at the centre
            self._check_counts(sums, negative)
        ratio, se = finish(sums.reshape(K, len(self.batches) * nm, STATS))
        # The batch means' weighted sum for a batch mean; Σt/Σc for per-example values and
        # (totals, counts), whose batch means would weigh examples by their batch's count.
        exact = np.tile([k != MEAN for k in kinds], len(self.batches))
        out[:, exact] = ratio[:, exact]
        self.timings["forward"] += time.perf_counter() - t0
        return (out, se) if errors else out


def _batch_stats(t, c, kind: str, dtype) -> jax.Array:
    """A batch's (7,) sums of one metric: Σt, Σc, Q, P, S, r (see :func:`_raw_sums`), Σc⁻.

    Q = Σ(t − r·c)², P = Σ(t − r·c)·c and S = Σc² are taken about the batch's own
    ratio r = Σt/Σc, so that float32 keeps the spread (not the mean²) accurate;
    Σc⁻ is the sum of the negative counts (0 when none), for the counts' check.
    """
    nan = jnp.full((), jnp.nan, dtype)
    if t is None:  # a batch mean: no terms
        return jnp.stack([nan] * 7)
    t, c = t.astype(dtype), c.astype(dtype)
    T, C, neg = t.sum(), c.sum(), jnp.minimum(c, 0).sum()
    if kind == TOTAL:
        return jnp.stack([T, C, nan, nan, nan, nan, neg])
    r = jnp.where(C != 0, T / jnp.where(C != 0, C, 1), 0)
    u = t - r * c
    return jnp.stack([T, C, (u * u).sum(), (u * c).sum(), (c * c).sum(), r, neg])


def _raw_sums(stats: np.ndarray, rows: int, kinds: Sequence[str]) -> np.ndarray:
    """(K, M, 6) batch stats as the float64 sums Σt, Σc, Σt², Σt·c, Σc², n of ``finish``.

    Σt² = Q + 2rP + r²S and Σt·c = P + rS hold for any r; evaluated in float64,
    the cancellation in ``finish`` costs nothing.
    """
    T, C, Q, P, S, r = np.moveaxis(stats, -1, 0)
    n = np.full_like(T, rows)
    raw = np.stack([T, C, Q + 2 * r * P + r * r * S, P + r * S, S, n], axis=-1)
    for j, kind in enumerate(kinds):
        if kind == TOTAL:
            raw[:, j, 2:5] = np.nan
        elif kind == MEAN:  # value only: t = mean · rows, c = rows
            raw[:, j, :] = np.nan
            raw[:, j, 1] = raw[:, j, 5] = rows
    return raw
