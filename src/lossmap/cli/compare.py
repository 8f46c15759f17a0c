"""The ``lossmap compare`` command: several stores side by side on one colour scale.

``lossmap compare STORE STORE [STORE ...] -o OUT [--variable V] [--log] [--names A B ...]
[--findings FILE.json]``

Writes ``comparison.png``, ``comparison.html`` (self-contained), ``comparison.json``
and ``comparison.md`` into the folder OUT and prints the findings table. Stores
scanned by different rules (grid, directions, seed, data) are refused with the
setting that differs. This module imports matplotlib only when :func:`run` draws.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingFileError
from .options import add_out
from .outputs import check_out_folder

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``compare`` parser; :func:`run` takes the namespace it parses.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="lossmap")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["compare", "a.lossmap", "b.lossmap", "-o", "cmp", "--log"])
    >>> args.stores, args.out, args.log, args.variable
    (['a.lossmap', 'b.lossmap'], 'cmp', True, 'train_loss')
    """
    p = subparsers.add_parser(
        "compare",
        help="draw several stores side by side on one colour scale, with a findings table",
        description="Draw two or more stores scanned by the same rule side by side on one "
        "colour scale (same levels and axis ranges), the differences from the first, and a "
        "table of each model's findings; writes PNG, a self-contained HTML page, JSON and "
        "Markdown into the folder OUT.",
    )
    p.add_argument(
        "stores",
        metavar="STORE",
        nargs="+",
        help="two or more stores written by `lossmap scan` with the same rule",
    )
    add_out(p, required=True, help="the folder to write comparison.png/.html/.json/.md into")
    p.add_argument(
        "--variable",
        default="train_loss",
        help="the variable drawn and tabled (default: %(default)s)",
    )
    p.add_argument(
        "--log", action="store_true", help="log colour scale of the loss above the common minimum"
    )
    p.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="one name per store (default: the stores' file stems)",
    )
    p.add_argument(
        "--no-difference",
        dest="difference",
        action="store_false",
        help="leave out the difference maps (model - first store)",
    )
    p.add_argument(
        "--findings",
        metavar="FILE.json",
        help="precomputed findings for the table: a JSON object {model name: {column: "
        "{'value': v, 'se': s}}} (e.g. the to_dict() of lm.sharpness results)",
    )
    p.add_argument("--levels", type=int, default=30, help="contour levels (default: 30)")
    p.add_argument(
        "--title",
        default="lossmap comparison",
        help="title of the HTML page (default: %(default)s)",
    )
    # SUPPRESS: a `lossmap --debug compare …` given before the command is kept.
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return p


def _findings(path: str | None) -> dict | None:
    """The ``--findings`` JSON: one object of model name to its findings."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"--findings {path!r} does not exist: check the path")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--findings {path!r} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, (dict, list)) for v in data.values()):
        raise InputError(
            f"--findings {path!r} must hold one JSON object of model name to its findings, "
            "e.g. {'SAM': {'worst-case sharpness': {'value': 0.01, 'se': 0.002}}}"
        )
    return data


def run(args: argparse.Namespace) -> int:
    """Compare ``args.stores`` into the folder ``args.out``; returns the exit status (0).

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by the parser of :func:`add_parser`.

    Returns
    -------
    int
        0 on success; bad input raises a :class:`~lossmap.errors.LossmapError`
        (the command line prints it on one line and exits with 2).
    """
    if len(args.stores) < 2:
        raise InputError(f"compare needs two or more stores, got {len(args.stores)}")
    if args.names is not None and len(args.names) != len(args.stores):
        raise InputError(
            f"--names gives {len(args.names)} names for {len(args.stores)} "
            "stores: give one name per store"
        )
    check_out_folder(args.out, flag="-o")
    given = _findings(getattr(args, "findings", None))
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, no display needed
    from ..compare import compare

    result = compare(
        list(args.stores),
        args.variable,
        names=args.names,
        log=args.log,
        difference=args.difference,
        out=args.out,
        levels=args.levels,
        title=args.title,
        findings=given,
    )
    print(result.table.to_markdown())
    for path in result.paths.values():
        print(f"wrote {path}")
    return 0
