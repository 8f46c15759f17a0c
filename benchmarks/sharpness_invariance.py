"""The invariance table of docs/sharpness.md, measured: each measure before and after rescaling.

Two reparametrizations that leave the function unchanged (Dinh et al. 2017):

* **ReLU rescaling** — an MLP 64-32-32-10 trained briefly on 512 of the 8×8
  digits; its first layer's weight and bias × a, the next layer's weight ÷ a
  (a = 5 and 25);
* **BatchNorm** — a Linear 64-32, BatchNorm, ReLU, Linear 32-10 net; the
  Linear that BatchNorm follows × 0.1 (weight and bias; the running mean × 0.1,
  the running variance and BN's eps × 0.01), and only that layer perturbed
  (``params="0.*"``), so that the measure sees the scaled weights.

Every measure runs with the same seed on the original and the rescaled model;
the table gives |after / before − 1|.

Usage::

    python benchmarks/sharpness_invariance.py --out benchmarks/results/sharpness-invariance.json
"""

from __future__ import annotations

import argparse
import copy
import json
import warnings
from pathlib import Path

import torch
from torch import nn

import lossmap as lm
from lossmap.models import mlp

MEASURES = {  # name: lm.sharpness options (rho=0.05 unless given)
    "worst, ℓ2, adaptive (default)": {},
    "worst, ℓ∞, adaptive": {"norm": "linf", "rho": 0.01},
    "worst, m = 64, adaptive": {"m": 64},
    "average, adaptive": {"kind": "average"},
    "random, ℓ2, adaptive": {"kind": "random"},
    "PAC-Bayes σ, magnitude-aware": {"kind": "pac-bayes", "rho": 0.1, "draws": 16},
    "worst, ℓ2, plain": {"adaptive": False},
    "worst, ℓ∞, plain": {"adaptive": False, "norm": "linf", "rho": 0.01},
    "average, plain": {"kind": "average", "adaptive": False},
    "PAC-Bayes σ, plain": {"kind": "pac-bayes", "rho": 0.1, "adaptive": False, "draws": 16},
    "0.1 random lines, norm='unit' (0.1 default)": {"epsilon": 0.05, "norm": "unit"},
    "0.1 random lines, norm='filter'": {"epsilon": 0.05, "norm": "filter"},
}


def trained(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> nn.Module:
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return net.eval()


def relu_twin(net: nn.Sequential, a: float) -> nn.Sequential:
    twin = copy.deepcopy(net)
    with torch.no_grad():  # mlp: Flatten, Linear, ReLU, Linear, ReLU, Linear
        twin[1].weight.mul_(a)
        twin[1].bias.mul_(a)
        twin[3].weight.div_(a)
    return twin


def bn_twin(net: nn.Sequential, a: float) -> nn.Sequential:
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[0].weight.mul_(a)
        twin[0].bias.mul_(a)
        twin[1].running_mean.mul_(a)
        twin[1].running_var.mul_(a * a)
        twin[1].eps *= a * a
    return twin


def change(net, twin, X, y, opts, **extra) -> float:
    opts = {"rho": 0.05, "seed": 3, **opts, **extra}
    if "epsilon" in opts:
        opts.pop("rho")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        v0, v1 = (lm.sharpness(m, nn.CrossEntropyLoss(), (X, y), **opts).value for m in (net, twin))
    return abs(v1 / v0 - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    X, y = lm.data.digits("train")
    X, y = X[:512].flatten(1), y[:512]
    net = trained(mlp((64, 32, 32, 10), seed=0), X, y)
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    bn.train()
    bn = trained(bn, X, y)
    twins = {"ReLU ×5 / ÷5": relu_twin(net, 5.0), "ReLU ×25 / ÷25": relu_twin(net, 25.0)}
    for t in twins.values():
        assert torch.allclose(net(X), t(X), atol=1e-4)
    bnt = bn_twin(bn, 0.1)
    assert torch.allclose(bn(X), bnt(X), atol=1e-4)
    rows = []
    for name, opts in MEASURES.items():
        row = {"measure": name}
        for tname, t in twins.items():
            row[tname] = change(net, t, X, y, opts)
        row["BatchNorm-followed layer ×0.1"] = (
            None if "epsilon" in opts or "m" in opts else change(bn, bnt, X, y, opts, params="0.*")
        )
        rows.append(row)
        print(
            " | ".join(
                [name]
                + [
                    f"{v:.2%}" if isinstance(v, float) else "—"
                    for k, v in row.items()
                    if k != "measure"
                ]
            ),
            flush=True,
        )
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"rows": rows}, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
