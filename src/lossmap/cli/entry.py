"""Resolve ``MODULE:NAME`` entry points (a dotted module or a ``.py`` file path)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError, InputTypeError


def load_entry(text: str, *, what: str) -> Any:
    """Import ``MODULE:NAME`` and return the object.

    ``MODULE`` is a dotted module name importable from the current directory
    or ``sys.path``, or a path to a ``.py`` file (its folder is put on
    ``sys.path`` so that the file's own imports of sibling modules work).

    Examples
    --------
    >>> load_entry("math:sqrt", what="--loss")(4.0)
    2.0
    """
    if not isinstance(text, str) or ":" not in text or text.endswith(":"):
        raise InputError(
            f"{what} {text!r} is not MODULE:FUNCTION (e.g. mypkg.models:make_net "
            "or path/to/file.py:make_net)"
        )
    mod_name, _, attr = text.rpartition(":")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.exists():
                raise InputError(f"{what} {text!r}: file {mod_name!r} does not exist")
            folder = str(path.resolve().parent)
            if folder not in sys.path:  # its sibling modules import, as with `python file.py`
                sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(f"_lossmap_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(spec.name, None)  # no half-initialized module left behind
                raise
        else:
            if "" not in sys.path and "." not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(mod_name)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{what} {text!r}: module {mod_name!r} does not import "
            f"({type(exc).__name__}: {exc}); check the name and that it is on PYTHONPATH"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what} {text!r}: module {mod_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def call_entry(text: str, *, what: str, **kwargs: Any) -> Any:
    """Import ``MODULE:FUNCTION`` and return what calling it with ``kwargs`` returns.

    An entry point that is not callable, or that raises, is an
    :class:`~lossmap.errors.InputError` naming it and the exception (the
    user's traceback is chained: ``--debug`` shows it).

    Examples
    --------
    >>> call_entry("math:pi", what="--model")
    Traceback (most recent call last):
    ...
    lossmap.errors.InputTypeError: --model 'math:pi' is a float, not a function: ...
    """
    return call_loaded(load_entry(text, what=what), text, what=what, **kwargs)


def call_loaded(fn: Any, text: str, *, what: str, **kwargs: Any) -> Any:
    """Call ``fn``, loaded from the entry point ``text``, as :func:`call_entry` does."""
    if not callable(fn):
        raise InputTypeError(
            f"{what} {text!r} is a {type(fn).__name__}, not a function: name the function "
            "that returns it, MODULE:FUNCTION"
        )
    try:
        return fn(**kwargs)
    except Exception as exc:
        raise InputError(
            f"{what} {text!r} raised {_first_line(exc)} when called: fix the function "
            "(--debug shows the traceback)"
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
