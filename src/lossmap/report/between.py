"""The report's section on paths between two models: every comparison side by side.

``write_report(..., comparisons={...})`` adds one section: the paths between
the same two models — the straight line before and after alignment, with and
without the normalization reset (``bn="recompute"``), a trained curve — drawn
side by side as loss against t (:func:`lossmap.plot.figure_paths`), and a table
of each one's barrier, where it sits and the highest loss along it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..analysis.barriers import barrier
from ..plot import common as C
from . import template as T

ANCHOR = "between"


def comparison_section(comparisons: Any, png: Callable[[Any], str], *,
                       variable: str | None = None) -> str:
    """The HTML of the comparison section.

    Parameters
    ----------
    comparisons : dict of str to Surface, or list of (str, Surface)
        Labelled path scans (``lm.scan(path=...)``) or interpolation lines.
    png : callable
        Figure → base64 PNG (closes the figure).
    variable : str, optional
        Default each surface's first ``<split>_loss``.

    Returns
    -------
    str
        A ``<section class="card" id="between">``.

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((0, 1, 5),), splits=("train",), metrics=("loss",),
    ...                 path={"kind": "polychain", "control_points": 2})
    >>> t = spec.coords()[0]
    >>> s = Surface(spec, {"train_loss": 1 + t * (1 - t)}, np.ones(5, bool))
    >>> html = comparison_section({"linear": s}, lambda fig: "")
    >>> "barrier" in html and 'id="between"' in html
    True
    """
    import matplotlib.pyplot as plt

    from ..plot.between import check_comparisons, figure_paths

    items = check_comparisons(comparisons, "write_report comparisons")
    fig = plt.figure(figsize=(min(3.6 * len(items) + 0.6, 16), 3.8), layout="constrained")
    fig = figure_paths(items, variable, fig=fig)
    rows = []
    for label, surf in items:
        var = C.first_loss(surf, variable, "write_report comparisons")
        r = barrier(surf, var)
        L = np.asarray(surf.values[var], dtype=np.float64)
        x = surf.coords[surf.dims[0]]
        inside = (x >= 0.0) & (x <= 1.0) & np.isfinite(L)
        top = float(L[inside].max()) if inside.any() else float("nan")
        rows.append([label, _kind(surf), surf.spec.bn, T.format_value(r.loss_a),
                     T.format_value(r.loss_b),
                     T.format_value(math.nan if r.value is None else r.value),
                     "—" if r.at is None else f"{r.at:.3g}", T.format_value(top),
                     "no" if r.monotone is False else "yes" if r.monotone else "?"])
    head = ["path", "kind", "BatchNorm", "loss at t = 0", "loss at t = 1", "barrier",
            "at t", "highest loss", "monotone"]
    cap = ("Loss against t between the same two models along each path; dashed: the straight "
           "interpolation of the end losses; red: the barrier, the largest rise above it.")
    return (
        f'<section class="card" id="{ANCHOR}"><h2>Between the models</h2>'
        + str(T.figure(png(fig), "paths between the models", cap))
        + '<div class="scroll">' + str(T.table(head, rows, numeric=(3, 4, 5, 6, 7))) + "</div>"
        + "</section>"
    )


def _kind(surface: Any) -> str:
    """``"bezier, 1 bend"``, ``"straight line"`` (a two-point polychain or an α line)."""
    from ..scan.pathspec import path_text

    path = surface.spec.path
    if path is None or (path["kind"] == "polychain" and path["control_points"] == 2):
        return "straight line"
    return path_text(path)
