"""The comparison figure: one panel per model on one scale, then the differences from the reference.

Planes: filled contours (:func:`lossmap.plot.plot_contourf`) of every model
with the same levels, norm, colour map and axis ranges and one colour bar;
under them, ``model − reference`` on one diverging scale symmetric about
zero. Lines: one panel per model with the same y range (and log y axis of the
loss above the common minimum with ``log``), then every ``model − reference``
in one panel. The figure is a :class:`matplotlib.figure.Figure` made without
pyplot: nothing is left open in pyplot's registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..plot import common as C
from ..surface import Surface
from .scale import SharedScale

__all__ = ["draw_comparison"]

PANEL = (4.2, 3.6)
"""Inches per panel (width, height)."""


def _drawn_surface(surface: Surface, scale: SharedScale, values: np.ndarray) -> Surface:
    """``surface`` holding only ``values`` (drawn units) as its variable; errors follow."""
    errors = surface.errors
    if errors is not None and scale.variable in errors:
        errors = {scale.variable: errors[scale.variable]}
    else:
        errors = None
    return dataclasses.replace(surface, values={scale.variable: values}, errors=errors)


def _planes(
    fig: Any,
    surfaces: Sequence[Surface],
    names: Sequence[str],
    scale: SharedScale,
    difference: bool,
) -> None:
    from ..plot import plot_contourf

    n = len(surfaces)
    rows = 2 if difference and n > 1 and scale.diff_limit is not None else 1
    axes = np.atleast_2d(fig.subplots(rows, n, squeeze=False))
    (a_lo, a_hi), (b_lo, b_hi) = scale.ranges
    for ax, s, name in zip(axes[0], surfaces, names, strict=True):
        shown = _drawn_surface(s, scale, scale.drawn(s[scale.variable]))
        plot_contourf(
            shown,
            scale.variable,
            ax=ax,
            levels=scale.levels,
            norm=scale.norm(),
            cmap=scale.cmap,
            colorbar=False,
        )
        ax.set_title(name)
        ax.set_xlim(a_lo, a_hi)
        ax.set_ylim(b_lo, b_hi)
    label = scale.label(C.label(surfaces[0], scale.variable))
    cb = fig.colorbar(_mappable(scale.norm(), scale.cmap), ax=list(axes[0]), label=label)
    if scale.log:  # ticks at 1, 2, 5 per decade, as numbers rather than powers of ten
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
    if rows == 1:
        return
    ref = np.asarray(surfaces[0][scale.variable], dtype=np.float64)
    axes[1][0].axis("off")
    axes[1][0].text(
        0.5,
        0.5,
        f"differences from\n{names[0]}",
        ha="center",
        va="center",
        transform=axes[1][0].transAxes,
        fontsize=11,
    )
    for ax, s, name in zip(axes[1][1:], surfaces[1:], names[1:], strict=True):
        diff = np.asarray(s[scale.variable], dtype=np.float64) - ref
        shown = dataclasses.replace(_drawn_surface(s, scale, diff), errors=None)
        plot_contourf(
            shown,
            scale.variable,
            ax=ax,
            levels=scale.diff_levels,
            norm=scale.diff_norm(),
            cmap=scale.diff_cmap,
            colorbar=False,
        )
        ax.set_title(f"{name} − {names[0]}")
        ax.set_xlim(a_lo, a_hi)
        ax.set_ylim(b_lo, b_hi)
    fig.colorbar(
        _mappable(scale.diff_norm(), scale.diff_cmap),
        ax=list(axes[1][1:]),
        label=f"{C.label(surfaces[0], scale.variable)}, model − {names[0]}",
    )


def _mappable(norm: Any, cmap: str) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


def _lines(
    fig: Any,
    surfaces: Sequence[Surface],
    names: Sequence[str],
    scale: SharedScale,
    difference: bool,
) -> None:
    from ..plot import plot_line

    n = len(surfaces)
    extra = 1 if difference and n > 1 and scale.diff_limit is not None else 0
    axes = np.atleast_1d(fig.subplots(1, n + extra, squeeze=False)[0])
    top = float(scale.levels[-1])
    bottom = float(scale.levels[0])
    pad = 0.05 * (top - bottom)
    ((a_lo, a_hi),) = scale.ranges
    ylabel = scale.label(C.label(surfaces[0], scale.variable))
    for ax, s, name in zip(axes[:n], surfaces, names, strict=True):
        shown = _drawn_surface(s, scale, scale.drawn(s[scale.variable]))
        plot_line(shown, scale.variable, ax=ax, log=scale.log)
        ax.set_title(name)
        ax.set_xlim(a_lo, a_hi)
        ax.set_ylim((bottom / 2, top * 2) if scale.log else (bottom - pad, top + pad))
        ax.set_ylabel(ylabel)
    if not extra:
        return
    ax = axes[-1]
    ref = np.asarray(surfaces[0][scale.variable], dtype=np.float64)
    a = surfaces[0].coords["alpha"]
    for s, name in zip(surfaces[1:], names[1:], strict=True):
        ax.plot(a, np.asarray(s[scale.variable], dtype=np.float64) - ref, label=name)
    ax.axhline(0.0, color="grey", lw=0.8, ls=":")
    lim = float(scale.diff_limit or 0.0)
    ax.set_ylim(-1.05 * lim, 1.05 * lim)
    ax.set_xlim(a_lo, a_hi)
    ax.set_xlabel("α")
    ax.set_title(f"model − {names[0]}")
    ax.legend(fontsize=8)


def draw_comparison(
    surfaces: Sequence[Surface],
    names: Sequence[str],
    scale: SharedScale,
    *,
    difference: bool = True,
) -> Any:
    """The comparison figure of checked surfaces on ``scale``.

    Parameters
    ----------
    surfaces : sequence of Surface
        Lines or planes scanned by one rule (:func:`~lossmap.compare.rule.check_same_rule`).
    names : sequence of str
        Panel titles; the first is the reference of the differences.
    scale : SharedScale
    difference : bool, default True
        Add the differences from the reference.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    n = len(surfaces)
    plane = len(surfaces[0].dims) == 2
    diff = difference and n > 1 and scale.diff_limit is not None
    cols = n if plane else n + diff
    rows = 1 + diff if plane else 1
    fig = Figure(figsize=(PANEL[0] * cols + 1.0, PANEL[1] * rows), layout="constrained")
    (_planes if plane else _lines)(fig, surfaces, names, scale, difference)
    return fig
