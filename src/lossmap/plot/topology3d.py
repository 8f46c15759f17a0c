"""Views of a 3-D grid: 2-D slices as small multiples, and an interactive isosurface view.

* :func:`plot_slices` — 2-D slices through a 3-D grid (matplotlib), the
  minima of a :func:`lossmap.topology` marked on the slice they lie in.
* :func:`isosurface_figure` — isosurfaces with plotly, the minima as markers;
  written offline with :func:`lossmap.plot.to_html` (plotly.js embedded).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..topology.result import Topology

__all__ = ["isosurface_figure", "plot_slices"]


def plot_slices(
    values: Any,
    coords: dict[str, Any] | None = None,
    *,
    axis: int = 2,
    at: Any = None,
    t: Topology | None = None,
    levels: int = 15,
    fig: Any = None,
    **kwargs: Any,
) -> Any:
    """2-D slices through a 3-D grid as small multiples (a filled contour map each).

    Parameters
    ----------
    values : array_like of shape (n0, n1, n2), or a Surface / Dataset with a variable
        The grid; for a Surface or Dataset pass ``kwargs`` ``variable=`` (default
        ``"train_loss"``).
    coords : dict of str to array_like, optional
        The coordinates per dimension (a Surface's or Dataset's own by default).
    axis : int, default 2
        The dimension sliced across (2: one panel per ``gamma``).
    at : sequence of int, optional
        The indices along ``axis`` to draw (default up to six, evenly spread).
    t : Topology, optional
        Its minima are marked on the slice they lie in.
    levels : int, default 15
        Contour levels, shared by every panel.
    fig : Figure, optional
        Default a new figure.
    **kwargs
        ``variable=`` for a Surface or Dataset; the rest passed to
        :meth:`~matplotlib.axes.Axes.contourf`.

    Returns
    -------
    Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_slices(np.arange(27.0).reshape(3, 3, 3))  # one panel per gamma, a colour bar
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['gamma = 0', 'gamma = 1', 'gamma = 2']
    """
    import matplotlib.pyplot as plt

    from ..topology.inputs import read_field

    field = read_field(values, kwargs.pop("variable", "train_loss"), coords=coords)
    v = np.where(field.missing, np.nan, field.values)
    if v.ndim != 3:
        raise InputError(f"plot_slices draws a 3-D grid; this one has {v.ndim} dimensions")
    if axis not in (0, 1, 2):
        raise InputError(f"axis={axis!r} must be 0, 1 or 2")
    dims = field.dims
    rest = [d for i, d in enumerate(dims) if i != axis]
    n = v.shape[axis]
    idx = list(at) if at is not None else sorted(set(np.linspace(0, n - 1, min(n, 6)).round()))
    idx = [int(i) for i in idx]
    fin = v[np.isfinite(v)]
    if not fin.size:
        raise InputError("plot_slices: no finite value to draw")
    bounds = np.linspace(fin.min(), fin.max(), levels)
    if fig is None:
        fig = plt.figure(figsize=(3 * min(len(idx), 3), 2.8 * math.ceil(len(idx) / 3)))
    cols = min(len(idx), 3)
    rows = math.ceil(len(idx) / cols)
    kwargs.setdefault("cmap", "viridis")
    last = None
    for k, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, k + 1)
        plane = np.take(v, i, axis=axis)
        X, Y = np.meshgrid(field.coords[rest[0]], field.coords[rest[1]], indexing="ij")
        last = ax.contourf(X, Y, np.ma.masked_invalid(plane), levels=bounds, **kwargs)
        ax.set_title(f"{dims[axis]} = {field.coords[dims[axis]][i]:.3g}", fontsize=9)
        ax.set_xlabel(rest[0])
        ax.set_ylabel(rest[1])
        if t is not None:
            for m in t.minima:
                if m.where is not None and m.where[axis] == i:
                    ax.plot(m.coords[rest[0]], m.coords[rest[1]], "r*", ms=9)
    if last is not None:
        fig.colorbar(last, ax=fig.axes, shrink=0.8)
    return fig


def isosurface_figure(
    values: Any,
    coords: dict[str, Any] | None = None,
    *,
    t: Topology | None = None,
    surfaces: int = 6,
    fig: Any = None,
    **kwargs: Any,
) -> Any:
    """An interactive plotly view of a 3-D grid: isosurfaces, with the minima as markers.

    Non-finite values are drawn at the highest finite value (a diverged region
    is never inside a low isosurface). Write it with :func:`lossmap.plot.to_html`
    (plotly.js embedded, offline).

    Parameters
    ----------
    values : array_like of shape (n0, n1, n2), or a Surface / Dataset
        As :func:`plot_slices` (``variable=`` in ``kwargs``).
    coords : dict of str to array_like, optional
    t : Topology, optional
        Its minima are drawn as markers, resolved ones red, the rest grey.
    surfaces : int, default 6
        The number of isosurfaces, between the lowest value and the median.
    fig : plotly Figure, optional
    **kwargs
        Passed to :class:`plotly.graph_objects.Isosurface`.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import numpy as np
    >>> isosurface_figure(np.arange(27.0).reshape(3, 3, 3)).data[0].type
    'isosurface'
    """
    import plotly.graph_objects as go

    from ..topology.inputs import read_field

    field = read_field(values, kwargs.pop("variable", "train_loss"), coords=coords)
    v = np.where(field.missing, np.nan, field.values)
    if v.ndim != 3:
        raise InputError(f"isosurface_figure draws a 3-D grid; this one has {v.ndim} dimensions")
    fin = v[np.isfinite(v)]
    if not fin.size:
        raise InputError("isosurface_figure: no finite value to draw")
    filled = np.where(np.isfinite(v), v, fin.max())
    X, Y, Z = np.meshgrid(*(field.coords[d] for d in field.dims), indexing="ij")
    fig = fig if fig is not None else go.Figure()
    kwargs.setdefault("colorscale", "Viridis")
    kwargs.setdefault("opacity", 0.35)
    kwargs.setdefault("caps", {"x_show": False, "y_show": False, "z_show": False})
    fig.add_trace(
        go.Isosurface(
            x=X.ravel(),
            y=Y.ravel(),
            z=Z.ravel(),
            value=filled.ravel(),
            isomin=float(fin.min()),
            isomax=float(np.median(fin)),
            surface_count=int(surfaces),
            **kwargs,
        )
    )
    if t is not None and t.minima:
        fig.add_trace(
            go.Scatter3d(
                x=[m.coords[field.dims[0]] for m in t.minima],
                y=[m.coords[field.dims[1]] for m in t.minima],
                z=[m.coords[field.dims[2]] for m in t.minima],
                mode="markers",
                marker={
                    "size": 4,
                    "color": ["grey" if p.resolved is False else "red" for p in t.pairs],
                },
                text=[f"{p.birth:.4g} (depth {p.depth:.3g})" for p in t.pairs],
                name="minima",
            )
        )
    fig.update_layout(
        scene={
            "xaxis_title": field.dims[0],
            "yaxis_title": field.dims[1],
            "zaxis_title": field.dims[2],
        },
        template="plotly_white",
    )
    return fig
