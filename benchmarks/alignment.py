"""Barriers between two Fashion-MNIST networks before and after permutation alignment (issue 14).

Trains two copies of the demo's CNN (``lossmap.models.cnn.fashion_cnn``) from
different seeds on the same training subset, then measures the loss barrier
of the straight line between them (``lm.interpolation`` + ``lm.scan`` +
``lm.barrier``, on held-out test images): as trained, after weight matching
and after activation matching (``lm.align``), with the time each alignment
takes. ``--resnet`` does the same for ResNet-20 (BatchNorm; grey 28x28
input), scanning each line with the stored statistics (``bn="eval"``) and
with them re-estimated at every point (``bn="recompute"``, the REPAIR-style
reset).

    .venv/bin/python benchmarks/alignment.py                 # the CNN, about 2 min of CPU
    .venv/bin/python benchmarks/alignment.py --resnet        # and ResNet-20 (~30 min on 2 cores)
    .venv/bin/python benchmarks/alignment.py --train 6000 --epochs 1 --out /tmp/a.json

Prints a table and writes it as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import lossmap as lm
from lossmap.data import fashion_mnist
from lossmap.models.cnn import fashion_cnn
from lossmap.models.resnet import resnet20


def subset(X: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    keep = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:n]
    return X[keep], y[keep]


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int, seed: int,
          lr: float) -> float:
    """Adam, batches of 128 in a seeded order; returns the seconds taken."""
    t0 = time.perf_counter()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=g).split(128):
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return time.perf_counter() - t0


def barrier(a: nn.Module, b: nn.Module, data: dict, *, points: int, bn: str) -> dict:
    """The barrier of the straight line a -> b on the test split (lm.scan + lm.barrier)."""
    t0 = time.perf_counter()
    surf = lm.scan(a, nn.CrossEntropyLoss(), data=data, directions=lm.interpolation(a, b),
                   grid=(0, 1, points), progress=False, bn=bn,
                   **({"bn_split": "train", "bn_samples": 1024} if bn == "recompute" else {}))
    r = lm.barrier(surf, "test_loss")
    return {"barrier": r["barrier"], "alpha": r["alpha"], "loss_a": r["loss_a"],
            "loss_b": r["loss_b"], "scan_seconds": time.perf_counter() - t0}


def compare(name: str, make, X, y, data, args, *, bns: tuple[str, ...], lr: float) -> list:
    """Train two models, align the second both ways, measure every barrier."""
    models, seconds = [], []
    for seed in (0, 1):
        m = make(seed)
        seconds.append(train(m, X, y, epochs=args.epochs, seed=seed, lr=lr))
        models.append(m)
    a, b = models
    print(f"{name}: trained 2 models in {seconds[0]:.1f} s and {seconds[1]:.1f} s")
    rows = []
    variants = [("as trained", b, 0.0)]
    for method in ("weights", "activations"):
        t0 = time.perf_counter()
        kw = {"data": subset(X, y, args.align_samples, 2)} if method == "activations" else {}
        aligned = lm.align(a, b, method=method, **kw)
        variants.append((f"aligned ({method})", aligned, time.perf_counter() - t0))
    for label, model, align_s in variants:
        for bn in bns:
            r = barrier(a, model, data, points=args.points, bn=bn)
            rows.append({"model": name, "path": label, "bn": bn, "align_seconds": align_s,
                         "train_seconds": seconds, **r})
            print(f"  {label:<24} bn={bn:<9} barrier {r['barrier']:.4f} at α={r['alpha']:.2f} "
                  f"(L(0) {r['loss_a']:.4f}, L(1) {r['loss_b']:.4f}; align {align_s:.2f} s, "
                  f"scan {r['scan_seconds']:.1f} s)")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=12000, help="training images (default 12000)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    p.add_argument("--eval", type=int, default=2000, help="test images scanned (default 2000)")
    p.add_argument("--points", type=int, default=11, help="points on the line (default 11)")
    p.add_argument("--align-samples", type=int, default=2000,
                   help="training images for activation matching (default 2000)")
    p.add_argument("--resnet", action="store_true", help="also ResNet-20 (BatchNorm)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--out", default="benchmarks/results/alignment.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y = subset(*fashion_mnist("train"), args.train, 0)
    Xt, yt = subset(*fashion_mnist("test"), args.eval, 1)
    rows = compare("fashion_cnn", lambda s: fashion_cnn(seed=s), X, y, {"test": (Xt, yt)},
                   args, bns=("eval",), lr=1e-3)
    if args.resnet:
        data = {"train": subset(X, y, 1024, 3), "test": (Xt, yt)}
        rows += compare("resnet20", lambda s: resnet20(in_channels=1, seed=s), X, y, data,
                        args, bns=("eval", "recompute"), lr=1e-3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
