"""Pictures of a Surface: matplotlib views (:mod:`.lines`, :mod:`.planes`, …) and plotly.

Names load on first use, so importing :mod:`lossmap.plot` (and the ``lossmap``
command line, which imports :mod:`lossmap.plot.cli`) does not pull in
matplotlib or plotly until a picture is drawn.

Examples
--------
>>> import lossmap.plot as lp
>>> lp.plot_line  # doctest: +ELLIPSIS
<function plot_line at ...>
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .animate import centre_animation, path_animation, save_animation
    from .animate_mpl import centre_animation_mpl, path_animation_mpl
    from .between import curve_on_plane, figure_paths, plot_barrier_matrix
    from .eos import plot_eos
    from .extra import plot_convexity_map, plot_density, plot_eigenvalues, plot_gradient
    from .figures import figure_lines, figure_planes, save
    from .interactive import contour_figure, line_figure, surface_figure, to_html
    from .lines import plot_history, plot_line
    from .paths import plot_annotations, plot_barrier, plot_models, plot_path
    from .planes import plot_contour, plot_contourf, plot_heatmap
    from .surface3d import plot_surface3d
    from .topology import plot_barcode, plot_merge_tree, plot_persistence, plot_profile
    from .topology3d import isosurface_figure, plot_slices

_WHERE = {
    "centre_animation": "animate",
    "centre_animation_mpl": "animate_mpl",
    "path_animation": "animate",
    "path_animation_mpl": "animate_mpl",
    "save_animation": "animate",
    "curve_on_plane": "between",
    "figure_paths": "between",
    "plot_barrier_matrix": "between",
    "figure_lines": "figures",
    "figure_planes": "figures",
    "plot_contour": "planes",
    "plot_contourf": "planes",
    "plot_heatmap": "planes",
    "plot_history": "lines",
    "plot_line": "lines",
    "plot_surface3d": "surface3d",
    "save": "figures",
    "contour_figure": "interactive",
    "line_figure": "interactive",
    "surface_figure": "interactive",
    "to_html": "interactive",
    "plot_annotations": "paths",
    "plot_barrier": "paths",
    "plot_convexity_map": "extra",
    "plot_density": "extra",
    "plot_eigenvalues": "extra",
    "plot_gradient": "extra",
    "plot_models": "paths",
    "plot_path": "paths",
    "plot_eos": "eos",
    "plot_barcode": "topology",
    "plot_merge_tree": "topology",
    "plot_persistence": "topology",
    "plot_profile": "topology",
    "isosurface_figure": "topology3d",
    "plot_slices": "topology3d",
}

__all__ = [
    "centre_animation",
    "centre_animation_mpl",
    "contour_figure",
    "curve_on_plane",
    "figure_lines",
    "figure_paths",
    "figure_planes",
    "isosurface_figure",
    "line_figure",
    "path_animation",
    "path_animation_mpl",
    "plot_annotations",
    "plot_barcode",
    "plot_barrier",
    "plot_barrier_matrix",
    "plot_contour",
    "plot_contourf",
    "plot_convexity_map",
    "plot_density",
    "plot_eigenvalues",
    "plot_eos",
    "plot_gradient",
    "plot_heatmap",
    "plot_history",
    "plot_line",
    "plot_merge_tree",
    "plot_models",
    "plot_path",
    "plot_persistence",
    "plot_profile",
    "plot_slices",
    "plot_surface3d",
    "save",
    "save_animation",
    "surface_figure",
    "to_html",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
