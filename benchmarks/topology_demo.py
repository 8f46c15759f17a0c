"""The demo CNN's basins at θ0 and θ̂: 11³ scans along Hessian eigenvectors and random directions.

Issue 25's closing note. The demo's model, data and training (``lossmap.demo``:
``load_data``, ``DemoSettings``, the Flax-style initialization, the trainer):
θ0 is the seeded initialization, θ̂ the same network after ``--epochs`` of the
demo's SGD on the whole training split. Around each centre, two 3-D scans of
the train loss on the demo's fixed subset of ``--samples`` training images:

* **eig**: the top three Hessian eigenvectors (``lm.curvature_operator(...,
  samples=, seed=)`` on the same subset, ``.eigenpairs(3)``). They are unit
  vectors, so the grid is in parameter units (Euclidean distance): each axis
  spans [−R, R] with R = √(2Δ / λ₁), where the quadratic model of the loss
  rises by Δ = ``--rise`` (default 1 nat) along the sharpest direction. A
  range fixed in parameter units would be a few s.e. wide at one centre and
  all divergence at the other (λ₁ differs by orders of magnitude between θ0
  and θ̂); R is written out with R/‖θ‖.
* **random**: three Gaussian directions, filter-normalized to the centre
  (Li et al. 2018, biases and norms zeroed, seeded), on [−1, 1]: each filter
  moves by up to its own norm, the convention of the filter-normalized plots.

Each scan is stored (``OUT/<centre>_<kind>.lossmap``), its topology computed
with ``lm.topology(surface, "train_loss")`` (200 bootstrap draws), its report
written (``.html``, with the Topology part and isosurfaces) and its VTK image
data (``.vti``, with each point's basin) for ParaView. The table (centre loss,
minima, resolved basins ± s.e., the deepest pairs with their paired s.e., SMAD
± s.e., seconds and points/s per scan) goes to ``--json`` and ``--md``,
rewritten after every scan so a cut-off run keeps what it finished.

Run::

    .venv/bin/python benchmarks/topology_demo.py                 # 11³, θ̂ then θ0
    .venv/bin/python benchmarks/topology_demo.py --quick --out /tmp/t   # 5³, digits, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import lossmap as lm
from lossmap.analysis.finding import plain
from lossmap.demo import LOSS, DemoSettings, load_data
from lossmap.plot.vti import to_vti
from lossmap.report.page import write_report
from lossmap.train.trainer import train

HERE = Path(__file__).resolve().parent
KINDS = ("eig", "random")


def theta_norm(centre: dict[str, torch.Tensor], model: torch.nn.Module) -> float:
    """‖θ‖ over the model's parameters (buffers left out)."""
    names = {k for k, _ in model.named_parameters()}
    return math.sqrt(sum(float((v.double() ** 2).sum()) for k, v in centre.items() if k in names))


def directions_for(kind: str, model, centre, args) -> tuple[list, float, dict[str, Any]]:
    """The three directions, the half-width of the grid, and what was measured on the way."""
    if kind == "random":
        dirs = lm.random_directions(model, 3, norm="filter", seed=args.seed, centre=centre)
        return list(dirs), 1.0, {"norm": "filter", "seed": args.seed}
    t0 = time.perf_counter()
    H = lm.curvature_operator(
        model, LOSS, args.train, centre=centre, samples=args.samples, seed=args.seed
    )
    top = H.eigenpairs(3, tol=args.tol)
    seconds = time.perf_counter() - t0
    lam = [float(v) for v in top.eigenvalues]
    if lam[0] <= 0:
        raise SystemExit(f"top Hessian eigenvalue {lam[0]:g} <= 0: no quadratic rise to size R")
    half = math.sqrt(2 * args.rise / lam[0])
    return (
        list(top),
        half,
        {
            "eigenvalues": lam,
            "eig_seconds": round(seconds, 2),
            "products": top[0].meta.get("products"),
        },
    )


def deepest_pairs(t, n: int = 3) -> list[dict[str, Any]]:
    """The ``n`` deepest pairs that merge at a finite level: depth, paired s.e., resolved."""
    finite = sorted((p for p in t.pairs if math.isfinite(p.depth)), key=lambda p: -p.depth)
    return [
        {
            "depth": p.depth,
            "se": p.se,
            "resolved": p.resolved,
            "birth": p.birth,
            "death": p.death,
            "at": p.minimum.coords,
        }
        for p in finite[:n]
    ]


def scan_one(tag: str, kind: str, model, centre, args) -> dict[str, Any]:
    """Scan, topology, report and .vti of one centre and one kind of directions."""
    dirs, half, meta = directions_for(kind, model, centre, args)
    store = args.out / f"{tag}_{kind}.lossmap"
    for suffix in ("", "-wal", "-shm"):  # a fresh scan each run, never a resume of another's
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    t0 = time.perf_counter()
    surf = lm.scan(
        model,
        LOSS,
        data={"train": args.train},
        directions=dirs,
        centre=centre,
        grid=[(-half, half, args.points)] * 3,
        samples=args.samples,
        seed=args.seed,
        store=store,
        progress=args.progress,
    )
    seconds = time.perf_counter() - t0
    t = lm.topology(surf, "train_loss", bootstrap=args.bootstrap, seed=args.seed)
    name = f"{tag}_{kind}"
    vti = to_vti(surf, args.out / f"{name}.vti", topology=t)
    report = write_report(
        [(name, surf)],
        args.out / f"{name}.html",
        title=f"lossmap topology demo: {name}",
        notes=[args.note, meta_note(kind, half, meta)],
    )
    points = math.prod(surf.spec.shape)
    centre_loss = float(surf["train_loss"][surf.centre_index()])
    return {
        "centre": tag,
        "directions": kind,
        "grid": f"{args.points}^3",
        "half_width": half,
        "half_width_over_theta_norm": half / theta_norm(centre, model),
        "centre_loss": centre_loss,
        "n_minima": t.n_minima,
        "n_basins": t.n_basins,
        "n_basins_se": t.n_basins_se,
        "n_basins_interval": t.n_basins_interval,
        "smad": t.smad,
        "smad_se": t.smad_se,
        "deepest_pairs": deepest_pairs(t),
        "diverged": t.diverged,
        "seconds": round(seconds, 3),
        "points_per_s": round(points / seconds, 2),
        "sentence": t.sentence(),
        **meta,
        "files": {"store": str(store), "report": str(report), "vti": str(vti)},
    }


def meta_note(kind: str, half: float, meta: dict[str, Any]) -> str:
    if kind == "random":
        return "three filter-normalized Gaussian directions, each axis on [-1, 1]"
    lam = ", ".join(f"{v:.4g}" for v in meta["eigenvalues"])
    return (
        f"top three Hessian eigenvectors (λ = {lam}), unit vectors, each axis on "
        f"[-{half:.4g}, {half:.4g}] in parameter units"
    )


def fmt(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [
        header,
        "",
        "| centre | directions | range | centre loss | minima | basins ± s.e. (95 %) | "
        "deepest pairs: depth ± paired s.e. | SMAD ± s.e. | s per scan | points/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["n_basins_interval"] or (None, None)
        pairs = "; ".join(
            f"{fmt(p['depth'], 3)} ± {fmt(p['se'], 2)}" + ("" if p["resolved"] else " (n.r.)")
            for p in r["deepest_pairs"]
        )
        rng = "±1 (filter)" if r["directions"] == "random" else f"±{r['half_width']:.3g} (R)"
        lines.append(
            f"| {'θ0' if r['centre'] == 'theta0' else 'θ̂'} | {r['directions']} | {rng} | "
            f"{r['centre_loss']:.4f} | {r['n_minima']} | {r['n_basins']} ± "
            f"{fmt(r['n_basins_se'], 2)} ({fmt(lo, 3)}–{fmt(hi, 3)}) | {pairs or '—'} | "
            f"{fmt(r['smad'], 3)} ± {fmt(r['smad_se'], 2)} | {r['seconds']:.0f} | "
            f"{r['points_per_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: digits CNN, 5³ grid, 64 samples, 1 epoch on 256 images",
    )
    ap.add_argument("--points", type=int, help="points per axis (default 11; 5 with --quick)")
    ap.add_argument(
        "--epochs", type=int, default=8, help="training epochs for θ̂ (default 8, the demo's)"
    )
    ap.add_argument("--samples", type=int, help="training images per point (default 512)")
    ap.add_argument(
        "--rise",
        type=float,
        default=1.0,
        help="Δ: the eigenvector grid reaches where ½λ₁R² = Δ (default 1)",
    )
    ap.add_argument("--tol", type=float, default=1e-4, help="eigenpairs' relative tolerance")
    ap.add_argument("--bootstrap", type=int, default=200, help="lm.topology's bootstrap draws")
    ap.add_argument("--seed", type=int, default=0, help="θ0, subset, directions (default 0)")
    ap.add_argument(
        "--centres",
        default="theta_hat,theta0",
        help="which centres, in this order (default theta_hat,theta0)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--out", default="runs/topology_demo", help="stores, reports, .vti")
    ap.add_argument(
        "--json",
        help="results JSON (default benchmarks/results/topology_demo.json;"
        " with --quick OUT/topology_demo.json)",
    )
    ap.add_argument("--md", help="results table (default next to the JSON, .md)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    args.points = args.points or (5 if args.quick else 11)
    args.samples = args.samples or (64 if args.quick else 512)
    json_path = Path(
        args.json
        or (
            args.out / "topology_demo.json"
            if args.quick
            else HERE / "results" / "topology_demo.json"
        )
    )
    md_path = Path(args.md or json_path.with_suffix(".md"))

    started = time.perf_counter()
    name, train_data, _test, make_model, fallback = load_data(
        "digits" if args.quick else "fashion_mnist", progress=args.progress
    )
    settings = replace(DemoSettings(seed=args.seed), epochs=args.epochs)
    if name == "digits":  # the demo's own adjustment for the small digits set
        settings = replace(settings, batch_size=32, lr=0.1)
    fit_data = (train_data[0][:256], train_data[1][:256]) if args.quick else train_data
    args.train = train_data
    model = make_model(dropout=0.0, seed=settings.seed, init=settings.init)
    theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    centres = {"theta0": theta0}
    train_s = None
    order = args.centres.split(",")
    if "theta_hat" in order:
        t0 = time.perf_counter()
        result = train(
            model,
            fit_data,
            None,
            epochs=settings.epochs,
            lr=settings.lr,
            momentum=settings.momentum,
            batch_size=settings.batch_size,
            seed=settings.seed,
            progress=args.progress,
        )
        train_s = round(time.perf_counter() - t0, 1)
        centres["theta_hat"] = result.theta_hat
    args.note = (
        f"{name} CNN ({sum(p.numel() for p in model.parameters()):,} parameters), "
        f"θ0: {settings.init} init seed {settings.seed}; θ̂: {settings.epochs} epoch(s) "
        f"of SGD (lr {settings.lr}, momentum {settings.momentum}, batch "
        f"{settings.batch_size}) on {len(fit_data[1]):,} images; each point on a fixed "
        f"subset of {args.samples} training images"
    )
    out: dict[str, Any] = {
        "dataset": name,
        "fallback": fallback,
        "note": args.note,
        "grid": args.points,
        "samples": args.samples,
        "epochs": settings.epochs,
        "rise": args.rise,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "train_seconds": train_s,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch thread(s), "
        f"nice {os.nice(0)}, torch {torch.__version__}",
        "command": "python benchmarks/topology_demo.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "rows": [],
    }
    for tag in order:
        for kind in KINDS:
            row = scan_one(tag, kind, model, centres[tag], args)
            out["rows"].append(row)
            out["seconds"] = round(time.perf_counter() - started, 1)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(plain(out), indent=1))
            md_path.write_text(markdown(out["rows"], f"{args.note}; {args.points}³ grid."))
            if args.progress:
                print(f"{tag} {kind}: {row['sentence']} ({row['seconds']:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    main()
