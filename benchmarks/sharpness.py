"""Worst-case m-sharpness (issue 23): lm.sharpness against a plain loop that perturbs a model copy.

Two models, each at m = 128 examples per batch and 20 ascent steps, ℓ2,
adaptive (|w|-scaled), ρ = 0.05:

* the demo CNN (``fashion_cnn`` trained for one short epoch on 1,024
  Fashion-MNIST training images, measured on the first ``--examples DEMO``;
  the 8×8 digits and ``digits_cnn`` where the Fashion-MNIST files are missing);
* ResNet-20 (``lossmap.models.resnet20``, 0.27M parameters) at its seeded
  initialization on ``--examples RESNET`` CIFAR-shaped images drawn at random
  (3×32×32, ten classes): no CIFAR files are assumed; the cost per gradient is
  the same.

The plain loop is what one writes by hand: a ``copy.deepcopy`` of the model;
for each batch of m and each of the 21 gradient evaluations, write ``w + |w|⊙γ``
into the copy's parameters, forward, backward, take a normalized gradient
step of 0.2ρ in γ and project back on the ball (plain projected gradient
ascent, no step-size schedule, one start). Both make the same number of
gradient evaluations; the table gives the time of each, their ratio and the
sharpness each found (Auto-PGD's schedule should find at least as much).

Methods alternate A B, A B, … (``--repeats``, default 3; medians); torch
threads as given (``--threads``, default 1: the machine is shared).

Usage::

    python benchmarks/sharpness.py --examples 512 128 --out benchmarks/results/sharpness-cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lossmap as lm
from lossmap.models import digits_cnn, fashion_cnn, resnet20

from hardware import machine_info, sync

RHO, M, STEPS = 0.05, 128, 20


EXAMPLES = {"demo": 1024, "resnet": 512}  # --examples changes both


def demo_problem(seed: int = 0) -> tuple[str, nn.Module, torch.Tensor, torch.Tensor]:
    """The demo CNN after one short epoch on 1,024 training images (evaluated on EXAMPLES)."""
    try:
        X, y = lm.data.fashion_mnist("train")
        name, net = "demo CNN (fashion_cnn), Fashion-MNIST", fashion_cnn(seed=seed)
    except FileNotFoundError:
        X, y = lm.data.digits("train")
        name, net = "demo CNN (digits_cnn), 8x8 digits", digits_cnn(seed=seed)
    X, y = X[:1024], y[:1024]
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for i in range(0, 1024, 64):
        opt.zero_grad()
        nn.functional.cross_entropy(net(X[i : i + 64]), y[i : i + 64]).backward()
        opt.step()
    n = EXAMPLES["demo"]
    return name, net.eval(), X[:n], y[:n]


def resnet_problem(seed: int = 0) -> tuple[str, nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = EXAMPLES["resnet"]
    X = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return f"ResNet-20, {n} random CIFAR-shaped images", resnet20(seed=seed).eval(), X, y


def plain_loop(net: nn.Module, X: torch.Tensor, y: torch.Tensor, seed: int = 0) -> dict:
    """m-sharpness by hand: a model copy, weights written in at every step."""
    work = copy.deepcopy(net)
    params = list(work.parameters())
    w0 = [p.detach().clone() for p in params]
    scale = [w.abs() for w in w0]
    g = torch.Generator().manual_seed(seed)
    rises, grads = [], 0
    for i in range(0, len(X), M):
        xb, yb = X[i : i + M], y[i : i + M]
        with torch.no_grad():
            for p, w in zip(params, w0, strict=True):
                p.copy_(w)
            base = float(nn.functional.cross_entropy(work(xb), yb))
        gam = [torch.randn(w.shape, generator=g) for w in w0]
        n = math.sqrt(sum(float((v * v).sum()) for v in gam))
        gam = [v * RHO / n for v in gam]
        best = base
        for _ in range(STEPS + 1):
            with torch.no_grad():
                for p, w, s, v in zip(params, w0, scale, gam, strict=True):
                    p.copy_(w + s * v)
            work.zero_grad()
            loss = nn.functional.cross_entropy(work(xb), yb)
            loss.backward()
            grads += 1
            best = max(best, float(loss.detach()))
            gg = [p.grad * s for p, s in zip(params, scale, strict=True)]
            gn = math.sqrt(sum(float((v * v).sum()) for v in gg)) or 1.0
            gam = [v + 0.2 * RHO * d / gn for v, d in zip(gam, gg, strict=True)]
            n = math.sqrt(sum(float((v * v).sum()) for v in gam))
            gam = [v * min(1.0, RHO / n) for v in gam]
        rises.append(best - base)
    return {"value": float(np.mean(rises)), "gradient_evaluations": grads}


def ours(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict:
    r = lm.sharpness(net, nn.CrossEntropyLoss(), (X, y), rho=RHO, m=M, steps=STEPS)
    return {"value": r.value, "se": r.se, "gradient_evaluations": r.gradient_evaluations}


def bench(problem, repeats: int) -> dict:
    name, net, X, y = problem()
    times: dict[str, list[float]] = {"lossmap": [], "plain": []}
    out: dict[str, dict] = {}
    for _ in range(repeats):
        for key, fn in (("lossmap", ours), ("plain", plain_loop)):
            sync(torch.device("cpu"))
            t = time.perf_counter()
            out[key] = fn(net, X, y)
            times[key].append(time.perf_counter() - t)
    ratios = [p / o for p, o in zip(times["plain"], times["lossmap"], strict=True)]
    row = {
        "model": name,
        "parameters": sum(p.numel() for p in net.parameters()),
        "examples": len(X),
        "m": M,
        "steps": STEPS,
        "rho": RHO,
        "seconds": {k: float(np.median(v)) for k, v in times.items()},
        "all_seconds": times,
        "plain_over_lossmap": float(np.median(ratios)),
        **{f"{k}_{f}": v for k, r in out.items() for f, v in r.items()},
    }
    print(
        f"{name}: lossmap {row['seconds']['lossmap']:.2f} s "
        f"({row['lossmap_gradient_evaluations']} gradients, sharpness "
        f"{row['lossmap_value']:.4g} ± {row['lossmap_se']:.2g}); plain loop "
        f"{row['seconds']['plain']:.2f} s ({row['plain_gradient_evaluations']} gradients, "
        f"{row['plain_value']:.4g}); plain/lossmap {row['plain_over_lossmap']:.2f}×",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("demo", "resnet"), default=None)
    ap.add_argument(
        "--examples",
        type=int,
        nargs=2,
        metavar=("DEMO", "RESNET"),
        default=(EXAMPLES["demo"], EXAMPLES["resnet"]),
    )
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    EXAMPLES.update(demo=a.examples[0], resnet=a.examples[1])
    torch.set_num_threads(a.threads)
    result = {
        "machine": machine_info(torch.device("cpu")),
        "threads": a.threads,
        "repeats": a.repeats,
        "rows": [],
    }
    for k, p in (("resnet", resnet_problem), ("demo", demo_problem)):
        if a.only in (None, k):
            result["rows"].append(bench(p, a.repeats))
            if a.out:  # after each model, so that a long run keeps what it measured
                a.out.parent.mkdir(parents=True, exist_ok=True)
                a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
