"""The plan of a scan: every argument of ``lm.scan`` checked and resolved once, for any backend.

:func:`plan_scan` turns the user's arguments into a :class:`Plan` — the
:class:`~lossmap.scan.spec.ScanSpec` (what is computed), the fingerprints (what is
read), the directions, the data splits, the metrics and the speed options —
and :meth:`Plan.run` hands it to the model's backend, the scan driver and the
store. ``lm.scan`` is ``plan_scan(...).run(...)``; benchmarks and tools use
the two steps to look inside (``plan.spec``, ``surface.profile``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import params as P
from ..backends.base import Backend, Evaluator, check_strategy, profile_of
from ..backends.registry import backend_for
from ..data.splits import Split, as_splits
from ..directions.direction import Direction, as_direction
from ..errors import InputError, InputTypeError
from ..surface import Surface
from .metric_names import default_loss, loss_name, no_accuracy, resolve_metrics
from .path import coefficients, resolve_path
from .spec import AUTOCAST, ScanSpec, check_axis, check_grid_size

DEFAULT_METRICS = ("loss", "accuracy")
BN_MODES = ("eval", "recompute")


@dataclass(frozen=True)
class ScanOptions:
    """How a scan runs (not what it computes, except ``autocast``, which is in the spec).

    Every field is an argument of :func:`lossmap.scan.api` of the same name.
    """

    device: Any = None  # None: the model's device
    batch_size: int | None = None  # None: fitted to the cache / memory
    strategy: str = "auto"  # "loop" | "vmap" | "auto"
    reuse_first_layer: bool = True  # exact first-layer reuse where it applies
    channels_last: bool | None = None  # None: on for image batches and conv nets
    compile: bool = False  # torch.compile each point (PyTorch)
    autocast: str | None = None  # None (full precision), "bfloat16" or "float16"
    bn: str = "eval"  # BatchNorm statistics: stored ("eval") or re-estimated per point


@dataclass
class Plan:
    """A checked, resolved scan, ready to run on its backend.

    Attributes
    ----------
    backend : Backend
        The model's backend (PyTorch or JAX), found at run time.
    model : object
        The user's model, never changed.
    loss_fn : callable
    spec : ScanSpec
        What the scan computes; stored with it and compared on resume.
    fingerprints : dict of str to str
        Hashes of the centre, directions and data splits.
    directions : list of Direction
    splits : list of Split
        The data, read once, in its fixed order (a subset when ``samples`` is set).
    metrics : dict of str to callable
        Column name → ``f(outputs, targets)`` returning the batch mean.
    params, buffers : dict of str to Tensor
        The centre's weights (CPU tensors, names as in the directions).
    options : ScanOptions
    bn_data : Split, optional
        The samples BatchNorm statistics are re-estimated from (``bn="recompute"``).
    path : Curve, optional
        A scan along it: the grid is in t, :meth:`coefficients` maps it (lossmap.scan.path).
    """

    backend: Backend
    model: Any
    loss_fn: Callable
    spec: ScanSpec
    fingerprints: dict[str, str]
    directions: list[Direction]
    splits: list[Split]
    metrics: dict[str, Callable]
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    options: ScanOptions = field(default_factory=ScanOptions)
    bn_data: Split | None = None
    path: Any = None  # the Curve of a path scan (lossmap.scan.path), else None

    def coefficients(self, points: Any) -> Any:
        """The directions' coefficients at grid points: the points, or along a path basis(t)[1:]."""
        return points if self.path is None else coefficients(self.path, points)

    def run(
        self,
        *,
        store: str | os.PathLike | None = None,
        progress: bool = True,
        meta: dict | None = None,
        profile: bool = False,
    ) -> Surface:
        """Evaluate every point not yet in ``store``; return the Surface.

        The model is evaluated inside its backend's guard, so it comes back
        unchanged after an error or Ctrl-C. The Surface's ``profile`` holds the
        evaluator's plan and timings (``roundoff_seconds``: the round-off
        floor's measurement, kept out of the stages); ``profile=True`` also
        prints them. The backend's round-off floor (:meth:`Backend.roundoff`)
        is measured first and recorded by a new store (``Surface.roundoff``).
        """
        from ..store import is_store
        from .runner import format_profile, run

        _check_meta(meta)
        own = {"backend": self.backend.name} if self.backend.name != "torch" else {}
        with self.backend.guard(self.model):
            evaluator = self.evaluator()
            probe = self.backend.probe(self, evaluator)
            t0, stages = time.perf_counter(), dict(evaluator.timings)
            # A resumed store keeps the floor measured when it was made: not again.
            resuming = store is not None and is_store(store)
            roundoff = None if resuming else self.backend.roundoff(self, evaluator)
            measured = None if resuming else self._measured()
            evaluator.timings = defaultdict(float, stages)  # the floor is no stage of the scan
            t_roundoff = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                surface = run(self.spec, self.fingerprints, self.directions, evaluator, store,
                              progress, {**own, **(meta or {})}, probe=probe, roundoff=roundoff,
                              to_coef=None if self.path is None else self.coefficients,
                              measured=measured)
            finally:
                if profile:
                    print(format_profile(evaluator, time.perf_counter() - t0), file=sys.stderr)
        prof = {**profile_of(evaluator, time.perf_counter() - t0), "roundoff_seconds": t_roundoff}
        return dataclasses.replace(surface, profile=prof)

    def _measured(self) -> dict:
        """Samples per split, and the per-sample slopes at the centre where the backend has them."""
        slopes = getattr(self.backend, "centre_slopes", None)
        return {"samples": {s.name: s.n for s in self.splits},
                "slopes": slopes(self) if slopes is not None else None}

    def evaluator(self) -> Evaluator:
        """A new evaluator of this plan (use inside ``plan.backend.guard(plan.model)``)."""
        return self.backend.evaluator(self)


def plan_scan(
    model: Any,
    loss_fn: Callable,
    *,
    data: Mapping[str, Any],
    directions: Any = None,
    grid: Any,
    centre: Any = None,
    metrics: Any = DEFAULT_METRICS,
    samples: int | None = None,
    seed: int = 0,
    bn_samples: int = 1024,
    bn_split: str | None = None,
    path: Any = None,
    **options: Any,
) -> Plan:
    """Check and resolve the arguments of :func:`lossmap.scan.api` into a :class:`Plan`.

    The parameters are those of :func:`lossmap.scan.api`, less ``store``,
    ``progress``, ``profile`` and ``meta`` (which :meth:`Plan.run` takes);
    ``options`` are the fields of :class:`ScanOptions`.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> plan = lm.plan_scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                     directions=lm.random_direction(net, seed=0), grid=(-1, 1, 5))
    >>> plan.spec.shape, plan.backend.name
    ((5,), 'torch')
    >>> surf = plan.run(progress=False)
    >>> surf.profile["strategy"]
    'loop'
    """
    backend = backend_for(model)
    opts = _check_options(options)
    backend.check_options(opts)
    if loss_fn is not None and not callable(loss_fn):
        raise InputTypeError(
            f"loss_fn is a {type(loss_fn).__name__}; pass a callable "
            "loss_fn(outputs, targets), e.g. torch.nn.CrossEntropyLoss()"
        )
    # along a Curve (path=): the centre θ0, the directions θj − θ0, the grid in t
    curve, centre, directions, record = resolve_path(path, model, backend.name,
                                                     directions=directions, centre=centre)
    params, buffers = backend.state(model, centre)
    dirs = _resolve_directions(directions, params, buffers, any_number=curve is not None)
    axes = _axes(grid, 1 if curve is not None else len(dirs))
    _check_samples(samples)
    data = backend.convert_data(data)
    splits = as_splits(data, samples=samples, seed=seed)
    bn_data = _bn_data(opts.bn, data, bn_split, bn_samples, seed)
    loss_fn = default_loss(loss_fn, splits)
    mfns = resolve_metrics(metrics, loss_fn, backend.builtin_metrics())
    if metrics == DEFAULT_METRICS and any(no_accuracy(s) for s in splits):
        mfns.pop("accuracy")  # regression targets, dict batches: no class accuracy
    spec = ScanSpec(
        grid=axes,
        splits=tuple(s.name for s in splits),
        metrics=tuple(mfns),
        loss=loss_name(loss_fn),
        samples=samples,
        seed=seed,
        directions=tuple(d.meta for d in dirs),
        dtype=str(next(iter(params.values())).dtype).replace("torch.", ""),
        autocast=opts.autocast,
        bn=opts.bn,
        bn_split=bn_data.name if bn_data is not None else None,
        bn_samples=bn_data.n if bn_data is not None else None,
        path=record,
    )
    fps = {
        "centre": P.fingerprint({**params, **buffers}),
        **{f"dir_{i}": d.fingerprint() for i, d in enumerate(dirs)},
        **{f"data_{s.name}": s.fingerprint() for s in splits},
        **({"bn_data": bn_data.fingerprint()} if bn_data is not None else {}),
    }
    return Plan(backend, model, loss_fn, spec, fps, dirs, splits, mfns, params, buffers, opts,
                bn_data, curve)


# -- checks ------------------------------------------------------------------------------


def _check_options(options: dict[str, Any]) -> ScanOptions:
    known = set(ScanOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputTypeError(f"unknown scan option(s) {', '.join(unknown)}: the options are "
                             f"{', '.join(sorted(known))}")
    if options.get("strategy") == "map":  # the JAX backend's name for "loop" in 0.1
        warnings.warn("strategy='map' is deprecated: use strategy='loop' (the same: points one "
                      "after another)", DeprecationWarning, stacklevel=4)
        options = {**options, "strategy": "loop"}
    opts = ScanOptions(**options)
    opts = dataclasses.replace(opts, autocast=_check_autocast(opts.autocast))
    check_strategy(opts.strategy)
    if opts.bn not in BN_MODES:
        raise InputError(f"bn={opts.bn!r} must be 'eval' (stored running statistics) or "
                         "'recompute' (re-estimated at every point)")
    bs = opts.batch_size
    if bs is not None and (not isinstance(bs, int) or isinstance(bs, bool) or bs < 1):
        raise InputError(f"batch_size={bs!r} must be a positive integer or None")
    return opts


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


def _check_samples(samples: Any) -> None:
    if samples is not None and (
        not isinstance(samples, int) or isinstance(samples, bool) or samples < 1
    ):
        raise InputError(f"samples={samples!r} must be a positive integer or None (all samples)")


def _check_meta(meta: Any) -> None:
    if meta is None:
        return
    if not isinstance(meta, Mapping):
        raise InputTypeError(f"meta is a {type(meta).__name__}; pass a dict of JSON values")
    try:
        json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"meta must be JSON-serializable ({exc}): use lists, numbers, strings and dicts"
        ) from None


def _bn_data(bn: str, data: Mapping, bn_split: str | None, bn_samples: Any,
             seed: int) -> Split | None:
    """The fixed samples BatchNorm statistics are re-estimated from (``bn="recompute"``)."""
    if bn != "recompute":
        return None
    bn_split = bn_split or ("train" if "train" in data else next(iter(data)))
    if bn_split not in data:
        raise InputError(f"bn_split={bn_split!r} is not a split of data "
                         f"({', '.join(map(str, data))})")
    if not isinstance(bn_samples, int) or isinstance(bn_samples, bool) or bn_samples < 1:
        raise InputError(f"bn_samples={bn_samples!r} must be a positive integer")
    full = as_splits({bn_split: data[bn_split]})[0]
    return as_splits({bn_split: (full.X, full.y)}, samples=min(bn_samples, full.n), seed=seed)[0]


def _resolve_directions(directions: Any, params: dict, buffers: dict, *,
                        any_number: bool = False) -> list[Direction]:
    if isinstance(directions, (Direction, Mapping)):
        directions = [directions]
    if not isinstance(directions, Sequence) or isinstance(directions, str):
        raise InputTypeError(
            f"directions is a {type(directions).__name__}; pass a Direction or a list of "
            "1 (line) or 2 (plane) Directions"
        )
    if len(directions) not in (1, 2) and not any_number:  # a path has one per control point
        raise InputError(f"{len(directions)} directions given: pass 1 (a line) or 2 (a plane)")
    out = []
    for i, d in enumerate(directions):
        d = as_direction(d, name=f"direction {i}")
        P.check_same_layout(params, d, what=f"direction {i}", allow_extra=buffers,  # subsets:
                            allow_missing="params" in d.meta and len(d) > 0)  # meta["params"]
        for k in d:
            if k in buffers and buffers[k].shape != d[k].shape:
                raise InputError(
                    f"direction {i} has shape {tuple(d[k].shape)} for buffer {k!r} "
                    f"but the model has {tuple(buffers[k].shape)}"
                )
        out.append(d)
    return out


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
    axes = tuple(check_axis(a, index=i) for i, a in enumerate(grid))
    check_grid_size(axes)  # a new scan only: a store of any size still opens
    return axes
