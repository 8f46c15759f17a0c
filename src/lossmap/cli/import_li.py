"""The ``lossmap import`` command: a surface file of Li et al.'s code into a lossmap store.

``lossmap import SURFACE.h5 -o STORE.lossmap [--directions DIR.h5 [--model MODULE:FUNCTION]]``

The surface file of the reference code (``loss-landscape``, 2018) becomes a
store that every command reading a store reads (``info``, ``plot``,
``report``, ``export``). ``--directions`` stores their direction file with it,
its tensors named after ``--model`` (the file does not name them). Reading
needs h5py (the ``li`` extra). ``lossmap report``, ``plot`` and ``export``
also read a ``.h5`` surface file directly.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InputError
from .options import add_out

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``import`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``import`` parser; :func:`run` takes the namespace it parses.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="lossmap")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["import", "s.h5", "-o", "s.lossmap", "--directions", "d.h5"])
    >>> args.surface, args.out, args.directions, args.model
    ('s.h5', 's.lossmap', 'd.h5', None)
    """
    p = subparsers.add_parser(
        "import",
        help="convert a surface file of Li et al.'s loss-landscape code (.h5) into a store",
        description="Convert a surface file of Li et al.'s reference code (plot_surface.py, "
        "HDF5) into a lossmap store: values at their (x, y) (non-square grids included), "
        "accuracy in fractions (theirs is in percent), -1 entries as points not computed.",
    )
    p.add_argument("surface", metavar="SURFACE.h5", help="their surface file")
    add_out(p, required=True, help="the store to create, e.g. plane.lossmap (must not exist)")
    p.add_argument("--directions", metavar="DIR.h5",
                   help="their direction file (xdirection [, ydirection]): stored with the scan")
    p.add_argument("--model", metavar="MODULE:FUNCTION",
                   help="the model the directions were made for: names their tensors "
                        "(without it they are named 0, 1, …)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the store ``args.out`` from the surface file ``args.surface``; returns 0.

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by the parser of :func:`add_parser`: ``surface``, ``out``,
        and optionally ``directions`` and ``model``.

    Returns
    -------
    int
        0 on success; a file that is not in the reference layout, or an
        existing ``out``, raises :class:`~lossmap.errors.InputError`.
    """
    from ..interop.li2018 import import_li_surface
    from ..surface import load
    from .outputs import check_out_file

    check_out_file(args.out, overwrite=True)  # a folder, FIFO or device refused; a file: below
    if args.model and not args.directions:
        raise InputError("--model names the tensors of --directions: give --directions DIR.h5 "
                         "(their direction file) too, or leave --model out")
    model = None
    if args.model:
        from .directions import load_model

        model = load_model(args.model)
    path = import_li_surface(args.surface, args.out, directions=args.directions, model=model)
    print(f"wrote {path}: {load(path)!r}")
    return 0
