"""The report's topology part for scans of two or more dimensions (:func:`lossmap.topology`).

For the first loss variable: the basins and SMAD in words, a table of the
basins, the persistence diagram, merge tree and landscape profile; a 3-D scan
adds 2-D slices as small multiples and an interactive isosurface view
(plotly, offline: plotly.js is embedded once by the page).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import template as T

__all__ = ["BOOTSTRAP", "centre_plane", "topology_section"]

BOOTSTRAP = 100
"""Parametric bootstrap draws behind the report's SMAD and basin-count uncertainties."""


def centre_plane(surface: Any) -> tuple[Any, str]:
    """The plane through the centre of a scan of 3 or more dimensions, and a note saying so.

    The report's findings, numbers and views are of lines and planes; a k-D
    grid (k ≥ 3) shows them for ``surface.sel(gamma=0, …)`` (the grid value
    nearest 0 of every dimension after ``beta``), and its topology for the
    whole grid. A line, a plane, a path or a sampled design is returned as is
    with an empty note.

    Parameters
    ----------
    surface : Surface

    Returns
    -------
    (Surface, str)
    """
    import dataclasses

    dims = tuple(surface.dims)
    if len(dims) < 3 or getattr(surface.spec, "design", None) is not None:
        return surface, ""
    at = {d: 0.0 for d in dims[2:]}
    plane = dataclasses.replace(surface.sel(method="nearest", **at), path=None)
    nearest = {d: float(min(surface.coords[d], key=abs)) for d in dims[2:]}
    where = ", ".join(f"{d} = {x:g}" for d, x in nearest.items())
    note = (
        f"This is a {len(dims)}-D scan: the findings, numbers, figures and views below are of "
        f"the plane through the centre ({where}); the topology part is of the whole grid."
    )
    return plane, note


def _basin_rows(t: Any, most: int = 12) -> list[list[Any]]:
    rows = []
    for b in t.basins[:most]:
        where = ", ".join(f"{d} = {x:.3g}" for d, x in b.minimum.coords.items())
        ok = {True: "yes", False: "no", None: "not measured"}[b.resolved]
        depth = "never merges" if not math.isfinite(b.depth) else f"{b.depth:.4g}"
        rows.append([where, f"{b.minimum.value:.6g}", depth, f"{b.volume} ({b.share:.1%})", ok])
    return rows


def topology_section(surface: Any, names: list[str], png: Callable[[Any], str]) -> str:
    """HTML for the topology of ``surface``'s first loss variable ("" for a line).

    Parameters
    ----------
    surface : Surface
        A scan of two or more dimensions (a line gets nothing).
    names : list of str
        Its loss variables; the first is analysed.
    png : callable
        Figure → base64 PNG (the page's own, which closes the figure).

    Returns
    -------
    str
    """
    if len(surface.dims) < 2 or not names:
        return ""
    import matplotlib.pyplot as plt

    from ..plot import topology as views
    from ..topology import topology

    var = names[0]
    if not any(math.isfinite(x) for x in surface.values[var].reshape(-1)):
        return ""
    t = topology(surface, var, bootstrap=BOOTSTRAP)
    head = ["minimum at", "value", "depth", "cells (share)", "resolved"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
    views.plot_persistence(t, ax=axes[0])
    views.plot_merge_tree(t, ax=axes[1])
    views.plot_profile(t, ax=axes[2])
    cap = (
        f"{var}: persistence diagram, merge tree and landscape profile of the sublevel sets "
        f"(grid graph of axis neighbours); grey: depth within {t.z:g} paired s.e."
    )
    parts = [
        '<div class="topology"><h3>Topology</h3>',
        f'<ul class="findings"><li><b>{T.esc(var)}</b> · {T.esc(t.sentence())}</li></ul>',
        T.table(head, _basin_rows(t), numeric=(1, 2)),
        T.figure(png(fig), "topology", cap),
    ]
    if len(surface.dims) == 3:
        parts += _three_d(surface, var, t, png)
    parts.append("</div>")
    return "\n".join(parts)


def _three_d(surface: Any, var: str, t: Any, png: Callable[[Any], str]) -> list[str]:
    from ..plot.interactive import TOPOJSON_LOCAL
    from ..plot.topology3d import isosurface_figure, plot_slices

    fig = plot_slices(surface, variable=var, t=t)
    cap = f"{var} on slices through the 3-D grid (red stars: the minima on that slice)."
    view = isosurface_figure(surface, variable=var, t=t)
    view.update_layout(height=520, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    config = {"displaylogo": False, "responsive": True, "topojsonURL": TOPOJSON_LOCAL}
    div = view.to_html(full_html=False, include_plotlyjs=False, config=config)
    return [T.figure(png(fig), "slices", cap), f'<div class="plotly-box">{div}</div>']
