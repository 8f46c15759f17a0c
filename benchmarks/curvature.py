"""Top-5 Hessian eigenvalues and trace: lossmap vs curvlinops used directly vs PyHessian.

Two models: the demo CNN (``lossmap.models.fashion_cnn``, 105,866 parameters,
Fashion-MNIST samples) and a GPT-2 built from ``transformers.GPT2Config``
(6 layers, width 512, vocabulary 16,384: 27.3M parameters; no downloaded
weights; token ids X = y, a shifted cross-entropy). Three tools on the same
model, data and loss:

* ``lossmap``: ``lm.curvature_operator(...).eigenpairs(5, tol=TOL)`` (ARPACK)
  and ``.trace("hutchinson", probes=S)``;
* ``curvlinops``: ``curvlinops.HessianLinearOperator`` on the model itself,
  ``scipy.sparse.linalg.eigsh(op.to_scipy(), k=5, which="LA", tol=TOL)`` and
  ``curvlinops.hutchinson_trace(op, S)``;
* ``pyhessian``: ``pyhessian.hessian(model, criterion, data=(X, y))``,
  ``.eigenvalues(top_n=5, tol=TOL, maxIter=M)`` (power iteration with
  deflation) and ``.trace(maxIter=S, tol=0)``. PyHessian takes one (X, y)
  batch of tensors and ``criterion(model(X), y)``: the GPT-2 gets a wrapper
  returning logits and the shifted loss as the criterion.

Each (model, tool, task) runs in a fresh process (``--child``) and reports
its wall time, the Hessian-vector products it asked for (counted by wrapping
each tool's product), and the peak extra resident memory during the task
(``VmHWM`` after a reset through ``/proc/self/clear_refs`` minus ``VmRSS``
before; Linux only) as a multiple of the parameter bytes P. A tool that
fails says why in the table (e.g. a fused attention kernel without double
backward or forward-mode AD); it is then run again with the math attention
kernel forced, as a separate row.

Run: ``.venv/bin/python benchmarks/curvature.py`` (``--models cnn`` for the
CNN only; ``--repeats`` for the median of several runs). Results go to
``benchmarks/results/curvature.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOOLS = ("lossmap", "curvlinops", "pyhessian")
TASKS = ("top5", "trace")
OUT = Path(__file__).parent / "results" / "curvature.json"


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def _build(name: str, args: argparse.Namespace):
    """(model, loss, X, y) at float32, seeded."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "cnn":
        import lossmap.data as datasets
        from lossmap import models

        X, y = datasets.fashion_mnist("train")
        return (
            models.fashion_cnn(),
            nn.CrossEntropyLoss(),
            X[: args.cnn_samples],
            y[: args.cnn_samples],
        )
    import transformers
    from curvature_fd_gpt2 import CausalLM, ShiftedCE  # beside this file

    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(
        n_layer=6, n_embd=512, n_head=8, vocab_size=16384, n_positions=args.tokens
    )
    model = CausalLM(transformers.GPT2LMHeadModel(cfg)).eval()
    x = torch.randint(
        0, 16384, (args.sequences, args.tokens), generator=torch.Generator().manual_seed(1)
    )
    return model, ShiftedCE(), x, x  # a loss module: curvlinops reads .reduction


def _run(tool: str, task: str, model, loss, X, y, args) -> dict:
    """Run one task; returns values and products."""
    import numpy as np
    import torch

    if tool == "lossmap":
        import lossmap as lm

        op = lm.curvature_operator(model, loss, (X, y), batch_size=args.batch)
        if task == "top5":
            vals = op.eigenpairs(5, tol=args.tol).eigenvalues
            return {"values": [float(v) for v in vals], "products": op.products}
        t = op.trace("hutchinson", probes=args.probes)
        return {"values": [t.value], "se": t.se, "products": op.products}
    if tool == "curvlinops":
        import curvlinops
        from scipy.sparse.linalg import eigsh

        params = [p for p in model.parameters() if p.requires_grad]
        data = list(zip(X.split(args.batch), y.split(args.batch), strict=True))
        op = curvlinops.HessianLinearOperator(model, loss, params, data, check_deterministic=False)
        count = {"n": 0}
        inner = op._matmat

        def counted(M):
            count["n"] += M[0].shape[-1]  # a list of [*shape, K] blocks: K products
            return inner(M)

        op._matmat = counted
        if task == "top5":
            v0 = np.random.default_rng(0).standard_normal(op.shape[0])
            vals = eigsh(op.to_scipy(), k=5, which="LA", tol=args.tol, v0=v0)[0]
            return {
                "values": sorted((float(v) for v in vals), reverse=True),
                "products": count["n"],
            }
        torch.manual_seed(0)
        return {
            "values": [float(curvlinops.hutchinson_trace(op, args.probes))],
            "products": count["n"],
        }
    import pyhessian

    ph = sys.modules["pyhessian.hessian"]  # the module (the package exports a class of that name)

    count = {"n": 0}
    inner = ph.hessian_vector_product

    def counted(*a, **k):
        count["n"] += 1
        return inner(*a, **k)

    ph.hessian_vector_product = counted
    torch.manual_seed(0)
    h = pyhessian.hessian(model, loss, data=(X, y), cuda=False)
    if task == "top5":
        vals, _ = h.eigenvalues(maxIter=args.power_iters, tol=args.tol, top_n=5)
        return {"values": [float(v) for v in vals], "products": count["n"]}
    tr = h.trace(maxIter=args.probes, tol=0.0)
    return {"values": [float(np.mean(tr))], "products": count["n"]}


def child(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    model_name, tool, task, kernel = args.child.split(":")
    model, loss, X, y = _build(model_name, args)
    P = sum(p.numel() * p.element_size() for p in model.parameters())
    ctx = contextlib.nullcontext()
    if kernel == "math":
        from lossmap.backends.torch.attention import differentiable_attention

        ctx = differentiable_attention()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    try:
        with ctx:
            out = _run(tool, task, model, loss, X, y, args)
        out["error"] = None
    except Exception as exc:  # a tool that cannot run says why
        out = {
            "values": None,
            "products": None,
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
        }
    out["seconds"] = time.perf_counter() - t0
    out["peak_over_P"] = (_status("VmHWM") - before) / P
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--models", nargs="+", default=["cnn", "gpt2"], choices=["cnn", "gpt2"])
    p.add_argument("--tools", nargs="+", default=list(TOOLS), choices=list(TOOLS))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cnn-samples", type=int, default=64)
    p.add_argument("--sequences", type=int, default=1)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--probes", type=int, default=5)
    p.add_argument("--power-iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return 0
    passed = [a for a in (argv if argv is not None else sys.argv[1:])]
    rows = []
    for model in args.models:
        for tool in args.tools:
            for task in args.tasks:
                kernels = ["default"]
                while kernels:
                    kernel = kernels.pop(0)
                    runs = []
                    for _ in range(args.repeats):
                        cmd = [
                            sys.executable,
                            __file__,
                            "--child",
                            f"{model}:{tool}:{task}:{kernel}",
                            *passed,
                        ]
                        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
                        line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
                        if not line:
                            runs.append(
                                {
                                    "error": res.stderr.strip().splitlines()[-1][:200]
                                    if res.stderr.strip()
                                    else "no result"
                                }
                            )
                            break
                        runs.append(json.loads(line[0][7:]))
                        if runs[-1]["error"]:
                            break
                    row = {
                        "model": model,
                        "tool": tool,
                        "task": task,
                        "attention": kernel,
                        **runs[-1],
                    }
                    ok = [r for r in runs if not r.get("error")]
                    if ok:
                        row["seconds"] = statistics.median(r["seconds"] for r in ok)
                        row["peak_over_P"] = statistics.median(r["peak_over_P"] for r in ok)
                        row["repeats"] = len(ok)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if row.get("error") and kernel == "default" and model == "gpt2":
                        kernels.append("math")
                    Path(args.out).write_text(
                        json.dumps(
                            {
                                "machine": _machine(args.threads),
                                "settings": {
                                    k: v for k, v in vars(args).items() if k not in ("child", "out")
                                },
                                "rows": rows,
                            },
                            indent=1,
                        )
                    )
    print(table(rows))
    return 0


def _machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0]
    return f"{cpu}, {os.cpu_count()} cores, {threads} torch threads, load average {load:.1f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | tool | task | attention | seconds | products | peak / P | values | note |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        vals = ", ".join(f"{v:.4g}" for v in r["values"]) if r.get("values") else ""
        lines.append(
            f"| {r['model']} | {r['tool']} | {r['task']} | {r['attention']} | "
            f"{r.get('seconds', 0):.1f} | {r.get('products') or ''} | "
            f"{r.get('peak_over_P', 0):.2f} | {vals} | {r.get('error') or ''} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
