"""One short check of lossmap on a GPU: speed, memory and the ``gpu`` tests, in one JSON.

Run through ``benchmarks/gpu.sh`` (it picks an interpreter whose torch sees
CUDA). In a few minutes on one GPU it measures:

1. **cnn**: the seed's CNN (``lossmap.models.fashion_cnn``, 105,866
   parameters) on 2,048 random 28×28 images, a 21×21 plane: ``lm.scan`` against
   the plain in-place loop of ``benchmarks/methods.py`` (interleaved repeats,
   ratio per pair, the largest difference of values);
2. **gpt2**: a GPT-2-small (124M) and a GPT-2 of about one billion parameters,
   both held in bfloat16 (every point formed in float32, cast once), 16
   sequences of 256 tokens, a line of 21 points and an 11×11 plane with the
   token-exact ``lm.metrics.causal_lm_loss``: points per second, peak GPU
   memory (``torch.cuda.max_memory_allocated``), and the line's value at α = 0
   against a direct next-token loss of the model;
3. **tests**: ``pytest -m gpu`` (the CUDA paths: autocast, ``channels_last``,
   compile, bf16 points, vmap, NCCL, FSDP), counts and failures.

``--cpu --tiny`` runs the same path on the CPU with tiny sizes (the tests'
check of this script, ``tests/test_gpu_script.py``); there the peak memory is
the process's peak RSS and the ``gpu`` tests are collected and skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FULL = {"cnn_images": 2048, "cnn_grid": 21, "repeats": 3, "line": 21, "plane": 11}
TINY = {"cnn_images": 64, "cnn_grid": 3, "repeats": 1, "line": 3, "plane": 2}


def _peak_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def _peak(device) -> int:
    """Peak bytes since :func:`_peak_reset`: allocated GPU memory, or the process's RSS."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device))
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmHWM:"))


def cnn(device, sizes: dict) -> dict:
    """The seed's CNN plane: lossmap against the plain in-place loop."""
    import numpy as np
    import torch

    import lossmap as lm
    from lossmap.models import fashion_cnn

    from methods import lossmap_scan, plain_loop

    g = torch.Generator().manual_seed(0)
    n = sizes["cnn_images"]
    data = {
        "test": (
            torch.randn(n, 1, 28, 28, generator=g).to(device),
            torch.randint(0, 10, (n,), generator=g).to(device),
        )
    }
    model = fashion_cnn(seed=0).to(device).eval()
    dirs = lm.random_directions(model, 2, seed=0)
    k = sizes["cnn_grid"]
    axes = [(-1.0, 1.0, k)] * 2
    for fn in (lossmap_scan, plain_loop):  # warm-up: kernels, cuDNN's choices
        fn(model, data, dirs, [(-1.0, 1.0, 2)] * 2, device)
    runs = {"lossmap": [], "plain_loop": []}
    for _ in range(sizes["repeats"]):
        runs["lossmap"].append(lossmap_scan(model, data, dirs, axes, device))
        runs["plain_loop"].append(plain_loop(model, data, dirs, axes, device))
    ratios = [
        p.seconds / q.seconds for p, q in zip(runs["plain_loop"], runs["lossmap"], strict=True)
    ]
    diff = max(
        float(np.max(np.abs(p.values - q.values)))
        for p, q in zip(runs["plain_loop"], runs["lossmap"], strict=True)
    )
    return {
        "model": "fashion_cnn (105,866 parameters)",
        "images": n,
        "grid": axes,
        "points": k * k,
        "seconds": {m: [r.seconds for r in rs] for m, rs in runs.items()},
        "points_per_s": {
            m: k * k / statistics.median(r.seconds for r in rs) for m, rs in runs.items()
        },
        "ratio_plain_over_lossmap": {"per_repeat": ratios, "median": statistics.median(ratios)},
        "max_abs_loss_diff": diff,
        "lossmap_info": runs["lossmap"][-1].info,
    }


def gpt2(device, sizes: dict, tiny: bool) -> dict:
    """A 124M and a ~1B GPT-2 in bfloat16: a line and a plane each, points/s and peak memory."""
    import torch

    import lossmap as lm

    from lm_methods import (
        BILLION,
        SMALL,
        TINY,
        gpt2,
        lossmap_scan,
        param_bytes,
        token_ids,
        token_loss,
    )

    if tiny:
        models = {"124M": TINY, "1B": replace(TINY, width=128, heads=4)}
    else:  # 16 sequences for both: a GPU has the room
        models = {"124M": SMALL, "1B": replace(BILLION, sequences=16)}
    out = {}
    for name, size in models.items():
        model = gpt2(size, device, torch.bfloat16)
        ids = token_ids(size, device)
        d1, d2 = lm.random_directions(model, 2, seed=0)
        lossmap_scan(model, ids, [d1], [(-1.0, 1.0, 2)])  # warm-up
        row = {
            "model": size.describe(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "param_bytes": param_bytes(model),
            "dtype": "bfloat16",
        }
        for kind, dirs, axes in (
            ("line", [d1], [(-1.0, 1.0, sizes["line"] | 1)]),
            ("plane", [d1, d2], [(-1.0, 1.0, sizes["plane"])] * 2),
        ):
            _peak_reset(device)
            run = lossmap_scan(model, ids, dirs, axes)
            points = math.prod(n for _, _, n in axes)
            row[kind] = {
                "grid": axes,
                "points": points,
                "seconds": run.seconds,
                "points_per_s": points / run.seconds,
                "peak_memory_bytes": _peak(device),
                "loss_min": float(run.values.min()),
                "loss_max": float(run.values.max()),
                "info": run.info,
            }
            if kind == "line":
                centre = token_loss(model, list(ids.split(run.info["batch_size"])))
                mid = run.values[len(run.values) // 2, 0]
                row[kind]["centre_loss"] = centre
                row[kind]["centre_abs_diff"] = abs(float(mid) - centre)
        out[name] = row
        del model, ids, d1, d2
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def tests(paths: list[str]) -> dict:
    """``pytest -m gpu`` over ``paths`` in a subprocess: counts, failures, seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "gpu",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
            *paths,
        ]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        failed, skips = [], set()
        if xml.exists():
            suite = ET.parse(xml).getroot()
            suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
            counts = {k: int(suite.get(k, 0)) for k in counts}
            for case in suite.iter("testcase"):
                name = f"{case.get('classname')}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    failed.append(name)
                skip = case.find("skipped")
                if skip is not None:
                    skips.add(skip.get("message", ""))
    return {
        "command": " ".join(["python", *cmd[1 : -len(paths)], *paths]).replace(str(xml), "…"),
        "returncode": r.returncode,
        "seconds": seconds,
        **counts,
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": failed,
        "skip_reasons": sorted(skips),
        "tail": r.stdout[-2000:],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: the whole path in seconds")
    p.add_argument(
        "--tests",
        nargs="*",
        default=["tests/test_cuda_paths.py"],
        help="paths for pytest -m gpu (default: the CUDA-path tests; all of tests/ needs every "
        "extra installed to be collected)",
    )
    p.add_argument("--out", help="the JSON (default benchmarks/results/gpu-<card>.json)")
    args = p.parse_args(argv)
    import torch

    from hardware import machine_info

    if not args.cpu and not torch.cuda.is_available():
        print(
            "error: torch.cuda.is_available() is False for this interpreter "
            f"({sys.executable}, torch {torch.__version__}); run on a GPU machine with a CUDA "
            "build of torch, or pass --cpu --tiny to check the script",
            file=sys.stderr,
        )
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    sizes = TINY if args.tiny else FULL
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (no GPU)"
    t0 = time.perf_counter()
    res: dict = {
        "schema": "lossmap-gpu-check/1",
        "command": " ".join(["bash", "benchmarks/gpu.sh", *(argv or sys.argv[1:])]),
        "card": card,
        "tiny": args.tiny,
        "machine": machine_info(device),
    }
    for name, step in (
        ("cnn", lambda: cnn(device, sizes)),
        ("gpt2", lambda: gpt2(device, sizes, args.tiny)),
        ("tests", lambda: tests(args.tests)),
    ):
        t = time.perf_counter()
        res[name] = step()
        print(f"{name}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    res["wall_s"] = time.perf_counter() - t0
    slug = "".join(c if c.isalnum() else "-" for c in card.lower()).strip("-")
    out = Path(args.out or HERE / "results" / f"gpu-{slug}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 1 if res["tests"]["failed"] or res["tests"]["returncode"] not in (0, 5) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
