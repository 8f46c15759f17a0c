"""How much BatchNorm's mode changes a loss slice: bn="eval" vs bn="recompute".

    python examples/bn_modes.py [--out docs/img/bn_modes.png]

Trains the CIFAR-style ResNet-20 (BatchNorm after every convolution) briefly on
scikit-learn's 8×8 digits, then scans the same filter-normalized line around
θ̂ twice: with the running statistics stored at θ̂ (the convention) and with
statistics re-estimated at every point. Prints both curves' key numbers and
saves the figure used in docs/batchnorm.md.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import lossmap as lm
from lossmap import data, models
from lossmap.train import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/img/bn_modes.png")
    p.add_argument("--epochs", type=int, default=4)
    args = p.parse_args()
    Xtr, ytr = data.digits("train")
    Xte, yte = data.digits("test")
    net = models.resnet20(num_classes=10, in_channels=1, seed=0)
    train(net, (Xtr, ytr), (Xte, yte), epochs=args.epochs, lr=0.05, batch_size=64,
          progress=False)
    d = lm.random_direction(net, norm="filter", ignore="biasbn", seed=0)
    kw = dict(data={"train": (Xtr, ytr), "test": (Xte, yte)}, directions=d,
              grid=(-1.0, 1.0, 21), progress=False, metrics=("loss",))
    ev = lm.scan(net, torch.nn.CrossEntropyLoss(), **kw)
    rc = lm.scan(net, torch.nn.CrossEntropyLoss(), bn="recompute", bn_samples=512, **kw)
    a = ev.coords["alpha"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for surf, label, style in ((ev, "bn='eval' (stored statistics)", "-"),
                               (rc, "bn='recompute' (re-estimated)", "--")):
        ax.plot(a, surf["train_loss"], style, color="tab:blue", label=f"train, {label}")
        ax.plot(a, surf["test_loss"], style, color="tab:orange", label=f"test, {label}")
    ax.set_xlabel("α (filter-normalized direction)")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("ResNet-20 on digits: one slice, two BatchNorm modes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=150)
    for name, surf in (("eval", ev), ("recompute", rc)):
        print(f"bn={name:<9} test loss at α=-1, 0, +1: {surf['test_loss'][0]:.3f}, "
              f"{surf['test_loss'][10]:.3f}, {surf['test_loss'][20]:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
