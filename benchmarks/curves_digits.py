"""Trained curve and elastic band between two digits MLPs: time and the highest loss along each.

Run: ``.venv/bin/python benchmarks/curves_digits.py`` (one torch thread, CPU, ~1 min).
Two MLPs (64-32-10) trained from seeds 0 and 1 (15 epochs, SGD lr 0.1, batch 64)
on sklearn's 8x8 digits; a 1-bend Bézier curve (``lm.curve``, defaults: 20
epochs, lr 0.05, batch 128) and an elastic band (``lm.neb``) between them. The
loss along each path is evaluated directly at 21 evenly spaced t.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

import lossmap as lm
from lossmap.data.digits import digits
from lossmap.models import mlp
from lossmap.train.trainer import train


def along(model, c, X, y, n=21):
    with torch.no_grad():
        return [F.cross_entropy(functional_call(model, c.state(t), (X,)), y).item()
                for t in np.linspace(0, 1, n)]


def main() -> None:
    torch.set_num_threads(1)
    (X, y), (Xt, yt) = digits("train"), digits("test")
    models = []
    for seed in (0, 1):
        m = mlp((64, 32, 10), seed=seed)
        train(m, (X, y), epochs=15, lr=0.1, batch_size=64, seed=seed, progress=False)
        models.append(m)
    a, b = models
    rows = [("straight line", lm.Curve.line(a, b), 0.0)]
    t0 = time.perf_counter()
    c = lm.curve(a, b, F.cross_entropy, (X, y), progress=False)
    rows.append(("Bézier, 1 bend (lm.curve)", c, time.perf_counter() - t0))
    t0 = time.perf_counter()
    band = lm.neb(a, b, F.cross_entropy, (X, y), pivots=4, steps=100, progress=False)
    rows.append(("NEB, 4 pivots, 100 steps", band, time.perf_counter() - t0))
    t0 = time.perf_counter()
    band2 = lm.neb(a, b, F.cross_entropy, (X, y), pivots=4, steps=100, climbing=True,
                   insert=2, progress=False)
    rows.append(("NEB + climbing + insert 2", band2, time.perf_counter() - t0))
    print(f"{'path':<28} {'seconds':>8} {'max train loss':>15} {'max test loss':>14}")
    for name, path, secs in rows:
        tr, te = max(along(a, path, X, y)), max(along(a, path, Xt, yt))
        print(f"{name:<28} {secs:>8.2f} {tr:>15.4f} {te:>14.4f}")
    ends = along(a, rows[0][1], X, y)
    print(f"endpoint train losses {ends[0]:.4f}, {ends[-1]:.4f}; "
          f"{c.meta['steps']} curve steps")


if __name__ == "__main__":
    main()
