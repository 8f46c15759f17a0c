"""The MLP plane of issue 26: lossmap against a plain in-place loop, with the set-up share.

A 784-512-512-10 MLP, 10,000 Fashion-MNIST training images (random images
where the files are missing), a 15×15 plane along two random filter-normalized
directions. Two methods on the same work:

* **lossmap**: ``lm.scan(..., metrics=("loss",))`` with everything a new scan
  computes besides the grid: the probe, the round-off floor against float64,
  the per-sample slopes at the centre and the centre's per-example pass. Its
  ``profile["setup"]`` (and ``timings["centre_terms"]``) give the set-up share.
* **loop**: per point, every parameter set in place to c + a·d₁ + b·d₂, one
  ``torch.no_grad`` forward over the same batches of 1,024, restored afterwards
  (:func:`methods.plain_loop`).

Each method runs once on a 3×3 grid to warm up; then ``--pairs`` pairs run
interleaved (the order alternates from pair to pair), and the ratio is taken
within each pair: loop seconds / lossmap seconds. Its median is the figure.
The values must agree (the largest difference is reported). The machine's load
average before and after is recorded: a busy machine slows both methods, not
their ratio, as long as they alternate.

Run::

    .venv/bin/python benchmarks/mlp_plane.py                    # 3 pairs, all threads
    .venv/bin/python benchmarks/mlp_plane.py --pairs 5 --threads 1 --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import images  # noqa: E402

import lossmap as lm  # noqa: E402
from lossmap.models import mlp  # noqa: E402

import hardware  # noqa: E402
import methods as M  # noqa: E402


def lossmap_run(model, data, dirs, axes, device) -> M.Run:
    """``lm.scan`` of the loss with all its evidence; the set-up share from its profile."""
    run = M.lossmap_scan(model, data, dirs, axes, device)
    run.info["setup_share"] = sum(run.info["setup"].values()) / run.seconds
    # the evidence passes alone: everything before the first point but ``prepare`` (checks,
    # data, the first layer's kept outputs, which every point of the reuse needs)
    run.info["evidence_share"] = sum(v for k, v in run.info["setup"].items()
                                     if k != "prepare") / run.seconds
    return run


def workload(samples: int, threads: int | None = None) -> tuple[torch.nn.Module, dict, list, str]:
    """The MLP, ``{"train": (X, y)}``, two random directions (seed 0) and the data's source.

    ``threads``: torch's thread count, set first (default: left as it is).
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = mlp().eval()
    X, y, source = images("train", samples)
    return model, {"train": (X, y)}, lm.random_directions(model, 2, seed=0), source


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=15, help="points per axis")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument("--label", default="", help="a note stored with the result")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mlp_plane.json")
    args = ap.parse_args(argv)
    model, data, dirs, source = workload(args.samples, args.threads)
    device = torch.device("cpu")
    y = data["train"][1]
    axes = [(-1.0, 1.0, args.points)] * 2
    methods = {
        "lossmap": lambda a: lossmap_run(model, data, dirs, a, device),
        "loop": lambda a: M.plain_loop(model, data, dirs, a, device),
    }
    load_before = os.getloadavg()
    for name, fn in methods.items():
        fn([(-1.0, 1.0, 3)] * 2)
        print(f"warmed up {name}", file=sys.stderr)
    pairs = []
    for p in range(args.pairs):
        order = list(methods) if p % 2 == 0 else list(methods)[::-1]
        runs = {}
        for name in order:
            cpu0 = time.process_time()
            runs[name] = methods[name](axes)
            runs[name].info["cpu_s"] = time.process_time() - cpu0
            print(
                f"pair {p + 1}/{args.pairs} {name:<8} {runs[name].seconds:8.2f} s", file=sys.stderr
            )
        lmr, loop = runs["lossmap"], runs["loop"]
        pairs.append(
            {
                "lossmap_s": lmr.seconds,
                "loop_s": loop.seconds,
                "ratio": loop.seconds / lmr.seconds,
                "setup": lmr.info["setup"],
                "setup_share": lmr.info["setup_share"],
                "evidence_share": lmr.info["evidence_share"],
                # CPU seconds of the process: with one thread, a ratio a busy machine
                # disturbs less than the wall clock's (time spent descheduled is not counted)
                "cpu_ratio": loop.info["cpu_s"] / lmr.info["cpu_s"],
                "batch": lmr.info.get("batch"),
                "timings": lmr.info["timings"],
                "max_abs_diff": float(np.max(np.abs(lmr.values - loop.values))),
                "load_after": os.getloadavg()[0],
            }
        )
    result = {
        "workload": f"MLP 784-512-512-10, {len(y):,} samples ({source}), "
        f"plane {args.points}x{args.points}, loss only",
        "label": args.label,
        "revision": git_revision(),
        "machine": hardware.machine_info(device),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "pairs": pairs,
        "median_ratio": statistics.median(p["ratio"] for p in pairs),
        "median_setup_share": statistics.median(p["setup_share"] for p in pairs),
        "median_evidence_share": statistics.median(p["evidence_share"] for p in pairs),
        "median_cpu_ratio": statistics.median(p["cpu_ratio"] for p in pairs),
        "max_abs_diff": max(p["max_abs_diff"] for p in pairs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ratios = ", ".join(f"{p['ratio']:.2f}" for p in pairs)
    print(
        f"{result['workload']}: loop / lossmap median {result['median_ratio']:.2f}x "
        f"({ratios}); set-up share median "
        f"{100 * result['median_setup_share']:.1f} % (evidence passes alone "
        f"{100 * result['median_evidence_share']:.1f} %); CPU-time ratio median "
        f"{result['median_cpu_ratio']:.2f}x; values agree to "
        f"{result['max_abs_diff']:.1e}; load average {load_before[0]:.1f} -> "
        f"{result['load_average_after'][0]:.1f}; written to {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
