"""Checks, data preparation and docstring text the matplotlib and plotly views share.

No plotting imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface

SUFFIXES = (".png", ".svg", ".pdf")

F = TypeVar("F", bound=Callable[..., Any])

# The numpydoc entries of the parameters every matplotlib plane view shares,
# filled into docstrings by :func:`fill_doc`; :func:`check_plane` checks them.
PLANE_PARAMS = """\
surface : Surface
    A plane (two directions).
variable : str, optional
    Default the first ``<split>_loss``, e.g. ``"train_loss"``.
ax : Axes, optional
    Where to draw; default a new figure."""

_PLACEHOLDER = re.compile(r"^(\s*)\{(\w+)\}$")


def fill_doc(**parts: str) -> Callable[[F], F]:
    """Decorator: each docstring line that reads ``{name}`` becomes the text ``parts[name]``.

    The text takes the placeholder's indentation, so shared numpydoc entries
    read as if written in place (as matplotlib fills ``%(contour_doc)s`` into
    both ``contour`` and ``contourf``). Every placeholder must have a part and
    every part a placeholder: a mismatch raises ``KeyError`` at import.
    """

    def fill(fn: F) -> F:
        if fn.__doc__ is None:  # python -OO strips docstrings
            return fn
        lines: list[str] = []
        used: set[str] = set()
        for line in fn.__doc__.split("\n"):
            m = _PLACEHOLDER.match(line)
            if m is None:
                lines.append(line)
                continue
            indent, name = m.groups()
            used.add(name)
            lines.extend(indent + s if s else s for s in parts.get(name, "").split("\n"))
        if used != set(parts):
            raise KeyError(
                f"{fn.__qualname__}: its docstring lines {{name}} name {sorted(used)}, "
                f"the texts given are {sorted(parts)}"
            )
        fn.__doc__ = "\n".join(lines)
        return fn

    return fill


def check_surface(surface: Any, what: str) -> Surface:
    """The surface itself, or ``TypeError`` naming the function."""
    if not isinstance(surface, Surface):
        raise InputTypeError(
            f"{what} takes a lossmap Surface (from lossmap.scan.api or lossmap.load), "
            f"got {type(surface).__name__}"
        )
    from ..scan.slicing import require_view

    require_view(surface, what)  # 3-D and up: the message shows the slice to take
    return surface


def kind_of(surface: Surface) -> str:
    """``"line"`` or ``"plane"``."""
    return "line" if len(surface.dims) == 1 else "plane"


def require_plane(surface: Surface, what: str) -> None:
    """``ValueError`` unless the surface is a plane."""
    if len(surface.dims) != 2:
        raise InputError(
            f"{what} needs a plane (2 directions); this surface is a line: use plot_line"
        )


def require_line(surface: Surface, what: str) -> None:
    """``ValueError`` unless the surface is a line."""
    if len(surface.dims) != 1:
        raise InputError(
            f"{what} needs a line (1 direction); this surface is a plane: use plot_contour, "
            "plot_contourf, plot_heatmap or plot_surface3d"
        )


def check_plane(surface: Any, variable: Any, what: str) -> str:
    """The variable a plane view draws, ``variable`` or the first loss, ``surface`` a plane."""
    check_surface(surface, what)
    require_plane(surface, what)
    return first_loss(surface, variable, what)


def check_variable(surface: Surface, variable: Any, what: str) -> str:
    """A variable of the surface, or an error that lists the available ones."""
    if not isinstance(variable, str):
        raise InputTypeError(f"{what}: variable {variable!r} must be a string such as 'train_loss'")
    if variable not in surface.values:
        raise InputError(
            f"{what}: unknown variable {variable!r}; this surface has {', '.join(surface.values)}"
        )
    return variable


def loss_variables(surface: Surface) -> list[str]:
    """Every ``<split>_loss`` variable, else every variable of the first metric."""
    metric = "loss" if "loss" in surface.spec.metrics else surface.spec.metrics[0]
    return [f"{s}_{metric}" for s in surface.spec.splits]


def check_variables(surface: Surface, variables: Any, what: str) -> list[str]:
    """None → :func:`loss_variables`; a string → one; a sequence → each checked."""
    if variables is None:
        return loss_variables(surface)
    if isinstance(variables, str):
        variables = [variables]
    if not isinstance(variables, Sequence) or not variables:
        raise InputTypeError(
            f"{what}: variables={variables!r} must be a variable name or a non-empty list of them"
        )
    return [check_variable(surface, v, what) for v in variables]


def first_loss(surface: Surface, variable: str | None, what: str) -> str:
    """``variable`` checked, or the first loss variable when None."""
    if variable is None:
        return loss_variables(surface)[0]
    return check_variable(surface, variable, what)


def split_metric(surface: Surface, variable: str) -> tuple[str, str]:
    """``("train", "loss")`` for ``"train_loss"`` (splits and metrics may hold underscores)."""
    for s in surface.spec.splits:
        for m in surface.spec.metrics:
            if variable == f"{s}_{m}":
                return s, m
    return variable, ""


def label(surface: Surface, variable: str) -> str:
    """``"train loss"`` for ``"train_loss"``."""
    s, m = split_metric(surface, variable)
    return f"{s} {m}".strip()


def grid(surface: Surface, variable: str) -> tuple[np.ndarray, np.ndarray, np.ma.MaskedArray]:
    """``alpha`` (na,), ``beta`` (nb,) and the values as a masked array of shape (nb, na).

    ``values[i, j]`` sits at ``(alpha[i], beta[j])``; image and contour
    routines want rows along y, so the array is transposed. Non-finite points
    (missing or diverged) are masked.
    """
    a, b = surface.coords["alpha"], surface.coords["beta"]
    Z = np.asarray(surface.values[variable], dtype=np.float64).T  # (nb, na)
    return a, b, np.ma.masked_invalid(Z)


def centre_value(surface: Surface, variable: str) -> float | None:
    """The value at the centre when the centre is a grid point with a finite value."""
    idx = surface.centre_index()
    if idx is None:
        return None
    v = float(surface.values[variable][idx])
    return v if np.isfinite(v) else None


def centre_inside(surface: Surface) -> bool:
    """Whether the centre (all coordinates 0) lies within the scanned ranges."""
    return all(a.lo <= 0.0 <= a.hi for a in surface.spec.grid)


def value_range(arrays: Sequence[np.ndarray], *, log: bool, what: str) -> tuple[float, float]:
    """Finite (positive, with ``log``) minimum and maximum over all arrays."""
    vals = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in arrays])
    vals = vals[np.isfinite(vals)]
    if log and (vals <= 0).any():
        raise InputError(
            f"{what}: log=True needs positive values, and this surface has "
            f"{int((vals <= 0).sum())} values <= 0: use log=False"
        )
    if not vals.size:
        raise InputError(f"{what}: no finite value to draw (is the scan finished?)")
    return float(vals.min()), float(vals.max())


def log_levels(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` levels evenly spaced in log between ``lo`` and ``hi``."""
    if hi <= lo:
        hi = lo * 1.0001
    return np.geomspace(lo, hi, n)


def check_levels(levels: Any, what: str) -> Any:
    """An int >= 2 or an increasing sequence of numbers."""
    if isinstance(levels, bool):
        raise InputTypeError(f"{what}: levels={levels!r} must be an int or a list of numbers")
    if isinstance(levels, (int, np.integer)):
        if levels < 2:
            raise InputError(f"{what}: levels={levels} must be >= 2")
        return int(levels)
    arr = np.asarray(levels, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or np.any(np.diff(arr) <= 0):
        raise InputError(f"{what}: levels must be an int or at least 2 increasing numbers")
    return arr


def check_suffix(path: Any, allowed: Sequence[str], what: str) -> str:
    """The lower-case suffix of ``path`` if allowed, else a ``ValueError``."""
    import os

    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in allowed:
        raise InputError(
            f"{what}: {os.fspath(path)!r} must end in {', '.join(allowed)} (the format "
            "follows the suffix)"
        )
    return suffix
