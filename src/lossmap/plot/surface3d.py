"""3D view of a plane: one quadrilateral per grid cell whose corners are all finite.

Same contract as every view in :mod:`lossmap.plot`, on a 3D axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from ..errors import InputTypeError
from ..surface import Surface
from . import common as C
from .style import ALPHA, BETA, _colour_kwargs, _log_ticks, _new_axes

__all__ = ["plot_surface3d"]


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
        A 3D axes (``fig.add_subplot(projection="3d")``). Default: the 3D
        axes of a new figure.
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

    variable = C.check_plane(surface, variable, "plot_surface3d")
    if ax is None:
        ax = _new_axes(None, three_d=True)
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
    lo, hi = C.value_range([Z], log=log, what="plot_surface3d")
    kw = _colour_kwargs(kwargs, Z, log, "plot_surface3d")
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
