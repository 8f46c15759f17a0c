"""The set-up passes' share on the demo's planes (issue 26): measured on a small grid, extrapolated.

The demo's first plane (the example CNN at θ0, 512 + 512 Fashion-MNIST images,
directions rescaled per layer, ``lossmap demo``'s settings) is scanned on a
``--points``×``--points`` grid with ``profile=True``. The set-up passes cost
the same whatever the grid; the grid's points cost the measured seconds per
point each. The share on the demo's 31×31 plane (and the original's 51×51) is
extrapolated from those two numbers.

Run::

    .venv/bin/python benchmarks/demo_setup.py --points 7 --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from lossmap import data as datasets
from lossmap import models
from lossmap.demo import LOSS, DemoSettings
from lossmap.directions.random import random_directions
from lossmap.scan.plan import plan_scan


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=7, help="points per axis measured")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    st, n = DemoSettings(), args.points
    train, test = datasets.fashion_mnist("train"), datasets.fashion_mnist("test")
    theta0 = models.fashion_cnn(dropout=0.0, seed=st.seed, init=st.init).state_dict()
    model = models.fashion_cnn(dropout=0.0, seed=st.seed)
    model.load_state_dict(theta0)
    dirs = random_directions(theta0, 2, norm="layer", ignore=None, seed=st.seed)
    with tempfile.TemporaryDirectory() as d:
        plan = plan_scan(
            model,
            LOSS,
            data={"train": train, "test": test},
            directions=dirs,
            centre=theta0,
            grid=[(-st.span, st.span, n)] * 2,
            samples=st.samples,
            seed=st.seed,
        )
        t0 = time.perf_counter()
        surf = plan.run(store=os.path.join(d, "p.lossmap"), progress=False, profile=True)
        wall = time.perf_counter() - t0
    p = surf.profile
    if "setup" in p:
        setup = {**p["setup"], "centre_terms": p["timings"].get("centre_terms", 0.0)}
    else:  # before issue 26: the floor, slopes and centre's pass were one figure
        setup = {"roundoff+slopes": p["roundoff_seconds"]}
    total = sum(setup.values())
    per_point = (wall - total) / n**2
    print(
        {k: round(v, 3) for k, v in setup.items()},
        f"wall {wall:.2f} s, set-up {total:.2f} s, {per_point:.4f} s per point",
    )
    for m in (n, 31, 51):
        share = total / (total + per_point * m * m)
        print(f"plane {m}x{m}: set-up share {100 * share:.1f} % (from the {n}x{n} run)")


if __name__ == "__main__":
    main()
