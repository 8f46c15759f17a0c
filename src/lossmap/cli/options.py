"""Options shared by the subcommands: one output flag, and old flag names kept working.

Every command that writes takes ``-o/--out``. Flags renamed in 0.2 keep their
old spelling as an alias that prints a one-line deprecation note on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def deprecated(old: str, new: str, *, prog: str = "lossmap") -> None:
    """Print the one-line note that ``old`` (a flag or YAML key) is now ``new``."""
    print(f"{prog}: warning: {old} is deprecated, use {new} (the old name will be removed)",
          file=sys.stderr)


class Renamed(argparse.Action):
    """Store the value like ``store``; a spelling in ``renamed`` prints a deprecation note.

    Used as ``add_argument("-o", "--out", "--output", action=Renamed,
    renamed={"--output": "-o/--out"})``: one argument, so ``required`` and the
    value's ``dest`` are shared by the old and the new spelling.
    """

    def __init__(self, option_strings: list[str], dest: str, *,
                 renamed: dict[str, str], **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.renamed = dict(renamed)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string in self.renamed:
            deprecated(option_string, self.renamed[option_string], prog=parser.prog)
        setattr(namespace, self.dest, values)


def add_out(parser: argparse.ArgumentParser, *, help: str, dest: str = "out",
            required: bool = False, default: Any = None, old: bool = False) -> argparse.Action:
    """Add ``-o/--out`` (and, with ``old=True``, the deprecated ``--output``) to ``parser``.

    Parameters
    ----------
    parser : ArgumentParser
        The subcommand's parser.
    help : str
        What the output is.
    dest : str, default "out"
        The attribute of the parsed arguments.
    required : bool, default False
        Whether the command needs it.
    default : any, optional
        Its value when not given.
    old : bool, default False
        Also accept ``--output``, the spelling before 0.2 (deprecated).

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="lossmap x")
    >>> _ = add_out(p, help="FILE", dest="output", old=True)
    >>> p.parse_args(["-o", "a.nc"]).output, p.parse_args(["--out", "b.nc"]).output
    ('a.nc', 'b.nc')
    """
    names = ["-o", "--out", *(["--output"] if old else [])]
    if old:
        help = f"{help} (--output: the old spelling, deprecated)"
    return parser.add_argument(*names, dest=dest, required=required, default=default,
                               metavar="OUT", action=Renamed, renamed={"--output": "-o/--out"},
                               help=help)


def add_scan_options(parser: argparse.ArgumentParser) -> None:
    """Add a flag for each option :class:`lossmap.scan.options.ScanOptions` declares with one.

    The flag, its help, choices and metavar come from the declaration; a
    switch (``--compile``, ``--no-progress``) stores the opposite of the
    option's default. Every flag defaults to None (not given: ``lm.scan``'s
    default applies), and its value is checked by ``lm.scan``, once.

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="lossmap scan")
    >>> add_scan_options(p)
    >>> a = p.parse_args(["--bn", "recompute", "--no-progress", "--batch-size", "64"])
    >>> a.bn, a.progress, a.batch_size, a.samples
    ('recompute', False, 64, None)
    """
    from ..scan.options import declared

    for f in declared():
        about = f.metadata
        if about["flag"] is None:
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": about["help"]}
        if isinstance(f.default, bool):  # a switch: the flag says the opposite of the default
            kw["action"] = "store_false" if f.default else "store_true"
        else:
            if about["choices"]:
                kw["choices"] = about["choices"]
            elif str(f.type).split(" ")[0] == "int":
                kw["type"] = int
            if about["metavar"]:
                kw["metavar"] = about["metavar"]
        parser.add_argument(about["flag"], **kw)
