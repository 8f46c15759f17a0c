"""lm.scan: plan the grid, drive the Evaluator, write the Store, return a Surface."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import params as P
from .backends.registry import is_jax
from .data.splits import as_splits
from .directions.direction import Direction, as_direction
from .errors import InputError, InputTypeError
from .evaluate.evaluator import Evaluator, Metric, accuracy, check_on_sample
from .evaluate.restore import preserved
from .runner import format_profile, run
from .spec import AUTOCAST, ScanSpec, check_axis, check_name
from .store import Store
from .surface import Surface

DEFAULT_METRICS = ("loss", "accuracy")


def _resolve_directions(directions: Any, params: dict, buffers: dict) -> list[Direction]:
    if isinstance(directions, (Direction, Mapping)):
        directions = [directions]
    if not isinstance(directions, Sequence) or isinstance(directions, str):
        raise InputTypeError(
            f"directions is a {type(directions).__name__}; pass a Direction or a list of "
            "1 (line) or 2 (plane) Directions"
        )
    if len(directions) not in (1, 2):
        raise InputError(f"{len(directions)} directions given: pass 1 (a line) or 2 (a plane)")
    out = []
    for i, d in enumerate(directions):
        d = as_direction(d, name=f"direction {i}")
        P.check_same_layout(params, d, what=f"direction {i}", allow_extra=buffers)
        for k in d:
            if k in buffers and buffers[k].shape != d[k].shape:
                raise InputError(
                    f"direction {i} has shape {tuple(d[k].shape)} for buffer {k!r} "
                    f"but the model has {tuple(buffers[k].shape)}"
                )
        out.append(d)
    return out


def _resolve_metrics(metrics: Any, loss_fn: Callable) -> dict[str, Metric]:
    if isinstance(metrics, (str, Mapping)) or callable(metrics):
        metrics = metrics.items() if isinstance(metrics, Mapping) else [metrics]
    out: dict[str, Metric] = {}
    for m in metrics:
        if isinstance(m, tuple) and len(m) == 2:
            name, fn = m
        elif m == "loss":
            name, fn = "loss", loss_fn
        elif m == "accuracy":
            name, fn = "accuracy", accuracy
        elif isinstance(m, str):
            raise InputError(
                f"unknown metric {m!r}: use 'loss', 'accuracy' or a callable "
                "f(outputs, targets) returning the batch mean"
            )
        elif callable(m):
            name, fn = getattr(m, "__name__", type(m).__name__), m
        else:
            raise InputTypeError(f"metric {m!r} is neither a name nor a callable")
        check_name(name, what="metric")
        if name in out:
            raise InputError(f"metric {name!r} given twice")
        out[name] = fn
    if not out:
        raise InputError("metrics is empty: pass at least ('loss',)")
    return out


def _loss_name(loss_fn: Callable) -> str:
    return getattr(loss_fn, "__name__", None) or type(loss_fn).__name__


def _axes(grid: Any, ndirs: int) -> tuple:
    """The checked grid axes, one per direction."""
    if (
        isinstance(grid, (str, tuple))
        and ndirs == 1
        and not (isinstance(grid, tuple) and grid and isinstance(grid[0], (tuple, list, str)))
    ):
        grid = [grid]
    if not isinstance(grid, (list, tuple)):
        raise InputTypeError("grid must be a list of (lo, hi, n) axes, one per direction")
    if len(grid) != ndirs:
        raise InputError(
            f"{len(grid)} grid axes for {ndirs} directions: give one (lo, hi, n) per direction"
        )
    return tuple(check_axis(a, index=i) for i, a in enumerate(grid))


def _check_args(samples: Any, batch_size: Any, meta: Any) -> None:
    """Refuse bad ``samples``, ``batch_size`` or ``meta``."""
    if samples is not None and (
        not isinstance(samples, int) or isinstance(samples, bool) or samples < 1
    ):
        raise InputError(f"samples={samples!r} must be a positive integer or None (all samples)")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size={batch_size!r} must be a positive integer or None")
    if meta is not None:
        try:
            json.dumps(meta, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"meta must be JSON-serializable ({exc}): use lists, numbers, strings and dicts"
            ) from None


def _check_autocast(autocast: Any) -> str | None:
    """The autocast dtype's name: None, "bfloat16" or "float16" (torch dtypes accepted)."""
    names = {torch.bfloat16: "bfloat16", torch.float16: "float16", "bf16": "bfloat16",
             "fp16": "float16", "half": "float16"}
    try:
        name = names.get(autocast, autocast)
    except TypeError:  # unhashable
        name = autocast
    if name not in AUTOCAST:
        raise InputError(f"autocast={autocast!r} must be None (full precision, the default), "
                         "'bfloat16' or 'float16'")
    return name


def _spec_and_fingerprints(axes, splits, mfns, loss_fn, samples, seed, dirs, params, buffers,
                           *, bn="eval", bn_split=None, bn_data=None,
                           autocast=None) -> tuple[ScanSpec, dict]:
    """What the scan computes (its spec) and the fingerprints of what it reads."""
    spec = ScanSpec(
        axes=axes,
        splits=tuple(s.name for s in splits),
        metrics=tuple(mfns),
        loss=_loss_name(loss_fn),
        samples=samples,
        seed=seed,
        directions=tuple(d.meta for d in dirs),
        dtype=str(next(iter(params.values())).dtype).replace("torch.", ""),
        autocast=autocast,
        bn=bn,
        bn_split=bn_split if bn_data is not None else None,
        bn_samples=bn_data.n if bn_data is not None else None,
    )
    fps = {
        "centre": P.fingerprint({**params, **buffers}),
        **{f"dir_{i}": d.fingerprint() for i, d in enumerate(dirs)},
        **{f"data_{s.name}": s.fingerprint() for s in splits},
        **({"bn_data": bn_data.fingerprint()} if bn_data is not None else {}),
    }
    return spec, fps


def scan(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    data: Mapping[str, Any],
    directions: Direction | Mapping | Sequence[Direction | Mapping],
    grid: Any,
    centre: Any = None,
    metrics: Any = DEFAULT_METRICS,
    samples: int | None = None,
    store: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    seed: int = 0,
    strategy: str = "auto",
    reuse_first_layer: bool = True,
    bn: str = "eval",
    bn_samples: int = 1024,
    bn_split: str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    autocast: str | torch.dtype | None = None,
    profile: bool = False,
    meta: dict | None = None,
) -> Surface:
    """Evaluate loss and metrics on a line or plane through weight space.

    Each point is ``L(c + a·d1 [+ b·d2])``: the exact mean over the samples of
    each split (weighted by batch sizes), in evaluation mode, without
    gradients. The model comes back bit-identical (parameters, buffers,
    train/eval mode, ``requires_grad``), also after an error or Ctrl-C.

    Parameters
    ----------
    model : nn.Module or JAX model
        The network; read only, through ``torch.func.functional_call``. A JAX
        model (``lossmap.jax.JaxModel``, a ``(linen.Module, variables)`` tuple
        or an ``nnx.Module``) runs on the JAX backend (:mod:`lossmap.jax`):
        same directions, store and Surface.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch mean, e.g.
        ``torch.nn.CrossEntropyLoss()``.
    data : dict of str to split
        Named splits; each a DataLoader, an ``(X, y)`` tuple of tensors, or
        an iterable of ``(X, y)`` batches. Read once and kept in memory.
    directions : Direction or list of 1 or 2 Directions
        One direction → a line (dim ``alpha``), two → a plane (``alpha``, ``beta``).
    grid : list of (lo, hi, n) or "lo:hi:n"
        One axis per direction; for a line a single ``(lo, hi, n)`` also works.
    centre : None, dict, nn.Module or path, optional
        Centre of the slice; default the model's current weights.
    metrics : sequence, default ("loss", "accuracy")
        Names (``"loss"``, ``"accuracy"``), callables ``f(outputs, targets)``
        returning a batch mean, or a dict name → callable. With the default
        and float targets (regression), ``accuracy`` is dropped.
    samples : int, optional
        Evaluate a fixed random subset of this many samples of each split.
    store : path, optional
        SQLite store; an existing store of the same scan is resumed, one of
        another scan is refused. Without it, results live in memory only.
    device : str or torch.device, optional
        Default: the model's device.
    batch_size : int, optional
        Evaluation batch size (default: chosen so the largest layer output of a
        batch takes about 8 MB on the CPU, or with ``compile=True`` the largest
        output a compiled graph writes 16 MB; values agree to round-off).
    progress : bool, default True
        Show points done, points/s and ETA.
    seed : int, default 0
        Seed of the ``samples`` subset.
    strategy : {"auto", "loop", "vmap"}, default "auto"
        How the points of a chunk run: ``torch.func.vmap`` on accelerators,
        a point loop on the CPU (faster there). Results agree to round-off.
    reuse_first_layer : bool, default True
        Exact first-layer reuse where it applies (detected automatically).
    bn : {"eval", "recompute"}, default "eval"
        BatchNorm at each point: the stored running statistics (the field's
        convention), or statistics re-estimated at every point from
        ``bn_samples`` fixed samples of ``bn_split`` (default ``"train"``, else
        the first split) — a more faithful surface of BN networks, at the cost
        of those extra forward passes.
    bn_samples : int, default 1024
    bn_split : str, optional
    channels_last : bool, optional
        Feed image batches in channels-last layout (default: on for 4-D data
        and a model with ``Conv2d`` layers; faster convolutions, same values
        to round-off).
    compile : bool, default False
        Evaluate each point through ``torch.compile`` (the first-layer
        combination fused with the layers after it). The compilation takes
        seconds to a minute, so it pays off on long scans; see
        ``benchmarks/RESULTS.md`` for when it was measured faster. Point loop
        (the CPU default) and ``bn="eval"`` only. Where compilation fails (no
        C++ compiler, say) the scan warns and goes on eagerly.
    autocast : {None, "bfloat16", "float16"}, default None
        Run the forward passes under ``torch.autocast`` with this dtype
        (meant for GPUs with bf16/fp16 units; bf16 keeps 8 significant bits,
        enough to blur flat regions; 4.2x slower on a CPU without bf16
        instructions, see ``benchmarks/RESULTS.md``). The reused
        first layer and all sums stay in full precision. Part of the spec: a
        store is never resumed in another precision.
    profile : bool, default False
        Print where the time went (data, parameter building, first layer,
        forward + metrics, store).
    meta : dict, optional
        JSON-serializable annotations kept with the result (``Surface.meta``) and in
        the store, e.g. a projected training path or model coordinates.

    Returns
    -------
    Surface

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> d = lm.random_direction(net, seed=0)
    >>> surf = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                directions=d, grid=(-1, 1, 5), progress=False)
    >>> surf["train_loss"].shape
    (5,)
    """
    autocast = _check_autocast(autocast)
    if not isinstance(model, nn.Module):
        if is_jax(model):
            from .jax.scan import scan_jax

            if autocast is not None:
                raise InputError("autocast is PyTorch-only; for a JAX model cast its variables "
                                 "and data to the dtype you want instead")

            return scan_jax(
                model, loss_fn, data=data, directions=directions, grid=grid, centre=centre,
                metrics=metrics, samples=samples, store=store, device=device,
                batch_size=batch_size, progress=progress, seed=seed, strategy=strategy,
                bn=bn, profile=profile, meta=meta,
            )
        raise InputTypeError(
            f"model is a {type(model).__name__}; pass a torch.nn.Module (or a JAX/Flax model: "
            "lossmap.jax.JaxModel, a (linen.Module, variables) tuple or an nnx.Module)"
        )
    if not callable(loss_fn):
        raise InputTypeError(
            f"loss_fn is a {type(loss_fn).__name__}; pass a callable "
            "loss_fn(outputs, targets), e.g. torch.nn.CrossEntropyLoss()"
        )
    dev = P.resolve_device(model, device)
    c_params, c_buffers = P.resolve_centre(model, centre)
    dirs = _resolve_directions(directions, c_params, c_buffers)
    axes = _axes(grid, len(dirs))
    _check_args(samples, batch_size, meta)
    splits = as_splits(data, samples=samples, seed=seed)
    bn_data = None
    if bn not in ("eval", "recompute"):
        raise InputError(f"bn={bn!r} must be 'eval' (stored running statistics) or "
                         "'recompute' (re-estimated at every point)")
    if bn == "recompute":
        bn_split = bn_split or ("train" if "train" in data else next(iter(data)))
        if bn_split not in data:
            raise InputError(f"bn_split={bn_split!r} is not a split of data "
                             f"({', '.join(map(str, data))})")
        if not isinstance(bn_samples, int) or bn_samples < 1:
            raise InputError(f"bn_samples={bn_samples!r} must be a positive integer")
        full = as_splits({bn_split: data[bn_split]})[0]
        bn_data = as_splits({bn_split: (full.X, full.y)}, samples=min(bn_samples, full.n),
                            seed=seed)[0]
    mfns = _resolve_metrics(metrics, loss_fn)
    if metrics == DEFAULT_METRICS and any(s.y.is_floating_point() for s in splits):
        mfns.pop("accuracy")  # regression targets: accuracy is meaningless

    with preserved(model):
        check_on_sample(model, mfns, {**c_params, **c_buffers}, splits, dev)
        spec, fps = _spec_and_fingerprints(
            axes, splits, mfns, loss_fn, samples, seed, dirs, c_params, c_buffers,
            bn=bn, bn_split=bn_split, bn_data=bn_data, autocast=autocast,
        )
        evaluator = Evaluator(
            model,
            mfns,
            c_params,
            c_buffers,
            dirs,
            splits,
            dev,
            batch_size,
            strategy=strategy,
            reuse_first_layer=reuse_first_layer,
            bn_data=bn_data,
            channels_last=channels_last,
            compile=compile,
            autocast=getattr(torch, autocast) if autocast else None,
        )
        t0 = time.perf_counter()
        try:
            return run(spec, fps, dirs, evaluator, store, progress, meta)
        finally:
            if profile:
                print(format_profile(evaluator, time.perf_counter() - t0), file=sys.stderr)


def load_directions(path: str | os.PathLike) -> list[Direction]:
    """The directions stored with a scan."""
    with Store.open(Path(path)) as store:
        return store.directions()
