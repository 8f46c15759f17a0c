"""Checks of the paths a command writes, made at the boundary, before any work.

A command that would fail only after minutes of work because its output
cannot be written (a missing folder that cannot be made, a file where a
folder should be, a read-only place) fails at once instead, with one line
naming the path and the fix. Nothing is created by the check: a probe file
is made and removed in the nearest folder that exists, which is where the
command makes the missing folders later.

An output that exists must be a regular file or a folder: a named pipe
(FIFO), socket or device is refused before anything opens it (opening a FIFO
blocks until another process opens its other end, so the command would hang).

The overwrite rule of single-file outputs (``export``, ``plot``, ``report``,
``hessian -o`` / ``--plot``): an existing file is replaced only with
``--overwrite``, except that ``plot``, ``report`` and ``hessian`` replace an
empty file or one that already holds their own kind of output (a PNG, SVG,
PDF, HTML page or Hessian JSON by its content, as a re-run writes), so
re-drawing a store while its scan runs needs no flag. ``export`` always needs
``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import tempfile
from pathlib import Path

from ..errors import InputError

__all__ = [
    "add_overwrite", "check_not_special", "check_out_file", "check_out_folder", "holds_own_output",
]

# How each kind of output begins (after leading white space for the text ones).
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".pdf": (b"%PDF-",),
    ".svg": (b"<?xml", b"<svg"),
    ".html": (b"<!doctype html", b"<html"),
    ".htm": (b"<!doctype html", b"<html"),
}


# What an existing output may be instead of a regular file or a folder, by name.
_SPECIAL = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def check_not_special(path: str | os.PathLike, flag: str = "-o") -> None:
    """Refuse an existing ``path`` that is neither a regular file nor a folder.

    Only the path's status is read (a symbolic link is followed); nothing is
    opened, so a FIFO cannot block the check itself.

    Parameters
    ----------
    path : str or PathLike
        The output the command will write.
    flag : str, default "-o"
        The option that named it, for the message.

    Raises
    ------
    lossmap.errors.InputError
        ``path`` is a named pipe, a socket or a device.

    Examples
    --------
    >>> check_not_special("/dev/null", "--out")
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: --out '/dev/null' is a character device, not a regular file or a folder: lossmap writes only files and folders there; choose another path
    """  # noqa: E501
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent (or not reachable: the write check names why)
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
    raise InputError(
        f"{flag} {os.fspath(path)!r} is {kind}, not a regular file or a folder: lossmap writes "
        "only files and folders there; choose another path"
    )


def add_overwrite(parser: argparse.ArgumentParser, *, own: bool = True) -> None:
    """Add ``--overwrite`` to a command that writes single files.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The subcommand's parser.
    own : bool, default True
        Whether the command replaces its own kind of output without the flag
        (``plot``, ``report``, ``hessian``); ``export`` passes False.
    """
    if own:
        text = ("replace an existing output file that is not this command's own kind of "
                "output (a file it wrote before is replaced without the flag)")
    else:
        text = "replace an existing output file (without it, an existing file is refused)"
    parser.add_argument("--overwrite", action="store_true", help=text)


def holds_own_output(path: Path) -> bool:
    """Whether ``path`` holds what a lossmap command writes to a file of its suffix.

    PNG, PDF, SVG and HTML are recognised by how they begin; a ``.json`` file
    must hold a JSON object with ``eigenvalues`` (what ``lossmap hessian -o``
    writes). Anything else, or an unreadable file, is not ours.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(data, dict) and "eigenvalues" in data
        with path.open("rb") as f:
            head = f.read(512).lstrip().lower()
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return any(head.startswith(s.lower()) for s in _SIGNATURES.get(suffix, ()))


def _replaceable(path: Path) -> bool:
    """An empty file (``mktemp``'s), or one holding the command's own kind of output."""
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except OSError:
        empty = False
    return empty or holds_own_output(path)


def _nearest_existing(path: Path) -> Path:
    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def _check_writable(path: Path, folder: Path, flag: str, fix: str) -> None:
    """Raise InputError unless files can be made in ``folder`` (made with its parents later)."""
    folder = _nearest_existing(folder)
    shown = f"{flag} {str(path)!r} cannot be written"
    if not folder.is_dir():
        raise InputError(f"{shown}: {str(folder)!r} is a file, not a folder: {fix}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lossmap-write-test-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"{shown}: no file can be made in {str(folder)!r} ({reason}): {fix}"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_out_file(path: str | os.PathLike, *, flag: str = "-o", overwrite: bool = False,
                   own: bool = True) -> Path:
    """Check a single-file output before any work; returns it as a Path.

    Parameters
    ----------
    path : str or PathLike
        The file the command will write (its missing folders are made later,
        by the command).
    flag : str, default "-o"
        The option that named it, for the message.
    overwrite : bool, default False
        ``--overwrite`` was given: an existing file may be replaced.
    own : bool, default True
        Replace an existing file without ``overwrite`` when it is empty or
        already holds this kind of output (:func:`holds_own_output`).

    Raises
    ------
    lossmap.errors.InputError
        The path is a folder, a named pipe, socket or device, lies under a
        file, cannot be written, or is an existing file that may not be
        replaced.
    """
    path = Path(path)
    fix = "choose another path"
    check_not_special(path, flag)
    if path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a folder: name a file, e.g. {flag} "
                         f"{str(path / ('out' + path.suffix))!r}")
    if path.exists() and not overwrite and not (own and _replaceable(path)):
        what = "is not a file this command wrote" if own else "exists"
        raise InputError(
            f"{flag} {str(path)!r} {what}; it was left untouched: choose another path, or "
            "pass --overwrite to replace it"
        )
    _check_writable(path, path.parent, flag, fix)
    return path


def check_out_folder(path: str | os.PathLike, *, flag: str = "--out") -> Path:
    """Check that ``path`` can be (or already is) a folder files are written into.

    Raises
    ------
    lossmap.errors.InputError
        ``path`` is a file, a named pipe, socket or device, lies under a
        file, or no file can be made there.
    """
    path = Path(path)
    fix = "choose another folder"
    check_not_special(path, flag)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {str(path)!r} is a file, not a folder: {fix}")
    _check_writable(path, path, flag, fix)
    return path
