"""The checkers of user input: each returns the cleaned value or raises one clear line.

Every input is checked once, where it enters: the Python API (``lm.scan``,
``lm.plan_scan``, ``lm.train``, …), the command line, or a file read back
(a store's spec). Inner code trusts its callers. A checker raises
:class:`~lossmap.errors.InputTypeError` (a ``TypeError``) for a value of the
wrong type and :class:`~lossmap.errors.InputError` (a ``ValueError``) for a
wrong value; the message names the input, the bad value, the rule and the way
out.

The same checker serves both doors: inside :func:`cli_names` (the command
line wraps each command in it) an input is named by its flag and choices are
written bare (``--bn-samples 0``, ``eval``), in Python by its keyword
(``bn_samples=0``, ``'eval'``).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError
from .scan.axis import Axis

#: The most points a grid may have (1024 x 1024): a scan visits every one, each a pass over
#: the data, and its order and coordinates are held in memory. Split a larger scan.
MAX_POINTS = 2**20

_CLI: ContextVar[bool] = ContextVar("lossmap_cli_names", default=False)
#: Keyword → flag where the flag is not ``--`` + the keyword with dashes.
_FLAGS = {"store": "--out", "loss_fn": "--loss"}


@contextlib.contextmanager
def cli_names() -> Iterator[None]:
    """Name inputs by their command-line flags inside this block (the CLI's door)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def on_cli() -> bool:
    """Whether the input came through the command line (inside :func:`cli_names`)."""
    return _CLI.get()


def label(name: str, value: Any) -> str:
    """The input as the user wrote it: ``bn_samples=0`` in Python, ``--bn-samples 0`` on the CLI.

    Examples
    --------
    >>> label("bn_samples", 0)
    'bn_samples=0'
    >>> with cli_names():
    ...     label("bn_samples", 0)
    '--bn-samples 0'
    """
    if on_cli() and name.isidentifier():
        return f"{_FLAGS.get(name, '--' + name.replace('_', '-'))} {value!r}"
    return f"{name}={value!r}"


def choice(value: Any) -> str:
    """A choice as the user writes it: ``'eval'`` in Python, ``eval`` on the command line."""
    return str(value) if on_cli() else repr(value)


# -- generic ---------------------------------------------------------------------------------


def check_int(value: Any, name: str, *, minimum: int | None = None, why: str = "") -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``.

    Examples
    --------
    >>> check_int(3, "k", minimum=1)
    3
    >>> check_int(0, "k", minimum=1)
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: k=0 must be >= 1
    """
    why = f" ({why})" if why else ""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputTypeError(f"{label(name, value)} must be an integer{why}")
    if minimum is not None and value < minimum:
        raise InputError(f"{label(name, value)} must be >= {minimum}{why}")
    return int(value)


def check_count(value: Any, name: str, *, none: str | None = None) -> int | None:
    """A positive integer, or None where ``none`` says what None means.

    Examples
    --------
    >>> check_count(None, "samples", none="all samples") is None
    True
    >>> check_count(0, "samples", none="all samples")
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: samples=0 must be an integer >= 1 or None (all samples)
    """
    if value is None and none is not None:
        return None
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        if none is None:
            out = ""
        else:
            out = f" (leave it out for {none})" if on_cli() else f" or None ({none})"
        error = InputError if isinstance(value, int | np.integer) else InputTypeError
        raise error(f"{label(name, value)} must be an integer >= 1{out}")
    return int(value)


def check_float(
    value: Any, name: str, *, low: float = -math.inf, high: float = math.inf, strict: bool = True
) -> float:
    """``value`` as a finite float in (low, high) (``[low, high)`` unless ``strict``).

    Examples
    --------
    >>> check_float(0.5, "lr", low=0.0)
    0.5
    >>> check_float(0, "lr", low=0.0)
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: lr=0.0 must be > 0
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InputTypeError(f"{label(name, value)} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{label(name, value)} must be finite")
    if (value <= low if strict else value < low) or value >= high:
        rule = (f"{'>' if strict else '>='} {low:g}" if low > -math.inf else "") + (
            f"{' and ' if low > -math.inf else ''}< {high:g}" if high < math.inf else ""
        )
        raise InputError(f"{label(name, value)} must be {rule}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is True or False (a YAML ``maybe`` or ``"no"`` is not)."""
    if not isinstance(value, bool):
        words = "true or false" if on_cli() else "True or False"
        raise InputTypeError(f"{label(name, value)} must be {words}")
    return value


def check_choice(value: Any, name: str, choices: Mapping[Any, str]) -> Any:
    """``value`` if it is one of ``choices`` (choice → what it means; None: leave it out)."""
    try:
        ok = value in choices
    except TypeError:  # unhashable
        ok = False
    if not ok:
        named = [c for c in choices if c is not None]
        parts = [f"{choice(c)} ({choices[c]})" if choices[c] else choice(c) for c in named]
        rule = " or ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)
        if None in choices:
            rule = (
                f"{rule} (leave it out for {choices[None]})"
                if on_cli()
                else f"None ({choices[None]}), {rule}"
            )
        raise InputError(f"{label(name, value)} must be {rule}")
    return value


def check_callable(value: Any, name: str, *, example: str, none: str | None = None) -> Any:
    """``value`` if callable (or None where ``none`` says what None means)."""
    if value is None and none is not None:
        return None
    if not callable(value):
        raise InputTypeError(
            f"{name} is a {type(value).__name__}; pass a callable {example}"
            + (f", or None for {none}" if none else "")
        )
    return value


def check_loss_fn(loss_fn: Any, *, none: str | None = None, name: str = "loss_fn") -> Any:
    """A loss ``loss_fn(outputs, targets)`` returning the batch mean (or None where allowed).

    Examples
    --------
    >>> check_loss_fn(3)
    Traceback (most recent call last):
    ...
    lossmap.errors.InputTypeError: loss_fn is a int; pass a callable loss_fn(outputs, targets) ...
    """
    return check_callable(
        loss_fn,
        name,
        none=none,
        example="loss_fn(outputs, targets) "
        "returning the batch mean, e.g. torch.nn.CrossEntropyLoss()",
    )


def check_json(value: Any, name: str) -> dict | None:
    """None, or a dict of JSON values (NaN allowed)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputTypeError(f"{name} is a {type(value).__name__}; pass a dict of JSON values")
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} must be JSON-serializable ({exc}): use lists, numbers, strings and dicts"
        ) from None
    return dict(value)


# -- the scan's grid ---------------------------------------------------------------------------


def check_axis(obj: Any, *, index: int = 0) -> Any:
    """One grid axis given as ``Axis``, ``(lo, hi, n)`` or ``"lo:hi:n"``, as an ``Axis``.

    The span ``hi - lo`` must be finite too (``-1e308:1e308:3`` is not: its
    coordinates cannot be formed).

    Examples
    --------
    >>> check_axis("-1:1:51")
    Axis(lo=-1.0, hi=1.0, n=51)
    >>> check_axis((0, 1, 1))
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: grid axis 0: n=1 must be >= 2 (a line needs two points)
    """
    where = f"grid axis {index}"
    if isinstance(obj, Axis):
        lo, hi, n = obj.lo, obj.hi, obj.n
    elif isinstance(obj, str):
        parts = obj.split(":")
        if len(parts) != 3:
            raise InputError(f"{where}: {obj!r} is not LO:HI:N (for example -1:1:51)")
        try:
            lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise InputError(
                f"{where}: {obj!r} is not LO:HI:N with numbers LO, HI and an integer N "
                "(for example -1:1:51)"
            ) from None
    elif isinstance(obj, tuple | list) and len(obj) == 3:
        lo, hi, n = obj
    else:
        raise InputTypeError(f"{where}: {obj!r} must be (lo, hi, n), 'lo:hi:n' or an Axis")
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int | np.integer) or isinstance(n, bool):
        raise InputTypeError(f"{where}: n={n!r} must be an integer")
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise InputTypeError(f"{where}: lo={lo!r} and hi={hi!r} must be numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{where}: lo={lo} and hi={hi} must be finite")
    if n < 2:
        raise InputError(f"{where}: n={n} must be >= 2 (a line needs two points)")
    if lo >= hi:
        raise InputError(f"{where}: lo={lo:g} must be < hi={hi:g} (swap them, or widen the range)")
    if not math.isfinite(hi - lo):
        raise InputError(
            f"{where}: the span hi - lo of {lo:g}:{hi:g} overflows a float: "
            "use a range whose width is finite, e.g. -1e6:1e6"
        )
    return Axis(lo, hi, int(n))


def check_grid(grid: Any) -> tuple:
    """The grid as a tuple of ``Axis``: a list of axes, or a single axis (a line).

    Checks each axis (:func:`check_axis`) and the number of points
    (:func:`check_grid_size`); how many axes the scan needs is the caller's to
    compare.
    """
    single = (
        isinstance(grid, str)
        or (isinstance(grid, tuple) and not (grid and isinstance(grid[0], tuple | list | str)))
        or type(grid).__name__ == "Axis"
    )
    if single:
        grid = [grid]
    if not isinstance(grid, list | tuple):
        raise InputTypeError("grid must be a list of (lo, hi, n) axes, one per direction")
    axes = tuple(check_axis(a, index=i) for i, a in enumerate(grid))
    check_grid_size(axes)  # a new scan only: a store of any size still opens
    return axes


def check_grid_size(axes: Sequence[Any]) -> None:
    """Refuse a grid of more than :data:`MAX_POINTS` points, before anything is allocated.

    Examples
    --------
    >>> from lossmap.scan.spec import Axis
    >>> check_grid_size([Axis(-1, 1, 1025), Axis(-1, 1, 1025)])
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: grid -1:1:1025 x -1:1:1025 has 1,050,625 points, more than ...
    """
    points = math.prod(a.n for a in axes)
    if points > MAX_POINTS:
        raise InputError(
            f"grid {' x '.join(str(a) for a in axes)} has {points:,} points, more than the "
            f"{MAX_POINTS:,} a scan may have (lossmap.scan.spec.MAX_POINTS): use fewer points, or "
            "split the range into several scans, e.g. -1:0:N and 0:1:N, each its own store"
        )


def check_grid_dtype(
    axes: Sequence[Any], dtype: Any, *, centre: float = 0.0, directions: Sequence[float] = ()
) -> None:
    """Refuse a grid whose points overflow the scan's dtype.

    Every coordinate must be finite in ``dtype`` (float32: below 3.4e38), and
    so must the weights ``c + Σ aᵢ dᵢ`` formed from it: ``centre`` is the
    largest magnitude of the centre's weights, ``directions`` the largest of
    each direction's.
    """
    import torch

    big = float(torch.finfo(dtype).max) if dtype.is_floating_point else math.inf
    for i, a in enumerate(axes):
        top = max(abs(a.lo), abs(a.hi))
        if top > big:
            raise InputError(
                f"grid axis {i}: {a} has coordinates beyond the largest {dtype} "
                f"({big:.3g}) the scan computes in: use a smaller range"
            )
    if directions and len(directions) == len(axes):
        reach = centre + sum(
            max(abs(a.lo), abs(a.hi)) * d for a, d in zip(axes, directions, strict=True)
        )
        if not reach < big:
            raise InputError(
                f"grid {' x '.join(str(a) for a in axes)}: the weights c + a·d reach "
                f"{reach:.3g}, beyond the largest {dtype} ({big:.3g}): use a smaller range"
            )


# -- the scan's options ------------------------------------------------------------------------

AUTOCAST = {None: "full precision, the default", "bfloat16": "", "float16": ""}
BN = {"eval": "stored running statistics", "recompute": "re-estimated at every point"}
STRATEGIES = {"auto": "", "loop": "points one after another", "vmap": "a chunk in one call"}


def check_autocast(autocast: Any) -> str | None:
    """The autocast dtype's name: None, "bfloat16" or "float16" (torch dtypes accepted)."""
    import torch

    names = {
        torch.bfloat16: "bfloat16",
        torch.float16: "float16",
        "bf16": "bfloat16",
        "fp16": "float16",
        "half": "float16",
    }
    with contextlib.suppress(TypeError):  # unhashable: refused below
        autocast = names.get(autocast, autocast)
    return check_choice(autocast, "autocast", AUTOCAST)


def check_bn(bn: Any) -> str:
    """``"eval"`` or ``"recompute"``."""
    return check_choice(bn, "bn", BN)


def check_strategy(strategy: Any) -> str:
    """``"auto"``, ``"loop"`` or ``"vmap"`` (in Python the 0.1 name ``"map"`` means loop)."""
    if strategy == "map" and not on_cli():
        import warnings

        warnings.warn(
            "strategy='map' is deprecated: use strategy='loop' (the same: points one "
            "after another)",
            DeprecationWarning,
            stacklevel=5,
        )
        return "loop"
    if strategy not in STRATEGIES:  # one line, the choices in order
        names = ", ".join(STRATEGIES)
        raise InputError(
            f"{label('strategy', strategy)} must be one of {names} "
            f"({choice('loop')}: points one after another, {choice('vmap')}: a "
            "chunk in one call)"
        )
    return strategy


def check_device(device: Any) -> Any:
    """None, a device name or a ``torch.device`` (whether it exists is the backend's to say)."""
    if device is not None and not isinstance(device, str) and type(device).__name__ != "device":
        raise InputTypeError(
            f"{label('device', device)} must be a device name such as 'cpu' or 'cuda:0'"
        )
    return device


def check_text(value: Any, name: str) -> str | None:
    """None or a string."""
    if value is not None and not isinstance(value, str):
        raise InputTypeError(f"{label(name, value)} must be text, not {type(value).__name__}")
    return value


__all__ = [
    "MAX_POINTS",
    "check_autocast",
    "check_axis",
    "check_bn",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_count",
    "check_device",
    "check_float",
    "check_grid",
    "check_grid_dtype",
    "check_grid_size",
    "check_int",
    "check_json",
    "check_loss_fn",
    "check_strategy",
    "check_text",
    "cli_names",
    "label",
]
