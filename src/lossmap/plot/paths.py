"""Matplotlib views of models and paths: a training path, models on a plane, a barrier.

Same contract as every view in :mod:`lossmap.plot` (``ax=None`` → a new figure, kwargs
with ``setdefault`` defaults to one named call, the Axes returned). Path and
models come from ``Surface.meta`` as ``lossmap scan --pca`` / ``--plane``
store them, or are passed directly; the barrier is
:func:`lossmap.barrier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ..analysis.barriers import barrier  # lines and paths (dim t) alike
from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C
from .extra import label_plane
from .style import ALPHA, _new_axes

__all__ = ["annotate_plotly", "plot_annotations", "plot_barrier", "plot_models", "plot_path"]


def _path_of(obj: Any) -> np.ndarray:
    if isinstance(obj, Surface):
        if "path" not in obj.meta:
            raise InputError(
                "plot_path: this surface has no meta['path']; scan with "
                "meta={'path': lm.project(...).tolist()} or `lossmap scan --pca`"
            )
        obj = obj.meta["path"]
    path = np.asarray(obj, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 2 or not len(path) or not np.isfinite(path).all():
        raise InputError(
            f"plot_path: the path has shape {path.shape}; it must be (T, 2) finite (α, β) pairs"
        )
    return path


def plot_path(surface_or_coords: Any, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """The projected training path on a plane, start (circle) and end (square) marked.

    Parameters
    ----------
    surface_or_coords : Surface or array_like, shape (T, 2)
        A plane with ``meta["path"]`` (as ``lossmap scan --pca`` stores it),
        or the (α, β) of each step.
    ax : Axes, optional
        Default a new figure; draw :func:`~lossmap.plot.plot_contour` on it first.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` of the path (defaults
        ``color="C3"``, ``marker="."``, ``label="training path"``).

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> plot_path([[1.0, 2.0], [0.0, 0.0]], ax=ax).lines[0].get_xydata().tolist()
    [[1.0, 2.0], [0.0, 0.0]]
    """
    path = _path_of(surface_or_coords)
    ax = _new_axes(ax)
    kwargs.setdefault("color", "C3")
    kwargs.setdefault("marker", ".")
    kwargs.setdefault("linewidth", 1.5)
    kwargs.setdefault("label", "training path")
    line = ax.plot(path[:, 0], path[:, 1], **kwargs)[0]
    for (x, y), marker, name in ((path[0], "o", "start"), (path[-1], "s", "end")):
        ax.plot(x, y, marker, color=line.get_color(), markeredgecolor="white", markersize=8,
                linestyle="none", label=name, zorder=line.get_zorder() + 1)
    label_plane(ax)
    return ax


def plot_models(surface_or_models: Any, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Labelled markers at models' exact (α, β) on a plane.

    Parameters
    ----------
    surface_or_models : Surface or mapping of str to (float, float)
        A plane with ``meta["models"]`` (as ``lossmap scan --plane`` stores
        it), or name → (α, β).
    ax : Axes, optional
        Default a new figure.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` of the markers (defaults
        ``marker="o"``, ``color="white"``, ``markeredgecolor="black"``).

    Returns
    -------
    Axes
    """
    models = surface_or_models
    if isinstance(models, Surface):
        if "models" not in models.meta:
            raise InputError("plot_models: this surface has no meta['models'] (name → (α, β))")
        models = models.meta["models"]
    if not isinstance(models, Mapping) or not models:
        raise InputTypeError("plot_models: models must be a non-empty mapping name → (α, β)")
    xy = np.asarray([np.asarray(v, dtype=np.float64).reshape(-1) for v in models.values()])
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise InputError("plot_models: every model needs two finite coordinates (α, β)")
    ax = _new_axes(ax)
    for k, v in (("marker", "o"), ("color", "white"), ("markeredgecolor", "black"),
                 ("markersize", 9), ("linestyle", "none"), ("zorder", 6)):
        kwargs.setdefault(k, v)
    ax.plot(xy[:, 0], xy[:, 1], **kwargs)
    for name, (x, y) in zip(models, xy, strict=True):
        ax.annotate(str(name), (x, y), xytext=(6, 6), textcoords="offset points",
                    fontweight="bold", zorder=7)
    label_plane(ax)
    return ax


def plot_annotations(surface: Surface, *, ax: Axes | None = None) -> Axes:
    """Draw whatever a plane's meta holds: the training path, the models (no-op otherwise).

    Parameters
    ----------
    surface : Surface
    ax : Axes, optional
        Default a new figure.

    Returns
    -------
    Axes
    """
    ax = _new_axes(ax)
    if isinstance(surface, Surface) and len(surface.dims) == 2:
        if "path" in surface.meta:
            plot_path(surface, ax=ax)
        if "models" in surface.meta:
            plot_models(surface, ax=ax)
        if "path" in surface.meta or "models" in surface.meta:
            ax.legend(fontsize="small", framealpha=0.85)
    return ax


def annotate_plotly(fig: Any, surface: Surface, panels: int) -> Any:
    """Add a plane's stored path and models to the subplots (1, 1) … (1, ``panels``) of ``fig``.

    Parameters
    ----------
    fig : plotly.graph_objects.Figure
        E.g. from :func:`lossmap.plot.contour_figure`.
    surface : Surface
    panels : int
        Number of subplots in its first row.

    Returns
    -------
    plotly.graph_objects.Figure
        ``fig``.
    """
    import plotly.graph_objects as go

    if len(surface.dims) != 2:
        return fig
    path = _path_of(surface) if "path" in surface.meta else None
    models = surface.meta.get("models") or {}
    for col in range(1, panels + 1):
        if path is not None:
            fig.add_trace(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers",
                                     name="training path", line={"color": "crimson"},
                                     showlegend=col == 1), row=1, col=col)
        if models:
            xy = np.asarray([np.asarray(v, dtype=np.float64).reshape(-1) for v in models.values()])
            fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers+text",
                                     text=[str(k) for k in models], textposition="top right",
                                     marker={"color": "white", "size": 10,
                                             "line": {"color": "black", "width": 1}},
                                     name="models", showlegend=col == 1), row=1, col=col)
    return fig


def plot_barrier(
    surface: Surface, variable: str | None = None, *, ax: Axes | None = None, **kwargs: Any
) -> Axes:
    """An interpolation line with the chord between the end losses and the barrier marked.

    Parameters
    ----------
    surface : Surface
        A line holding α = 0 and 1 (see :func:`lossmap.barrier`).
    variable : str, optional
        Default the first ``<split>_loss``.
    ax : Axes, optional
        Default a new figure.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` of the loss curve
        (defaults ``color="C0"``, ``marker="."``).

    Returns
    -------
    Axes
        With the chord dashed, the barrier a red segment from the chord up to
        the curve, the models black dots labelled a and b.
    """
    C.check_surface(surface, "plot_barrier")
    C.require_line(surface, "plot_barrier")
    variable = C.first_loss(surface, variable, "plot_barrier")
    r = barrier(surface, variable)
    ax = _new_axes(ax)
    kwargs.setdefault("color", "C0")
    kwargs.setdefault("marker", ".")
    kwargs.setdefault("label", C.label(surface, variable))
    L = np.asarray(surface.values[variable], dtype=np.float64)
    ax.plot(surface.coords[surface.dims[0]], np.where(np.isfinite(L), L, np.nan), **kwargs)
    ends = [r["loss_a"], r["loss_b"]]
    ax.plot([0.0, 1.0], ends, "--", color="0.4", label="linear interpolation of the ends")
    ax.plot([0.0, 1.0], ends, "o", color="black", zorder=5)
    for x, name in ((0.0, "a"), (1.0, "b")):
        ax.annotate(name, (x, ends[int(x)]), xytext=(0, 8), textcoords="offset points",
                    ha="center", fontweight="bold")
    if r.at is not None and r.value > 0:
        ax.vlines(r.at, r.chord, r.chord + r.value, color="C3", linewidth=2.5,
                  label=f"barrier {r.value:.3g}", zorder=4)
    ax.set_xlabel(ALPHA if surface.dims[0] == "alpha" else surface.dims[0])
    ax.set_ylabel(C.split_metric(surface, variable)[1] or variable)
    if not ax.get_title():
        h = r.value if r.value is not None else float("nan")
        ax.set_title(f"{C.label(surface, variable)}: barrier {h:.3g}"
                     + ("" if r["monotone"] is not False else ", not monotone"))
    ax.grid(True, alpha=0.3)
    ax.legend(framealpha=0.85)
    return ax
