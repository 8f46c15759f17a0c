"""``lossmap demo``: the fmin.xyz example end to end.

Train the example CNN (105,866 parameters) on Fashion-MNIST from a seeded θ0,
then scan lines and planes of train and test loss around θ0 and θ̂ along
Gaussian directions rescaled per tensor (``norm="layer"``, biases included, as
in the original), and write figures, interactive HTML and one report.

The default finishes in about five minutes on a quiet 2-core CPU; ``--full`` runs the
original settings exactly (25 epochs, both dropout runs, 51×51 planes, each
point on one 512-sample batch of train and of test). The plane at θ̂ is scanned
over 3 direction draws (``--draws K``: every plane over K): its figures and
findings are the median draw's, and the report shows the spread over the draws
(:mod:`lossmap.demo_draws`). Without the Fashion-MNIST
files the demo falls back to scikit-learn's 8×8 digits and a smaller CNN, and
says so. ``--backend jax`` runs the same on JAX: the notebook's Flax CNN
(:mod:`lossmap.jax.cnn`, Flax's own initialization), its optax training loop
(:mod:`lossmap.jax.train`) and ``lm.scan`` on the JAX model; the figures and
report are the same. JAX is imported only then.

θ0 is drawn as the notebook drew it: Flax's default initialization (truncated
LeCun-normal weights, zero biases; :func:`lossmap.models.init.lecun_normal_`),
from the notebook's seed 228 with ``--full``. PyTorch's default (Kaiming
uniform) stays available with ``--init torch``; around it the loss varies about
15× less along the θ0 line (Fashion-MNIST), so the original's first picture
is not reproduced. The report and ``summary.json`` say which was used.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from . import data as datasets
from . import models
from .directions.random import random_directions
from .models.init import INITS
from .scan.api import scan
from .surface import Surface

LOSS = nn.CrossEntropyLoss()
BACKENDS = ("torch", "jax")
NOTEBOOK_SEED = 228  # the original notebook's seed; --full uses it
INIT_NAMES = {"flax": "Flax's default (truncated LeCun normal, zero biases)",
              "torch": "PyTorch's default (Kaiming uniform weights and biases)"}


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; ``full()`` is the original example's settings."""

    epochs: int = 8  # the original trains 25 (about 11 min here); 8 get most of the way
    dropouts: tuple[float, ...] = (0.0,)  # the original compares 0.0 and 0.2
    line_points: int = 31
    plane_points: int = 31  # the original: 51
    span: float = 0.3  # α, β ∈ [−span, span]
    samples: int = 512  # per split and point: a fixed subset, as the original's one batch
    seed: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 512
    init: str = "flax"  # θ0 as the notebook drew it; "torch": PyTorch's default init
    draws: int = 3  # the plane at θ̂ over 3 direction draws (lm.scan draws=K; 1: one plane)
    draws_before: int = 1  # the plane at θ0 (--draws K sets both)

    @classmethod
    def full(cls, seed: int = NOTEBOOK_SEED) -> DemoSettings:
        """The original example exactly (the notebook's seed 228 unless told otherwise)."""
        return cls(epochs=25, dropouts=(0.0, 0.2), plane_points=51, samples=512, seed=seed)

    def differences(self) -> list[str]:
        """Plain-language notes on where these settings depart from the original."""
        ref = DemoSettings.full(self.seed)
        notes = []
        if self.init != ref.init:
            notes.append(f"θ0 from {INIT_NAMES[self.init]} instead of the original's "
                         f"{INIT_NAMES[ref.init]}")
        if self.epochs != ref.epochs:
            notes.append(f"{self.epochs} training epochs instead of the original's {ref.epochs}")
        if self.dropouts != ref.dropouts:
            notes.append("only the run without dropout (the original also trains with dropout 0.2)")
        if self.plane_points != ref.plane_points:
            notes.append(f"planes of {self.plane_points}×{self.plane_points} points instead of "
                         f"{ref.plane_points}×{ref.plane_points}")
        if self.lr != ref.lr:
            notes.append(f"learning rate {self.lr:g} (the original: {ref.lr:g})")
        if self.batch_size != ref.batch_size:
            notes.append(f"training batches of {self.batch_size} (the original: {ref.batch_size})")
        if self.samples != ref.samples:
            notes.append(f"each point evaluated on a fixed subset of {self.samples} train and "
                         f"{self.samples} test samples (the original: one batch of 512 each)")
        return notes


def load_data(
    dataset: str = "auto", progress: bool = True
) -> tuple[str, tuple, tuple, Any, str | None]:
    """(dataset name, train, test, model factory, fallback note)."""
    if dataset == "digits":
        return "digits", datasets.digits("train"), datasets.digits("test"), models.digits_cnn, None
    try:
        train = datasets.fashion_mnist("train")
        test = datasets.fashion_mnist("test")
        return "fashion_mnist", train, test, models.fashion_cnn, None
    except FileNotFoundError as exc:
        if dataset == "fashion_mnist":
            raise
        note = ("Fashion-MNIST was not found, so the demo uses scikit-learn's 8×8 digits and a "
                f"smaller CNN ({str(exc).splitlines()[0]})")
        if progress:
            print(f"note: {note}")
        return "digits", datasets.digits("train"), datasets.digits("test"), models.digits_cnn, note


def _scan_pair(model, centre, settings, data, out: Path, tag: str, progress: bool, loss=LOSS,
               draws: int = 1):
    """Line and plane (over ``draws`` direction draws) around one centre, normalized to it.

    For a JAX model, ``(module, variables)``, ``centre`` is None: the variables are the centre.
    """
    dirs = random_directions(model if centre is None else centre, 2, norm="layer", ignore=None,
                             seed=settings.seed)
    s = settings.span
    common = dict(data=data, centre=centre, samples=settings.samples, seed=settings.seed,
                  progress=progress)
    line = scan(model, loss, directions=dirs[0], grid=(-s, s, settings.line_points),
                store=out / f"line_{tag}.lossmap", **common)
    plane = scan(model, loss, directions=dirs, grid=[(-s, s, settings.plane_points)] * 2,
                 store=out / f"plane_{tag}.lossmap", draws=draws if draws > 1 else None,
                 **common)
    return line, plane


def _tag(p: float) -> str:
    return "after" if p == 0.0 else f"after_dropout{p:g}"


def _torch_runs(make_model, settings, train_data, test_data, out: Path, progress: bool):
    """θ0, training and scans with PyTorch: (lines, planes, training results) by tag."""
    from .train.trainer import train

    data = {"train": train_data, "test": test_data}
    theta0 = make_model(dropout=0.0, seed=settings.seed, init=settings.init).state_dict()
    lines: dict[str, Surface] = {}
    planes: dict[str, Surface] = {}
    runs = {}
    model = make_model(dropout=0.0, seed=settings.seed)  # the layout; seeded, so the
    model.load_state_dict(theta0)                        # global RNG is never drawn from
    lines["before"], planes["before"] = _scan_pair(model, theta0, settings, data, out, "before",
                                                   progress, draws=settings.draws_before)
    for p in settings.dropouts:
        tag = _tag(p)
        model = make_model(dropout=p, seed=settings.seed)
        model.load_state_dict(theta0)  # both runs start from the same θ0
        result = train(model, train_data, test_data, epochs=settings.epochs, lr=settings.lr,
                       momentum=settings.momentum, batch_size=settings.batch_size,
                       seed=settings.seed, out=out / f"train_{tag}", overwrite=True,
                       progress=progress)  # the demo replaces its own earlier run
        runs[tag] = result
        lines[tag], planes[tag] = _scan_pair(model, result.theta_hat, settings, data, out, tag,
                                             progress, draws=settings.draws)
    return lines, planes, runs


def _jax_runs(name: str, settings, train_data, test_data, out: Path, progress: bool):
    """The same with JAX: the Flax CNN, Flax's init from ``seed``, the optax loop, JAX scans."""
    from .errors import InputError

    try:
        from .jax import cnn, cross_entropy
        from .jax.train import train
    except ImportError as exc:
        raise InputError(f"--backend jax needs JAX and Flax ({exc}): "
                         "pip install 'lossmap[jax]'") from None
    make = cnn.digits_cnn if name == "digits" else cnn.fashion_cnn
    # NHWC for the Flax convolutions; the same samples, labels and subsets as PyTorch's.
    train_data = (cnn.to_nhwc(train_data[0]), train_data[1].numpy())
    test_data = (cnn.to_nhwc(test_data[0]), test_data[1].numpy())
    data = {"train": train_data, "test": test_data}
    theta0 = cnn.init(settings.seed, make())
    lines, planes, runs = {}, {}, {}
    lines["before"], planes["before"] = _scan_pair((make(), theta0), None, settings, data, out,
                                                   "before", progress, cross_entropy,
                                                   settings.draws_before)
    for p in settings.dropouts:
        tag = _tag(p)
        result = train(make(dropout=p), theta0, train_data, test_data, epochs=settings.epochs,
                       lr=settings.lr, momentum=settings.momentum,
                       batch_size=settings.batch_size, seed=settings.seed,
                       out=out / f"train_{tag}", overwrite=True, progress=progress)
        runs[tag] = result
        lines[tag], planes[tag] = _scan_pair((make(), result.theta_hat), None, settings, data,
                                             out, tag, progress, cross_entropy, settings.draws)
    return lines, planes, runs


def _figures(out: Path, lines: dict[str, Surface], planes: dict[str, Surface], history) -> list:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from . import plot
    from .demo_draws import draw_figures, median_of

    written = draw_figures(out, planes)
    planes = {tag: median_of(surf) for tag, surf in planes.items()}  # K draws: the median
    tags = list(lines)
    for after in tags[1:]:
        fig = plot.figure_lines(lines[tags[0]], lines[after])
        written.append(plot.save(fig, out / f"lines_{after}.png"))
    for tag, surf in planes.items():
        fig = plot.figure_planes(surf, title=_TITLES.get(tag.split("_")[0], tag))
        written.append(plot.save(fig, out / f"plane_{tag}.png"))
        fig = plt.figure(figsize=(7, 5.5))
        ax = fig.add_subplot(projection="3d")
        plot.plot_surface3d(surf, "train_loss", ax=ax)
        written.append(plot.save(fig, out / f"surface3d_{tag}.png"))
        figs = [plot.surface_figure(surf), plot.contour_figure(surf)]
        written.append(plot.to_html(figs, out / f"plane_{tag}.html"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot.plot_history(history, ax=ax)
    written.append(plot.save(fig, out / "history.png"))
    plt.close("all")
    return written


_TITLES = {"before": "Before training (around θ0)", "after": "After training (around θ̂)"}


def run_demo(
    out: str | Path = "runs/demo",
    *,
    settings: DemoSettings | None = None,
    dataset: str = "auto",
    progress: bool = True,
    backend: str = "torch",
) -> dict[str, Any]:
    """Run the demo; returns a summary (paths, final losses, analysis) also saved as JSON.

    ``backend="jax"`` trains and scans the Flax CNN with JAX (needs ``lossmap[jax]``).
    ``settings.init`` chooses θ0's initialization ("flax", the notebook's, or
    "torch"); the summary's ``"init"`` says which was used.
    """
    from .analysis import summary as analysis
    from .analysis.evidence import findings
    from .demo_draws import median_of, spread_summary
    from .errors import InputError
    from .models.init import check_init

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    settings = settings or DemoSettings()
    check_init(settings.init)
    if backend == "jax" and settings.init != "flax":
        raise InputError(f"init {settings.init!r} needs the torch backend: the JAX demo starts "
                         "from Flax's own initialization (drop --init or use --backend torch)")
    draws_note = None
    if backend == "jax" and max(settings.draws, settings.draws_before) > 1:  # torch-only
        settings = replace(settings, draws=1, draws_before=1)
        draws_note = ("one direction draw per plane: repeated draws (lm.scan draws=K) run on "
                      "the PyTorch backend only")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    name, train_data, test_data, make_model, fallback = load_data(dataset, progress)
    if name == "digits":  # 1,348 tiny images: small batches, a larger step, more epochs
        settings = replace(settings, batch_size=32, lr=0.1, epochs=max(settings.epochs, 10),
                           samples=min(settings.samples, 449))
    if backend == "jax":
        lines, planes, runs = _jax_runs(name, settings, train_data, test_data, out, progress)
    else:
        lines, planes, runs = _torch_runs(make_model, settings, train_data, test_data, out,
                                          progress)
    history = runs["after"].history
    figures = _figures(out, lines, planes, history)
    notes = ([fallback] if fallback else []) + settings.differences()
    init = init_description(settings.init, settings.seed)
    notes.append(f"θ0: {init}")
    if backend == "jax":
        notes.append("JAX backend: the notebook's Flax CNN from Flax's own initialization "
                     "(seeded), trained with optax SGD and scanned on JAX")
    if draws_note:
        notes.append(draws_note)
    from .report.page import write_report

    runs_for_report = [(f"line_{t}", s) for t, s in lines.items()]
    runs_for_report += [(f"plane_{t}", s) for t, s in planes.items()]
    title = f"lossmap demo: {name}" + (" (JAX)" if backend == "jax" else "")
    report = write_report(runs_for_report, out / "report.html", title=title,
                          history=history, notes=notes)
    summary = {
        "dataset": name,
        "backend": backend,
        "settings": asdict(settings),
        "init": init,
        "notes": notes,
        "final": {t: r.final for t, r in runs.items()},
        "lines": {t: _line_facts(s, analysis.analyse(s)) for t, s in lines.items()},
        # every finding: its numbers, evidence, uncertainty and sentence (lossmap.analysis)
        "findings": {**{f"line_{t}": findings(s).to_dict() for t, s in lines.items()},
                     **{f"plane_{t}": findings(median_of(s)).to_dict()
                        for t, s in planes.items()}},
        "draws": spread_summary(planes),  # K-draw planes: each number's spread (lm.over_draws)
        "files": [str(p) for p in [*figures, report]],
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def init_description(init: str, seed: int) -> str:
    """How θ0 was drawn, for the report's notes and ``summary.json``'s ``"init"``.

    Parameters
    ----------
    init : {"flax", "torch"}
        The initialization (:data:`lossmap.models.init.INITS`).
    seed : int
        Its seed.

    Returns
    -------
    str
        E.g. ``"flax (LeCun normal, zero biases, seed 228)"``.

    Examples
    --------
    >>> init_description("flax", 228)
    'flax (LeCun normal, zero biases, seed 228)'
    >>> init_description("torch", 0)
    'torch (Kaiming uniform, seed 0)'
    """
    what = {"flax": "LeCun normal, zero biases", "torch": "Kaiming uniform"}[init]
    return f"{init} ({what}, seed {seed})"


def _line_facts(surf: Surface, facts: dict) -> dict:
    """Per loss: the centre's value and the sentences of its slope, convexity and minimum."""
    from .analysis.render import sentence

    centre = surf.summary()
    return {
        var: {"centre": centre[var]["centre"],
              **{k: sentence(facts[var][k]) for k in ("slope", "convexity", "minimum")}}
        for var in ("train_loss", "test_loss")
    }


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    what = summary["dataset"] + (", JAX" if summary.get("backend") == "jax" else "")
    print(f"\nlossmap demo ({what}) finished in {summary['seconds']:.0f} s")
    for note in summary["notes"]:
        print(f"  note: {note}")
    for tag, fin in summary["final"].items():
        print(f"  θ̂ ({tag}): train loss {fin['train_loss']:.4f}, test loss {fin['test_loss']:.4f},"
              f" test accuracy {100 * fin['test_accuracy']:.1f} %")
    for tag, res in summary["lines"].items():
        for var, r in res.items():
            print(f"  line around {tag}: {var} L(0) = {r['centre']:.4f}; {r['slope']}; "
                  f"{r['convexity']}")
    print(f"  report: {out / 'report.html'}")
    print(f"  everything: {out}/")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lossmap demo`` to a subparsers object."""
    from .cli.options import add_out

    p = subparsers.add_parser(
        "demo", help="train the example CNN and draw its loss surface (the fmin.xyz example)"
    )
    add_out(p, default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--full", action="store_true",
                   help="the original settings exactly: 25 epochs, both dropout runs, 51×51")
    p.add_argument("--epochs", type=int, help="training epochs (overrides the default)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"seed of θ0, directions and training (default 0; {NOTEBOOK_SEED}, the "
                        "notebook's, with --full)")
    p.add_argument("--init", choices=INITS, default="flax",
                   help="θ0's initialization: flax (default), Flax's LeCun normal with zero "
                        "biases as in the original notebook; torch, PyTorch's Kaiming uniform")
    p.add_argument("--dataset", choices=("auto", "fashion_mnist", "digits"), default="auto",
                   help="auto: Fashion-MNIST if its files are found, else digits")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="torch (default) or jax: the notebook's Flax CNN, trained and scanned "
                        "with JAX (needs lossmap[jax])")
    p.add_argument("--draws", type=int, metavar="K", default=None,
                   help="scan each plane over K direction draws; the report shows their spread "
                        "(default: 3 for the plane at θ̂, 1 at θ0; 1: one plane each)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point of ``lossmap demo``."""
    if args.full:
        settings = DemoSettings.full(NOTEBOOK_SEED if args.seed is None else args.seed)
    else:
        settings = DemoSettings(seed=0 if args.seed is None else args.seed)
    settings = replace(settings, init=getattr(args, "init", "flax"))
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    if settings.epochs < 1:
        from .errors import InputError

        raise InputError(f"--epochs {settings.epochs} must be >= 1")
    if getattr(args, "draws", None) is not None:
        if args.draws < 1:
            from .errors import InputError

            raise InputError(f"--draws {args.draws} must be >= 1 (1: one plane, no spread)")
        settings = replace(settings, draws=args.draws, draws_before=args.draws)
    summary = run_demo(args.out, settings=settings, dataset=args.dataset,
                       progress=not args.no_progress, backend=getattr(args, "backend", "torch"))
    _print_summary(summary, Path(args.out))
    return 0
