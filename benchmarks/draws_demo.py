"""The demo CNN's plane over K direction draws, at θ0 and at θ̂ (issue 27's closing note).

The demo's settings (Fashion-MNIST, the Flax-style CNN, θ0 from the notebook's
seed 228, SGD with momentum): train, then scan a 5×5 plane over α, β ∈ [−0.3,
0.3] along layer-normalized Gaussian directions (``ignore=None``, as the
original draws them) with ``draws=K``, on the fixed 512-sample subset of each
split, around θ0 and around θ̂. Prints and writes (``--out``, JSON) each
number of ``lm.over_draws`` (the height at r = 0.3, the peak above the centre,
the basin widths along α and β) as mean ± s.d. over the draws, with the spread
of the spread and the per-draw values.

    python benchmarks/draws_demo.py --epochs 25 --draws 10   # the issue's run (~15 min, 2 cores)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import lossmap as lm
from lossmap import data as datasets
from lossmap.analysis.finding import plain
from lossmap.demo import LOSS, NOTEBOOK_SEED, DemoSettings
from lossmap.models import fashion_cnn
from lossmap.train.trainer import train


def spread_of(model, centre, data, settings, draws, delta):
    dirs = lm.random_directions(
        model, 2, norm="layer", ignore=None, seed=settings.seed, centre=centre
    )
    surf = lm.scan(
        model,
        LOSS,
        data=data,
        directions=list(dirs),
        centre=centre,
        grid=[(-settings.span, settings.span, 5)] * 2,
        samples=settings.samples,
        seed=settings.seed,
        draws=draws,
        progress=False,
    )
    out = {}
    for name, f in lm.over_draws(surf, "train_loss", delta=delta).items():
        if name in ("height", "peak", "basin_width_alpha", "basin_width_beta"):
            out[name] = {
                "mean": f.value,
                "sd": f.sd,
                "sd_se": f.sd_se,
                "se_samples": f.se_samples,
                "draw_share": f.draw_share,
                "radius": f.radius,
                "draws": list(f.draws),
            }
    centre_loss = float(surf["train_loss"][0, 2, 2])
    peaks = [centre_loss + p for p in out["peak"]["draws"]]
    return {"centre_loss": centre_loss, "plane_max": peaks, **out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--draws", type=int, default=10)
    p.add_argument("--delta", type=float, default=0.1)
    p.add_argument("--out", default="benchmarks/results/draws_demo.json")
    args = p.parse_args()
    settings = DemoSettings(epochs=args.epochs, seed=NOTEBOOK_SEED)
    train_data, test_data = datasets.fashion_mnist("train"), datasets.fashion_mnist("test")
    data = {"train": train_data, "test": test_data}
    model = fashion_cnn(dropout=0.0, seed=settings.seed, init=settings.init)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    t0 = time.time()
    result = {
        "settings": {
            "epochs": args.epochs,
            "draws": args.draws,
            "delta": args.delta,
            "seed": settings.seed,
            "span": settings.span,
            "grid": "5x5",
            "samples": settings.samples,
        },
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads",
    }
    result["theta0"] = spread_of(model, theta0, data, settings, args.draws, args.delta)
    print("θ0", json.dumps({k: v for k, v in result["theta0"].items() if k != "plane_max"}))
    trained = train(
        model,
        train_data,
        test_data,
        epochs=settings.epochs,
        lr=settings.lr,
        momentum=settings.momentum,
        batch_size=settings.batch_size,
        seed=settings.seed,
        progress=False,
    )
    result["theta_hat"] = spread_of(
        model, trained.theta_hat, data, settings, args.draws, args.delta
    )
    print("θ̂", json.dumps(result["theta_hat"]))
    result["seconds"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(plain(result), indent=1))  # NaN (no crossing): null


if __name__ == "__main__":
    main()
