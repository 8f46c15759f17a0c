"""Matplotlib views of a Surface: lines, contours, heatmaps, 3D surfaces, training history.

Every Axes-level function follows one contract::

    plot_x(surface, ..., *, ax=None, **kwargs) -> Axes

It draws on ``ax`` (default ``plt.gca()``; a 3D axes for
:func:`plot_surface3d`), passes ``kwargs`` to the one matplotlib call named in
its docstring after setting library defaults with ``setdefault`` (so the
caller wins), returns the Axes, and never calls ``show`` or ``savefig``.
Figure-level helpers (:func:`figure_lines`, :func:`figure_planes`) build whole
figures from them; :func:`save` writes PNG, SVG or PDF by suffix.

Missing or diverged points (NaN, ±inf) are masked, never interpolated over: a
line breaks at them, a contour leaves the cells around them empty, a heatmap
leaves their cell blank, a 3D surface drops the quads that touch them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import _common as C

__all__ = [
    "figure_lines",
    "figure_planes",
    "plot_contour",
    "plot_contourf",
    "plot_heatmap",
    "plot_history",
    "plot_line",
    "plot_surface3d",
    "save",
]

ALPHA, BETA = "α", "β"
_CENTRE = {
    "marker": "*",
    "markersize": 14,
    "color": "red",
    "markeredgecolor": "white",
    "markeredgewidth": 1.0,
    "linestyle": "none",
    "zorder": 5,
}
_PLANE_KINDS = ("contour", "contourf", "heatmap", "surface")


def _colour(i: int) -> str:
    """The i-th colour of the current property cycle (one colour per split)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return cycle[i % len(cycle)]


def _split_colour(surface: Surface, variable: str) -> str:
    split, _ = C.split_metric(surface, variable)
    splits = list(surface.spec.splits)
    return _colour(splits.index(split) if split in splits else 0)


# -- lines ---------------------------------------------------------------------
def plot_line(
    surface: Surface,
    variables: str | Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    centre: bool = True,
    accuracy: bool = False,
    log: bool = False,
    **kwargs: Any,
) -> Axes:
    """Draw a line scan: value against α, one curve per variable.

    Parameters
    ----------
    surface : Surface
        A line (one direction).
    variables : str or sequence of str, optional
        Variables to draw on the left axis; default every ``<split>_loss``.
    ax : Axes, optional
        Where to draw; default ``plt.gca()``.
    centre : bool, default True
        Mark α = 0: a dotted vertical line and a point on each curve.
    accuracy : bool, default False
        Also draw ``<split>_accuracy`` of the same splits, dashed, on a twin
        y-axis (0 to 1) at the right.
    log : bool, default False
        Logarithmic y-axis for the left axis.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot` for every curve
        (defaults: ``linewidth=1.8``, ``marker="."``, one colour per split).

    Returns
    -------
    Axes
        ``ax``; the twin axis, if any, is ``ax.figure.axes[-1]``.

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from lossmap.spec import ScanSpec
    >>> spec = ScanSpec(axes=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": a**2}, np.ones(21, bool))
    >>> plot_line(surf).get_xlabel()
    'α'
    """
    C.check_surface(surface, "plot_line")
    C.require_line(surface, "plot_line")
    names = C.check_variables(surface, variables, "plot_line")
    ax = ax or plt.gca()
    alpha = surface.coords["alpha"]
    metrics = {C.split_metric(surface, v)[1] for v in names}
    by_split = len(metrics) == 1

    def draw(on: Axes, var: str, **extra: Any) -> None:
        kw = dict(kwargs)
        kw.setdefault("color", _split_colour(surface, var))
        kw.setdefault("linewidth", 1.8)
        kw.setdefault("marker", ".")
        kw.setdefault("markersize", 4)
        for k, v in extra.items():
            kw.setdefault(k, v)
        y = np.asarray(surface.values[var], dtype=np.float64)
        line = on.plot(alpha, np.where(np.isfinite(y), y, np.nan), **kw)[0]
        c0 = C.centre_value(surface, var) if centre else None
        if c0 is not None:
            on.plot(
                0.0,
                c0,
                "o",
                color=line.get_color(),
                markersize=7,
                markeredgecolor="white",
                zorder=line.get_zorder() + 1,
            )

    for v in names:
        split = C.split_metric(surface, v)[0]
        draw(ax, v, label=split if by_split and not accuracy else C.label(surface, v))
    ax.set_xlabel(ALPHA)
    ax.set_ylabel(next(iter(metrics)) if by_split else ", ".join(sorted(metrics)))
    if log:
        ax.set_yscale("log")
    if centre and C.centre_inside(surface):
        ax.axvline(0.0, color="0.55", linestyle=":", linewidth=1.0, zorder=0)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    top = ax
    if accuracy:
        if "accuracy" not in surface.spec.metrics:
            raise InputError(
                "plot_line: accuracy=True but this surface has no accuracy metric; it has "
                f"{', '.join(surface.values)}"
            )
        splits = [C.split_metric(surface, v)[0] for v in names]
        acc = [f"{s}_accuracy" for s in dict.fromkeys(splits) if f"{s}_accuracy" in surface.values]
        twin = ax.twinx()
        for v in acc:
            draw(twin, v, linestyle="--", label=C.label(surface, v))
        twin.set_ylabel("accuracy")
        twin.set_ylim(0.0, 1.0)
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        top = twin
    if handles:
        top.legend(handles, labels, framealpha=0.85)
    return ax


def plot_history(
    history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]],
    *,
    ax: Axes | None = None,
    accuracy: bool = True,
    log: bool = False,
    **kwargs: Any,
) -> Axes:
    """Draw a training history: loss per epoch, accuracy on a twin axis.

    Parameters
    ----------
    history : dict of str to sequence, or sequence of dict
        Per-epoch series such as ``{"train_loss": [...], "test_loss": [...],
        "train_accuracy": [...], "test_accuracy": [...]}``; an optional
        ``"epoch"`` series gives the x values (default 1, 2, …). A list of
        per-epoch records (dicts) works too.
    ax : Axes, optional
        Where to draw; default ``plt.gca()``.
    accuracy : bool, default True
        Draw ``*_accuracy`` series, dashed, on a twin y-axis when present.
    log : bool, default False
        Logarithmic loss axis.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot` for every curve.

    Returns
    -------
    Axes
        ``ax``.
    """
    if isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        if not all(isinstance(r, Mapping) for r in history):
            raise InputTypeError("plot_history: a list history must hold one dict per epoch")
        keys = list(dict.fromkeys(k for r in history for k in r))
        history = {k: [r.get(k, np.nan) for r in history] for k in keys}
    if not isinstance(history, Mapping):
        raise InputTypeError(
            f"plot_history takes a dict of per-epoch lists, got {type(history).__name__}"
        )
    series = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in history.items()}
    losses = [k for k in series if k.endswith("_loss") or k == "loss"]
    if not losses:
        raise InputError(
            f"plot_history: no '*_loss' series in the history; it has {', '.join(series) or None}"
        )
    lengths = {len(series[k]) for k in series}
    if len(lengths) != 1:
        raise InputError(
            "plot_history: the series have different lengths "
            + ", ".join(f"{k}={len(v)}" for k, v in series.items())
        )
    n = lengths.pop()
    x = series.pop("epoch", np.arange(1, n + 1, dtype=np.float64))
    ax = ax or plt.gca()
    split_names = [k.removesuffix("_loss") for k in losses]

    def draw(on: Axes, key: str, split: str, **extra: Any) -> None:
        kw = dict(kwargs)
        idx = split_names.index(split) if split in split_names else len(split_names)
        kw.setdefault("color", _colour(idx))
        kw.setdefault("linewidth", 1.8)
        kw.setdefault("marker", "o")
        kw.setdefault("markersize", 3)
        for k, v in extra.items():
            kw.setdefault(k, v)
        on.plot(x, series[key], **kw)

    for k, split in zip(losses, split_names, strict=True):
        draw(ax, k, split, label=f"{split} loss" if split != "loss" else "loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    top = ax
    accs = [k for k in series if k.endswith("_accuracy") or k == "accuracy"]
    if accuracy and accs:
        twin = ax.twinx()
        for k in accs:
            split = k.removesuffix("_accuracy")
            draw(twin, k, split, linestyle="--", label=f"{split} accuracy")
        twin.set_ylabel("accuracy")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        top = twin
    top.legend(handles, labels, framealpha=0.85)
    return ax


# -- planes --------------------------------------------------------------------
def _mark_centre(surface: Surface, ax: Axes, centre: bool) -> None:
    if centre and C.centre_inside(surface):
        ax.plot(0.0, 0.0, label="centre", **_CENTRE)


def _finish_plane(
    surface: Surface, ax: Axes, variable: str, mappable: Any, colorbar: bool, centre: bool
) -> Axes:
    _mark_centre(surface, ax, centre)
    ax.set_xlabel(ALPHA)
    ax.set_ylabel(BETA)
    if not ax.get_title():
        ax.set_title(C.label(surface, variable))
    if colorbar:
        cb = ax.figure.colorbar(mappable, ax=ax, label=C.label(surface, variable))
        _log_ticks(cb)
    return ax


def _log_ticks(cb: Any) -> None:
    """Readable ticks (1, 2, 5 per decade, ``%.3g``) on a colorbar with a log scale."""
    if isinstance(cb.norm, LogNorm):
        cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())


def _contour_kwargs(
    Z: np.ma.MaskedArray, levels: Any, log: bool, kwargs: dict[str, Any], what: str
) -> dict[str, Any]:
    levels = C.check_levels(kwargs.pop("levels", levels), what)
    if log and "norm" not in kwargs:
        lo, hi = C.value_range([Z.filled(np.nan)], log=True, what=what)
        kwargs["norm"] = LogNorm(lo, hi)
        if isinstance(levels, int):
            levels = C.log_levels(lo, hi, levels)
    kwargs["levels"] = levels
    kwargs.setdefault("cmap", "viridis")
    return kwargs


def plot_contour(
    surface: Surface,
    variable: str | None = None,
    *,
    ax: Axes | None = None,
    levels: int | Sequence[float] = 30,
    log: bool = False,
    centre: bool = True,
    colorbar: bool = False,
    **kwargs: Any,
) -> Axes:
    """Draw contour lines of a plane (α on x, β on y).

    Parameters
    ----------
    surface : Surface
        A plane (two directions).
    variable : str, optional
        Default the first ``<split>_loss``, e.g. ``"train_loss"``.
    ax : Axes, optional
        Where to draw; default ``plt.gca()``.
    levels : int or sequence of float, default 30
        Number of levels (chosen by matplotlib at round values) or the levels.
    log : bool, default False
        Levels evenly spaced in log and a log colour scale (values must be > 0).
    centre : bool, default True
        Mark the centre (0, 0) with a red star.
    colorbar : bool, default False
        Add a colorbar labelled with the variable.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.contour` (defaults:
        ``cmap="viridis"``, ``linewidths=1.0``).

    Returns
    -------
    Axes
        ``ax``.
    """
    C.check_surface(surface, "plot_contour")
    C.require_plane(surface, "plot_contour")
    variable = C.first_loss(surface, variable, "plot_contour")
    ax = ax or plt.gca()
    a, b, Z = C.grid(surface, variable)
    kw = _contour_kwargs(Z, levels, log, dict(kwargs), "plot_contour")
    kw.setdefault("linewidths", 1.0)
    cs = ax.contour(a, b, Z, **kw)
    return _finish_plane(surface, ax, variable, cs, colorbar, centre)


def plot_contourf(
    surface: Surface,
    variable: str | None = None,
    *,
    ax: Axes | None = None,
    levels: int | Sequence[float] = 30,
    log: bool = False,
    centre: bool = True,
    colorbar: bool = True,
    **kwargs: Any,
) -> Axes:
    """Draw filled contours of a plane (α on x, β on y).

    Parameters
    ----------
    surface : Surface
        A plane (two directions).
    variable : str, optional
        Default the first ``<split>_loss``, e.g. ``"train_loss"``.
    ax : Axes, optional
        Where to draw; default ``plt.gca()``.
    levels : int or sequence of float, default 30
        Number of levels (chosen by matplotlib at round values) or the levels.
    log : bool, default False
        Levels evenly spaced in log and a log colour scale (values must be > 0).
    centre : bool, default True
        Mark the centre (0, 0) with a red star.
    colorbar : bool, default True
        Add a colorbar labelled with the variable.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.contourf` (default
        ``cmap="viridis"``).

    Returns
    -------
    Axes
        ``ax``.
    """
    C.check_surface(surface, "plot_contourf")
    C.require_plane(surface, "plot_contourf")
    variable = C.first_loss(surface, variable, "plot_contourf")
    ax = ax or plt.gca()
    a, b, Z = C.grid(surface, variable)
    kw = _contour_kwargs(Z, levels, log, dict(kwargs), "plot_contourf")
    cs = ax.contourf(a, b, Z, **kw)
    return _finish_plane(surface, ax, variable, cs, colorbar, centre)


def _edges(c: np.ndarray) -> tuple[float, float]:
    """Outer edges of the first and last cell centred on the coordinates ``c``."""
    h = (c[-1] - c[0]) / (len(c) - 1)
    return float(c[0] - h / 2), float(c[-1] + h / 2)


def plot_heatmap(
    surface: Surface,
    variable: str | None = None,
    *,
    ax: Axes | None = None,
    log: bool = False,
    centre: bool = True,
    colorbar: bool = True,
    **kwargs: Any,
) -> Axes:
    """Draw a plane as an image, one cell per grid point (α on x, β on y).

    Cell ``(i, j)`` is centred on ``(alpha[i], beta[j])``; missing points
    stay blank.

    Parameters
    ----------
    surface : Surface
        A plane (two directions).
    variable : str, optional
        Default the first ``<split>_loss``, e.g. ``"train_loss"``.
    ax : Axes, optional
        Where to draw; default ``plt.gca()``.
    log : bool, default False
        Log colour scale (values must be > 0).
    centre : bool, default True
        Mark the centre (0, 0) with a red star.
    colorbar : bool, default True
        Add a colorbar labelled with the variable.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.imshow` (defaults:
        ``cmap="viridis"``, ``origin="lower"``, ``interpolation="nearest"``,
        ``aspect="auto"`` and the ``extent`` of the grid cells).

    Returns
    -------
    Axes
        ``ax``.
    """
    C.check_surface(surface, "plot_heatmap")
    C.require_plane(surface, "plot_heatmap")
    variable = C.first_loss(surface, variable, "plot_heatmap")
    ax = ax or plt.gca()
    a, b, Z = C.grid(surface, variable)
    kw = dict(kwargs)
    if log and "norm" not in kw:
        kw["norm"] = LogNorm(*C.value_range([Z.filled(np.nan)], log=True, what="plot_heatmap"))
    kw.setdefault("cmap", "viridis")
    kw.setdefault("origin", "lower")
    kw.setdefault("interpolation", "nearest")
    kw.setdefault("aspect", "auto")
    kw.setdefault("extent", (*_edges(a), *_edges(b)))
    im = ax.imshow(Z, **kw)
    return _finish_plane(surface, ax, variable, im, colorbar, centre)


def plot_surface3d(
    surface: Surface,
    variable: str | None = None,
    *,
    ax: Axes | None = None,
    log: bool = False,
    centre: bool = True,
    colorbar: bool = False,
    **kwargs: Any,
) -> Axes:
    """Draw a plane as a 3D surface (α, β, value).

    Each grid cell whose four corners are finite becomes one quadrilateral,
    coloured by the mean of its corners; cells touching a missing point are
    left out.

    Parameters
    ----------
    surface : Surface
        A plane (two directions).
    variable : str, optional
        Default the first ``<split>_loss``, e.g. ``"train_loss"``.
    ax : Axes3D, optional
        A 3D axes (``fig.add_subplot(projection="3d")``). Default: the current
        axes if it is 3D, a new 3D axes on the current figure if that figure
        is empty, else a new figure.
    log : bool, default False
        Log colour scale (values must be > 0); the z axis stays linear.
    centre : bool, default True
        Mark the centre (0, 0, value) with a red point when it is a grid point.
    colorbar : bool, default False
        Add a colorbar labelled with the variable.
    **kwargs
        Passed to :class:`mpl_toolkits.mplot3d.art3d.Poly3DCollection`, the
        collection that :meth:`~mpl_toolkits.mplot3d.axes3d.Axes3D.plot_surface`
        also builds (defaults: ``cmap="viridis"``, ``linewidth=0.2``,
        ``edgecolor`` a light translucent grey).

    Returns
    -------
    Axes3D
        ``ax``.
    """
    from mpl_toolkits.mplot3d import Axes3D
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    C.check_surface(surface, "plot_surface3d")
    C.require_plane(surface, "plot_surface3d")
    variable = C.first_loss(surface, variable, "plot_surface3d")
    if ax is None:
        fig = plt.gcf()
        if fig.axes and isinstance(fig.gca(), Axes3D):
            ax = fig.gca()
        else:
            fig = fig if not fig.axes else plt.figure()
            ax = fig.add_subplot(projection="3d")
    elif not isinstance(ax, Axes3D):
        raise InputTypeError(
            "plot_surface3d needs a 3D axes, got a 2-D one: pass "
            "ax=fig.add_subplot(projection='3d'), or use plot_contourf/plot_heatmap for 2-D"
        )
    a, b, Zm = C.grid(surface, variable)
    Z = Zm.filled(np.nan)  # (nb, na)
    A, B = np.meshgrid(a, b)  # (nb, na) each
    P = np.stack([A, B, Z], axis=-1)  # (nb, na, 3)
    quads = np.stack([P[:-1, :-1], P[:-1, 1:], P[1:, 1:], P[1:, :-1]], axis=2)  # (nb-1, na-1, 4, 3)
    ok = np.isfinite(quads[..., 2]).all(axis=-1)  # (nb-1, na-1)
    polys = quads[ok]  # (K, 4, 3)
    colour = polys[..., 2].mean(axis=-1)  # (K,)
    kw = dict(kwargs)
    lo, hi = C.value_range([Z], log=log, what="plot_surface3d")
    if log and "norm" not in kw:
        kw["norm"] = LogNorm(lo, hi)
    kw.setdefault("cmap", "viridis")
    kw.setdefault("linewidth", 0.2)
    kw.setdefault("edgecolor", (0.3, 0.3, 0.3, 0.25))
    coll = Poly3DCollection(polys, **kw)
    coll.set_array(colour)
    ax.add_collection3d(coll)
    ax.set_xlim(a[0], a[-1])
    ax.set_ylim(b[0], b[-1])
    ax.set_zlim(lo, hi if hi > lo else lo + 1.0)
    c0 = C.centre_value(surface, variable) if centre else None
    if c0 is not None:
        ax.computed_zorder = False  # draw by zorder, so the marker is never hidden by the surface
        ax.scatter(
            [0.0],
            [0.0],
            [c0],
            color="red",
            s=40,
            edgecolor="white",
            zorder=10,
            depthshade=False,
            label="centre",
        )
    ax.set_xlabel(ALPHA)
    ax.set_ylabel(BETA)
    ax.set_zlabel(C.label(surface, variable))
    if not ax.get_title():
        ax.set_title(C.label(surface, variable))
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(5))
    if colorbar:
        cb = ax.figure.colorbar(coll, ax=ax, shrink=0.6, pad=0.1, label=C.label(surface, variable))
        _log_ticks(cb)
    return ax


_PLANE_FUNCS = {
    "contour": plot_contour,
    "contourf": plot_contourf,
    "heatmap": plot_heatmap,
    "surface": plot_surface3d,
}


# -- figures -------------------------------------------------------------------
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
        What to write (an Axes writes its whole figure).
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
    """
    if isinstance(fig, Axes):
        fig = fig.figure
    if not isinstance(fig, Figure):
        raise InputTypeError(f"save takes a matplotlib Figure or Axes, got {type(fig).__name__}")
    suffix = C.check_suffix(path, C.SUFFIXES, "save")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(path, format=suffix[1:], dpi=dpi, **kwargs)
    return path
