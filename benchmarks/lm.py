"""Language-model benchmark: lossmap, an in-place loop and reload-per-point on a GPT-2.

Three figures, in one run (issue 26, part 2):

1. **Speed**: a 5×5 plane through a GPT-2-small-sized model (123,849,984
   parameters, ``transformers.GPT2LMHeadModel`` from a config, nothing
   downloaded) on 16 sequences of 256 tokens, token-exact next-token loss.
   ``lm.scan`` with ``lm.metrics.causal_lm_loss`` against a plain in-place loop
   and against reload-per-point (published LLM-landscape code: a CPU copy of
   the state dict perturbed, ``load_state_dict``, evaluate), both over the
   batches lossmap chose. Methods interleaved, the order alternating (lossmap,
   loop, reload; reload, loop, lossmap; …), ratios pair by pair, then the
   median; the largest difference of values.
   Where the time goes: ``surf.profile`` (set-up passes, building the points,
   forward, store) and a ``torch.profiler`` table of one forward batch.
2. **Memory**: peak RSS of a line and a plane as a multiple of the parameter
   bytes P, above the RSS with the model and data built (directions drawn in
   the measured window). One fresh process per measurement
   (``--child``), peak read from ``VmHWM`` after ``/proc/self/clear_refs``.
3. **One billion parameters**: a line through a GPT-2 of 18 layers × 2048
   (1,009,903,616 parameters, 4.04 GB float32) on one sequence of 256 tokens,
   in a fresh process: peak memory and time per point.

Run (about 25 minutes on 2 cores; ``nice`` it on a shared machine)::

    nice .venv/bin/python benchmarks/lm.py                 # the issue's sizes
    .venv/bin/python benchmarks/lm.py --quick              # tiny GPT-2, seconds

Options: ``--pairs N`` (interleaved repeats, default 2), ``--only
speed|memory|billion`` (repeatable), ``--threads``, ``--out``.
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

HERE = Path(__file__).resolve().parent
PLANE = [(-1.0, 1.0, 5), (-1.0, 1.0, 5)]
MEMORY_GRIDS = {1: [(-1.0, 1.0, 3)], 2: [(-1.0, 1.0, 2), (-1.0, 1.0, 2)]}
BILLION_LINE = [(-1.0, 1.0, 5)]
MEMORY_CASES = ["lossmap:1", "lossmap:2", "inplace_loop:2", "reload:2"]
ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 * 1024), "MALLOC_TRIM_THRESHOLD_": str(256 * 1024)}


def _sizes(args):
    """(the speed and memory model, the billion line's model) for these arguments."""
    from lm_methods import BILLION, SMALL, TINY, GPT2Size

    big = GPT2Size(2, 128, 4, 1000, 1, 32) if args.quick else BILLION
    small = TINY if args.quick else SMALL
    if args.size:
        small = GPT2Size(*(int(v) for v in args.size.split(",")))
    return small, big


def _warm_up() -> None:
    """Every method once on a tiny GPT-2: lazy imports and first-call costs leave the timings."""
    import lossmap as lm

    from lm_methods import METHODS, TINY, gpt2, token_ids

    model, ids = gpt2(TINY), token_ids(TINY)
    dirs = lm.random_directions(model, 2, seed=0)
    for fn in METHODS.values():
        fn(model, ids, dirs, [(-1.0, 1.0, 2)] * 2, 2)


def forward_profile(model, x, rows: int = 8) -> list[dict]:
    """``torch.profiler``: the ops of one no-grad forward batch by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(input_ids=x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1e3, 2),
            "share": round(e.self_cpu_time_total / total, 4),
            "calls": e.count,
        }
        for e in events[:rows]
    ]


def speed(args, save) -> dict:
    """The interleaved pairs; ``save(partial)`` after each pair, so a cut-short run keeps them."""
    import lossmap as lm

    from lm_methods import METHODS, gpt2, token_ids

    size, _ = _sizes(args)
    _warm_up()
    model, ids = gpt2(size), token_ids(size)
    dirs = lm.random_directions(model, 2, seed=0)
    runs: dict[str, list] = {name: [] for name in METHODS}
    batch = None
    for r in range(args.pairs):
        # the order alternates from pair to pair (lossmap first in the first: it picks the batch)
        for name in list(METHODS) if r % 2 == 0 else list(METHODS)[::-1]:
            run = METHODS[name](model, ids, dirs, PLANE, batch)
            if name == "lossmap":
                batch = run.info["batch_size"]
            runs[name].append(run)
            print(f"pair {r + 1}/{args.pairs}: {name} {run.seconds:.1f} s", file=sys.stderr)
        out = summarize(runs, model, size, batch)
        save(out)
    out["forward_profile"] = forward_profile(model, ids[:batch])
    return out


def summarize(runs: dict, model, size, batch: int) -> dict:
    """Medians, ratios pair by pair, agreement and lossmap's profile of the pairs so far."""
    import numpy as np

    from lm_methods import param_bytes

    ref = runs["lossmap"]
    out = {
        "model": size.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "param_bytes": param_bytes(model),
        "grid": PLANE,
        "points": 25,
        "batch": batch,
        "pairs": len(ref),
        "methods": {},
        "ratios": {},
        "agreement_max_abs_loss_diff": {},
    }
    for name, rs in runs.items():
        secs = [x.seconds for x in rs]
        out["methods"][name] = {
            "seconds": secs,
            "median_s": statistics.median(secs),
            "per_point_s": statistics.median(secs) / 25,
        }
        if name != "lossmap":
            per = [x.seconds / y.seconds for x, y in zip(rs, ref, strict=True)]
            out["ratios"][f"{name}/lossmap"] = {"per_pair": per, "median": statistics.median(per)}
            out["agreement_max_abs_loss_diff"][name] = max(
                float(np.max(np.abs(x.values - y.values))) for x, y in zip(rs, ref, strict=True)
            )
    grid_s = [x.info.get("seconds", x.seconds) for x in ref]
    out["methods"]["lossmap"]["grid_only_median_s"] = statistics.median(grid_s)
    out["methods"]["lossmap"]["set_up_median_s"] = statistics.median(
        x.info["set_up_s"] for x in ref
    )
    out["lossmap_profile"] = [x.info for x in ref]
    out["loss_range"] = [float(ref[0].values.min()), float(ref[0].values.max())]
    out["forward_profile"] = []
    return out


def child(spec: str, args) -> dict:
    """One memory measurement in this (fresh) process: ``METHOD:NDIRS[:billion]``."""
    import torch

    import lossmap as lm

    from lm_methods import METHODS, gpt2, param_bytes, token_ids
    from memory_hf import _reset_peak, _status

    torch.set_num_threads(args.threads)
    method, ndirs, *big = spec.split(":")
    ndirs = int(ndirs)
    small, billion = _sizes(args)
    size = billion if big else small
    grid = BILLION_LINE if big else MEMORY_GRIDS[ndirs]
    dtype = torch.bfloat16 if spec.endswith(":bf16") else torch.float32
    _warm_up()
    base = _status("VmRSS")
    t0 = time.perf_counter()
    model, ids = gpt2(size, dtype=dtype), token_ids(size)
    build_s = time.perf_counter() - t0
    P = param_bytes(model)
    ready = _status("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    dirs = lm.random_directions(model, ndirs, seed=0)
    draw_s = time.perf_counter() - t0
    batch = None if method == "lossmap" else size.sequences
    run = METHODS[method](model, ids, dirs, grid, batch)
    wall = time.perf_counter() - t0
    peak = _status("VmHWM")
    points = 1
    for _, _, n in grid:
        points *= n
    return {
        "case": spec,
        "model": size.describe(),
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        "param_bytes": P,
        "grid": grid,
        "points": points,
        "build_s": build_s,
        "directions_s": draw_s,
        "method_s": run.seconds,
        "wall_s": wall,
        "per_point_s": run.seconds / points,
        "rss_import": base,
        "rss_ready": ready,
        "rss_peak": peak,
        "extra_over_P": (peak - ready) / P,
        "peak_over_P": (peak - base) / P,
        "info": run.info,
    }


def _run_child(spec: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", spec, "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--size", args.size] if args.size else []
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": str(args.threads)}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if r.returncode:
        last = r.stderr.strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        return {"case": spec, "error": last[0]}
    print(f"done: {spec}", file=sys.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def billion(args) -> dict:
    """The 1B line in a fresh process: float32 if the machine has room (about 4.6 P), else
    bfloat16 (half the bytes; slow on a CPU without bf16 units, so its time is not the float32
    rate), else skipped with the reason."""
    from lm_methods import BILLION

    _, size = _sizes(args)
    P = 4 * (12 * size.layers * size.width**2 + size.vocab * size.width)
    free = _available()
    if args.quick or free >= 4.6 * P:
        return _run_child("lossmap:1:billion", args)
    if free >= 4.6 * P / 2:
        return {
            **_run_child("lossmap:1:billion:bf16", args),
            "note": f"{free / 1e9:.1f} GB available, float32 needs {4.6 * P / 1e9:.1f} GB: "
            "run in bfloat16",
        }
    return {
        "case": "lossmap:1:billion",
        "skipped": f"{free / 1e9:.1f} GB available, "
        f"{4.6 * P / 2e9:.1f} GB needed for {BILLION.describe()} in bfloat16",
    }


def table(res: dict) -> str:
    lines = []
    if "speed" in res:
        s = res["speed"]
        lines.append(f"{s['model']}; {s['parameters']:,} parameters; 5×5 plane, batch {s['batch']}")
        for name, m in s["methods"].items():
            ratio = s["ratios"].get(f"{name}/lossmap", {}).get("median")
            diff = s["agreement_max_abs_loss_diff"].get(name)
            lines.append(
                f"  {name:<13} median {m['median_s']:8.1f} s  {m['per_point_s']:6.2f} s/pt"
                + (f"  {ratio:5.2f}× lossmap's time, max |Δloss| {diff:.1e}" if ratio else "")
            )
        lm_ = s["methods"]["lossmap"]
        prof = s["lossmap_profile"][-1]
        lines.append(
            f"  lossmap's time: set-up passes {lm_['set_up_median_s']:.1f} s (round-off floor "
            f"{prof.get('roundoff_seconds', 0):.1f} s), grid {lm_['grid_only_median_s']:.1f} s: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in prof["timings"].items() if v >= 0.05)
        )
        lines.append(
            "  one forward batch (torch.profiler, self CPU time): "
            + ", ".join(f"{e['op']} {e['share']:.0%}" for e in s["forward_profile"][:6])
        )
    for r in res.get("memory", []) + ([res["billion"]] if "billion" in res else []):
        if "extra_over_P" in r:
            lines.append(
                f"  memory {r['case']:<18} +{r['extra_over_P']:.2f} P above model+data "
                f"(P = {r['param_bytes'] / 2**20:,.0f} MiB), {r['per_point_s']:.2f} s/pt"
            )
        else:
            lines.append(f"  memory {r['case']:<18} {r.get('skipped') or r.get('error')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="a tiny GPT-2: the code paths in seconds")
    p.add_argument("--size", help="LAYERS,WIDTH,HEADS,VOCAB,SEQUENCES,TOKENS of the 124M model")
    p.add_argument("--pairs", type=int, default=2, help="interleaved repeats (default 2)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument(
        "--memory-all",
        action="store_true",
        help="also the in-place loop's and reload's planes in the memory part",
    )
    p.add_argument("--only", action="append", choices=["speed", "memory", "billion"])
    p.add_argument("--out", help="JSON file (default benchmarks/results/lm[-quick].json)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    from hardware import machine_info

    only = args.only or ["speed", "memory", "billion"]
    res: dict = {
        "schema": "lossmap-lm-benchmark/1",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(torch.device("cpu")),
        "load_average_start": os.getloadavg(),
    }
    out = Path(args.out or HERE / "results" / ("lm-quick.json" if args.quick else "lm.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def save(key: str, value) -> None:  # after every step: a run cut short keeps what it has
        res[key] = value
        res["load_average_end"] = os.getloadavg()
        res["wall_s"] = time.perf_counter() - t0
        out.write_text(json.dumps(res, indent=2) + "\n")

    if "speed" in only:
        save("speed", speed(args, lambda partial: save("speed", partial)))
    if "memory" in only:
        cases = MEMORY_CASES if args.memory_all else MEMORY_CASES[:2]
        save("memory", [])
        for spec in cases:
            save("memory", [*res["memory"], _run_child(spec, args)])
    if "billion" in only:
        save("billion", billion(args))
    print(table(res))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
