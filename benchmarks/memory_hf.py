"""Peak memory of a line and a plane through a GPT-2 built from a config, by stage.

Issue 13 asks for the peak memory of a scan as a multiple of the model's
parameter bytes, and where it goes. Each case runs in a fresh process
(``--child CASE``) that builds a float32 GPT-2 from ``transformers.GPT2Config``
(no downloaded weights; about 27M parameters by default) behind a small
wrapper (input_ids → logits, the (X, y) data path of today: X = y = the token
ids, a shifted cross-entropy), and measures, stage by stage, the resident set
size (``VmRSS``) and its peak (``VmHWM``, reset before each stage through
``/proc/self/clear_refs``; Linux only):

1. ``model``: building the model and data (RSS after − before);
2. ``directions``: ``lm.random_directions`` (the held tensors and the draw's
   float64 temporaries);
3. ``plan``: ``lm.plan_scan`` (fingerprints of centre, directions and data);
4. ``evaluator``: building the evaluator inside the model's guard;
5. ``grid``: evaluating every grid point with that evaluator;
6. ``run``: ``plan.run`` as ``lm.scan`` does it — a new evaluator, the probe,
   the round-off floor (float64 copies of centre and directions, skipped above
   ``lossmap.backends.torch.roundoff.BUDGET``), the grid, and the store if any.

Every figure is divided by the parameter bytes P. glibc is told to map every
large block on its own (``MALLOC_MMAP_THRESHOLD_``), so that freed tensors
leave the RSS at once and each stage's peak is its own.

Run: ``.venv/bin/python benchmarks/memory_hf.py`` (about a minute on 2 cores;
``--layers/--width/--vocab`` change the model, ``--out`` the JSON file).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {  # name: (directions, store, storage, params)
    "line": (1, False, "auto", None),
    "plane": (2, False, "auto", None),
    "line+store": (1, True, "tensors", None),
    "line+store(recipe)": (1, True, "recipe", None),
    "plane+store(recipe)": (2, True, "recipe", None),
    "line, params=*.h.0.*": (1, False, "auto", "*.h.0.*"),
}
GRIDS = {1: [(-1.0, 1.0, 5)], 2: [(-1.0, 1.0, 3), (-1.0, 1.0, 3)]}


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class Stages:
    """RSS and peak RSS around each stage, in bytes."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def __call__(self, name: str, fn):
        gc.collect()
        before = _status("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        peak = _status("VmHWM")
        gc.collect()
        self.rows[name] = {"before": before, "peak": peak, "after": _status("VmRSS"),
                           "seconds": seconds}
        return out


def child(case: str, args: argparse.Namespace) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    import transformers

    import lossmap as lm

    transformers.logging.set_verbosity_error()

    class CausalLM(nn.Module):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.net(input_ids=input_ids).logits

    def shifted_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        v = logits.shape[-1]
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v),
                                           labels[:, 1:].reshape(-1))

    ndirs, store, storage, params = CASES[case]
    # Warm up the lazy imports (store, evaluator, transformers' GPT-2) on a tiny model.
    tiny = CausalLM(transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8))).eval()
    ids = torch.randint(0, 16, (2, 8))
    with tempfile.TemporaryDirectory() as tmp:
        lm.scan(tiny, shifted_ce, data={"train": (ids, ids)}, grid=(-1, 1, 2), metrics=["loss"],
                directions=lm.random_direction(tiny), store=Path(tmp) / "w.lossmap",
                progress=False)
    del tiny
    stages = Stages()
    base = _status("VmRSS")

    def build():
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(n_layer=args.layers, n_embd=args.width, n_head=8,
                                      vocab_size=args.vocab, n_positions=args.tokens)
        model = CausalLM(transformers.GPT2LMHeadModel(cfg)).eval()
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, args.vocab, (args.sequences, args.tokens), generator=g)
        return model, x

    model, x = stages("model", build)
    P = sum(p.numel() * p.element_size() for p in model.parameters())
    dirs = stages("directions", lambda: lm.random_directions(
        model, ndirs, seed=0, params=params, storage=storage))
    grid = GRIDS[ndirs]
    plan = stages("plan", lambda: lm.plan_scan(
        model, shifted_ce, data={"train": (x, x)}, directions=dirs, grid=grid,
        metrics=["loss"]))
    import numpy as np

    pts = np.stack(np.meshgrid(*plan.spec.coords(), indexing="ij"), -1).reshape(-1, ndirs)

    def grid_points(ev) -> None:  # in the evaluator's chunks, as the scan driver feeds it
        for i in range(0, len(pts), ev.chunk):
            ev.evaluate(pts[i:i + ev.chunk])

    with plan.backend.guard(plan.model):
        evaluator = stages("evaluator", plan.evaluator)
        stages("grid", lambda: grid_points(evaluator))
        chunk = evaluator.chunk
        evaluator = None  # freed before the run builds its own
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.lossmap" if store else None
        surf = stages("run", lambda: plan.run(store=path, progress=False))
        store_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 2**20
    moved = sum(t.numel() * t.element_size() for t in dirs[0].values())
    return {
        "case": case, "param_bytes": P, "parameters": P // 4, "moved_bytes": moved,
        "directions": ndirs, "store": store, "storage": storage, "params": params,
        "points": len(pts), "chunk": chunk, "baseline_rss": base, "stages": stages.rows,
        "store_mib": round(store_mb, 2) if store else None,
        "roundoff_measured": surf.roundoff is not None if hasattr(surf, "roundoff") else None,
        "profile": {k: v for k, v in (surf.profile or {}).items()
                    if isinstance(v, (int, float, str))},
    }


def table(results: list[dict]) -> str:
    P = results[0]["param_bytes"]
    head = (f"{'case':<22} {'moved/P':>7} {'dirs':>6} {'plan':>6} {'eval':>6} {'grid':>6} "
            f"{'run':>6} {'peak/P':>7} {'floor':>6}")
    lines = [f"GPT-2 from config, {results[0]['parameters'] / 1e6:.1f}M parameters, "
             f"P = {P / 2**20:.0f} MiB (float32); each stage's peak above the RSS before it, "
             "÷ P; peak/P: the whole process (model and data included) above the RSS after "
             "import, at the run's peak; floor: roundoff floor measured", head]
    for r in results:
        s = r["stages"]
        extra = {k: (v["peak"] - v["before"]) / P for k, v in s.items()}
        total = (s["run"]["peak"] - r["baseline_rss"]) / P
        lines.append(
            f"{r['case']:<22} {r['moved_bytes'] / P:>7.2f} {extra['directions']:>6.2f} "
            f"{extra['plan']:>6.2f} {extra['evaluator']:>6.2f} {extra['grid']:>6.2f} "
            f"{extra['run']:>6.2f} {total:>7.2f} {r['roundoff_measured']!s:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--sequences", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--only", action="append", choices=list(CASES))
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "memory_hf.json"))
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(256 * 1024),
           "MALLOC_TRIM_THRESHOLD_": str(256 * 1024), "OMP_NUM_THREADS": str(args.threads)}
    results = []
    for case in args.only or CASES:
        cmd = [sys.executable, __file__, "--child", case, "--layers", str(args.layers),
               "--width", str(args.width), "--vocab", str(args.vocab), "--sequences",
               str(args.sequences), "--tokens", str(args.tokens), "--threads", str(args.threads)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if r.returncode:
            print(r.stderr[-3000:], file=sys.stderr)
            return r.returncode
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(f"done: {case}", file=sys.stderr)
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
