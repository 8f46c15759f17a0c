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
import math
import os
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .. import checks as C
from .. import distributed
from .. import params as P
from ..analysis.flat import warn_inert_directions
from ..backends.base import Evaluator, ResolvedScan, profile_of
from ..backends.registry import backend_for
from ..data.splits import Split, as_splits
from ..directions.direction import Direction, as_direction
from ..errors import InputError, InputTypeError
from ..surface import Surface
from .design import Design, power_of_two_note
from .metric_names import default_loss, loss_name, no_accuracy, resolve_metrics
from .options import ScanOptions
from .path import resolve_path
from .spec import MAX_DIMS, ScanSpec

DEFAULT_METRICS = ("loss", "accuracy")


class Plan(ResolvedScan):
    """A checked, resolved scan, ready to run on its backend.

    Its fields are those of :class:`~lossmap.backends.base.ResolvedScan`, what a
    backend reads: ``backend`` (PyTorch, sharded PyTorch or JAX, found at run
    time), ``model`` (the user's, never changed), ``loss_fn``, ``spec`` (what the
    scan computes; stored with it and compared on resume), ``fingerprints``
    (hashes of the centre, directions and data splits), ``directions``,
    ``splits`` (the data, read once), ``metrics``, ``params`` and ``buffers``
    (the centre's weights), ``options`` (:class:`~lossmap.scan.options.ScanOptions`),
    ``bn_data`` and ``path``. A plan adds the steps that run it.
    """

    def run(
        self,
        *,
        store: str | os.PathLike | None = None,
        progress: bool | None = None,
        meta: dict | None = None,
        profile: bool | None = None,
    ) -> Surface:
        """Evaluate every point not yet in ``store``; return the Surface.

        The model is evaluated inside its backend's guard, so it comes back
        unchanged after an error or Ctrl-C. The Surface's ``profile`` holds the
        evaluator's plan and timings (``roundoff_seconds``: the round-off
        floor's and the slopes' measurement, kept out of the stages; ``setup``:
        the seconds of each pass before the first point — ``prepare`` (checks,
        data, first-layer cache), ``probe``, ``roundoff``, ``slopes``); ``profile=True``
        also prints them, with the centre's per-example pass (``centre_terms``).
        The backend's round-off floor (:meth:`~lossmap.backends.base.Backend.roundoff`)
        is measured first and recorded by a new store (``Surface.roundoff``).
        ``progress`` and ``profile`` default to the plan's options.

        Inside a torchrun job every rank runs the plan, and before the first
        point the ranks compare what they must share (the spec, the centre,
        directions and data fingerprints): a rank that differs is refused on
        every rank, by name.
        """
        from ..store import is_store
        from .runner import format_profile, run

        meta = C.check_json(meta, "meta")
        progress = self.options.progress if progress is None else progress
        profile = self.options.profile if profile is None else profile
        own = {"backend": self.backend.name} if self.backend.name != "torch" else {}
        clock = time.perf_counter
        with self.backend.guard(self.model):
            t0 = clock()
            evaluator = self.evaluator()
            setup = {"prepare": clock() - t0}  # each pass before the first point, timed
            try:
                grp = distributed.group(evaluator.device)
                if grp is not None:
                    _same_on_every_rank(grp, self.spec, self.fingerprints)
                t0 = clock()
                probe = self.backend.probe(self, evaluator)
                setup["probe"], t0, stages = clock() - t0, clock(), dict(evaluator.timings)
                # A resumed store keeps the floor measured when it was made: not again.
                resuming = store is not None and is_store(store)
                roundoff = None if resuming else self.backend.roundoff(self, evaluator)
                setup["roundoff"], t0 = clock() - t0, clock()
                measured = None if resuming else self._measured(evaluator)
                setup["slopes"] = clock() - t0
                centre = evaluator.timings.get("centre_terms", 0.0)  # if the floor ran it first
                setup["roundoff"] -= centre
                # the floor is no stage of the scan
                evaluator.timings = defaultdict(float, {**stages, "centre_terms": centre})
                t_roundoff = setup["roundoff"] + setup["slopes"]
                t0 = time.perf_counter()
                try:
                    surface = run(self.spec, self.fingerprints, self.directions, evaluator,
                                  store, progress, {**own, **(meta or {})}, probe=probe,
                                  roundoff=roundoff,
                                  to_coef=None if self.path is None else self.coefficients,
                                  measured=measured)
                finally:
                    if profile and (grp is None or grp.is_writer):
                        print(format_profile(evaluator, time.perf_counter() - t0, setup),
                              file=sys.stderr)
            finally:
                evaluator.restore()  # what the evaluator wrote into the model (a sharded one)
        prof = {**profile_of(evaluator, time.perf_counter() - t0), "roundoff_seconds": t_roundoff,
                "setup": setup}
        return dataclasses.replace(surface, profile=prof)

    def _measured(self, evaluator: Evaluator) -> dict:
        """Samples per split, and the per-sample slopes at the centre where the backend has them."""
        return {"samples": {s.name: s.n for s in self.splits},
                "slopes": self.backend.centre_slopes(self, evaluator)}

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
    path: Any = None,
    draws: int | None = None,
    **options: Any,
) -> Plan:
    """Check and resolve the arguments of :func:`lossmap.scan.api` into a :class:`Plan`.

    The parameters are those of :func:`lossmap.scan.api`, less ``store`` and
    ``meta`` (which :meth:`Plan.run` takes); ``options`` are the fields of
    :class:`~lossmap.scan.options.ScanOptions` (``samples``, ``seed``, ``bn``, …).
    With ``draws=K`` the plan is repeated over K direction draws
    (:func:`lossmap.scan.draws.with_draws`). This is the door: each argument is
    checked here, once (:mod:`lossmap.checks`).

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
    opts = ScanOptions.checked(options)
    backend.check_supported({**{f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)},
                             "centre": centre, "path": path})
    backend.check_options(opts)
    loss_fn = C.check_loss_fn(loss_fn, none="the model's own outputs.loss (dict batches)")
    # along a Curve (path=): the centre θ0, the directions θj − θ0, the grid in t
    curve, centre, directions, record = resolve_path(path, model, backend.name,
                                                     directions=directions, centre=centre)
    params, buffers = backend.state(model, centre)
    dirs = _resolve_directions(directions, params, buffers, any_number=curve is not None)
    warn_inert_directions(dirs, params)  # e.g. LoRA A alone with B = 0: a flat plane, said now
    design = None
    if isinstance(grid, Design):
        if curve is not None:
            raise InputError("a design samples directions, not a path: give a grid in t")
        axes, design = grid.spec_parts(len(dirs))
        note = power_of_two_note(design)
        if note:
            warnings.warn(note, UserWarning, stacklevel=3)
    else:
        axes = _axes(grid, 1 if curve is not None else len(dirs))
    dtype = next(iter(params.values())).dtype
    C.check_grid_dtype(axes, dtype, **({} if curve is not None else _reach(params, dirs)))
    samples, seed = opts.samples, opts.seed
    data = backend.convert_data(data)
    splits = as_splits(data, samples=samples, seed=seed)
    bn_data = _bn_data(opts.bn, data, opts.bn_split, opts.bn_samples, seed)
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
        dtype=str(dtype).replace("torch.", ""),
        autocast=opts.autocast,
        bn=opts.bn,
        bn_split=bn_data.name if bn_data is not None else None,
        bn_samples=bn_data.n if bn_data is not None else None,
        path=record,
        design=design,
    )
    fps = {
        "centre": backend.centre_fingerprint(params, buffers),
        **{f"dir_{i}": d.fingerprint() for i, d in enumerate(dirs)},
        **{f"data_{s.name}": s.fingerprint() for s in splits},
        **({"bn_data": bn_data.fingerprint()} if bn_data is not None else {}),
    }
    from .draws import check_draws, with_draws  # draws.py builds on Plan

    draws = check_draws(draws)
    plan = Plan(backend, model, loss_fn, spec, fps, dirs, splits, mfns, params, buffers, opts,
                bn_data, curve)
    return plan if draws is None else with_draws(plan, draws)


# -- checks that need the resolved arguments (the inputs' own checks: lossmap.checks) ------


def _largest_finite(t: torch.Tensor) -> float:
    """max |t| over the finite entries: one pass, no copy, where every entry is finite.

    Finite values only: a weight that is already nan/inf makes its points
    diverge, which the scan reports; the check is about the grid pushing
    finite weights over. ``aminmax`` reads the tensor once; ``abs`` and
    ``nan_to_num`` (the fallback, where an entry is not finite) each write a
    copy of it: 0.50 s against 0.10 s for a 4-layer GPT-2's weights and two
    directions on one thread.
    """
    lo, hi = (float(v) for v in torch.aminmax(t))
    if math.isfinite(lo) and math.isfinite(hi):
        return max(-lo, hi)
    return float(t.abs().nan_to_num(0.0, 0.0, 0.0).max())


def _reach(params: Mapping[str, torch.Tensor], dirs: Sequence[Direction]) -> dict:
    """The largest magnitude of the centre's weights and of each direction (for the grid check)."""
    def top(tensors: Any) -> float:  # plain tensors (a sharded model's DTensors: not read)
        return max((_largest_finite(t.detach()) for t in tensors
                    if t.is_floating_point() and t.numel() and not hasattr(t, "placements")),
                   default=0.0)

    return {"centre": top(params.values()), "directions": [top(d.values()) for d in dirs]}


def _bn_data(bn: str, data: Mapping, bn_split: str | None, bn_samples: Any,
             seed: int) -> Split | None:
    """The fixed samples BatchNorm statistics are re-estimated from (``bn="recompute"``)."""
    if bn != "recompute":
        return None
    bn_split = bn_split or ("train" if "train" in data else next(iter(data)))
    if bn_split not in data:
        raise InputError(f"bn_split={bn_split!r} is not a split of data "
                         f"({', '.join(map(str, data))})")
    full = as_splits({bn_split: data[bn_split]})[0]
    return as_splits({bn_split: (full.X, full.y)}, samples=min(bn_samples, full.n), seed=seed)[0]


def _resolve_directions(directions: Any, params: dict, buffers: dict, *,
                        any_number: bool = False) -> list[Direction]:
    if isinstance(directions, (Direction, Mapping)):
        directions = [directions]
    if not isinstance(directions, Sequence) or isinstance(directions, str):
        raise InputTypeError(
            f"directions is a {type(directions).__name__}; pass a Direction or a list of "
            f"1 (line), 2 (plane) or up to {MAX_DIMS} Directions"
        )
    if not directions:
        raise InputError("no directions given: pass 1 (a line), 2 (a plane) or up to "
                         f"{MAX_DIMS} Directions")
    if len(directions) > MAX_DIMS and not any_number:  # a path has one per control point
        raise InputError(f"{len(directions)} directions given: a scan takes 1 to {MAX_DIMS} "
                         f"(a grid of n points per axis has n**k points); pass at most {MAX_DIMS}")
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
    axes = C.check_grid(grid)
    if len(axes) != ndirs:
        raise InputError(
            f"{len(axes)} grid axes for {ndirs} directions: give one (lo, hi, n) per direction"
        )
    return axes


# -- every rank of a torchrun job runs the same scan --------------------------------------


def _same_on_every_rank(grp: distributed.Group, spec: ScanSpec,
                        fingerprints: Mapping[str, str]) -> None:
    """Refuse, on every rank, a rank whose spec or fingerprints differ from rank 0's.

    Rank 0 alone writes the store, with its own fingerprints: a rank that read
    other data, or moves along other directions, would merge values of another
    scan into it. One ``all_gather``, before the first point.
    """
    facts = {**fingerprints,  # first: they name what differs (a direction's seed, say)
             **{f"spec.{k}": json.dumps(v, sort_keys=True) for k, v in spec.to_dict().items()}}
    found = grp.first_difference(facts)
    if found is None:
        return
    rank, key, ours, theirs = found
    if key.startswith("spec."):
        what, fix = f"scan setting {key[5:]!r}", "every rank must run the same scan"
        shown = f"{_clip(ours)} vs {_clip(theirs)}"
    else:
        what, fix = _differs(key)
        shown = f"fingerprint {_clip(ours, 13)} vs {_clip(theirs, 13)}"  # 12 hex digits and …
    raise InputError(f"rank {rank}'s {what} differs from rank 0's ({shown}): {fix}")


def _differs(key: str) -> tuple[str, str]:
    """What a fingerprint's key names, and what every rank must do about it."""
    if key.startswith("dir_"):
        return (f"direction {key[4:]}",
                "every rank must pass the same directions (draw them with a fixed seed)")
    if key.startswith("data_"):
        return f"{key[5:]} data", "every rank must read the same data"
    if key == "bn_data":
        return "BatchNorm data (bn_split)", "every rank must read the same data"
    return ("centre (the model's weights)",
            "every rank must start from the same weights (load them, or seed the model)")


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
