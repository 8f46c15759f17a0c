"""The ``lossmap report`` command: one self-contained HTML page for one or more stores.

``lossmap report STORE [STORE ...] -o report.html [--title T] [--history FILE.json] [--note TEXT]``

Each store becomes a section (labelled by its file stem) with its figures, the
numbers :mod:`lossmap.analysis` computes, its spec, fingerprints and versions.
``--history`` adds a training history (the ``history.json`` that ``lossmap
train`` writes); ``--note`` (repeatable) adds a line to the notes at the top.

This module imports neither matplotlib nor plotly until :func:`run` writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingFileError
from .options import add_out
from .outputs import add_overwrite, check_out_file

__all__ = ["add_parser", "run"]

HTML = (".html", ".htm")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``report`` parser; :func:`run` takes the namespace it parses.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="lossmap")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["report", "a.lossmap", "b.lossmap", "-o", "r.html"])
    >>> args.stores, args.output, args.title
    (['a.lossmap', 'b.lossmap'], 'r.html', 'lossmap report')
    """
    p = subparsers.add_parser(
        "report",
        help="write one self-contained HTML report of one or more stores",
        description="Write one self-contained HTML page (figures, numbers, spec, fingerprints, "
        "versions) for the given stores; it opens offline and fetches nothing.",
    )
    p.add_argument("stores", metavar="STORE", nargs="+", help="stores written by `lossmap scan`")
    add_out(p, dest="output", required=True, old=True, help="the page to write, FILE.html")
    p.add_argument("--title", default="lossmap report", help="page title (default: %(default)s)")
    p.add_argument(
        "--history",
        help="a training history JSON ({'epoch': [...], 'train_loss': [...], ...}), e.g. the "
        "history.json of `lossmap train`",
    )
    p.add_argument("--hessian", metavar="FILE.json",
                   help="the JSON of `lossmap hessian ... -o FILE.json`: adds "
                   "the eigenvalues, trace and spectral density")
    p.add_argument("--note", action="append", help="a line for the notes at the top (repeatable)")
    add_overwrite(p)
    # SUPPRESS: a `lossmap --debug report …` given before the command is kept.
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return p


def _history(path: str | None) -> dict | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"--history {path!r} does not exist: check the path")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--history {path!r} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise InputError(
            f"--history {path!r} must hold one JSON object of per-epoch lists, "
            "e.g. {'epoch': [0, 1], 'train_loss': [2.3, 0.9]}"
        )
    return data


def run(args: argparse.Namespace) -> int:
    """Write the report of ``args.stores`` into ``args.output``; returns the exit status (0).

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by the parser of :func:`add_parser`: ``stores``, ``output``,
        and optionally ``title``, ``history``, ``note``.

    Returns
    -------
    int
        0 on success. A bad output suffix raises
        :class:`~lossmap.errors.InputError`; a missing store or a file that is
        not a store raises the store's own error.
    """
    out = Path(args.output)
    if out.suffix.lower() not in HTML:
        raise InputError(f"-o {args.output!r}: the report is an HTML page, use -o FILE.html")
    check_out_file(out, overwrite=bool(getattr(args, "overwrite", False)))
    history = _history(getattr(args, "history", None))
    from ..report.curvature import load_hessian
    from ..report.page import write_report

    hess = getattr(args, "hessian", None)

    path = write_report(
        list(args.stores),
        out,
        title=getattr(args, "title", None) or "lossmap report",
        history=history,
        notes=getattr(args, "note", None),
        hessian=load_hessian(hess) if hess else None,
    )
    print(f"wrote {path}")
    return 0
