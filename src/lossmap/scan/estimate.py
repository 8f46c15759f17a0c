"""What a scan will cost, before it runs: ``lm.estimate`` and ``lossmap scan --dry-run``.

The plan is made exactly as :func:`lossmap.scan` makes it (the same checks),
the evaluator is built, the set-up passes run (probe, round-off floor,
slopes at the centre), and a short timing run evaluates the first points of
the scan's own order for about ``seconds`` seconds. The store is sized by
writing it: a store of the same spec, directions and records, with one row
per point in the scan's order, in a temporary folder; its size is the
store's size after the scan, to the byte where no point diverges and no value
is a whole number (SQLite keeps NULL and whole numbers in fewer bytes: an
accuracy of exactly 0 or 1, say), an upper bound otherwise.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..store import Store, is_store
from .plan import DEFAULT_METRICS, Plan, plan_scan
from .runner import evaluate_rows

WRITE_BLOCK = 4096  # rows per transaction while sizing the store


@dataclass(frozen=True)
class Estimate:
    """The cost of a scan: points, expected time and store size.

    Attributes
    ----------
    points : int
        Points of the grid or design.
    todo : int
        Points still to evaluate (fewer than ``points`` when ``store`` holds some).
    seconds_per_point : float
        Measured by the timing run (``timed`` points, after one warm-up chunk).
    setup_seconds : float
        The passes before the first point: evaluator, probe, round-off floor,
        slopes at the centre (0 for a store that is resumed: it has them).
    seconds : float
        Expected time of the scan: ``setup_seconds + todo * seconds_per_point``.
    store_bytes : int or None
        Size of the store after the scan (None without ``store``).
    timed : int
        Points the timing run evaluated.
    shape : tuple of int
        Grid shape (``(N,)`` for a design).
    dims : tuple of str

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> est = lm.estimate(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                   directions=list(lm.random_directions(net, 2, seed=0)),
    ...                   grid=[(-1, 1, 5), (-1, 1, 7)], seconds=0.1)
    >>> est.points, est.todo, est.shape, est.dims, est.store_bytes, est.seconds_per_point > 0
    (35, 35, (5, 7), ('alpha', 'beta'), None, True)
    >>> print(est)  # doctest: +ELLIPSIS
    35 points (5 x 7; alpha, beta); expected ... in memory (no store)
    """

    points: int
    todo: int
    seconds_per_point: float
    setup_seconds: float
    seconds: float
    store_bytes: int | None
    timed: int
    shape: tuple[int, ...]
    dims: tuple[str, ...]

    def __str__(self) -> str:
        grid = " x ".join(str(n) for n in self.shape)
        rest = "" if self.todo == self.points else f", {self.todo:,} still to do"
        size = (
            "in memory (no store)"
            if self.store_bytes is None
            else f"store {_bytes(self.store_bytes)} ({self.store_bytes:,} bytes)"
        )
        return (
            f"{self.points:,} points ({grid}; {', '.join(self.dims)}){rest}; "
            f"expected {_duration(self.seconds)} ({1 / self.seconds_per_point:,.1f} points/s "
            f"over {self.timed} timed points, set-up {_duration(self.setup_seconds)}); "
            f"{size}"
        )


def estimate(
    model: Any,
    loss_fn: Callable,
    *,
    data: Mapping[str, Any],
    directions: Any = None,
    grid: Any,
    centre: Any = None,
    metrics: Any = DEFAULT_METRICS,
    store: str | os.PathLike | None = None,
    meta: dict | None = None,
    path: Any = None,
    seconds: float = 1.0,
    **options: Any,
) -> Estimate:
    """The number of points, expected time and store size of ``lm.scan`` with these arguments.

    Takes :func:`lossmap.scan`'s arguments (checked the same way) and runs
    nothing of the scan itself: no store is written at ``store`` (an existing
    one is read, to count the points left). The time comes from a timing run
    of about ``seconds`` seconds on the scan's first points; the store size
    from writing a store of the same layout in a temporary folder (see the
    module docstring for when it is exact). The model comes back unchanged.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> ds = lm.random_directions(net, 4, seed=0)
    >>> est = lm.estimate(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                   directions=list(ds), grid=[(-1, 1, 11)] * 4, seconds=0.2)
    >>> est.points, est.seconds > 0
    (14641, True)
    """
    options["progress"] = False
    plan = plan_scan(
        model,
        loss_fn,
        data=data,
        directions=directions,
        grid=grid,
        centre=centre,
        metrics=metrics,
        path=path,
        **options,
    )
    spec = plan.spec
    size = math.prod(spec.shape)
    done: set[int] = set()
    resuming = store is not None and is_store(store)
    if resuming:
        with Store.open(Path(store)) as st:
            done = st.done()
    order = np.array([i for i in spec.order() if int(i) not in done], dtype=np.int64)
    setup, per_point, timed, rows, records = _time(plan, order, seconds, resuming)
    nbytes = None
    if store is not None:
        own = {"backend": plan.backend.name} if plan.backend.name != "torch" else {}
        nbytes = _store_bytes(plan, spec.order(), rows, {**own, **(meta or {})}, records, per_point)
    return Estimate(
        points=size,
        todo=len(order),
        seconds_per_point=per_point,
        setup_seconds=setup,
        seconds=setup + len(order) * per_point,
        store_bytes=nbytes,
        timed=timed,
        shape=spec.shape,
        dims=spec.dims,
    )


def _time(plan: Plan, order: np.ndarray, seconds: float, resuming: bool) -> tuple:
    """Set-up seconds, seconds per point, points timed, their rows, and the store's records."""
    coords = plan.spec.points()
    first = order if len(order) else plan.spec.order()[:1]  # nothing left: time one point anyway
    rows: dict[int, np.ndarray] = {}
    with plan.backend.guard(plan.model):
        t0 = time.perf_counter()
        evaluator = plan.evaluator()
        try:
            records = {
                "probe": plan.backend.probe(plan, evaluator),
                "roundoff": None,
                "measured": None,
            }
            if not resuming:
                records["roundoff"] = plan.backend.roundoff(plan, evaluator)
                records["measured"] = plan._measured(evaluator)
            setup = time.perf_counter() - t0

            def run(sub: np.ndarray) -> None:
                at = coords[sub] if plan.path is None else plan.coefficients(coords[sub])
                rows.update(zip(sub.tolist(), evaluate_rows(evaluator, at), strict=True))

            chunk = max(1, evaluator.chunk)
            run(first[:chunk])  # warm-up: caches, lazy initialisation
            start, timed, t0 = chunk, 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds and start < len(first):
                run(first[start : start + chunk])
                timed += len(first[start : start + chunk])
                start += chunk
            elapsed = time.perf_counter() - t0
            if not timed:  # the warm-up was all there was: time it again
                t0 = time.perf_counter()
                run(first[:chunk])
                timed, elapsed = len(first[:chunk]), time.perf_counter() - t0
        finally:
            evaluator.restore()
    return setup, max(elapsed, 1e-12) / timed, timed, rows, records


def _store_bytes(
    plan: Plan,
    order: np.ndarray,
    rows: dict[int, np.ndarray],
    meta: dict,
    records: dict,
    per_point: float,
) -> int:
    """The store's size after the scan: written with stand-in values in a temporary folder."""
    some = np.stack(list(rows.values()))
    # a stand-in value of full width (no whole number) where the timing run had one, else NULL
    template = np.where(np.isnan(some).all(axis=0), np.nan, 0.1234567890123)
    coords = plan.spec.points()
    seconds = per_point if per_point % 1 else per_point + 0.5
    with tempfile.TemporaryDirectory(prefix="lossmap-estimate-") as tmp:
        target = Path(tmp) / "estimate.lossmap"
        st = Store.create_or_resume(
            target,
            plan.spec,
            plan.fingerprints,
            plan.directions,
            meta,
            probe=records["probe"],
            roundoff=records["roundoff"],
            measured=records["measured"],
        )
        try:
            for b in range(0, len(order), WRITE_BLOCK):
                block = order[b : b + WRITE_BLOCK].tolist()
                st.write([(i, coords[i], rows.get(i, template), seconds) for i in block])
        finally:
            st.close()
        return sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file())


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
