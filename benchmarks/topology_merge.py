"""Merge tree, persistence and SMAD: lossmap vs landscaper 1.3.1 (and gudhi) on the same grids.

Run: ``.venv/bin/python benchmarks/topology_merge.py [--sizes 11,21] [--limit 1800]``
(CPU, one thread). landscaper's call runs in a child process stopped after
``--limit`` seconds (its 21³ case takes longer than 20 minutes here); a
stopped call is printed as ``> limit``.
Three Gaussian wells on a bowl (smooth, as a loss landscape; 1e-9 noise so no
two values tie) on 11³ and 21³ grids. Timed, side by side in one run, median
of several runs (fewer for landscaper's slow cases; the count is printed):

* ``lossmap merge tree``: :func:`lossmap.topology.merge_tree` on the grid graph
  plus :func:`lossmap.topology.smad` — what landscaper's ``smad()`` computes;
* ``lm.topology, no bootstrap``: the same plus the finding's pairs and basins;
* ``gudhi cubical``: gudhi's persistence of the vertex cubical complex (pairs only);
* ``landscaper smad()``: a fresh ``LossLandscape(loss, ranges).smad()``
  (topopy's contour tree and Morse–Smale complex on its Gabriel graph).

Also printed: whether the SMADs agree and the pairs equal gudhi's.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time

import numpy as np

import lossmap as lm
from lossmap.topology import grid_edges, merge_tree, smad


def wells(n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    axes = [np.linspace(-1, 1, n)] * 3
    X = np.meshgrid(*axes, indexing="ij")
    f = 0.3 * sum(x**2 for x in X)
    for c, d in (((-0.5, 0.0, 0.3), 1.0), ((0.5, 0.4, -0.2), 0.8), ((0.1, -0.5, -0.4), 0.6)):
        f = f - d * np.exp(-sum((x - ci) ** 2 for x, ci in zip(X, c, strict=True)) / 0.08)
    return f + 1e-9 * np.random.default_rng(0).standard_normal(f.shape), axes


def timed(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
    sizes = [int(n) for n in args.get("--sizes", "11,21").split(",")]
    limit = float(args.get("--limit", "1800"))
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    for n in sizes:
        case(n, limit)


def _landscaper(f: np.ndarray, axes: list[np.ndarray], reps: int, queue) -> None:
    from landscaper import LossLandscape

    queue.put(timed(lambda: LossLandscape(f, axes).smad(), reps))


def case(n: int, limit: float) -> None:
    """Time and compare the four on an n³ grid."""
    import multiprocessing as mp

    import gudhi

    f, axes = wells(n)
    edges = grid_edges(f.shape)
    ours_t, ours = timed(lambda: smad(merge_tree(f, grid_edges(f.shape))), 7)
    api_t, t = timed(lambda: lm.topology(f, coords=axes, bootstrap=0), 7)
    gd_t, gd = timed(lambda: gudhi.CubicalComplex(vertices=f).persistence(), 7)
    pairs = sorted((p.birth, p.death) for p in t.pairs)
    ref = sorted(tuple(p) for d, p in gd if d == 0)
    print(f"\n{n}^3 grid ({f.size} points, {len(edges)} edges, {t.n_minima} minima)")
    print(f"  lossmap merge tree + SMAD   {ours_t * 1e3:10.1f} ms  (median of 7)")
    print(f"  lm.topology, no bootstrap   {api_t * 1e3:10.1f} ms  (median of 7)")
    print(f"  gudhi cubical persistence   {gd_t * 1e3:10.1f} ms  (median of 7)")
    print(f"  pairs equal gudhi's: {pairs == ref}", flush=True)
    reps = 3 if n <= 11 else 1
    queue = mp.get_context("fork").Queue()
    child = mp.get_context("fork").Process(target=_landscaper, args=(f, axes, reps, queue))
    child.start()
    child.join(limit)
    if child.is_alive():
        child.terminate()
        child.join()
        print(f"  landscaper smad()           > {limit:.0f} s (stopped)")
        return
    ls_t, theirs = queue.get()
    print(f"  landscaper smad()           {ls_t * 1e3:10.1f} ms  (median of {reps})")
    print(f"  landscaper / lossmap        {ls_t / ours_t:10.0f} x")
    same = abs(ours - theirs) <= 1e-12 * abs(theirs)
    print(f"  SMAD lossmap {ours:.12g}  landscaper {theirs:.12g}  equal: {same}")


if __name__ == "__main__":
    main()
