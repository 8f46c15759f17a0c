"""Views between minima: paths side by side, a curve on its plane, a barrier matrix and its tree.

Same contract as every view in :mod:`lossmap.plot`: the ``plot_*`` functions
take ``ax=None`` (→ a new figure) and return the Axes; the ``figure_*`` ones
and :func:`plot_barrier_matrix` take ``fig=None`` and return the Figure.
They only read results: the barriers are :func:`lossmap.analysis.barriers.barrier`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..analysis.barriers import barrier
from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C
from .style import ALPHA, _new_axes

__all__ = ["curve_on_plane", "figure_paths", "plot_barrier_matrix"]


def check_comparisons(comparisons: Any, what: str) -> list[tuple[str, Surface]]:
    """``(label, Surface)`` pairs from a dict or a list of pairs, each a line or a path."""
    items = list(comparisons.items()) if isinstance(comparisons, Mapping) else comparisons
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise InputTypeError(f"{what}: pass a dict label -> Surface or a list of (label, "
                             "Surface) pairs, e.g. {'linear': s1, 'trained curve': s2}")
    out = []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Surface)):
            raise InputTypeError(f"{what}: entry {i} is not a (label, Surface) pair")
        C.require_line(item[1], what)
        out.append((str(item[0]), item[1]))
    return out


def figure_paths(comparisons: Any, variable: str | None = None, *, fig: Figure | None = None,
                 **kwargs: Any) -> Figure:
    """Paths between two models side by side: loss against t, each with its barrier.

    One panel per path (a shared y-axis): the loss, the straight interpolation
    of the end losses (dashed) and the barrier (a red segment up from it).

    Parameters
    ----------
    comparisons : dict of str to Surface, or list of (str, Surface)
        Path scans (``lm.scan(path=...)``, dim t) or interpolation lines
        (α = 0 and 1 the models), labelled, e.g. ``{"linear": s1,
        "linear, aligned": s2, "aligned + BN reset": s3, "trained curve": s4}``.
    variable : str, optional
        Default the first ``<split>_loss`` of each.
    fig : Figure, optional
        Default a new figure, 3.6 inches wide per panel.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` of each loss curve.

    Returns
    -------
    Figure

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((0, 1, 11),), splits=("train",), metrics=("loss",),
    ...                 path={"kind": "polychain", "control_points": 2})
    >>> t = spec.coords()[0]
    >>> s1 = Surface(spec, {"train_loss": 1 + t * (1 - t)}, np.ones(11, bool))
    >>> s2 = Surface(spec, {"train_loss": 1 + 0 * t}, np.ones(11, bool))
    >>> fig = figure_paths({"linear": s1, "trained curve": s2})
    >>> [ax.get_title() for ax in fig.axes]
    ['linear\\nbarrier 0.25', 'trained curve\\nbarrier 0']
    """
    items = check_comparisons(comparisons, "figure_paths")
    if fig is None:
        fig = plt.figure(figsize=(3.6 * len(items) + 0.6, 3.6), layout="constrained")
    axes = fig.subplots(1, len(items), sharey=True, squeeze=False)[0]
    for ax, (label, surf) in zip(axes, items, strict=True):
        var = C.first_loss(surf, variable, "figure_paths")
        r = barrier(surf, var)
        x = surf.coords[surf.dims[0]]
        L = np.asarray(surf.values[var], dtype=np.float64)
        kw = {"color": "C0", "marker": ".", **kwargs}
        ax.plot(x, np.where(np.isfinite(L), L, np.nan), **kw)
        ends = [r["loss_a"], r["loss_b"]]
        ax.plot([0.0, 1.0], ends, "--", color="0.4")
        ax.plot([0.0, 1.0], ends, "o", color="black", zorder=5)
        h = float("nan") if r.value is None else r.value
        if r.at is not None and h > 0:
            ax.vlines(r.at, r.chord, r.chord + h, color="C3", linewidth=2.5,
                      zorder=4)
        ax.set_title(f"{label}\nbarrier {h:.3g}")
        ax.set_xlabel("t" if surf.dims[0] == "t" else ALPHA)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(C.split_metric(items[0][1], C.first_loss(items[0][1], variable,
                                                                 "figure_paths"))[1])
    return fig


def curve_on_plane(surface: Surface, curve: Any = None, *, variable: str | None = None,
                   ax: Axes | None = None, **kwargs: Any) -> Axes:
    """A plane through a curve (:func:`lossmap.scan.path.curve_plane`) with the curve drawn on it.

    Parameters
    ----------
    surface : Surface
        The plane, scanned with the centre, directions and ``meta`` that
        ``curve_plane`` returns.
    curve : Curve, optional
        Draw this curve, projected onto the plane's stored directions around
        its first control point (the plane must be centred there); default the
        curve ``curve_plane`` stored in ``surface.meta["curve"]``.
    variable : str, optional
        Default the first ``<split>_loss``.
    ax : Axes, optional
        Default a new figure.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` of the curve (defaults
        ``color="white"``, ``linewidth=2``).

    Returns
    -------
    Axes
        With the filled contours, the curve, and the models (endpoints a and b,
        the bend) marked.

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-0.5, 1.5, 9), (-0.5, 1.5, 9)), splits=("train",),
    ...                 metrics=("loss",))
    >>> a, b = np.meshgrid(*spec.coords(), indexing="ij")
    >>> meta = {"curve": [[0, 0], [0.5, 0.5], [1, 0]],
    ...         "models": {"a": [0, 0], "b": [1, 0], "bend": [0.5, 1]}}
    >>> surf = Surface(spec, {"train_loss": a**2 + b**2}, np.ones((9, 9), bool), meta=meta)
    >>> len(curve_on_plane(surf).lines) >= 2
    True
    """
    from .planes import plot_contourf

    C.check_surface(surface, "curve_on_plane")
    C.require_plane(surface, "curve_on_plane")
    if curve is not None:
        xy = _projected(surface, curve)
    elif "curve" in surface.meta:
        xy = np.asarray(surface.meta["curve"], dtype=np.float64)
    else:
        raise InputError("curve_on_plane: this surface has no meta['curve']; pass the curve, "
                         "or scan the plane with the meta that lm.curve_plane returns")
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InputError(f"curve_on_plane: the curve's coordinates have shape {xy.shape}; "
                         "they must be (T, 2)")
    ax = _new_axes(ax)
    plot_contourf(surface, variable, ax=ax, centre=False)
    kwargs.setdefault("color", "white")
    kwargs.setdefault("linewidth", 2.0)
    kwargs.setdefault("label", "curve")
    ax.plot(xy[:, 0], xy[:, 1], **kwargs)
    models = surface.meta.get("models")
    if isinstance(models, Mapping) and models:
        from .paths import plot_models

        plot_models(models, ax=ax)
    return ax


def _projected(surface: Surface, curve: Any) -> np.ndarray:
    """The curve's (α, β) on the plane of the surface's stored directions."""
    from ..scan.api import load_directions
    from ..scan.path import curve_coordinates

    if not surface.path:
        raise InputError("curve_on_plane: to project a curve the plane must come from a store "
                         "(its directions are read from it); or scan it with lm.curve_plane's meta")
    t = np.linspace(0.0, 1.0, 101)
    return curve_coordinates(curve, load_directions(surface.path), t)


def plot_barrier_matrix(matrix: Any, *, fig: Figure | None = None, cmap: str = "viridis",
                        **kwargs: Any) -> Figure:
    """A :class:`~lossmap.analysis.barriers.BarrierMatrix`: heatmap and minimum spanning tree.

    Parameters
    ----------
    matrix : BarrierMatrix
        From :func:`lossmap.barrier_matrix`.
    fig : Figure, optional
        Default a new figure (10 × 4.4 inches).
    cmap : str, default "viridis"
        Colour map of the heatmap.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.imshow` of the heatmap.

    Returns
    -------
    Figure
        Left the barriers (annotated), right the models on a circle, every pair
        a thin grey line and the tree's edges bold, labelled with their barrier.

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from lossmap.analysis.minima import BarrierMatrix
    >>> B = np.array([[0, 1, 4], [1, 0, 0.5], [4, 0.5, 0]])
    >>> bm = BarrierMatrix(["a", "b", "c"], B, np.full((3, 3), 0.5), np.ones(3), "train_loss")
    >>> len(plot_barrier_matrix(bm).axes)
    3
    """
    if not all(hasattr(matrix, k) for k in ("barriers", "names", "tree", "variable")):
        raise InputTypeError("plot_barrier_matrix takes a BarrierMatrix (lm.barrier_matrix), "
                             f"got {type(matrix).__name__}")
    B, names = np.asarray(matrix.barriers, dtype=np.float64), matrix.names
    n = len(names)
    if fig is None:
        fig = plt.figure(figsize=(10, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    kwargs.setdefault("cmap", cmap)
    im = left.imshow(np.ma.masked_invalid(B), **kwargs)
    fig.colorbar(im, ax=left, label=f"barrier ({matrix.variable})")
    left.set_xticks(range(n), names, rotation=45 if n > 6 else 0)
    left.set_yticks(range(n), names)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                if i != j:
                    left.text(j, i, f"{B[i, j]:.3g}", ha="center", va="center", fontsize=8,
                              color="white" if not B[i, j] > np.nanmean(B) else "black")
    how = matrix.path + ("" if matrix.align is None else f", aligned by {matrix.align}")
    left.set_title(f"pairwise barriers ({how})")
    angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    xy = np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
    for i in range(n):
        for j in range(i + 1, n):
            right.plot(*xy[[i, j]].T, color="0.85", linewidth=0.8, zorder=1)
    for i, j, w in matrix.tree:
        right.plot(*xy[[i, j]].T, color="C3", linewidth=2.5, zorder=2)
        mid = xy[[i, j]].mean(axis=0)
        right.annotate(f"{w:.3g}", mid, ha="center", va="center", fontsize=8, zorder=4,
                       bbox={"boxstyle": "round", "fc": "white", "ec": "none", "alpha": 0.8})
    right.scatter(xy[:, 0], xy[:, 1], s=260, c="white", edgecolors="black", zorder=3)
    for (x, y), name in zip(xy, names, strict=True):
        right.annotate(name, (x, y), ha="center", va="center", fontweight="bold", zorder=5)
    right.set_xlim(-1.35, 1.35)
    right.set_ylim(-1.35, 1.35)
    right.set_aspect("equal")
    right.axis("off")
    right.set_title(f"minimum spanning tree (highest barrier {matrix.highest_on_tree():.3g})")
    return fig
