"""Whole figures built from the Axes-level functions, and :func:`save` to PNG, SVG or PDF."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import MaxNLocator

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C
from .lines import plot_line
from .planes import plot_contour, plot_contourf, plot_heatmap
from .surface3d import plot_surface3d

__all__ = ["figure_lines", "figure_planes", "save"]

_PLANE_KINDS = ("contour", "contourf", "heatmap", "surface")
_PLANE_FUNCS = {
    "contour": plot_contour,
    "contourf": plot_contourf,
    "heatmap": plot_heatmap,
    "surface": plot_surface3d,
}


def figure_lines(
    before: Surface,
    after: Surface,
    *,
    titles: Sequence[str] = (
        "Line projection around the starting point",
        "Line projection around the final point",
    ),
    variables: str | Sequence[str] | None = None,
    accuracy: bool = False,
    log: bool = False,
    figsize: tuple[float, float] = (12.0, 4.5),
    **kwargs: Any,
) -> Figure:
    """Two line panels side by side, e.g. around θ0 and around θ̂ (the original's figure).

    Parameters
    ----------
    before, after : Surface
        Two lines (left and right panel).
    titles : pair of str
        Panel titles.
    variables, accuracy, log, **kwargs
        Passed to :func:`plot_line` for both panels.
    figsize : (float, float), default (12, 4.5)
        Figure size in inches.

    Returns
    -------
    Figure
    """
    if len(titles) != 2:
        raise InputError(f"figure_lines: titles={titles!r} must hold two strings")
    for name, s in (("before", before), ("after", after)):
        C.check_surface(s, f"figure_lines ({name})")
        C.require_line(s, f"figure_lines ({name})")
    fig, axes = plt.subplots(1, 2, figsize=figsize, layout="constrained")
    for ax, surf, title in zip(axes, (before, after), titles, strict=True):
        plot_line(surf, variables, ax=ax, accuracy=accuracy, log=log, **kwargs)
        ax.set_title(title)
    return fig


def figure_planes(
    surface: Surface,
    *,
    variables: str | Sequence[str] | None = None,
    kind: str = "contourf",
    titles: Sequence[str] | None = None,
    title: str | None = None,
    log: bool = False,
    levels: int = 30,
    figsize: tuple[float, float] | None = None,
    **kwargs: Any,
) -> Figure:
    """One panel per variable side by side (train and test), on a shared colour scale.

    Parameters
    ----------
    surface : Surface
        A plane.
    variables : str or sequence of str, optional
        Default every ``<split>_loss`` (``train_loss``, ``test_loss``).
    kind : {"contourf", "contour", "heatmap", "surface"}, default "contourf"
        The Axes-level function of each panel.
    titles : sequence of str, optional
        Panel titles; default the variable labels ("train loss", …).
    title : str, optional
        Figure title, e.g. "After training".
    log : bool, default False
        Log colour scale (and log-spaced levels).
    levels : int, default 30
        Number of contour levels shared by all panels (contour kinds).
    figsize : (float, float), optional
        Default 5.5 inches wide per panel, 4.5 high.
    **kwargs
        Passed to the Axes-level function of ``kind`` for every panel.

    Returns
    -------
    Figure
    """
    C.check_surface(surface, "figure_planes")
    C.require_plane(surface, "figure_planes")
    if kind not in _PLANE_FUNCS:
        raise InputError(f"figure_planes: kind={kind!r} must be one of {', '.join(_PLANE_FUNCS)}")
    names = C.check_variables(surface, variables, "figure_planes")
    if titles is not None and len(titles) != len(names):
        raise InputError(f"figure_planes: {len(titles)} titles for {len(names)} variables")
    n = len(names)
    fig = plt.figure(figsize=figsize or (5.5 * n, 4.5), layout="constrained")
    lo, hi = C.value_range([surface.values[v] for v in names], log=log, what="figure_planes")
    kw = dict(kwargs)
    own_norm = "norm" not in kw and "vmin" not in kw and "vmax" not in kw
    if kind in ("contour", "contourf") and "levels" not in kw:
        if log:
            kw["levels"] = C.log_levels(lo, hi, C.check_levels(levels, "figure_planes"))
        else:
            kw["levels"] = MaxNLocator(C.check_levels(levels, "figure_planes") + 1).tick_values(
                lo, hi
            )
    if kind == "contour":
        kw.setdefault("colorbar", True)
    fn = _PLANE_FUNCS[kind]
    for i, v in enumerate(names):
        proj = {"projection": "3d"} if kind == "surface" else {}
        ax = fig.add_subplot(1, n, i + 1, **proj)
        ax.set_title(titles[i] if titles is not None else C.label(surface, v))
        if own_norm:  # equal limits, one norm object per panel (colorbars would share its ticks)
            kw["norm"] = LogNorm(lo, hi) if log else plt.Normalize(lo, hi)
        fn(surface, v, ax=ax, **kw)
        if kind == "surface":
            ax.set_zlim(lo, hi)
    if title:
        fig.suptitle(title)
    return fig


def save(fig: Figure | Axes, path: str | os.PathLike, *, dpi: int = 150, **kwargs: Any) -> Path:
    """Write a figure as PNG, SVG or PDF, chosen by the suffix of ``path``.

    Parameters
    ----------
    fig : Figure or Axes
        What to write (an Axes or a subfigure writes its whole figure).
    path : str or PathLike
        Ends in ``.png``, ``.svg`` or ``.pdf``; missing parent folders are made.
    dpi : int, default 150
        Resolution of PNG output (and of images inside SVG/PDF).
    **kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig` (default
        ``bbox_inches="tight"``).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    The figure is closed once written (``plt.close``): pyplot forgets it, so
    the next view drawn without ``ax=`` starts afresh and a script that saves
    many figures does not keep them all in memory. The Figure object itself
    can still be saved again.
    """
    if isinstance(fig, Axes):
        fig = fig.figure
    if isinstance(fig, SubFigure):
        fig = fig.figure  # the figure at the root
    if not isinstance(fig, Figure):
        raise InputTypeError(f"save takes a matplotlib Figure or Axes, got {type(fig).__name__}")
    suffix = C.check_suffix(path, C.SUFFIXES, "save")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(path, format=suffix[1:], dpi=dpi, **kwargs)
    plt.close(fig)
    return path
