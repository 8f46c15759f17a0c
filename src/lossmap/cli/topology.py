"""The ``lossmap topology`` command: the basins of a stored scan, with their uncertainty.

``lossmap topology STORE [--variable train_loss] [--bootstrap 200] [--seed 0]
[--z 2] [-o out.json] [--vti out.vti]``

Prints :func:`lossmap.topology`'s sentence (resolved basins of all minima,
the deepest other basin, SMAD ± its bootstrap standard error) and one row per
basin: where its minimum is, its value, depth ± paired s.e., cells and
whether it is resolved. ``-o`` writes the finding as JSON, ``--vti`` a 3-D
scan as VTK image data with each point's basin (for ParaView).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..files import write_atomic
from .outputs import add_overwrite, check_out_file


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``topology`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The parser; :func:`run` takes the namespace it parses.
    """
    p = subparsers.add_parser(
        "topology",
        help="basins, persistence and SMAD of a stored scan (with their uncertainty)",
        description="Sublevel-set merge tree of a stored scan (2k axis neighbours per grid "
        "cell; ties by index; diverged points +inf): the basins with depth, cells and whether "
        "each is deeper than --z paired standard errors, and SMAD with a bootstrap s.e.",
    )
    p.add_argument("store", help="a .lossmap store (or a Li et al. .h5 surface file)")
    p.add_argument("--variable", default="train_loss", help="default train_loss")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=200,
        help="parametric bootstrap draws for the uncertainties (default 200; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument(
        "--z",
        type=float,
        default=2.0,
        help="paired standard errors a depth must exceed (default 2)",
    )
    p.add_argument("-o", "--out", help="write the finding as JSON (FILE.json)")
    p.add_argument("--vti", help="write a 3-D scan as VTK image data with the basins (FILE.vti)")
    add_overwrite(p)
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return p


def _row(b: Any) -> str:
    where = ", ".join(f"{d}={x:+.3g}" for d, x in b.minimum.coords.items())
    depth = "never merges" if not math.isfinite(b.depth) else f"{b.depth:.4g}"
    ok = {True: "resolved", False: "NOT resolved", None: "no s.e."}[b.resolved]
    return (
        f"  {where:<34} {b.minimum.value:>12.6g}  {depth:>12}  {b.volume:>7} ({b.share:6.1%})  {ok}"
    )


def run(args: argparse.Namespace) -> int:
    """Compute and print; returns the exit status (0). Bad input raises InputError."""
    from ..surface import load
    from ..topology import topology

    overwrite = bool(getattr(args, "overwrite", False))
    if args.out and Path(args.out).suffix.lower() != ".json":
        raise InputError(f"-o {args.out!r}: the finding is JSON, use -o FILE.json")
    for flag, path in (("-o", args.out), ("--vti", args.vti)):
        if path:
            check_out_file(path, flag=flag, overwrite=overwrite)
    surf = load(args.store)
    t = topology(surf, args.variable, bootstrap=args.bootstrap, seed=args.seed, z=args.z)
    print(f"{args.store} · {args.variable} · {' x '.join(map(str, surf.done.shape))} grid")
    print(t.sentence())
    print(f"  {'minimum at':<34} {'value':>12}  {'depth':>12}  {'cells (share)':>16}")
    for b in t.basins:
        print(_row(b))
    if args.out:
        text = json.dumps({**t.to_dict(), "sentence": t.sentence()}, indent=1)
        write_atomic(Path(args.out), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        print(f"wrote {args.out}")
    if args.vti:
        from ..plot.vti import to_vti

        to_vti(surf, args.vti, args.variable, topology=t)
        print(f"wrote {args.vti}")
    return 0
