"""Pictures of a scanned function's topology (:func:`lossmap.topology`).

Same contract as every view in :mod:`lossmap.plot`: ``plot_x(t, *, ax=None, **kwargs) -> Axes``
draws on ``ax`` (default a new figure) and returns it. A pair or basin that is
not resolved (its depth within ``z`` paired standard errors) is drawn grey
and hollow; one without standard errors in the default colour.

* :func:`plot_persistence` — the persistence diagram (birth, death).
* :func:`plot_barcode` — one bar per pair, from birth to death.
* :func:`plot_merge_tree` — the merge tree, minima at the bottom.
* :func:`plot_profile` — the topological landscape profile: each basin's
  width at each level is the number of its cells below that level.

Views of a 3-D grid itself (2-D slices as small multiples, an interactive
isosurface view) are in :mod:`lossmap.plot.topology3d`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ..errors import InputTypeError
from ..topology.result import Topology
from .style import _new_axes

__all__ = ["plot_barcode", "plot_merge_tree", "plot_persistence", "plot_profile"]

GREY = "0.6"


def _check(t: Any, what: str) -> Topology:
    if not isinstance(t, Topology):
        raise InputTypeError(f"{what} takes what lm.topology returns, got {type(t).__name__}")
    return t


def _roof(t: Topology) -> float:
    """Where +inf is drawn: a tenth of the finite span above the highest finite value."""
    v = t.tree.values if t.tree is not None else np.array([p.birth for p in t.pairs])
    fin = v[np.isfinite(v)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    return hi + 0.1 * ((hi - lo) or 1.0)


def _colours(t: Topology) -> list[str]:
    return [GREY if p.resolved is False else "C0" for p in t.pairs]


def plot_persistence(t: Topology, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """The persistence diagram: each pair at (birth, death); +inf on a dashed line at the top.

    Error bars are ``z`` paired standard errors on the death (where measured):
    a pair whose bar reaches the diagonal is not resolved (grey, hollow).

    Parameters
    ----------
    t : Topology
    ax : Axes, optional
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.scatter`.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)
    >>> len(plot_persistence(t).collections[0].get_offsets())
    2
    """
    t = _check(t, "plot_persistence")
    ax = _new_axes(ax)
    roof = _roof(t)
    b = np.array([p.birth for p in t.pairs])
    d = np.array([p.death if math.isfinite(p.death) else roof for p in t.pairs])
    se = np.array([(p.se or 0.0) * t.z for p in t.pairs])
    c = _colours(t)
    kwargs.setdefault("s", 24)
    kwargs.setdefault("zorder", 3)
    ax.scatter(b, d, c=c, **kwargs)
    if se.any():
        ax.errorbar(b, d, yerr=se, fmt="none", ecolor=GREY, lw=0.8, zorder=2)
    lo = float(min(b.min(), d.min())) if b.size else 0.0
    ax.plot([lo, roof], [lo, roof], color="k", lw=0.8)
    ax.axhline(roof, color="k", lw=0.6, ls="--")
    ax.annotate("+inf", (lo, roof), textcoords="offset points", xytext=(2, 2), fontsize=8)
    ax.set_xlabel(f"birth ({t.variable})")
    ax.set_ylabel("death")
    ax.set_title(f"persistence: {len(t.pairs)} pairs, {t.n_basins} basins")
    return ax


def plot_barcode(t: Topology, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """One horizontal bar per pair from birth to death, longest at the top.

    Parameters
    ----------
    t : Topology
    ax : Axes, optional
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.hlines`.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)
    >>> len(plot_barcode(t).collections)
    2
    """
    t = _check(t, "plot_barcode")
    ax = _new_axes(ax)
    roof = _roof(t)
    order = sorted(range(len(t.pairs)), key=lambda i: t.pairs[i].depth)
    c = _colours(t)
    kwargs.setdefault("lw", 3)
    for y, i in enumerate(order):
        p = t.pairs[i]
        ax.hlines(y, p.birth, p.death if math.isfinite(p.death) else roof, colors=c[i], **kwargs)
    ax.axvline(roof, color="k", lw=0.6, ls="--")
    ax.set_yticks([])
    ax.set_xlabel(t.variable)
    ax.set_title("barcode (grey: not resolved)")
    return ax


def _leaf_x(t: Topology) -> dict[int, float]:
    """x of every tree node: leaves 0, 1, … depth-first, a saddle at its children's mean."""
    tree = t.tree
    children: dict[int, list[int]] = {}
    for i, p in enumerate(tree.parent.tolist()):
        children.setdefault(p, []).append(i)
    x: dict[int, float] = {}
    nxt = 0

    def place(i: int) -> float:
        nonlocal nxt
        kids = sorted(children.get(i, []), key=lambda j: tree.values[tree.nodes[j]])
        if not kids:
            x[i], nxt = float(nxt), nxt + 1
        else:
            x[i] = float(np.mean([place(j) for j in kids]))
        return x[i]

    for root in children.get(-1, []):
        place(root)
    return x


def _minimum_nodes(t: Topology) -> list[int]:
    """The position in ``tree.nodes`` of each minimum (in ``tree.minima``'s order)."""
    pos = {int(v): i for i, v in enumerate(t.tree.nodes.tolist())}
    return [pos[int(m)] for m in t.tree.minima]


def plot_merge_tree(t: Topology, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """The merge tree: a minimum per leaf at its value, an elbow up to the saddle it merges at.

    Parameters
    ----------
    t : Topology
    ax : Axes, optional
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for the edges.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)
    >>> plot_merge_tree(t).get_title()
    'merge tree: 2 minima'
    """
    t = _check(t, "plot_merge_tree")
    ax = _new_axes(ax)
    tree, roof = t.tree, _roof(t)
    x = _leaf_x(t)
    y = [v if math.isfinite(v) else roof for v in tree.values[tree.nodes].tolist()]
    kwargs.setdefault("color", "k")
    kwargs.setdefault("lw", 1)
    top = roof if len(tree.minima) else 0.0
    for i, p in enumerate(tree.parent.tolist()):
        up = y[p] if p >= 0 else max(top, y[i])
        ax.plot([x[i], x[i]], [y[i], up], **kwargs)
        if p >= 0:
            ax.plot([x[i], x[p]], [up, up], **kwargs)
    m = len(tree.minima)
    at = _minimum_nodes(t)
    ax.scatter([x[i] for i in at], [y[i] for i in at], c=_colours(t), zorder=3, s=20)
    ax.set_xticks([])
    ax.set_ylabel(t.variable)
    ax.set_title(f"merge tree: {m} minima")
    return ax


def plot_profile(t: Topology, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """The topological landscape profile: stacked basins, each as wide as its cells below a level.

    Every cell belongs to the arc of the minimum whose component it joined
    (the elder one at a saddle); a basin's width at level ``y`` is the number
    of its cells at or below ``y``, so the total width is the sublevel set's
    volume. Basins are laid out in the merge tree's leaf order.

    Parameters
    ----------
    t : Topology
    ax : Axes, optional
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.fill_betweenx`.

    Returns
    -------
    Axes

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)
    >>> plot_profile(t).get_xlabel()
    'cells below the level'
    """
    t = _check(t, "plot_profile")
    ax = _new_axes(ax)
    tree = t.tree
    v = tree.values
    fin = np.isfinite(v)
    levels = np.unique(v[fin])
    if levels.size < 2:
        levels = np.array([levels[0] if levels.size else 0.0] * 2) + np.array([0.0, 1.0])
    x, at = _leaf_x(t), _minimum_nodes(t)
    order = sorted(range(len(tree.minima)), key=lambda i: x[at[i]])
    left = np.zeros_like(levels)
    c = _colours(t)
    kwargs.setdefault("alpha", 0.8)
    for i in order:
        own = np.sort(v[(tree.label == i) & fin])
        width = np.searchsorted(own, levels, side="right").astype(float)
        ax.fill_betweenx(levels, left, left + width, color=c[i], lw=0, **kwargs)
        ax.plot(left + width, levels, color="k", lw=0.5)
        left = left + width
    ax.set_xlabel("cells below the level")
    ax.set_ylabel(t.variable)
    ax.set_title("topological landscape profile")
    return ax
