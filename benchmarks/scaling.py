"""Scaling and resume on one machine: 2 ranks × 1 thread vs 1 rank × 1 thread.

    python benchmarks/scaling.py [--repeats 3] [--grid 16] [--out benchmarks/results/scaling.json]

Measures, in one run, on the same scan (the example CNN, 512 + 512 samples):

* the wall time of ``lm.scan`` in 1 process and in 2 torchrun processes
  (1 thread each, interleaved repeats; process start-up excluded), their ratio,
  and the share of the 2-rank time spent gathering results to rank 0;
* resume: a 2-rank job killed (SIGKILL of one rank) half-way, then rerun: how
  many point evaluations were wasted, against the points that were in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def worker(args: argparse.Namespace) -> None:
    """Inside one process of the job: scan, then (rank 0) print the timings as JSON."""
    import torch

    import lossmap as lm
    import lossmap.models as M

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = M.fashion_cnn().eval()
    g = torch.Generator().manual_seed(1)
    X, y = torch.rand(1024, 1, 28, 28, generator=g), torch.randint(0, 10, (1024,), generator=g)
    count = Path(args.count) if args.count else None

    def loss(out, t):
        if count is not None:
            with count.open("a") as f:
                f.write("1\n")
        if args.delay:
            time.sleep(args.delay)
        return torch.nn.functional.cross_entropy(out, t)

    dirs = lm.random_directions(model, 2, norm="layer", ignore=None, seed=0)
    t0 = time.perf_counter()
    surf = lm.scan(model, loss, data={"train": (X[:512], y[:512]), "test": (X[512:], y[512:])},
            directions=dirs, grid=[(-0.3, 0.3, args.grid)] * 2, store=args.store,
            metrics=("loss",), batch_size=512, progress=False)
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) == 0:
        timings = surf.profile["timings"]
        print(json.dumps({"seconds": seconds, "gather": timings.get("gather", 0.0),
                          "wait": timings.get("wait", 0.0),
                          "store": timings.get("store", 0.0), "chunk": surf.profile["chunk"]}))


def launch(ranks: int, store: Path, grid: int, *, count=None, delay=0.0, popen=False):
    cmd = [sys.executable, __file__, "--worker", "--store", str(store), "--grid", str(grid),
           "--delay", str(delay)]
    if count:
        cmd += ["--count", str(count)]
    if ranks > 1:
        cmd = [TORCHRUN, "--standalone", "--nproc-per-node", str(ranks), *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def committed(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def resume_test(tmp: Path, grid: int) -> dict:
    store, count = tmp / "resume.lossmap", tmp / "count"
    total = grid * grid
    proc = launch(2, store, grid, count=count, delay=0.02, popen=True)
    while committed(store) < total // 2 and proc.poll() is None:
        time.sleep(0.05)
    kept = committed(store)
    pids = subprocess.run(["pgrep", "-f", "--", f"--worker --store {store}"],
                          capture_output=True, text=True).stdout.split()
    if not pids:
        raise SystemExit("the job finished before it could be killed: use a larger --grid")
    os.kill(int(max(pids, key=int)), signal.SIGKILL)
    proc.wait(timeout=120)
    first = len(count.read_text().splitlines())
    launch(2, store, grid, count=count)
    evaluations = len(count.read_text().splitlines()) - 2 * 2  # minus the 2-sample shape checks
    per_point = 2  # one loss call per split
    wasted = evaluations / per_point - total
    return {"points": total, "committed_at_kill": kept, "evaluated_before_kill": first / per_point,
            "wasted_points": wasted, "in_flight_bound": "ranks × chunk (the round being computed)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store")
    p.add_argument("--count")
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--grid", type=int, default=16, help="points per axis (default 16)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "scaling.json"))
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    one, two = [], []
    with tempfile.TemporaryDirectory(prefix="lossmap-scaling-") as d:
        tmp = Path(d)
        for r in range(args.repeats):
            one.append(launch(1, tmp / f"one{r}.lossmap", args.grid))
            two.append(launch(2, tmp / f"two{r}.lossmap", args.grid))
            print(f"repeat {r}: 1 rank {one[-1]['seconds']:.1f} s, 2 ranks "
                  f"{two[-1]['seconds']:.1f} s (gather {two[-1]['gather']:.3f} s, waiting for "
                  f"the other rank {two[-1]['wait']:.2f} s)")
        resume = resume_test(tmp, args.grid)
    ratios = [a["seconds"] / b["seconds"] for a, b in zip(one, two, strict=True)]
    gather = [b["gather"] / b["seconds"] for b in two]
    result = {
        "grid": args.grid, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "one_rank_s": [a["seconds"] for a in one], "two_ranks_s": [b["seconds"] for b in two],
        "speedup_median": statistics.median(ratios), "speedups": ratios,
        "gather_share_median": statistics.median(gather),
        "wait_share_median": statistics.median(b["wait"] / b["seconds"] for b in two),
        "resume": resume,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"2 ranks vs 1: {result['speedup_median']:.2f}x (median of {args.repeats}); gather "
          f"{100 * result['gather_share_median']:.2f} % of the scan; resume wasted "
          f"{resume['wasted_points']:.0f} of {resume['points']} points")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
