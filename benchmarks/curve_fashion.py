"""A trained curve between the two Fashion-MNIST CNNs of benchmarks/alignment.py (issue 14).

The same two models (the demo's CNN, seeds 0 and 1, the same 12,000 training images and
2 epochs of Adam as ``benchmarks/alignment.py``), then the barrier of three paths on the
same 2,000 test images: the straight line, a trained quadratic Bézier curve (``lm.curve``,
one bend) and a nudged elastic band (``lm.neb``), each scanned with ``lm.scan(path=...)``;
with the seconds each step takes.

    .venv/bin/python benchmarks/curve_fashion.py [--epochs 2] [--curve-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import alignment as A

import lossmap as lm
from lossmap.data import fashion_mnist
from lossmap.models.cnn import fashion_cnn


def path_barrier(a: nn.Module, curve: lm.Curve, data: dict, points: int) -> dict:
    t0 = time.perf_counter()
    surf = lm.scan(a, nn.CrossEntropyLoss(), data=data, path=curve, grid=(0, 1, points),
                   progress=False)
    r = lm.barrier(surf, "test_loss")
    return {"barrier": r["barrier"], "t": r.get("t", r.get("alpha")),
            "max_loss": float(surf["test_loss"].max()), "scan_seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=12000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--eval", type=int, default=2000)
    p.add_argument("--points", type=int, default=21)
    p.add_argument("--curve-epochs", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/curve_fashion.json")
    args = p.parse_args()
    X, y = A.subset(*fashion_mnist("train"), args.train, 0)
    Xt, yt = A.subset(*fashion_mnist("test"), args.eval, 1)
    data = {"test": (Xt, yt)}
    models, seconds = [], []
    for seed in (0, 1):
        m = fashion_cnn(seed=seed)
        seconds.append(A.train(m, X, y, epochs=args.epochs, seed=seed, lr=1e-3))
        models.append(m)
    a, b = models
    rows = [{"path": "straight line", "fit_seconds": 0.0,
             **path_barrier(a, lm.Curve.line(a, b), data, args.points)}]
    t0 = time.perf_counter()
    bez = lm.curve(a, b, nn.CrossEntropyLoss(), (X, y), kind="bezier", bends=1,
                   epochs=args.curve_epochs, seed=0, progress=False)
    rows.append({"path": "Bézier, 1 bend (lm.curve)", "fit_seconds": time.perf_counter() - t0,
                 **path_barrier(a, bez, data, args.points)})
    t0 = time.perf_counter()
    band = lm.neb(a, b, nn.CrossEntropyLoss(), (X, y), pivots=4, steps=100, seed=0,
                  progress=False)
    rows.append({"path": "elastic band, 4 pivots (lm.neb)",
                 "fit_seconds": time.perf_counter() - t0,
                 **path_barrier(a, band, data, args.points)})
    for r in rows:
        print(f"{r['path']:<34} barrier {r['barrier']:.4f}, max test loss {r['max_loss']:.4f} "
              f"(fit {r['fit_seconds']:.1f} s, scan {r['scan_seconds']:.1f} s)")
    out = Path(args.out)
    out.write_text(json.dumps({"args": vars(args), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "train_seconds": seconds,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
