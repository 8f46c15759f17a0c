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

The functions live in one module per view — :mod:`.lines`, :mod:`.planes`,
:mod:`.surface3d` and :mod:`.figures` — and are all importable from here.
"""

from __future__ import annotations

from ._style import ALPHA as ALPHA
from ._style import BETA as BETA
from ._style import _colour as _colour
from ._style import _log_ticks as _log_ticks
from ._style import _split_colour as _split_colour
from .figures import _PLANE_FUNCS as _PLANE_FUNCS
from .figures import _PLANE_KINDS as _PLANE_KINDS
from .figures import figure_lines, figure_planes, save
from .lines import plot_history, plot_line
from .planes import _CENTRE as _CENTRE
from .planes import _contour_kwargs as _contour_kwargs
from .planes import _edges as _edges
from .planes import _finish_plane as _finish_plane
from .planes import _mark_centre as _mark_centre
from .planes import plot_contour, plot_contourf, plot_heatmap
from .surface3d import plot_surface3d

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
