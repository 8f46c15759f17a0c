"""The ``lossmap`` command line: scan, info, export (demo and plots in their modules).

Errors a user can fix print one line and exit with status 2 (``--debug`` shows
the traceback); Ctrl-C keeps finished points and exits with 130; a closed
stdout pipe ends quietly with 141.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, LossmapError
from .options import Renamed, add_out, add_scan_options
from .outputs import add_overwrite

_GRID = re.compile(r"^-?[0-9.eE+-]*:-?[0-9.eE+-]*:[0-9]+$")


def _fix_negative_grids(argv: Sequence[str]) -> list[str]:
    """Turn ``--grid -1:1:51`` into ``--grid=-1:1:51`` (argparse reads ``-1:…`` as an option)."""
    out: list[str] = []
    it = iter(argv)
    for tok in it:
        if tok == "--grid":
            nxt = next(it, None)
            if nxt is None:
                out.append(tok)
            else:
                out.append(f"--grid={nxt}")
        else:
            out.append(tok)
    return out


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like lossmap's own errors."""

    commands: dict[str, argparse.ArgumentParser]  # the subcommands' parsers (top level)

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ``--debug`` is also accepted after the command; SUPPRESS keeps the subcommand's
# parser from resetting a ``lossmap --debug CMD`` given before it.
_SUB_DEBUG: dict[str, Any] = {
    "action": "store_true",
    "default": argparse.SUPPRESS,
    "help": argparse.SUPPRESS,
}


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lossmap", description="Loss-surface slices of neural networks.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="scan a line or plane into a store (resumable)")
    s.add_argument("--spec", help="YAML file with the same keys as these flags")
    s.add_argument("--model", help="MODULE:FUNCTION returning the nn.Module (or a JAX model)")
    s.add_argument("--checkpoint", help="centre weights (.safetensors or torch state dict)")
    s.add_argument("--trust-pickle", action="store_true",
                   help="allow a --checkpoint that needs pickle (only for files you trust)")
    s.add_argument("--data", help="MODULE:FUNCTION returning {split: (X, y) | DataLoader}")
    s.add_argument("--loss", help="cross_entropy (default), mse, causal_lm or masked_lm (token "
                   "losses for dict batches), model (the model's own outputs.loss), or "
                   "MODULE:NAME of a loss")
    s.add_argument("--dirs", type=int, help="1 (line), 2 (plane, default), up to 6 (a k-D grid)")
    s.add_argument("--norm", help="filter (default) | layer | model | none")
    s.add_argument("--ignore", help="biasbn (default) | none")
    s.add_argument(
        "--orthogonal",
        action="store_true",
        default=None,
        help="make the second direction exactly orthogonal to the first",
    )
    s.add_argument("--params", action="append", metavar="PATTERN",
                   help="directions over the parameters whose names match this glob only, "
                        "e.g. '*lora_*' (repeat for several; the others stay at the centre)")
    s.add_argument("--grid", action="append",
                   help="LO:HI:N, once per direction (with --design: the box, LO:HI)")
    s.add_argument("--design", choices=("sobol", "lhs"),
                   help="sample --points N points in the --grid box instead of the product grid")
    s.add_argument("--points", type=int, metavar="N", help="number of points of a --design")
    s.add_argument("--draws", type=int, metavar="K",
                   help="repeat the line or plane over K draws of the random directions (same "
                        "rule and grid; one store with a leading 'draw' dimension)")
    s.add_argument("--dry-run", action="store_true", dest="dry_run",
                   help="print the points, the expected time (a short timing run) and the "
                        "store size; scan nothing")
    s.add_argument("--metrics", help="comma-separated, default loss,accuracy")
    add_out(s, help="store path, e.g. runs/plane.lossmap")
    s.add_argument("--interpolate", nargs="+", metavar="CKPT",
                   help="A B: the line from checkpoint A (alpha 0, the centre) to B (alpha 1)")
    s.add_argument("--plane", nargs="+", metavar="CKPT",
                   help="A B C: the plane through three checkpoints, centred on A")
    s.add_argument("--pca", metavar="CHECKPOINT_DIR",
                   help="PCA directions of a training trajectory around its final checkpoint")
    s.add_argument("--hessian-dirs", "--hessian", dest="hessian_dirs", type=int, metavar="K",
                   action=Renamed, renamed={"--hessian": "--hessian-dirs"},
                   help="top-K Hessian eigen-directions at the centre (the first --dirs "
                        "scanned; --hessian: the old spelling, deprecated)")
    s.add_argument("--hessian-split", dest="hessian_split", metavar="SPLIT",
                   help="the split the Hessian is of (default the first)")
    s.add_argument("--path", metavar="CURVE",
                   help="scan along a curve file (Curve.save, lossmap curve); --grid in t, "
                        "default 0:1:21")
    add_scan_options(s)  # lm.scan's options, as lossmap.scan.options declares them
    s.add_argument("--debug", **_SUB_DEBUG)

    i = sub.add_parser("info", help="what a store holds")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.add_argument("--spec", action="store_true",
                   help="print the scan as a YAML spec for `lossmap scan --spec FILE` "
                        "(resumes or reproduces it)")
    i.add_argument("--debug", **_SUB_DEBUG)

    e = sub.add_parser("export", help="export a store to NetCDF (.nc), CSV (.csv) or VTK for "
                                      "ParaView (.vts plane, .vtp line)")
    e.add_argument("path")
    add_out(e, dest="output", required=True, old=True,
            help="FILE.nc, FILE.csv, FILE.vts (a plane) or FILE.vtp (a line)")
    e.add_argument("--height", metavar="VAR",
                   help="with .vts/.vtp: the variable that gives the height (default the first "
                        "loss variable, e.g. train_loss)")
    add_overwrite(e, own=False)
    e.add_argument("--debug", **_SUB_DEBUG)
    p.commands = {"scan": s, "info": i, "export": e}
    for name, module in _plugins().items():
        p.commands[name] = module.add_parser(sub)
    return p


def _plugins() -> dict:
    """Subcommands that live in their own modules (each has add_parser and run)."""
    from .. import demo
    from . import align as align_cli
    from . import compare as compare_cli
    from . import curve as curve_cli
    from . import hessian as hessian_cli
    from . import import_li as import_cli
    from . import plot as plot_cli
    from . import report as report_cli
    from . import topology as topology_cli
    from . import train as train_cli

    return {"plot": plot_cli, "report": report_cli, "train": train_cli, "demo": demo,
            "hessian": hessian_cli, "import": import_cli, "align": align_cli,
            "curve": curve_cli, "compare": compare_cli, "topology": topology_cli}


def _cmd_scan(args: argparse.Namespace) -> int:
    from ..checks import cli_names
    from .config import ScanConfig

    values: dict[str, Any] = ScanConfig.from_yaml(args.spec) if args.spec else {}
    for key in ScanConfig.field_names():
        v = getattr(args, key, None)
        if v is not None:
            values[key] = v
    with cli_names():  # each input is checked once, named by its flag
        return _scan(args, ScanConfig(**values))


def _scan(args: argparse.Namespace, cfg: Any) -> int:
    from ..distributed import local_device
    from ..scan.api import scan
    from ..store import is_store
    from .directions import build_directions, load_loss, load_model
    from .entry import call_entry
    from .outputs import check_out_file

    cfg = cfg.validate()
    out = Path(cfg.out)
    check_out_file(out, flag="--out", overwrite=True)  # a store: resumed, never replaced
    if out.exists() and not is_store(out):  # is_store reads it: a FIFO is refused above
        raise InputError(
            f"--out {str(out)!r} exists and is not a lossmap store; it was left untouched: "
            "choose another path"
        )
    model = load_model(cfg.model)
    data = call_entry(cfg.data, what="--data")
    loss_fn = load_loss(cfg.loss, model=model, own_loss=True)
    path = None
    if cfg.path is not None:  # along a curve: it gives the centre and the directions
        from ..scan.path import as_curve

        centre, dirs, extra_meta, path = None, None, {}, as_curve(cfg.path)
    else:
        centre, dirs, extra_meta = build_directions(
            cfg, model, loss_fn, data, trust_pickle=bool(args.trust_pickle)
        )
    shown = {k: v for k in ("progress", "profile") if (v := getattr(args, k)) is not None}
    kwargs = dict(data=data, directions=dirs, grid=cfg.scan_grid(), centre=centre,
                  metrics=tuple(cfg.metrics), store=out,
                  meta={"command": cfg.to_dict(), **extra_meta}, path=path, draws=cfg.draws,
                  **{**cfg.scan_options(), "device": cfg.device or local_device(), **shown})
    if getattr(args, "dry_run", False):
        from ..scan.estimate import estimate

        kwargs.pop("progress", None)
        kwargs.pop("profile", None)
        draws = kwargs.pop("draws", None)  # K draws cost K times one draw's points
        per = f" per draw, x{draws} draws" if draws else ""
        print(f"{out} (dry run): {estimate(model, loss_fn, **kwargs)}{per}")
        return 0
    surf = scan(model, loss_fn, **kwargs)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{out}: {surf!r}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..store import Store
    from ..surface import from_rows

    if args.spec:
        from .specfile import stored_spec_yaml

        if args.json:
            raise InputError("--spec and --json cannot be combined: choose one output")
        print(stored_spec_yaml(args.path), end="")
        return 0
    with Store.open(args.path) as store:
        idx, rows = store.rows()
        surf = from_rows(store.spec, idx, rows, fingerprints=store.fingerprints, path=args.path)
        info = {
            "path": args.path,
            "spec": store.spec.to_dict(),
            "fingerprints": store.fingerprints,
            "lossmap_version": store.meta("lossmap_version"),
            "torch_version": store.meta("torch_version"),
            "command": store.meta("command"),
            "annotations": {k: v for k, v in store.annotations().items()
                            if k not in ("lossmap_version", "torch_version", "created", "command")},
            "summary": surf.summary(),
            "roundoff": store.roundoff,
        }
    from ..analysis.evidence import findings
    from ..surface import load

    found = None  # a k-D grid or a design: findings are of its slices
    if len(store.spec.dims) <= 2 and store.spec.design is None and store.spec.draws is None:
        found = findings(load(args.path))  # every finding, its evidence and uncertainty
    info["findings"] = None if found is None else found.to_dict()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    spec = store.spec
    s = info["summary"]
    print(f"{args.path}")
    from ..surface_html import grid_text

    print(f"  grid        {grid_text(spec)}  ({', '.join(spec.dims)})")
    if spec.path is not None:
        from ..scan.pathspec import path_text

        print(f"  path        {path_text(spec.path)}")
    print(f"  points      {s['done']}/{s['points']} done, {s['diverged']} diverged")
    print(
        f"  splits      {', '.join(spec.splits)}; metrics {', '.join(spec.metrics)}; "
        f"samples {spec.samples or 'all'}"
    )
    for i, d in enumerate(spec.directions):
        print(f"  direction {i} " + ", ".join(f"{k}={v}" for k, v in d.items()))
    print("  fingerprints " + ", ".join(f"{k}={v}" for k, v in store.fingerprints.items()))
    print("  roundoff    " + (", ".join(f"{k} {v:.2g}" for k, v in store.roundoff.items())
                             if store.roundoff else "not measured (convexity assumes dtype eps)"))
    for key, value in info["annotations"].items():
        text = json.dumps(value)
        print(f"  {key:<11} {text if len(text) <= 80 else text[:77] + '...'}")
    for var in spec.variables:
        e = s[var]
        centre = "n/a" if e["centre"] is None else f"{e['centre']:.6g}"
        low = f"{e['min']:.6g} at {e['argmin']}" if "min" in e else "n/a"
        print(f"  {var:<16} centre {centre}, min {low}")
    if found is None and spec.draws is not None:  # K draws: their spread, or one draw's
        print(f"  findings    over {spec.draws['count']} draws: in Python "
              "lm.over_draws(lm.load(STORE)); one draw's: lm.load(STORE).sel(draw=0)")
        return 0
    if found is None:
        print("  findings    of a plane or line: slice it first, e.g. in Python "
              f"lm.load(STORE).sel({spec.dims[-1]}=0.0)" if spec.design is None else
              "  findings    none for a sampled design (lm.topology reads it)")
        return 0
    errors = "measured" if found.standard_errors else "not measured (none stored)"
    print(f"  findings    (resolved beyond {found.z:g} s.e.; standard errors {errors})")
    for _, label, text in found.lines():
        print(f"    {label} · {text}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..surface import load
    from .outputs import check_out_file

    out = Path(args.output)
    vtk = out.suffix in (".vts", ".vtp")
    if out.suffix not in (".nc", ".csv") and not vtk:
        raise InputError(f"-o {args.output!r}: the file must end in .nc (NetCDF), .csv, "
                         ".vts (VTK, a plane) or .vtp (VTK, a line)")
    if args.height is not None and not vtk:
        raise InputError(f"--height is for VTK files (.vts, .vtp), not {out.suffix}: drop it")
    check_out_file(out, overwrite=getattr(args, "overwrite", False), own=False)
    surf = load(args.path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if vtk:
            surf.to_vtk(out, args.height)
        else:
            (surf.to_netcdf if out.suffix == ".nc" else surf.to_csv)(out)
    except OSError as exc:
        raise InputError(
            f"-o {args.output!r} cannot be written ({exc.strerror or exc}): choose another path"
        ) from None
    print(f"wrote {out}")
    return 0


COMMANDS = {"scan": _cmd_scan, "info": _cmd_info, "export": _cmd_export}



def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader of the pipe is gone (Python's documented way)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured): nothing is left to flush
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    A closed stdout (``lossmap info S | head -1``) ends the command quietly
    with status 141 (128 + SIGPIPE, as ``cat`` would).
    """
    argv = _fix_negative_grids(list(sys.argv[1:] if argv is None else argv))
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # report it as the command's error: `lossmap scan: error: …`
        sub = parser.commands.get(args.command, parser)  # a command added elsewhere: top level
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        run = COMMANDS.get(args.command) or _plugins()[args.command].run
        code = run(args)
        sys.stdout.flush()  # a reader gone (`| head -1`) shows here, not at exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 141  # as if killed by SIGPIPE, the status `cat` would have (128 + 13)
    except LossmapError as exc:
        if args.debug:
            raise
        text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"lossmap {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = "; finished points are kept in the store" if args.command == "scan" else ""
        print(f"lossmap {args.command}: interrupted{kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
