"""2-D views of a plane (α on x, β on y): contour lines, filled contours, heatmap.

Same contract as every view in :mod:`lossmap.plot`: ``plot_x(surface, ..., *, ax=None,
**kwargs) -> Axes``. The 3D view is :mod:`lossmap.plot.surface3d`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ..surface import Surface
from . import common as C
from .style import ALPHA, BETA, _colour_kwargs, _log_ticks, _new_axes

__all__ = ["plot_contour", "plot_contourf", "plot_heatmap"]

_CENTRE = {
    "marker": "*",
    "markersize": 14,
    "color": "red",
    "markeredgecolor": "white",
    "markeredgewidth": 1.0,
    "linestyle": "none",
    "zorder": 5,
}

# The parameters plot_contour and plot_contourf share (one reading of levels and log).
_CONTOUR_PARAMS = C.PLANE_PARAMS + """
levels : int or sequence of float, default 30
    Number of levels (chosen by matplotlib at round values) or the levels.
log : bool, default False
    Levels evenly spaced in log and a log colour scale (values must be > 0).
centre : bool, default True
    Mark the centre (0, 0) with a red star."""


def _prepare(
    surface: Surface, variable: str | None, ax: Axes | None, what: str
) -> tuple[str, Axes, np.ndarray, np.ndarray, np.ma.MaskedArray]:
    """The checked variable, the axes to draw on, and α (na,), β (nb,), values (nb, na)."""
    variable = C.check_plane(surface, variable, what)
    return variable, _new_axes(ax), *C.grid(surface, variable)


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


def _contour_kwargs(
    Z: np.ma.MaskedArray, levels: Any, log: bool, kwargs: dict[str, Any], what: str
) -> dict[str, Any]:
    levels = C.check_levels(kwargs.pop("levels", levels), what)
    kw = _colour_kwargs(kwargs, Z.filled(np.nan), log, what)
    if log and "norm" not in kwargs and isinstance(levels, int):
        levels = C.log_levels(kw["norm"].vmin, kw["norm"].vmax, levels)
    kw["levels"] = levels
    return kw


@C.fill_doc(contour_params=_CONTOUR_PARAMS)
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
    {contour_params}
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
    variable, ax, a, b, Z = _prepare(surface, variable, ax, "plot_contour")
    kw = _contour_kwargs(Z, levels, log, kwargs, "plot_contour")
    kw.setdefault("linewidths", 1.0)
    return _finish_plane(surface, ax, variable, ax.contour(a, b, Z, **kw), colorbar, centre)


@C.fill_doc(contour_params=_CONTOUR_PARAMS)
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
    {contour_params}
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
    variable, ax, a, b, Z = _prepare(surface, variable, ax, "plot_contourf")
    kw = _contour_kwargs(Z, levels, log, kwargs, "plot_contourf")
    return _finish_plane(surface, ax, variable, ax.contourf(a, b, Z, **kw), colorbar, centre)


def _edges(c: np.ndarray) -> tuple[float, float]:
    """Outer edges of the first and last cell centred on the coordinates ``c``."""
    h = (c[-1] - c[0]) / (len(c) - 1)
    return float(c[0] - h / 2), float(c[-1] + h / 2)


@C.fill_doc(plane_params=C.PLANE_PARAMS)
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
    {plane_params}
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
    variable, ax, a, b, Z = _prepare(surface, variable, ax, "plot_heatmap")
    kw = _colour_kwargs(kwargs, Z.filled(np.nan), log, "plot_heatmap")
    kw.setdefault("origin", "lower")
    kw.setdefault("interpolation", "nearest")
    kw.setdefault("aspect", "auto")
    kw.setdefault("extent", (*_edges(a), *_edges(b)))
    im = ax.imshow(Z, **kw)
    return _finish_plane(surface, ax, variable, im, colorbar, centre)
