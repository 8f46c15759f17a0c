"""The scan driver: visit the grid coarse to fine in rounds, evaluate, commit, gather.

Single process: each round is about ``CHUNK_SECONDS`` of work, evaluated in
chunks the Evaluator's memory bound allows and committed to the store at
once, so a killed scan loses at most the round in flight. Inside a torchrun
job the points of a round are sharded over the ranks, one ``all_gather``
brings the results (and each rank's pace) to every rank, and rank 0 alone
writes the store.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import warnings

import numpy as np

from .. import distributed
from ..backends.base import Evaluator, profile_of
from ..errors import LossmapError
from ..store import Store
from ..surface import Surface, from_rows, load
from .progress import bar
from .spec import ScanSpec

# A round of points is evaluated and committed together: about this much work
# per rank, so a killed scan loses at most that and the gather stays cheap.
CHUNK_SECONDS = 1.0
MAX_ROUND = 4096  # points per rank and round, at most
GROWTH = 4  # a round is at most this many times the one before


def run(spec: ScanSpec, fps, dirs, evaluator: Evaluator, store_path, progress: bool,
        extra_meta: dict | None, *, probe: dict[str, float] | None = None,
        roundoff: dict[str, float] | None = None, to_coef=None,
        measured: dict | None = None) -> Surface:
    """Run every point of ``spec`` not yet in the store; return the Surface.

    ``probe`` (the values at the centre on a fixed small sample) is recorded by a
    new store and compared by a resumed one, which refuses another computation.
    ``roundoff`` (the measured round-off floor per variable) is recorded by a new
    store and given to an in-memory Surface; a Surface read back from a store
    has the store's. ``to_coef`` maps grid points (K, ndim) to the evaluator's
    coefficients (a path scan: t → ``basis(t)[1:]``); None: the points themselves.
    ``measured`` (``samples`` and ``slopes``) is recorded like ``roundoff``. Where
    the evaluator gives standard errors they are stored beside the values.
    """
    grp = distributed.group(evaluator.device)
    writer = grp is None or grp.is_writer
    order = spec.order()  # coarse to fine (a design: as drawn)
    coords = spec.points()  # (size, k)
    store, status = None, None
    if writer and store_path is not None:
        try:
            store = Store.create_or_resume(store_path, spec, fps, dirs, extra_meta, probe=probe,
                                           roundoff=roundoff, measured=measured)
            status = ("ok", sorted(store.done()))
        except LossmapError as exc:
            status = ("error", exc)
    else:
        status = ("ok", [])
    if grp is not None:
        status = grp.broadcast(status)
    if status[0] == "error":
        raise status[1]
    done = set(status[1])
    todo = np.array([int(i) for i in order if int(i) not in done], dtype=np.int64)
    world, rank = (grp.world, grp.rank) if grp else (1, 0)
    # A collective evaluator (a sharded model: lossmap.backends.sharded) needs every rank at every
    # point, in the same order; rank 0's results are the results.
    collective = evaluator.collective
    share = 1 if collective else world
    pending: list[tuple] = []
    mem_idx: list[int] = []
    mem_rows: list[list[float]] = []
    try:
        with bar(len(order), initial=len(order) - len(todo), enabled=progress and writer) as pbar:
            start, size = 0, 1
            while start < len(todo):
                block = todo[start : start + size * share]
                start += len(block)
                mine = block if collective else block[rank::world]
                t0 = time.perf_counter()
                own: list[tuple] = []
                for i in range(0, len(mine), evaluator.chunk):  # within the memory bound
                    sub = mine[i : i + evaluator.chunk]
                    at = coords[sub] if to_coef is None else to_coef(coords[sub])
                    vals = evaluate_rows(evaluator, at)
                    own += [(int(j), coords[j], v, 0.0) for j, v in zip(sub, vals, strict=True)]
                    if writer:  # kept by the finally clause if the round is interrupted
                        pending = own
                seconds = (time.perf_counter() - t0) / max(len(mine), 1)
                own = [(j, c, v, seconds) for j, c, v, _ in own]
                # Next round: about CHUNK_SECONDS of work per rank, so that a kill loses
                # little and the gather to rank 0 stays a small share of the time; at most
                # GROWTH times the last round, so that one quick point (the centre, whose
                # sums come from the centre's pass) does not size a round of the whole grid.
                size = int(min(MAX_ROUND, GROWTH * size,
                               max(1, CHUNK_SECONDS // max(seconds, 1e-9))))
                # whole chunks: an evaluator that pads a short chunk (JAX) wastes nothing
                size = -(-size // evaluator.chunk) * evaluator.chunk
                rows = own
                if grp is not None:  # one collective: results, and each rank's pace
                    t0 = time.perf_counter()
                    grp.barrier()  # timed apart: waiting for a slower rank is not gather cost
                    evaluator.timings["wait"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    parts = grp.all_gather((own if rank == 0 or not collective else [], size))
                    size = min(p[1] for p in parts)  # the slowest rank sets the next round
                    evaluator.timings["gather"] += time.perf_counter() - t0
                    rows = [r for part, _ in parts for r in part]
                if not writer:
                    continue
                pending = rows
                if store is None:
                    mem_idx.extend(r[0] for r in rows)
                    mem_rows.extend(r[2].tolist() for r in rows)
                else:
                    t0 = time.perf_counter()
                    store.write(rows)  # each finished round is committed at once
                    evaluator.timings["store"] += time.perf_counter() - t0
                pending = []
                pbar.update(len(block))
    finally:
        if store is not None:
            if pending:  # interrupted while writing: try once more to keep finished points
                with contextlib.suppress(sqlite3.Error, OSError):
                    store.write(pending)
            store.close()
    surf = None
    if writer:
        if store_path is None:
            surf = from_rows(spec, mem_idx, mem_rows, fingerprints=fps,
                             meta=dict(extra_meta or {}), roundoff=roundoff,
                             **_measured(measured))
        else:
            surf = load(store_path)
    if grp is not None:
        surf = grp.broadcast(surf)
    _warn_diverged(surf)
    return surf


def evaluate_rows(evaluator: Evaluator, at: np.ndarray) -> np.ndarray:
    """The stored row of each point: the values, then (where the evaluator gives them) their
    standard errors and the paired ones (NaN where a metric has none)."""
    if not evaluator.errors:
        return evaluator.evaluate(at)
    parts = list(evaluator.evaluate(at, errors=True))
    parts += [np.full_like(parts[0], np.nan)] * (3 - len(parts))
    return np.concatenate(parts, axis=1)


def _measured(measured: dict | None) -> dict:
    """``samples`` and ``slopes`` for an in-memory Surface."""
    return {k: (measured or {}).get(k) for k in ("samples", "slopes")}


def format_profile(evaluator: Evaluator, total: float, setup: dict | None = None) -> str:
    """A table of where the scan's time went (any backend's evaluator).

    ``setup``: seconds of each pass before the first point (``Plan.run``), listed
    with the centre's per-example pass and their share of the whole scan.
    """
    p = profile_of(evaluator)
    lines = [
        f"lossmap profile ({p['strategy']}, first-layer reuse "
        f"{'on' if p['reuses_first_layer'] else 'off'}, chunk <= {p['chunk']}, "
        f"batch {p['batch_size']}, compile {'on' if p['compiled'] else 'off'}, "
        f"{_precision(p['precision'])} precision)"
    ]
    accounted = 0.0
    for key in ("data", "build", "bn_recompute", "first_layer", "forward", "wait", "gather",
                "store"):
        v = p["timings"].get(key, 0.0)
        accounted += v
        lines.append(f"  {key:<12} {v:9.3f} s  {100 * v / max(total, 1e-9):5.1f} %")
    passes = {**(setup or {}), "centre_terms": p["timings"].get("centre_terms", 0.0)}
    lines.append(f"  {'other':<12} {total - accounted - passes['centre_terms']:9.3f} s")
    lines.append(f"  {'total':<12} {total:9.3f} s")
    whole = total + sum(passes.values()) - passes["centre_terms"]  # centre_terms: in total
    lines.append("  set-up passes (share of the whole scan, set-up included):")
    for key, v in passes.items():
        lines.append(f"    {key:<12} {v:9.3f} s  {100 * v / max(whole, 1e-9):5.1f} %")
    v = sum(passes.values())
    lines.append(f"    {'together':<12} {v:9.3f} s  {100 * v / max(whole, 1e-9):5.1f} %")
    return "\n".join(lines)


def _precision(name: str) -> str:
    return name if name == "full" else f"{name} autocast"


def _warn_diverged(surf: Surface) -> None:
    n = surf.diverged()
    if n:
        warnings.warn(
            f"{n} of {surf.done.size} points have a non-finite loss (stored as such)",
            RuntimeWarning,
            stacklevel=3,
        )

