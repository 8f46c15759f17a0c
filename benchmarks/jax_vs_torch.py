"""The original setting on one machine: lm.scan on the JAX path vs the PyTorch path.

    python benchmarks/jax_vs_torch.py [--grid 51] [--repeats 3] [--out benchmarks/results/jax.json]

The example CNN (105,866 parameters) with the same weights (converted
exactly, ``lossmap.jax.convert``), the same two filter-normalized directions
and the same data: 512 Fashion-MNIST training and 512 test images, a
``grid``×``grid`` plane on [-1, 1]². Each repeat runs both paths back to back
(interleaved, order alternating), a fresh ``lm.scan`` each time, so the JAX
figure includes its XLA compilation as a user sees it. Reported:
the ratio of medians; also the largest difference between the two surfaces.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hardware import machine_info

HERE = Path(__file__).resolve().parent


def setup(grid: int):
    import jax.numpy as jnp  # noqa: F401 - initializes XLA before timing

    import lossmap as lm
    import lossmap.models as M
    from lossmap.data import load
    from lossmap.jax import cnn as jcnn
    from lossmap.jax import convert

    torch.manual_seed(0)
    net = M.fashion_cnn().eval()
    Xtr, ytr = load("fashion_mnist", "train")
    Xte, yte = load("fashion_mnist", "test")
    data_t = {"train": (Xtr[:512], ytr[:512]), "test": (Xte[:512], yte[:512])}
    data_j = {k: (X.permute(0, 2, 3, 1).numpy(), y.numpy()) for k, (X, y) in data_t.items()}
    dirs_t = lm.random_directions(net, 2, norm="filter", seed=0)
    variables = convert.torch_to_flax(net.state_dict())
    dirs_j = [lm.Direction(convert.direction_to_flax(d)) for d in dirs_t]
    jmodel = (jcnn.fashion_cnn(), variables)
    axes = [(-1.0, 1.0, grid)] * 2

    def torch_path():
        return lm.scan(net, torch.nn.CrossEntropyLoss(), data=data_t, directions=dirs_t,
                       grid=axes, progress=False)

    def jax_path():
        return lm.scan(jmodel, lm.jax.cross_entropy, data=data_j, directions=dirs_j,
                       grid=axes, progress=False)

    return {"pytorch": torch_path, "jax": jax_path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, default=51)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=str(HERE / "results" / "jax.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import jax

    paths = setup(args.grid)
    times: dict[str, list[float]] = {k: [] for k in paths}
    surfaces = {}
    for r in range(args.repeats):
        for name in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
            t0 = time.perf_counter()
            surfaces[name] = paths[name]()
            times[name].append(time.perf_counter() - t0)
            print(f"repeat {r + 1}: {name:8s} {times[name][-1]:8.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = max(
        float(np.max(np.abs(surfaces["jax"][v] - surfaces["pytorch"][v])
                     / np.abs(surfaces["pytorch"][v])))
        for v in ("train_loss", "test_loss")
    )
    points = args.grid**2
    result = {
        "workload": f"example CNN, 512 train + 512 test Fashion-MNIST images, "
                    f"{args.grid}x{args.grid} plane",
        "machine": machine_info(torch.device("cpu")),
        "jax": jax.__version__,
        "jax_devices": [str(d) for d in jax.devices()],
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": med,
        "points_per_second": {k: points / v for k, v in med.items()},
        "jax_over_pytorch_speed": med["pytorch"] / med["jax"],
        "max_relative_difference_of_losses": diff,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"PyTorch path {med['pytorch']:.2f} s, JAX path {med['jax']:.2f} s (median of "
          f"{args.repeats}); JAX/PyTorch speed {result['jax_over_pytorch_speed']:.2f}x; "
          f"largest relative difference of the losses {diff:.1e}")


if __name__ == "__main__":
    main()
