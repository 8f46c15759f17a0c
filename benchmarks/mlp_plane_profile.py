"""Where a grid point's time goes on the MLP plane of issue 26: lossmap against the in-place loop.

The same workload as ``mlp_plane.py`` (784-512-512-10 MLP, 10,000 samples,
two random filter-normalized directions). Each method runs under
``torch.profiler`` on an n×n and on a 3×3 plane; the difference of the two
runs, op by op, divided by the difference in points, is what one grid point
costs, with every pass before the first point (probe, round-off floor,
slopes, the centre's per-example pass, the first-layer cache) cancelled out.

Run::

    .venv/bin/python benchmarks/mlp_plane_profile.py --threads 1 --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mlp_plane import workload  # noqa: E402

import hardware  # noqa: E402
import methods as M  # noqa: E402


def op_times(fn) -> tuple[dict[str, float], float]:
    """Self CPU milliseconds per op name, and the whole run's wall seconds."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run = fn()
    return {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}, run.seconds


def per_point(fn, n: int) -> dict:
    """Per-op milliseconds of one grid point: (n×n run − 3×3 run) / (n² − 9)."""
    big, big_s = op_times(lambda: fn([(-1.0, 1.0, n)] * 2))
    small, small_s = op_times(lambda: fn([(-1.0, 1.0, 3)] * 2))
    points = n * n - 9
    ops = {k: (big.get(k, 0.0) - small.get(k, 0.0)) / points for k in big}
    ops = dict(
        sorted(((k, round(v, 3)) for k, v in ops.items() if v > 0.05), key=lambda kv: -kv[1])
    )
    return {"ms_per_point": round(1e3 * (big_s - small_s) / points, 2), "ops_ms": ops}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=7, help="points per axis of the larger plane")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mlp_plane_profile.json")
    args = ap.parse_args(argv)
    model, data, dirs, source = workload(args.samples, args.threads)
    device = torch.device("cpu")
    y = data["train"][1]
    methods = {
        "lossmap": lambda a: M.lossmap_scan(model, data, dirs, a, device),
        "loop": lambda a: M.plain_loop(model, data, dirs, a, device),
    }
    load_before = os.getloadavg()
    for fn in methods.values():  # warm-up
        fn([(-1.0, 1.0, 3)] * 2)
    result = {
        "workload": f"MLP 784-512-512-10, {len(y):,} samples ({source}), per grid point "
        f"({args.points}x{args.points} minus 3x3), threads {torch.get_num_threads()}",
        "machine": hardware.machine_info(device),
        "load_average_before": load_before,
        **{name: per_point(fn, args.points) for name, fn in methods.items()},
        "load_average_after": os.getloadavg(),
    }
    result["grid_ratio"] = result["loop"]["ms_per_point"] / result["lossmap"]["ms_per_point"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name in methods:
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(result[name]["ops_ms"].items())[:6])
        print(f"{name}: {result[name]['ms_per_point']:.1f} ms per point ({top})")
    print(f"grid points alone: loop / lossmap {result['grid_ratio']:.2f}x; written to {args.out}")
    return result


if __name__ == "__main__":
    main()
