"""Evaluation of splits kept as their own batches: dicts, several inputs, dynamic padding, streams.

The model is called ``model(**batch)`` for a dict batch (with the keys its
``forward`` takes: a ``y`` it does not take goes to the metrics only) and ``model(*inputs)``
for a tuple ``(*inputs, target)``; a metric is called ``f(outputs, batch)``
for a dict and ``f(outputs, target)`` for a tuple. Every metric's result is
reduced to per-example sums (:mod:`lossmap.stats`), so token losses
returning ``(totals, counts)`` give the exact mean over all tokens of a split
whatever the padding. Points run one after another (the batches differ in
shape, so there is nothing to stack); parameters are formed as in
:mod:`lossmap.backends.torch.build`.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ...data.batches import Batches, rows_of
from ...data.splits import Split
from ...errors import InputError
from ...stats import PAIRED, STATS, finish, finish_paired
from .build import build_points, directions_on
from .common import EvaluatorBase
from .metrics import batch_stats, centre_rows, check_centre, check_result, per_example

DEVICE_DATA_BUDGET = 2 * 1024**3  # batches kept on an accelerator up to this size


def batches_of(split: Split | Batches, batch_size: int) -> tuple[str, Any]:
    """``(kind, batches)``: a Split cut into (X, y) batches, or a Batches' own."""
    if isinstance(split, Batches):
        return split.kind, split
    return "tuple", list(zip(split.X.split(batch_size), split.y.split(batch_size), strict=True))


def to_device(batch: Any, device: torch.device, cast: Callable | None = None) -> Any:
    """A batch's tensors on ``device`` (and through ``cast``, e.g. to float64)."""
    def move(v):
        if not isinstance(v, torch.Tensor):
            return v
        v = v.to(device, non_blocking=True)
        return cast(v) if cast is not None else v

    if isinstance(batch, Mapping):
        return {k: move(v) for k, v in batch.items()}
    return tuple(move(v) for v in batch)


def accepted(model: nn.Module) -> set[str] | None:
    """The keyword arguments ``model.forward`` takes (None: any, it has ``**kwargs``)."""
    params = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}


def model_kwargs(batch: Mapping, keys: set[str] | None) -> dict:
    """The entries of a dict batch the model takes; the others (a target) go to metrics only."""
    return dict(batch) if keys is None else {k: v for k, v in batch.items() if k in keys}


def call(model: nn.Module, batch: Any, kind: str, keys: set[str] | None = None) -> Any:
    """The model on a batch: ``model(**batch)`` (the keys it takes) or ``model(*inputs)``."""
    return model(**model_kwargs(batch, keys)) if kind == "dict" else model(*batch[:-1])


def call_at(model: nn.Module, state: Mapping[str, torch.Tensor], batch: Any, kind: str,
            keys: set[str] | None = None) -> Any:
    """The model at ``state`` on a batch (through ``functional_call``), called as :func:`call`."""
    if kind == "dict":
        return functional_call(model, state, (), model_kwargs(batch, keys))
    return functional_call(model, state, tuple(batch[:-1]))


def metric_input(batch: Any, kind: str) -> Any:
    """What a metric gets beside the outputs: the dict batch, or a tuple's target."""
    return batch if kind == "dict" else batch[-1]


class Called(nn.Module):
    """The network on a batch, followed by the metrics: (M, STATS + PAIRED) sums per call."""

    def __init__(self, net: nn.Module, metrics: Mapping[str, Callable], kind: str):
        super().__init__()
        self.net, self.kind = net, kind
        self.keys = accepted(net) if kind == "dict" else None
        fns = list(metrics.values())
        self._fns = fns if kind == "dict" else [per_example(fn) or fn for fn in fns]

    def forward(self, batch: Any, centre: torch.Tensor | None = None,
                terms: bool = False) -> torch.Tensor:
        outputs = call(self.net, batch, self.kind, self.keys)
        target, rows = metric_input(batch, self.kind), rows_of(batch)
        device = next(v for v in (batch.values() if isinstance(batch, Mapping) else batch)
                      if isinstance(v, torch.Tensor)).device
        if terms:  # the per-example totals and counts (M, N + 2), and the centre's own sums
            return centre_rows([fn(outputs, target) for fn in self._fns], rows, device)
        return torch.stack([batch_stats(fn(outputs, target), rows, device,
                                        None if centre is None else centre[i])
                            for i, fn in enumerate(self._fns)])


def check_batches(model: nn.Module, metrics: Mapping[str, Callable],
                  state: Mapping[str, torch.Tensor], splits: Sequence[Any],
                  device: torch.device) -> None:
    """Run the model and every metric on the first two examples of each split; name failures."""
    state = {k: v.to(device) for k, v in state.items()}
    with torch.no_grad():
        for s in splits:
            if isinstance(s, Split):
                kind, first = "tuple", (s.X[:2], s.y[:2])
            else:
                kind, first = s.kind, s.head(2)[0]
            batch = to_device(first, device)
            keys = list(batch) if kind == "dict" else f"{len(batch) - 1} inputs and a target"
            try:
                outputs = call_at(model, state, batch, kind, accepted(model))
            except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
                raise InputError(
                    f"split {s.name!r}: the model fails on a batch of {keys} ({_first(exc)}): "
                    "the batches do not match the model's forward()") from exc
            for name, fn in metrics.items():
                try:
                    result = fn(outputs, metric_input(batch, kind))
                except (RuntimeError, ValueError, TypeError, IndexError, KeyError,
                        AttributeError) as exc:
                    raise InputError(
                        f"split {s.name!r}: metric {name!r} fails on the model's outputs "
                        f"({type(outputs).__name__}) and a batch of {keys} ({_first(exc)}): for "
                        "dict batches a metric is called f(outputs, batch), e.g. "
                        "lossmap.metrics.causal_lm_loss") from exc
                check_result(name, result, rows_of(batch))


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class BatchEvaluator(EvaluatorBase):
    """Evaluate named metrics on splits of any batch structure, point by point.

    Implements the evaluator protocol of :mod:`lossmap.backends.base` (strategy
    "loop", no first-layer reuse). ``batch_size`` cuts the splits held as
    tensors; batches of a :class:`~lossmap.data.batches.Batches` are used as given.
    """

    chunk = 1
    compiled = False
    reuses_first_layer = False
    bn = None
    strategy = "loop"

    def __init__(self, model: nn.Module, metrics: Mapping[str, Callable],
                 centre_params: Mapping[str, torch.Tensor],
                 centre_buffers: Mapping[str, torch.Tensor],
                 directions: Sequence[Mapping[str, torch.Tensor]], splits: Sequence[Any],
                 device: torch.device, batch_size: int | None = None, *,
                 autocast: torch.dtype | None = None):
        self.metrics = dict(metrics)
        self.device, self.autocast = device, autocast
        self.batch_size = batch_size or 256
        self.timings: dict[str, float] = defaultdict(float)
        state = {k: v.to(device) for k, v in {**centre_params, **centre_buffers}.items()}
        self.D = directions_on(device, state, directions)
        self.fixed = {k: v for k, v in state.items() if k not in self.D}
        self.centre = {k: state[k] for k in self.D}
        self._work: dict[str, torch.Tensor] = {}
        self._tc: list | None = None  # per-example totals at the centre, per split and batch
        self._ndims = len(directions)
        self.split_names = [s.name for s in splits]
        self.n = [s.n for s in splits]
        self.parts = []  # (Called, batches) per split; held batches moved to the device once
        held = sum(_nbytes(s) for s in splits if not getattr(s, "streamed", False))
        keep = device.type == "cpu" or held <= DEVICE_DATA_BUDGET
        for s in splits:
            kind, batches = batches_of(s, self.batch_size)
            if keep and not getattr(s, "streamed", False):
                batches = [to_device(b, device) for b in batches]
            self.parts.append((Called(model, self.metrics, kind), batches))

    def extra_profile(self) -> dict:
        """Facts for the profile: batches as given, streamed splits."""
        return {"structured_batches": True}

    @torch.no_grad()
    def evaluate(self, points: np.ndarray, *, errors: bool = False) -> Any:
        """Values (K, len(variables)) at K points, and with ``errors=True`` their SEs."""
        coef = np.asarray(points, dtype=np.float64).tolist()
        if self._tc is None:  # the centre's per-example totals, for the paired errors
            t0 = time.perf_counter()
            kept = self._pass([0.0] * self._ndims, terms=True)  # counts checked: no point yet
            self._tc = check_centre(self.split_names, self.metrics,
                                    [[k for k, _ in per] for per in kept])
            self._centre = [[st for _, st in per] for per in kept]  # the centre point's sums
            self.timings["centre_terms"] += time.perf_counter() - t0
        nm = len(self.metrics)
        sums = torch.zeros(len(coef), len(self.parts), nm, STATS + PAIRED, dtype=torch.float64,
                           device=self.device)
        for k, a in enumerate(coef):
            # the centre itself: the sums of the centre's pass, the same computation
            for s, per in enumerate(self._centre if not any(a) else self._pass(a)):
                sums[k, s] = torch.stack(per).sum(0)
        flat = sums.reshape(len(coef), len(self.parts) * nm, STATS + PAIRED).cpu().numpy()
        values, se = finish(flat)
        return (values, se, finish_paired(flat)) if errors else values

    def _pass(self, a: list[float], *, terms: bool = False) -> list[list[torch.Tensor]]:
        """One point over every batch of every split: stats (or, ``terms``, per-example totals)."""
        t = time.perf_counter
        t0 = t()
        built = build_points(self.centre, self.D, self._work, [a])
        state = {f"net.{n}": v for n, v in {**self.fixed,
                                            **{n: b[0] for n, b in built.items()}}.items()}
        self.timings["build"] += t() - t0
        out = []
        for s, (called, batches) in enumerate(self.parts):
            out.append([])
            for b, batch in enumerate(batches):
                t0 = t()
                batch = to_device(batch, self.device)
                self.timings["data"] += t() - t0
                t0 = t()
                centre = None if terms else self._tc[s][b]
                with self._precision():
                    out[s].append(functional_call(called, state, (batch, centre, terms)))
                self.timings["forward"] += t() - t0
        return out


def _nbytes(split: Any) -> int:
    if isinstance(split, Split):
        return split.X.nbytes + split.y.nbytes
    return sum(v.nbytes for b in split.batches
               for v in (b.values() if isinstance(b, Mapping) else b)
               if isinstance(v, torch.Tensor))
