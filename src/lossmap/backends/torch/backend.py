"""The PyTorch backend: ``nn.Module`` models evaluated through ``torch.func.functional_call``."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ... import params as P
from ...data.batches import Batches
from ...data.splits import Split
from ...errors import InputError
from ..base import PROBE_SAMPLES, Backend, ResolvedScan
from .checks import check_on_sample
from .evaluator import Evaluator
from .metrics import accuracy
from .plain import as_float64, plain_values
from .restore import preserved
from .structured import BatchEvaluator, check_batches

MEASURED = (RuntimeError, TypeError, ValueError)  # a model that cannot run in float64


def _check_structured(plan: ResolvedScan) -> None:
    """Refuse the options that need every split as one tensor, naming the split."""
    o = plan.options
    name = next(s.name for s in plan.splits if isinstance(s, Batches))
    why = (f"split {name!r} is kept as its batches (dicts, several inputs or shapes that "
           "differ between batches)")
    if o.strategy == "vmap":
        raise InputError(f"{why}: strategy='vmap' needs batches of one shape; use "
                         "strategy='auto' or 'loop'")
    if o.compile:
        raise InputError(f"{why}: compile=True is not supported there; drop it")
    if plan.bn_data is not None:
        raise InputError(f"{why}: bn='recompute' is not supported there; use bn='eval'")


def _floor_plan(plan: ResolvedScan, evaluator: Any) -> ResolvedScan:
    """The plan the round-off floor is measured on: each split's spread subset.

    At most :data:`~lossmap.backends.torch.roundoff.FLOOR_SAMPLES` samples per split
    (:func:`~lossmap.backends.torch.roundoff.spread_subset`), evaluated with the
    scan's batch size; the plan itself where every split is that small, where
    splits are kept as batches, and with ``compile=True`` (a second compiled
    evaluator would cost more than it saves).
    """
    from . import roundoff as R

    if plan.options.compile or not all(isinstance(s, Split) for s in plan.splits):
        return plan
    splits = [R.spread_subset(s) for s in plan.splits]
    if all(a is b for a, b in zip(splits, plan.splits, strict=True)):
        return plan
    options = dataclasses.replace(plan.options, batch_size=evaluator.batch_size)
    return dataclasses.replace(plan, splits=splits, options=options)


class TorchBackend(Backend):
    """``torch.nn.Module`` models; weights named as in ``named_parameters()``."""

    name = "torch"
    filter_axis = 0  # a Linear row, a Conv output channel

    def owns(self, model: Any) -> bool:
        return isinstance(model, nn.Module)

    def state(self, model: nn.Module, centre: Any = None) -> tuple[dict, dict]:
        return P.resolve_centre(model, centre)

    def builtin_metrics(self) -> Mapping[str, Callable]:
        return {"accuracy": accuracy}

    def guard(self, model: nn.Module) -> contextlib.AbstractContextManager:
        return preserved(model)

    def loss(self, name: str) -> Callable:
        losses = {"cross_entropy": torch.nn.CrossEntropyLoss, "mse": torch.nn.MSELoss}
        if name not in losses:
            return super().loss(name)
        return losses[name]()

    def evaluator(self, plan: ResolvedScan) -> Evaluator:
        o = plan.options
        device = P.resolve_device(plan.model, o.device)
        if any(isinstance(s, Batches) for s in plan.splits):  # dicts, several inputs, padding
            _check_structured(plan)
            check_batches(plan.model, plan.metrics, {**plan.params, **plan.buffers},
                          plan.splits, device)
            return BatchEvaluator(
                plan.model, plan.metrics, plan.params, plan.buffers, plan.directions,
                plan.splits, device, o.batch_size,
                autocast=getattr(torch, o.autocast) if o.autocast else None)
        check_on_sample(plan.model, plan.metrics, {**plan.params, **plan.buffers}, plan.splits,
                        device)
        return Evaluator(
            plan.model,
            plan.metrics,
            plan.params,
            plan.buffers,
            plan.directions,
            plan.splits,
            device,
            o.batch_size,
            strategy=o.strategy,
            reuse_first_layer=o.reuse_first_layer,
            bn_data=plan.bn_data,
            channels_last=o.channels_last,
            compile=o.compile,
            autocast=getattr(torch, o.autocast) if o.autocast else None,
        )

    @torch.no_grad()
    def probe(self, plan: ResolvedScan, evaluator: Evaluator) -> dict[str, float]:
        """The centre's values on the first ``PROBE_SAMPLES`` samples of each split.

        In the scan's batches where they are smaller (a language model's:
        64 sequences in one batch would write logits of 3.3 GB for GPT-2 on 256
        tokens); a resumed store compares the probe within a tolerance.
        """
        batch = min(PROBE_SAMPLES, getattr(evaluator, "batch_size", None) or PROBE_SAMPLES)
        values = plain_values(
            plan.model, plan.metrics, {**plan.params, **plan.buffers}, plan.directions,
            plan.splits, np.zeros((1, len(plan.directions))),
            P.resolve_device(plan.model, plan.options.device), batch,
            float64=False, first=PROBE_SAMPLES,
        )[0]
        return dict(zip(evaluator.variables, values.tolist(), strict=True))

    def roundoff(self, plan: ResolvedScan, evaluator: Evaluator) -> dict[str, float] | None:
        """Measured against float64 at the centre-most point and the grid's corners.

        See :mod:`lossmap.backends.torch.roundoff`. Not measured (None) where the float64
        copies of the centre and directions would exceed ``roundoff.BUDGET``. A
        model that cannot run in float64 (a tensor it makes in float32 itself)
        gives None, with a warning.
        """
        from . import roundoff as R

        state = {**plan.params, **plan.buffers}
        if R.float64_bytes(state, len(plan.directions)) > R.BUDGET:
            return None  # a float64 copy of a large model is not worth a floor
        device = P.resolve_device(plan.model, plan.options.device)
        dtype = next(iter(plan.params.values())).dtype
        sub = _floor_plan(plan, evaluator)
        try:
            # the scan's own evaluator, built on the subset (its batch size, reuse, precision)
            ours = evaluator if sub is plan else self.evaluator(sub)
            recal = None
            if ours.bn is not None:  # bn="recompute": the reference re-estimates them too,
                recal = copy.copy(ours.bn)  # from the same batches as the scan, in float64
                recal.batches = [as_float64(x) for x in ours.bn.batches]

            def reference(points):
                return plain_values(
                    plan.model, plan.metrics, state, plan.directions,
                    sub.splits, points, device, evaluator.batch_size,
                    reverse=dtype == torch.float64, recalibrate=recal)

            box = [a.values() for a in plan.spec.grid]  # a design's points lie in its box
            return R.measure_floor(ours, reference, evaluator.variables,
                                   plan.coefficients(R.floor_points(box)), dtype)
        except MEASURED as exc:
            warnings.warn(f"the round-off floor was not measured ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                          "verdicts assume round-off from the dtype's eps", RuntimeWarning,
                          stacklevel=3)
            return None

    def centre_slopes(self, plan: ResolvedScan, evaluator: Any = None
                      ) -> dict[str, list[dict[str, float]]] | None:
        """Per-example directional slopes at the centre (:mod:`lossmap.backends.torch.slopes`).

        Every sample of each split, BatchNorm in eval mode. Given the scan's
        ``evaluator`` with first-layer reuse, through its batches and kept
        first-layer outputs (:func:`~lossmap.backends.torch.slopes.evaluator_slopes`:
        the same values for less work). None (not measured)
        for a path scan (its directions are not the scan's axis), with
        ``bn="recompute"`` (the statistics would move with α), for directions that
        move buffers (between models: BatchNorm's running statistics have no
        forward-mode rule), for batches of
        dicts, above the round-off floor's size limit (``roundoff.BUDGET``),
        where no metric has per-example terms, and, with a warning, for a model
        that forward-mode differentiation cannot run.
        """
        from ...data.splits import Split
        from . import roundoff as R
        from .sizing import auto_batch_size
        from .slopes import centre_slopes, evaluator_slopes

        splits = list(plan.splits)
        if (plan.path is not None or plan.bn_data is not None
                or not all(isinstance(s, Split) for s in splits)):
            return None
        if any(k in plan.buffers for d in plan.directions for k in d):
            return None  # directions that move BatchNorm statistics: no forward-mode rule
        state = {**plan.params, **plan.buffers}
        if 8 * sum(t.numel() for t in state.values()) * (1 + len(plan.directions)) > R.BUDGET:
            return None  # the same limit as the round-off floor's
        device = P.resolve_device(plan.model, plan.options.device)
        batch = plan.options.batch_size or auto_batch_size(plan.model, state, splits[0].X[:2],
                                                           device)
        reuse = (isinstance(evaluator, Evaluator) and evaluator.reuses_first_layer
                 and evaluator.bn is None)
        try:
            if reuse:
                out = evaluator_slopes(evaluator, plan.metrics, splits)
            else:
                out = centre_slopes(plan.model, plan.metrics, plan.params, plan.buffers,
                                    plan.directions, splits, device, batch)
        except (*MEASURED, NotImplementedError) as exc:
            warnings.warn(f"the slopes at the centre were not measured ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})",
                          RuntimeWarning, stacklevel=3)
            return None
        return out or None
