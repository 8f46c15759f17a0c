"""The JAX backend: JAX/Flax models scanned through the same plan, store and Surface.

Found at run time by :mod:`lossmap.backends.registry` (only once the user's
process has imported ``jax``). ``loss_fn`` and custom metrics take JAX arrays
(``lossmap.jax.cross_entropy``, ``optax.softmax_cross_entropy_with_integer_labels(...)
.mean()``…); data may be NumPy, JAX or torch arrays laid out as the model
expects (NHWC for Flax convolutions).

Options: ``strategy`` ("loop" runs the points of a chunk with ``jax.lax.map``,
"vmap" with ``jax.vmap``), ``batch_size`` and ``device`` as in PyTorch; every
chunk is a jitted program, so ``compile=True`` changes nothing. PyTorch-only
options (``autocast``, ``channels_last=True``, ``bn="recompute"``) are refused
with the way out, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ... import params as P
from ...errors import InputError, InputTypeError, LossmapError
from ...jax.model import JaxModel, as_model, is_jax_model
from ...scan.options import ScanOptions
from ..base import PROBE_SAMPLES, Backend, ResolvedScan
from . import metrics as M
from .evaluate import JaxEvaluator


class JaxBackend(Backend):
    """JAX models: ``JaxModel``, ``(linen.Module, variables)`` tuples, ``nnx.Module``."""

    name = "jax"
    filter_axis = -1  # Flax kernels keep their output axis last (Dense (in, out), Conv HWIO)

    def owns(self, model: Any) -> bool:
        return is_jax_model(model)

    def state(self, model: Any, centre: Any = None) -> tuple[dict, dict]:
        jm = as_model(model)
        state = centre_state(jm, centre)
        params = {k: v for k, v in state.items() if jm.is_param(k)}
        return params, {k: v for k, v in state.items() if not jm.is_param(k)}

    def builtin_metrics(self) -> Mapping[str, Callable]:
        return {"accuracy": M.accuracy}

    def check_options(self, options: ScanOptions) -> None:
        if options.autocast is not None:
            raise InputError("autocast is PyTorch-only; for a JAX model cast its variables "
                             "and data to the dtype you want instead")
        if options.channels_last:
            raise InputError("channels_last=True is PyTorch-only: a JAX model takes its data "
                             "in the layout it was written for (NHWC for Flax convolutions)")
        if options.bn != "eval":
            raise InputError(f"bn={options.bn!r} is not available for JAX models: the JAX "
                             "backend evaluates with the stored BatchNorm statistics (bn='eval')")

    def convert_data(self, data: Any) -> Any:
        return _torch_data(data)

    def loss(self, name: str) -> Callable:
        if name not in ("cross_entropy", "mse"):
            return super().loss(name)
        return getattr(M, name)

    def evaluator(self, plan: ResolvedScan) -> JaxEvaluator:
        o = plan.options
        evaluator = JaxEvaluator(as_model(plan.model), plan.metrics,
                                 {**plan.params, **plan.buffers}, plan.directions, plan.splits,
                                 o.batch_size, strategy=o.strategy, device=o.device)
        _check_on_sample(evaluator, plan.splits)
        return evaluator

    def probe(self, plan: ResolvedScan, evaluator: JaxEvaluator) -> dict[str, float]:
        import jax.numpy as jnp

        point = evaluator._point_fn()
        a = jnp.zeros((len(plan.directions),))
        out = {}
        for s in plan.splits:
            X = jnp.asarray(s.X[:PROBE_SAMPLES].numpy())
            y = jnp.asarray(s.y[:PROBE_SAMPLES].numpy())
            vals = np.asarray(point(evaluator._C, evaluator._D, evaluator._fixed, a, X, y),
                              dtype=np.float64)
            out.update({f"{s.name}_{m}": float(v)
                        for m, v in zip(plan.metrics, vals, strict=True)})
        return out

    def centre_slopes(self, plan: ResolvedScan, evaluator: Any = None
                      ) -> dict[str, list[dict[str, float]]] | None:
        """Per-example directional slopes at the centre, by ``jax.jvp``.

        See :mod:`lossmap.backends.jax.slopes`.

        Every sample of each split. None (not measured) for a path scan, above
        the PyTorch round-off floor's size limit (``roundoff.BUDGET``), where
        no metric has per-example terms, and, with a warning, for a model that
        ``jax.jvp`` cannot differentiate (a ``jax.custom_vjp`` function).
        """
        import warnings

        from ..torch.roundoff import BUDGET
        from .slopes import centre_slopes

        if getattr(plan, "path", None) is not None:
            return None  # its directions are not the scan's axis
        state = {**plan.params, **plan.buffers}
        if 8 * sum(t.numel() for t in state.values()) * (1 + len(plan.directions)) > BUDGET:
            return None
        try:
            out = centre_slopes(plan.model, plan.metrics, state, plan.directions, plan.splits,
                                plan.options.batch_size, device=plan.options.device)
        except (TypeError, ValueError, NotImplementedError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            warnings.warn(f"the slopes at the centre were not measured ({type(exc).__name__}: "
                          f"{first[:200]})", RuntimeWarning, stacklevel=3)
            return None
        return out or None


def _tensor(a: Any) -> Any:
    if isinstance(a, torch.Tensor) or not hasattr(a, "shape"):
        return a
    return torch.from_numpy(np.array(a))


def _torch_data(data: Any) -> Any:
    """Splits of NumPy/JAX arrays as the torch tensors lossmap's splits hold."""
    if not isinstance(data, Mapping):
        return data  # as_splits names the problem

    def convert(obj):
        if isinstance(obj, (tuple, list)) and len(obj) == 2 and hasattr(obj[0], "shape"):
            return _tensor(obj[0]), _tensor(obj[1])
        if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes, Mapping)):
            return (convert(b) if isinstance(b, (tuple, list)) else b for b in obj)
        return obj

    return {k: convert(v) for k, v in data.items()}


def centre_state(model: JaxModel, centre: Any) -> dict[str, torch.Tensor]:
    """Every weight of the centre as CPU tensors keyed by flattened name."""
    if centre is None:
        params, buffers = model.torch_state()
        return {**params, **buffers}
    if is_jax_model(centre):
        other = as_model(centre, what="centre")
        try:
            params, buffers = model.torch_state(other.variables)
        except InputError as exc:
            raise InputError(f"centre: {exc}") from None
        if other.names() != model.names():
            raise InputError("the centre's variables have other names than the model's: "
                             "it belongs to another model")
        return {**params, **buffers}
    if isinstance(centre, Mapping):  # a flat name -> array mapping
        params, buffers = model.torch_state()
        flat = {k: _tensor(v) for k, v in centre.items()}
        P.check_same_layout(params, {k: v for k, v in flat.items() if model.is_param(k)},
                            what="centre")
        extra = sorted(k for k in flat if not model.is_param(k) and k not in buffers)
        if extra:
            raise InputError(f"centre has {len(extra)} arrays the model does not have "
                             f"(first {extra[0]!r}): it was saved from another model")
        return {**params, **buffers, **flat}
    raise InputTypeError(
        f"centre is a {type(centre).__name__}; for a JAX model pass variables of the same "
        "model (a pytree, a JaxModel) or a flat name -> array dict"
    )


def _check_on_sample(evaluator: JaxEvaluator, splits) -> None:
    """Run the model and metrics once at the centre on a few samples; name what fails."""
    import jax.numpy as jnp

    point = evaluator._point_fn()
    nd = next(iter(evaluator._D.values())).shape[0] if evaluator._D else 1
    for s in splits:
        X, y = jnp.asarray(s.X[:2].numpy()), jnp.asarray(s.y[:2].numpy())
        try:
            point(evaluator._C, evaluator._D, evaluator._fixed, jnp.zeros((nd,)), X, y)
        except LossmapError:
            raise
        except Exception as exc:  # the user's code can raise anything
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputError(
                f"the JAX model or a metric failed on 2 samples of split {s.name!r} "
                f"(X {tuple(s.X.shape[1:])}, y {tuple(s.y.shape[1:])}): "
                f"{type(exc).__name__}: {first[:300]}"
            ) from exc
