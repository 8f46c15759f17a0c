"""The ``lossmap hessian`` command: eigenvalues, trace and spectral density at one point.

``lossmap hessian --model M:F [--checkpoint P] --data M:F [--split NAME] [--k 5]
[--kind hessian|ggn|fisher|empirical_fisher] [--smallest N] [--blocks]
[--trace [--trace-method hutch++]] [--density] [--samples N] [-o out.json]
[--plot out.png]``

Builds ``lm.curvature_operator`` of the mean loss over one split and prints
its top-k eigenvalues (``.eigenpairs``), with ``--smallest`` the most negative
ones too (a saddle's escape directions), with ``--blocks`` the top
eigenvalues of every layer's block (``.blocks``), with ``--trace`` an estimate
± its standard error (``.trace``), with ``--density`` a summary of the
stochastic-Lanczos spectral density (``.nodes_weights``); ``-o`` writes all of
it, with timings, as JSON; ``--plot`` draws the eigenvalue bars (and the
density) as PNG, SVG or PDF; ``--save-directions DIR`` saves the eigenvectors
(``top0.safetensors``…, ``bottom0``…) for ``lm.load_directions``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import write_atomic
from .options import add_out
from .outputs import add_overwrite, check_out_file


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``hessian`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The ``hessian`` parser; :func:`run` takes the namespace it parses.
    """
    p = subparsers.add_parser(
        "hessian",
        help="top Hessian eigenvalues, trace and spectral density at one point",
        description="Eigenvalues (eigsh on Hessian-vector products), Hutchinson trace and "
        "stochastic Lanczos spectral density of the Hessian of the mean loss over one split.",
    )
    p.add_argument("--model", required=True, help="MODULE:FUNCTION returning the nn.Module")
    p.add_argument("--checkpoint", help="weights (.safetensors or torch state dict)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a --checkpoint that needs pickle (only for files you trust)")
    p.add_argument("--data", required=True,
                   help="MODULE:FUNCTION returning {split: (X, y) | DataLoader}")
    p.add_argument("--split", help="the split (default train, else the first)")
    p.add_argument("--loss", default="cross_entropy",
                   help="cross_entropy (default), mse, or MODULE:NAME of a loss")
    p.add_argument("--n", "--k", dest="n", type=int, default=5,
                   help="number of top eigenvalues (default 5; --k is its 0.1 name)")
    p.add_argument("--kind", default="hessian",
                   choices=["hessian", "ggn", "fisher", "empirical_fisher"],
                   help="the curvature matrix (default hessian)")
    p.add_argument("--smallest", type=int, default=0,
                   help="also this many smallest (most negative) eigenvalues")
    p.add_argument("--blocks", action="store_true",
                   help="the top eigenvalues of every layer's block too")
    p.add_argument("--trace", action="store_true", help="trace estimate ± standard error")
    p.add_argument("--trace-method", default="hutchinson", choices=["hutchinson", "hutch++",
                   "xtrace"], help="trace estimator (default hutchinson)")
    p.add_argument("--save-directions", metavar="DIR",
                   help="save the eigenvectors as direction files in DIR")
    p.add_argument("--density", action="store_true", help="spectral density (SLQ)")
    p.add_argument("--probes", type=int, default=50,
                   help="random probes of the trace (default 50; the density uses 10)")
    p.add_argument("--lanczos", type=int, default=80, help="Lanczos steps per density probe")
    p.add_argument("--samples", type=int, help="fixed random subset of the split")
    p.add_argument("--seed", type=int, default=0, help="seed of probes, start vector, subset")
    p.add_argument("--float64", action="store_true",
                   help="compute in float64 (for small eigenvalues of a float32 model)")
    p.add_argument("--device", help="cpu, cuda, … (default: the model's)")
    p.add_argument("--batch-size", dest="batch_size", type=int, help="batch size")
    add_out(p, dest="output", old=True, help="write the results as JSON (FILE.json)")
    p.add_argument("--plot", help="draw eigenvalues (and density): FILE.png, .svg or .pdf")
    add_overwrite(p)
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def _density_summary(nodes: Any, weights: Any) -> dict[str, float]:

    return {"min": float(nodes.min()), "max": float(nodes.max()),
            "mean": float(weights @ nodes), "negative_mass": float(weights[nodes < 0].sum())}


def run(args: argparse.Namespace) -> int:
    """Compute and report; returns the exit status (0). Bad input raises InputError."""
    import torch

    from ..curvature.api import curvature_operator
    from ..curvature.spectrum import broaden
    from ..plot.common import SUFFIXES, check_suffix
    from .directions import checkpoint_of, load_loss, load_model
    from .entry import call_entry

    if args.output and Path(args.output).suffix.lower() != ".json":
        raise InputError(f"-o {args.output!r}: the results are JSON, use -o FILE.json")
    if args.plot:
        check_suffix(args.plot, SUFFIXES, "--plot")
    overwrite = bool(getattr(args, "overwrite", False))
    for flag, path in (("-o", args.output), ("--plot", args.plot)):
        if path:  # before any work: a file that may not be replaced, or cannot be written
            check_out_file(path, flag=flag, overwrite=overwrite)
    for name in ("n", "probes", "lanczos"):
        if getattr(args, name) < (2 if name == "probes" else 1):
            raise InputError(f"--{name} {getattr(args, name)} must be >= "
                             f"{2 if name == 'probes' else 1}")
    model = load_model(args.model)
    centre = (checkpoint_of(model, args.checkpoint, what="--checkpoint",
                            trust_pickle=bool(args.trust_pickle)) if args.checkpoint else None)
    data = call_entry(args.data, what="--data")
    if not isinstance(data, dict) or not data:
        raise InputError(f"--data {args.data!r} must return a dict of splits {{name: (X, y)}}")
    split = args.split or ("train" if "train" in data else next(iter(data)))
    if split not in data:
        raise InputError(f"--split {split!r} is not a split of --data ({', '.join(data)})")
    loss_fn = load_loss(args.loss)
    kw: dict[str, Any] = {
        "centre": centre, "samples": args.samples, "seed": args.seed, "device": args.device,
        "batch_size": args.batch_size, "dtype": torch.float64 if args.float64 else None,
    }
    one = {split: data[split]}
    n = sum(p.numel() for p in model.parameters())
    result: dict[str, Any] = {"model": args.model, "checkpoint": args.checkpoint, "split": split,
                              "loss": args.loss, "parameters": n, "samples": args.samples,
                              "seed": args.seed, "seconds": {}}
    t0 = time.perf_counter()
    op = curvature_operator(model, loss_fn, one, kind=args.kind, **kw)
    result["kind"] = args.kind
    if args.n >= op.dim:
        raise InputError(f"--n {args.n}: n={args.n} must be < the number of parameters "
                         f"({op.dim}); lower it")
    dirs = op.eigenpairs(args.n, seed=args.seed)
    vals = dirs.eigenvalues
    result["seconds"]["eigenvalues"] = time.perf_counter() - t0
    result["eigenvalues"] = vals.tolist()
    result["products"] = dirs[0].meta["products"]
    where = Path(args.checkpoint).name if args.checkpoint else "the model's weights"
    name = {"hessian": "Hessian", "ggn": "GGN", "fisher": "Fisher",
            "empirical_fisher": "empirical Fisher"}[args.kind]
    print(f"{name} of {split} loss at {where} ({n:,} parameters)")
    print(f"  top-{args.n} eigenvalues  " + ", ".join(f"{v:.6g}" for v in vals)
          + f"  ({result['products']} products, {result['seconds']['eigenvalues']:.2f} s)")
    saved = {"top": dirs}
    if args.smallest:
        bottom = op.eigenpairs(args.smallest, "smallest", seed=args.seed)
        saved["bottom"] = bottom
        result["smallest"] = bottom.eigenvalues.tolist()
        print(f"  bottom-{args.smallest} eigenvalues  "
              + ", ".join(f"{v:.6g}" for v in bottom.eigenvalues))
    if args.blocks:
        t0 = time.perf_counter()
        per = op.blocks("layer", k=min(args.n, 3), seed=args.seed)
        result["blocks"] = {b: d.eigenvalues.tolist() for b, d in per.items()}
        result["seconds"]["blocks"] = time.perf_counter() - t0
        for b, d in per.items():
            print(f"  block {b:<20} " + ", ".join(f"{v:.6g}" for v in d.eigenvalues))
    if args.trace:
        t0 = time.perf_counter()
        found = op.trace(args.trace_method, probes=args.probes, seed=args.seed)
        est, se = found.value, found.se
        result["seconds"]["trace"] = time.perf_counter() - t0
        result["trace"] = {"estimate": est, "standard_error": se, "probes": args.probes,
                           "method": args.trace_method}
        print(f"  trace               {est:.6g} ± {se:.3g}  ({args.trace_method}, "
              f"{args.probes} products, {result['seconds']['trace']:.2f} s)")
    grid = density = None
    if args.density:
        t0 = time.perf_counter()
        nodes, weights = op.nodes_weights(n_lanczos=args.lanczos, probes=10, seed=args.seed)
        grid, density = broaden(nodes, weights)
        result["seconds"]["density"] = time.perf_counter() - t0
        s = _density_summary(nodes, weights)
        result["density"] = {**s, "nodes": nodes.tolist(), "weights": weights.tolist(),
                             "grid": grid.tolist(), "density": density.tolist(),
                             "lanczos": args.lanczos, "probes": 10}
        print(f"  density             support [{s['min']:.4g}, {s['max']:.4g}], mean "
              f"{s['mean']:.4g}, mass below 0 {s['negative_mass']:.1%}  "
              f"({result['seconds']['density']:.2f} s)")
    if args.save_directions:
        folder = Path(args.save_directions)
        folder.mkdir(parents=True, exist_ok=True)
        for tag, found_dirs in saved.items():
            for i, d in enumerate(found_dirs):
                d.save(folder / f"{tag}{i}.safetensors")
        print(f"wrote {sum(map(len, saved.values()))} directions to {folder}")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        # atomic: an interrupted write never leaves half a file where the result goes
        write_atomic(out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2)))
        print(f"wrote {out}")
    if args.plot:
        _plot(vals, grid, density, Path(args.plot), title=f"{name} of {split} loss")
        print(f"wrote {args.plot}")
    return 0


def _plot(vals: Any, grid: Any, density: Any, out: Path, *, title: str) -> None:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    from ..plot.extra import plot_density, plot_eigenvalues
    from ..plot.figures import save

    panels = 1 if grid is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), layout="constrained",
                             squeeze=False)
    plot_eigenvalues(vals, ax=axes[0, 0]).set_title("top eigenvalues")
    if grid is not None:
        plot_density(grid, density, ax=axes[0, 1]).set_title("spectral density")
    fig.suptitle(title)
    try:
        save(fig, out)
    finally:
        plt.close(fig)
