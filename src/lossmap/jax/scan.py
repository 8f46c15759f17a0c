"""``lm.scan`` for JAX models: the same spec, store, runner and Surface, a JAX Evaluator."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .. import params as P
from ..data.splits import as_splits
from ..errors import InputError, InputTypeError, LossmapError
from ..runner import format_profile, run
from ..scan import DEFAULT_METRICS, _axes, _check_args, _resolve_directions, _spec_and_fingerprints
from ..scan import _resolve_metrics as _resolve_torch_metrics
from . import metrics as M
from .evaluate import JaxEvaluator
from .model import JaxModel, as_model, is_jax_model


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


def _resolve_metrics(metrics: Any, loss_fn: Callable) -> dict[str, Callable]:
    out = _resolve_torch_metrics(metrics, loss_fn)
    from ..evaluate.evaluator import accuracy as torch_accuracy

    return {k: (M.accuracy if fn is torch_accuracy else fn) for k, fn in out.items()}


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


def scan_jax(
    model: Any,
    loss_fn: Callable,
    *,
    data: Mapping[str, Any],
    directions: Any,
    grid: Any,
    centre: Any = None,
    metrics: Any = DEFAULT_METRICS,
    samples: int | None = None,
    store: Any = None,
    device: Any = None,
    batch_size: int | None = None,
    progress: bool = True,
    seed: int = 0,
    strategy: str = "auto",
    bn: str = "eval",
    profile: bool = False,
    meta: dict | None = None,
):
    """``lm.scan`` on the JAX backend; see :func:`lossmap.scan` for the parameters.

    ``loss_fn`` and custom metrics take JAX arrays (``lossmap.jax.cross_entropy``,
    ``optax.softmax_cross_entropy_with_integer_labels(...).mean()``…); data may
    be NumPy, JAX or torch arrays, laid out as the model expects (NHWC for
    Flax convolutions). BatchNorm uses the stored statistics (``bn="eval"``).
    """
    jm = as_model(model)
    if not callable(loss_fn):
        raise InputTypeError(f"loss_fn is a {type(loss_fn).__name__}; pass a callable "
                             "loss_fn(outputs, targets), e.g. lossmap.jax.cross_entropy")
    if bn != "eval":
        raise InputError(f"bn={bn!r} is not available for JAX models: the JAX backend "
                         "evaluates with the stored BatchNorm statistics (bn='eval')")
    state = centre_state(jm, centre)
    params = {k: v for k, v in state.items() if jm.is_param(k)}
    buffers = {k: v for k, v in state.items() if not jm.is_param(k)}
    dirs = _resolve_directions(directions, params, buffers)
    axes = _axes(grid, len(dirs))
    _check_args(samples, batch_size, meta)
    splits = as_splits(_torch_data(data), samples=samples, seed=seed)
    mfns = _resolve_metrics(metrics, loss_fn)
    if metrics == DEFAULT_METRICS and any(s.y.is_floating_point() for s in splits):
        mfns.pop("accuracy")
    evaluator = JaxEvaluator(jm, mfns, state, dirs, splits, batch_size,
                             strategy=strategy, device=device)
    _check_on_sample(evaluator, splits)
    spec, fps = _spec_and_fingerprints(axes, splits, mfns, loss_fn, samples, seed, dirs,
                                       params, buffers)
    t0 = time.perf_counter()
    try:
        return run(spec, fps, dirs, evaluator, store, progress, {"backend": "jax", **(meta or {})})
    finally:
        if profile:
            print(format_profile(evaluator, time.perf_counter() - t0), file=sys.stderr)


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
