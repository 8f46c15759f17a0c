"""Issue 5's analyses on the demo's trained CNN, timed.

    python examples/analyses_on_demo.py [runs/demo/train_after]

Interpolation θ0 → θ̂ with its barrier, a PCA plane of the epoch checkpoints
with the path, the top-5 Hessian eigenvalues, the Hessian trace and the
spectral density (stochastic Lanczos quadrature) at θ̂. The eigenvalue bars
and the density are saved next to the run folder, as
``hessian_at_theta_hat.png``. Run ``lossmap demo`` first.
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

import lossmap as lm
from lossmap import data, models
from lossmap import plot as lp
from lossmap.train import load_run


def main() -> None:
    torch.set_num_threads(2)
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo/train_after")
    run = load_run(folder)
    model = models.fashion_cnn()
    model.load_state_dict(run.theta_hat)
    train, test = data.fashion_mnist("train"), data.fashion_mnist("test")
    splits = {"train": train, "test": test}
    ce = torch.nn.CrossEntropyLoss()

    t = time.perf_counter()
    line = lm.scan(model, ce, data=splits, samples=2048, centre=run.theta0,
                   directions=lm.interpolation(run.theta0, run.theta_hat),
                   grid=(-0.5, 1.5, 41), progress=False, metrics=("loss",))
    verdict = lm.barrier(line, "train_loss").sentence()
    print(f"interpolation θ0→θ̂, 41 points, 2048+2048 samples: "
          f"{time.perf_counter() - t:.1f} s; {verdict}")

    t = time.perf_counter()
    dirs = lm.pca_directions(run.checkpoints, 2, model=model)
    ratio = dirs.explained_variance_ratio
    path = lm.project(run.checkpoints, dirs)
    lm.scan(model, ce, data=splits, samples=1024, directions=dirs, centre=run.theta_hat,
            grid=lm.fitted_grid(path, margin=0.25, n=21), progress=False, metrics=("loss",),
            meta={"path": path.tolist()})
    print(f"PCA plane 21x21 (explained variance {ratio[0]:.3f} + {ratio[1]:.3f}), path of "
          f"{len(path)} points: {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    vals = lm.hessian_eigenpairs(model, ce, train, n=5, samples=1024).eigenvalues
    print(f"top-5 Hessian eigenvalues at θ̂ (1024 train samples): "
          f"{np.round(vals, 3).tolist()}: {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    trace, se = lm.hessian_trace(model, ce, train, samples=1024, probes=30)
    print(f"Hessian trace (30 probes): {trace:.2f} ± {se:.2f}: {time.perf_counter() - t:.1f} s")

    # lm.hessian_density is exactly these two calls; calling them keeps the quadrature
    # nodes, whose largest is the top of the spectrum that SLQ finds.
    probes, steps = 10, 80
    t = time.perf_counter()
    nodes, weights = lm.slq_nodes_weights(model, ce, train, samples=1024, probes=probes,
                                          n_lanczos=steps)
    x, p = lm.broaden(nodes, weights)
    top = np.unique(nodes.round(3))[::-1][:5]  # every probe finds the outliers: distinct values
    n = sum(q.numel() for q in model.parameters())
    print(f"spectral density ({probes} probes x {steps} Lanczos steps = {probes * steps} "
          f"Hessian-vector products, 1024 train samples): {time.perf_counter() - t:.1f} s; "
          f"largest nodes {top.tolist()}, support [{nodes.min():.3g}, {nodes.max():.3g}], "
          f"n x mean {n * (weights @ nodes):.1f} (a trace estimate from {probes} probes), "
          f"mass below 0 {weights[nodes < 0].sum():.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    lp.plot_eigenvalues(vals, ax=ax1).set_title("top-5 Hessian eigenvalues at θ̂")
    lp.plot_density(x, p, ax=ax2).set_title(f"spectral density (SLQ, {probes} probes)")
    print(f"wrote {lp.save(fig, folder.parent / 'hessian_at_theta_hat.png')}")


if __name__ == "__main__":
    main()
