"""Models sharded with ``torch.distributed`` FSDP2 (``fully_shard``, DTensor parameters): a backend.

Found by :mod:`lossmap.backends.registry` before the PyTorch backend, so
``lm.scan(sharded_model, ...)`` is ``plan_scan(...).run(...)`` like any scan:
the same checks, spec, fingerprints, driver and store; what differs is the
evaluator and the options refused (:attr:`ShardedBackend.restricted`).

Every rank forms its own shard of c + Σ aᵢ·dᵢ, in place, in the local shard
of each parameter (``p.to_local()``), and runs the model's ordinary forward
pass, in which FSDP all-gathers each layer as in training. Nothing of the
full model is ever held by one rank during the scan: per rank, its shard of
the model, a copy of its shard of the centre (to restore the model) and its
shard of each direction, i.e. (2 + k)/world of the parameter bytes for k
directions (directions of half-precision models are kept in float32), plus
FSDP's transient all-gathered layer.

All ranks evaluate the same point together. The batches of each split are
dealt out, batch i to rank i % world; the per-metric sums
(:mod:`lossmap.stats`) are added across ranks by one ``all_reduce``
per point: the values and standard errors of one process reading every batch.
A rank with fewer batches runs a one-row forward pass and discards it (FSDP
needs every rank in every forward). The evaluator is ``collective``: the
driver (:mod:`lossmap.scan.runner`) runs every point on every rank in the same
order; rank 0 alone writes the store. Before anything is gathered the ranks
compare their shard layouts, and before the first point the plan's spec and
fingerprints (:meth:`lossmap.scan.plan.Plan.run`): a rank that differs is
refused on every rank, by name.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..data.batches import Batches, rows_of
from ..data.splits import Split
from ..distributed import Group
from ..errors import InputError
from ..stats import STATS, finish
from .base import PROBE_SAMPLES, Evaluator, ResolvedScan
from .torch.backend import TorchBackend
from .torch.build import HALF, work_dtype
from .torch.structured import Called, batches_of, call, to_device


def _fsdp_module_type() -> type | None:
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return getattr(fsdp, "FSDPModule", None) if fsdp is not None else None


def is_sharded(model: Any) -> bool:
    """Whether ``model`` is a torch module sharded with ``fully_shard`` (or has DTensor weights).

    Cheap: a process that never imported ``torch.distributed.fsdp`` or
    ``torch.distributed.tensor`` has no sharded models.
    """
    if not isinstance(model, nn.Module):
        return False
    fsdp, tensor = _fsdp_module_type(), sys.modules.get("torch.distributed.tensor")
    if fsdp is not None and any(isinstance(m, fsdp) for m in model.modules()):
        return True
    dtensor = getattr(tensor, "DTensor", None)
    return dtensor is not None and any(isinstance(p, dtensor) for p in model.parameters())


def _reshard(model: nn.Module) -> None:
    """Every FSDP module back to its sharded parameters (the root keeps its unsharded
    parameters after a forward pass; the next one must all-gather the new values)."""
    fsdp = _fsdp_module_type()
    for m in model.modules():
        if fsdp is not None and isinstance(m, fsdp):
            m.reshard()


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself for a plain one)."""
    return t.to_local() if hasattr(t, "to_local") else t


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters (sharded) and buffers, by name, after resharding."""
    _reshard(model)
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _check_layout(state: Mapping[str, torch.Tensor], world: int) -> None:
    """Refuse DTensors that are not FSDP2 over one 1-D mesh of every rank."""
    for name, t in state.items():
        mesh = getattr(t, "device_mesh", None)
        if mesh is not None and (mesh.ndim != 1 or mesh.size() != world):
            raise InputError(
                f"parameter {name!r} is sharded over a mesh of shape {tuple(mesh.shape)}; "
                f"lossmap scans models sharded by fully_shard over one 1-D mesh of all {world} "
                "ranks (HSDP and tensor parallelism are not supported)")


class _Gathered(Mapping):
    """The full tensors of a sharded state, each all-gathered when it is read (one at a time).

    Read by :func:`lossmap.params.fingerprint` in sorted name order, on every rank:
    the same hash as an unsharded scan of the same weights, so the stores of
    both are one scan, without the full model ever held at once.
    """

    def __init__(self, state: Mapping[str, torch.Tensor]):
        self._state = state

    def __getitem__(self, name: str) -> torch.Tensor:
        t = self._state[name]
        return t.full_tensor() if hasattr(t, "full_tensor") else t

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def _same_layout(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse, on every rank, a model sharded differently on some rank (before any gather)."""
    world = dist.get_world_size()
    if world == 1:
        return
    facts = {name: (f"{type(t).__name__} {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"
                    f" {tuple(getattr(t, 'placements', ()))}") for name, t in state.items()}
    found = Group(dist.get_rank(), world).first_difference(facts)
    if found is not None:
        rank, name, ours, theirs = found
        raise InputError(f"rank {rank}'s shard layout of {name!r} differs from rank 0's "
                         f"({ours} vs {theirs}): shard the model the same way on every rank "
                         "(fully_shard over one 1-D mesh of all ranks)")


def _shard_of(d: torch.Tensor, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """This rank's shard of the full tensor ``d``, cut as ``like`` is (no communication)."""
    d = d.detach().to(_local(like).device, dtype)
    if hasattr(like, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        d = distribute_tensor(d, like.device_mesh, like.placements, src_data_rank=None).to_local()
    return d.clone()  # its own memory: the full tensor may go


def _one_row(batch: Any) -> Any:
    """The first example of a batch (a filler pass: FSDP needs every rank in each forward)."""
    n = rows_of(batch)

    def pick(v):
        return v[:1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v

    return {k: pick(v) for k, v in batch.items()} if isinstance(batch, Mapping) else tuple(
        pick(v) for v in batch)


class ShardedEvaluator(Evaluator):
    """Evaluate a sharded model at grid points (a :class:`~lossmap.backends.base.Evaluator`).

    Writes each point into the model's local shards; :meth:`restore` writes
    the centre back (call it in a ``finally``). ``collective``: every rank
    evaluates every point, in the same order.
    """

    chunk = 1
    compiled = False
    reuses_first_layer = False
    bn = None
    strategy = "loop"
    precision = "full"
    errors = True
    collective = True

    def __init__(self, model: nn.Module, metrics: Mapping[str, Callable],
                 directions: Sequence[Mapping[str, torch.Tensor]], splits: Sequence[Any],
                 batch_size: int | None = None):
        self.model, self.metrics = model, dict(metrics)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.timings: dict[str, float] = defaultdict(float)
        self.ndirs = len(directions)
        state = _state(model)
        self.device = _local(next(iter(state.values()))).device
        moved = [k for k in state if any(k in d for d in directions)]
        self.centre = {k: _local(state[k]).detach().clone() for k in moved}
        self.D = {k: [_shard_of(d[k], state[k], work_dtype(state[k].dtype)) if k in d
                      else torch.zeros_like(self.centre[k], dtype=work_dtype(state[k].dtype))
                      for d in directions] for k in moved}
        for k in moved:
            if self.D[k][0].shape != self.centre[k].shape:
                raise InputError(f"the shard of {k!r} cut from the direction has shape "
                                 f"{tuple(self.D[k][0].shape)}, the model's local shard "
                                 f"{tuple(self.centre[k].shape)}: an unsupported sharding")
        half = [self.centre[k].numel() for k in moved if self.centre[k].dtype in HALF]
        self._wide = torch.empty(max(half, default=0), dtype=torch.float32, device=self.device)
        self.batch_size = batch_size or 256
        self.split_names = [s.name for s in splits]
        self.n = [s.n for s in splits]
        self.parts = [self._part(s, batch_size) for s in splits]
        self.probe_parts = [self._part(_head(s), PROBE_SAMPLES) for s in splits]

    def _part(self, split: Any, batch_size: int | None) -> tuple[Called, Any]:
        kind, batches = batches_of(split, batch_size or getattr(split, "batch_size", None)
                                   or self.batch_size)
        if not getattr(split, "streamed", False):  # held: this rank's batches on the device
            batches = [to_device(b, self.device) if i % self.world == self.rank or i == 0
                       else b for i, b in enumerate(batches)]
        return Called(self.model, self.metrics, kind), batches

    @property
    def variables(self) -> list[str]:
        """Column names, ``split_metric``, in the order :meth:`evaluate` returns them."""
        return [f"{s}_{m}" for s in self.split_names for m in self.metrics]

    def extra_profile(self) -> dict:
        """Facts for the profile: sharded over ``world`` ranks."""
        return {"sharded": True, "world": self.world}

    @torch.no_grad()
    def _write(self, a: Sequence[float]) -> None:
        """c + Σ aᵢ·dᵢ into every moved tensor's local shard (float32 for half dtypes)."""
        state = _state(self.model)  # resharded: the next forward gathers the new values
        for name, dirs in self.D.items():
            dst, c = _local(state[name]), self.centre[name]
            acc = self._wide[: c.numel()].view(c.shape) if c.dtype in HALF else dst
            acc.copy_(c)
            for ai, d in zip(a, dirs, strict=True):
                if ai != 0.0:
                    acc.add_(d, alpha=ai)
            if acc is not dst:
                dst.copy_(acc)  # one rounding to the model's dtype

    @torch.no_grad()
    def restore(self) -> None:
        """The centre's values back in the model's shards, bit for bit."""
        state = _state(self.model)
        for name, c in self.centre.items():
            _local(state[name]).copy_(c)
        _reshard(self.model)

    @torch.no_grad()
    def _sums(self, parts: list, coef: list[list[float]]) -> torch.Tensor:
        t = time.perf_counter
        width = STATS  # what Called gives per metric without the centre's terms
        sums = torch.zeros(len(coef), len(parts), len(self.metrics), width, dtype=torch.float64,
                           device=self.device)
        for k, a in enumerate(coef):
            t0 = t()
            self._write(a)
            self.timings["build"] += t() - t0
            for s, (called, batches) in enumerate(parts):
                first, mine, i = None, 0, -1
                for i, batch in enumerate(batches):
                    if first is None:
                        first = batch
                    if i % self.world != self.rank:
                        continue
                    t0 = t()
                    batch = to_device(batch, self.device)
                    self.timings["data"] += t() - t0
                    t0 = t()
                    sums[k, s] += called(batch)
                    self.timings["forward"] += t() - t0
                    mine += 1
                t0 = t()
                for _ in range(-(-(i + 1) // self.world) - mine):  # as many forwards as rank 0
                    call(called.net, to_device(_one_row(first), self.device), called.kind,
                         called.keys)
                self.timings["forward"] += t() - t0
        t0 = t()
        dist.all_reduce(sums)  # one collective per call: the sums of every rank's batches
        self.timings["gather"] += t() - t0
        return sums.reshape(len(coef), -1, width)

    def evaluate(self, points: np.ndarray, *, errors: bool = False) -> Any:
        """Values (K, len(variables)) at K points, and with ``errors=True`` their SEs."""
        coef = np.asarray(points, dtype=np.float64).tolist()
        values, se = finish(self._sums(self.parts, coef).cpu().numpy())
        return (values, se) if errors else values

    def probe(self) -> dict[str, float]:
        """Every variable at the centre on the first ``PROBE_SAMPLES`` samples of each split."""
        values, _ = finish(self._sums(self.probe_parts, [[0.0] * self.ndirs]).cpu().numpy())
        return dict(zip(self.variables, values[0].tolist(), strict=True))


def _head(split: Any) -> Any:
    """The first ``PROBE_SAMPLES`` samples of a split, as one batch (as the torch backend)."""
    if isinstance(split, Split):
        return Split(split.name, split.X[:PROBE_SAMPLES], split.y[:PROBE_SAMPLES],
                     PROBE_SAMPLES)
    head = split.head(PROBE_SAMPLES)
    return Batches(split.name, tuple(head), sum(rows_of(b) for b in head), split.kind)


class ShardedBackend(TorchBackend):
    """PyTorch models sharded with FSDP2 (``fully_shard``), scanned inside their process group.

    Call ``lm.scan`` on every rank of the job, as in training. The directions
    are full tensors, the same on every rank (e.g. ``lm.random_direction(net,
    seed=0)`` made before sharding); the data is every rank's full data (each
    rank evaluates its share of the batches). Refused, with the reason: the
    options in :attr:`restricted`; meshes other than one 1-D mesh of all ranks.
    The round-off floor and the slopes at the centre are not measured. The
    model's shards are restored bit for bit at the end, also after an error or
    Ctrl-C. The Surface is the same on every rank; rank 0 alone writes the store.

    Examples
    --------
    >>> import torch, torch.distributed as dist, lossmap as lm
    >>> from torch.distributed.fsdp import fully_shard
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> d = lm.random_direction(net, seed=0)  # full tensors, before sharding
    >>> _ = fully_shard(net)
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> plan = lm.plan_scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                     directions=d, grid=(-1, 1, 5))
    >>> plan.backend.name
    'sharded'
    >>> surf = plan.run(progress=False)
    >>> surf["train_loss"].shape, surf.profile["sharded"]
    ((5,), True)
    >>> dist.destroy_process_group()
    """

    name = "sharded"
    models = "a model sharded with FSDP2"
    restricted: ClassVar[Mapping[str, tuple[tuple[Any, ...], str]]] = {
        "centre": ((None,), "load the centre into the model before sharding it"),
        "path": ((None,), "path scans are not supported for sharded models"),
        "device": ((None,), "the model's shards stay where they are"),
        "strategy": (("auto", "loop"), "points run one after another (strategy='loop')"),
        "bn": (("eval",), "BatchNorm statistics are not re-estimated per point for sharded "
                          "models"),
        "channels_last": ((None, False), "inputs are fed as given"),
        "compile": ((False,), "torch.compile is not applied"),
        "autocast": ((None,), "autocast is not supported for sharded models"),
    }

    def owns(self, model: Any) -> bool:
        return is_sharded(model)

    def state(self, model: nn.Module, centre: Any = None) -> tuple[dict, dict]:
        """The model's parameters (DTensors of the full shapes, sharded) and buffers.

        Collective: the ranks compare their shard layouts first.
        """
        if not dist.is_available() or not dist.is_initialized():
            raise InputError("a sharded model is scanned inside its process group: call "
                             "torch.distributed.init_process_group() (torchrun) first")
        state = _state(model)
        _check_layout(state, dist.get_world_size())
        _same_layout(state)
        params = dict(model.named_parameters())
        return params, {k: v for k, v in state.items() if k not in params}

    def centre_fingerprint(self, params: Mapping[str, Any], buffers: Mapping[str, Any]) -> str:
        """That of the full tensors, gathered one at a time (collective): an unsharded scan's."""
        from .. import params as P

        return P.fingerprint(_Gathered({**params, **buffers}))

    def guard(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """Eval mode for the scan, every module's flag restored after (the evaluator restores
        the shards)."""
        return _eval_mode(model)

    def evaluator(self, plan: ResolvedScan) -> ShardedEvaluator:
        return ShardedEvaluator(plan.model, plan.metrics, plan.directions, plan.splits,
                                plan.options.batch_size)

    def probe(self, plan: ResolvedScan, evaluator: Evaluator) -> dict[str, float]:
        return evaluator.probe()

    def roundoff(self, plan: ResolvedScan, evaluator: Evaluator) -> None:
        return None  # not measured: a float64 copy of a sharded model is what sharding avoids

    def centre_slopes(self, plan: ResolvedScan, evaluator: Any = None) -> None:
        return None  # not measured for sharded models


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    modules = list(model.modules())
    training = [m.training for m in modules]
    try:
        model.eval()
        yield model
    finally:
        for m, flag in zip(modules, training, strict=True):
            m.training = flag
