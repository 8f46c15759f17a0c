"""Small batch against large batch against SAM: which minimum is flatter, on one colour scale.

    python examples/compare_flatness.py [--out docs/img/compare] [--tiny]

Trains one MLP three ways from the same initial weights on scikit-learn's 8×8
digits: plain SGD with batches of 16 (30 epochs), plain SGD with batches of
512 (900 steps, to a similar train loss), and SAM (sharpness-aware
minimization, Foret et al. 2021, written out below in a few lines) with
batches of 16. Each model is scanned by the same rule: a plane of
two filter-normalized random directions drawn with the same seed, on the same
grid and data. ``lm.compare`` draws the three planes on one colour scale (the
loss above the common minimum, on a log scale) with the differences from the
small-batch model, and tables each model's findings with two sharpness
measures of ``lm.sharpness`` (adaptive worst-case and average-case, each with
its standard error over batches). ``--tiny`` runs a miniature of it in a few
seconds (the tests run it).
"""

from __future__ import annotations

import argparse
import copy

import matplotlib

matplotlib.use("Agg")
import torch
from torch import nn

import lossmap as lm
from lossmap import data


def mlp(seed: int = 0) -> nn.Module:
    """64 → 64 → 10 with ReLU, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def sam_step(model: nn.Module, loss_fn, x, y, opt: torch.optim.Optimizer, rho: float) -> float:
    """One SAM step: climb to w + ρ g/‖g‖, take the gradient there, step from w with it."""
    loss = loss_fn(model(x), y)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    with torch.no_grad():
        norm = torch.sqrt(sum((p.grad**2).sum() for p in params)) + 1e-12
        climbs = [rho * p.grad / norm for p in params]
        for p, e in zip(params, climbs, strict=True):
            p.add_(e)
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    with torch.no_grad():
        for p, e in zip(params, climbs, strict=True):
            p.sub_(e)  # back to w: the step uses the gradient taken at w + e
    opt.step()
    opt.zero_grad()
    return loss.item()


def train(
    model: nn.Module, X, y, *, batch: int, epochs: int, lr: float, sam: float | None, seed: int = 0
) -> nn.Module:
    """Plain SGD with momentum (or SAM with radius ``sam``) over shuffled batches of ``batch``."""
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(X), generator=g)
        for i in range(0, len(X), batch):
            xb, yb = X[order[i : i + batch]], y[order[i : i + batch]]
            if sam is None:
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
            else:
                sam_step(model, loss_fn, xb, yb, opt, sam)
    return model.eval()


def main(argv: list[str] | None = None) -> dict:
    """Train, scan, measure and compare; returns the models, surfaces, findings and comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/img/compare", help="folder of the comparison files")
    p.add_argument("--tiny", action="store_true", help="a miniature run of a few seconds")
    args = p.parse_args(argv)
    Xtr, ytr = data.digits("train")
    Xte, yte = data.digits("test")
    points, steps, draws = 31, 20, 32
    if args.tiny:
        Xtr, ytr, Xte, yte = Xtr[:256], ytr[:256], Xte[:128], yte[:128]
        points, steps, draws = 7, 3, 4
    recipes = {  # name: (batch size, learning rate, epochs, SAM radius or None)
        "SGD, batch 16": (16, 0.02, 30, None),
        "SGD, batch 512": (512, 0.1, 300, None),  # 900 steps: to a train loss like the others'
        "SAM, batch 16": (16, 0.02, 30, 0.05),
    }
    start = mlp(seed=0)
    loss_fn = nn.CrossEntropyLoss()
    splits = {"train": (Xtr, ytr), "test": (Xte, yte)}
    surfaces, found, models = {}, {}, {}
    for name, (batch, lr, epochs, rho) in recipes.items():
        epochs = 2 if args.tiny else epochs
        print(f"training {name} ...", flush=True)
        net = train(copy.deepcopy(start), Xtr, ytr, batch=batch, epochs=epochs, lr=lr, sam=rho)
        models[name] = net
        dirs = lm.random_directions(net, 2, norm="filter", seed=0)  # one rule, one seed
        surfaces[name] = lm.scan(
            net,
            loss_fn,
            data=splits,
            directions=dirs,
            grid=[(-1.0, 1.0, points)] * 2,
            progress=False,
            seed=0,
        )
        found[name] = {
            "worst-case sharpness (adaptive ℓ2, ρ = 0.1)": lm.sharpness(
                net, loss_fn, splits, rho=0.1, kind="worst", steps=steps, seed=0
            ),
            "average-case sharpness (ρ = 0.05)": lm.sharpness(
                net, loss_fn, splits, rho=0.05, kind="average", draws=draws, seed=0
            ),
        }
    result = lm.compare(
        surfaces,
        "train_loss",
        log=True,
        findings=found,
        out=args.out,
        title="Small batch, large batch and SAM on the 8×8 digits",
    )
    print(result.table.to_markdown())
    for path in result.paths.values():
        print(f"wrote {path}")
    return {
        "comparison": result,
        "models": models,
        "surfaces": surfaces,
        "findings": found,
        "data": splits,
    }


if __name__ == "__main__":
    torch.set_num_threads(1)  # a small MLP: one thread is fastest, and threads fight on a busy CPU
    main()
