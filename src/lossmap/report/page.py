"""One self-contained HTML page for one or more scans: figures, numbers, spec, provenance.

:func:`write_report` reads each run (a store path, or a ``(label, Surface)``
pair), computes what :mod:`lossmap.analysis` states about it, and writes a
single page: matplotlib figures embedded as PNG ``data:`` URIs, interactive
plotly views with plotly.js embedded once, and tables of the spec, the
fingerprints and the versions. The page names no external resource.
"""

from __future__ import annotations

import base64
import io
import math
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.evidence import findings
from ..analysis.finding import Findings
from ..analysis.render import lines
from ..errors import InputError, InputTypeError
from ..plot import common as C
from ..surface import Surface, load
from ..version import __version__
from . import template as T
from .curvature import curvature_section, meta_findings
from .evidence import band_note
from .template import format_value
from .topology import centre_plane, topology_section

__all__ = ["BASIN_DELTA", "SHARPNESS_EPSILON", "format_value", "write_report"]

BASIN_DELTA = 0.1
"""Default δ of the basin widths: the loss rise (loss units) that ends the basin."""
SHARPNESS_EPSILON = 0.1
"""Default ε of the grid ε-sharpness: the disc's radius in α (and β) units."""


def _check_runs(runs: Any) -> list[tuple[str, Surface]]:
    if isinstance(runs, (str, os.PathLike)):
        runs = [runs]
    if not isinstance(runs, Sequence):
        raise InputTypeError(
            f"runs must be a list of store paths or (label, Surface) pairs, not {type(runs)}"
        )
    if not runs:
        raise InputError("runs is empty: pass at least one store path or (label, Surface) pair")
    out = []
    for i, r in enumerate(runs):
        if isinstance(r, (str, os.PathLike)):
            out.append((Path(r).stem, load(r)))
        elif isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], Surface):
            out.append((str(r[0]), r[1]))
        else:
            raise InputTypeError(
                f"runs[{i}] is a {type(r).__name__}: pass a store path or a (label, Surface) pair"
            )
    return out


def _cosine(surface: Surface) -> float | None:
    """Cosine between the two plane directions, read from the surface's store (None without)."""
    from ..store import Store, is_store

    if len(surface.dims) != 2 or not surface.path or not is_store(surface.path):
        return None
    with Store.open(surface.path) as store:
        d1, d2 = store.directions()
    if not len(d1) or not len(d2):  # imported without its directions (lossmap import)
        return None
    return float(d1.cosine(d2))


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _overlay(surface: Surface, fig: Any) -> str:
    """Draw a stored training path and named models on each 2-D panel; returns a caption note."""
    path, models = surface.meta.get("path"), surface.meta.get("models")
    notes = []
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    try:
        xy = np.asarray(path, dtype=np.float64) if path is not None else None
    except (TypeError, ValueError):
        xy = None
    if xy is not None and xy.ndim == 2 and xy.shape[1] == 2 and len(xy):
        for ax in panels:
            ax.plot(xy[:, 0], xy[:, 1], "-o", color="white", mec="black", ms=3, lw=1.2)
        notes.append("white dots: the projected training path")
    if isinstance(models, Mapping) and models:
        for ax in panels:
            for name, (a, b) in models.items():
                ax.plot(a, b, "D", color="orange", mec="black", ms=6)
                ax.annotate(str(name), (a, b), xytext=(5, 5), textcoords="offset points")
        notes.append("diamonds: " + ", ".join(map(str, models)))
    return "; ".join(notes)


def _pyplot() -> Any:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only: no window, no display needed
    import matplotlib.pyplot as plt

    return plt


def _static_figures(surface: Surface, names: list[str]) -> list[T.Html]:
    from matplotlib.ticker import MaxNLocator

    from .. import plot as views

    plt = _pyplot()
    if C.kind_of(surface) == "line":
        acc = [f"{s}_accuracy" for s in surface.spec.splits if f"{s}_accuracy" in surface.values]
        fig, axes = plt.subplots(1, 2 if acc else 1, figsize=(11, 4), layout="constrained")
        axes = np.atleast_1d(axes)
        views.plot_line(surface, names, ax=axes[0]).set_title("loss along the line")
        if acc:
            views.plot_line(surface, acc, ax=axes[1]).set_title("accuracy along the line")
        cap = "Values along α (the centre at α = 0 is marked); missing points break the curve."
        cap += band_note(surface, names + acc)
        return [T.figure(_png(fig), "line plot", cap)]
    out = []
    fig = views.figure_planes(surface, variables=names, kind="contourf", figsize=(11, 4.4))
    for ax in fig.axes:
        if ax.get_label() != "<colorbar>":
            ax.xaxis.set_major_locator(MaxNLocator(5))
    extra = _overlay(surface, fig)
    cap = "Filled contours on a shared colour scale; the star is the centre; missing points blank"
    out.append(T.figure(_png(fig), "filled contours", cap + (f"; {extra}." if extra else ".")))
    fig = views.figure_planes(surface, variables=names, kind="surface", figsize=(11, 4.8))
    out.append(T.figure(_png(fig), "3D surfaces", "The same values as 3D surfaces."))
    return out


def _interactive(surface: Surface, names: list[str]) -> list[T.Html]:
    from ..plot import interactive as web

    if C.kind_of(surface) == "line":
        figs = [web.line_figure(surface, names)]
    else:
        figs = [web.surface_figure(surface, names), web.contour_figure(surface, names)]
    config = {"displaylogo": False, "responsive": True, "topojsonURL": web.TOPOJSON_LOCAL}
    out = []
    for f in figs:
        f.update_layout(
            width=None, height=460, autosize=True, margin={"l": 50, "r": 30, "t": 50, "b": 40}
        )
        div = f.to_html(full_html=False, include_plotlyjs=False, config=config)
        out.append(T.Html(f'<div class="plotly-box">{div}</div>'))
    return out


def _findings(surface: Surface, found: Findings, cosine: float | None) -> list[tuple[str, ...]]:
    """(css class, label, sentence) for every statement about the run."""
    s = surface.summary()
    out: list[tuple[str, ...]] = []
    if not surface.complete:
        done = f"{s['done']} of {s['points']} points done; missing points are left blank"
        out.append(("warn", "partial store", done))
    if s["diverged"]:
        out.append(("warn", "diverged", f"{s['diverged']} points have a value that is not finite"))
    if cosine is not None:
        deg = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
        out.append(("", "directions", f"cosine {cosine:.4f} (angle {deg:.1f}°)"))
    said = lines(found, label=lambda v: C.label(surface, v))
    tail = [x for x in said if x[1] in ("samples needed", "uncertainty")]
    body = [x for x in said if x not in tail]
    return out + body + _perplexities(surface) + tail + meta_findings(surface)


def _perplexities(surface: Surface) -> list[tuple[str, ...]]:
    """Beside a token loss (``lm.metrics``' losses, the model's own): its perplexity exp(L)."""
    from ..metrics import is_token_loss, perplexity

    if not is_token_loss(surface.spec.loss):
        return []
    out = []
    centre = surface.centre_index()
    for split in surface.spec.splits:
        v = f"{split}_loss"
        if v not in surface.values or centre is None or not surface.done[centre]:
            continue
        L = surface.values[v]
        low = float(np.nanmin(L)) if np.isfinite(L).any() else math.nan
        out.append(("", f"{split} perplexity",
                    f"exp(L) = {perplexity(float(L[centre])):.4g} at the centre, "
                    f"{perplexity(low):.4g} at the grid minimum (L in nats per token)"))
    return out


def _section(i: int, label: str, surface: Surface, delta: float, epsilon: float) -> str:
    from ..analysis.barriers import as_line

    spread = ""
    if surface.spec.draws is not None:  # K draws: the median draw, and the spread over draws
        from .draws import draws_part

        mid, spread = draws_part(surface, _png, delta=delta)
        surface = surface.isel(draw=mid)
    full, (surface, note) = surface, centre_plane(surface)  # k ≥ 3: the plane through c
    path, surface = surface, as_line(surface)  # a path (dim t) is drawn as a line, α = t
    names = C.loss_variables(surface)
    found = findings(path, delta=delta, epsilon=epsilon)  # the path itself: its barrier in t
    cosine = _cosine(surface)
    drawn = any(np.isfinite(surface.values[v]).any() for v in names)
    empty = ["<p>No finished point yet: nothing to draw.</p>"]
    items = "".join(
        f'<li class="{c}"><b>{T.esc(name)}</b> · {T.esc(text)}</li>'
        for c, name, text in _findings(surface, found, cosine)
    )
    head = f"<h2>{T.esc(label)} {T.status_tags(surface)}</h2>"
    return "\n".join(
        [
            f'<section class="card run" id="run-{i}">{head}',
            T.stat_cards(surface, names, cosine),
            f'<p class="note">{T.esc(note)}</p>' if note else "",
            f'<h3>Findings</h3><ul class="findings">{items}</ul>',
            "<h3>Numbers</h3>" + T.numbers_table(surface, found.variables),
            "<h3>Figures</h3>" + "".join(_static_figures(path, names) if drawn else empty),
            spread,
            "<h3>Interactive view</h3>" + "".join(_interactive(surface, names) if drawn else empty),
            topology_section(full, names, _png) if drawn else "",
            f'<div class="cols"><div><h3>Scan specification</h3>{T.spec_table(surface)}</div>'
            f"<div><h3>Provenance</h3>{T.provenance_table(surface)}</div></div></section>",
        ]
    )


def _history(history: Mapping[str, Sequence[Any]]) -> str:
    from .. import plot as views

    if not isinstance(history, Mapping):
        raise InputTypeError(f"history must be a dict of per-epoch lists, got {type(history)}")
    fig, ax = _pyplot().subplots(figsize=(7, 4), layout="constrained")
    views.plot_history(history, ax=ax)
    keys = [k for k in history if k != "seconds"]
    rows = zip(*(history[k] for k in keys), strict=True)
    body = [[format_value(x, 4) for x in r] for r in rows]
    head = [k.replace("_", " ") for k in keys]
    cap = "Loss (solid, left axis) and accuracy (dashed, right axis) per epoch."
    return (
        '<section class="card" id="history"><h2>Training history</h2><div class="cols">'
        f"<div>{T.figure(_png(fig), 'training history', cap)}</div>"
        f'<div class="scroll">{T.table(head, body, numeric=tuple(range(len(keys))))}</div>'
        "</div></section>"
    )


def write_report(
    runs: Any,
    path: str | os.PathLike,
    *,
    title: str = "lossmap report",
    history: Mapping[str, Sequence[Any]] | None = None,
    notes: Sequence[str] | None = None,
    delta: float = BASIN_DELTA,
    epsilon: float = SHARPNESS_EPSILON,
    hessian: Mapping[str, Any] | None = None,
    comparisons: Any = None,
) -> Path:
    """Write one self-contained HTML page describing one or more scans.

    Parameters
    ----------
    runs : list of (str or PathLike or (str, Surface))
        Store paths (labelled by their file stem) or ``(label, Surface)`` pairs.
    path : str or PathLike
        The page to write; must end in ``.html`` (or ``.htm``).
    title : str, default "lossmap report"
        Page title and heading.
    history : dict of str to list, optional
        A training history (``epoch``, ``train_loss``, ``test_loss``,
        ``train_accuracy``, ``test_accuracy``): adds a figure and a table.
    notes : list of str, optional
        Shown at the top, e.g. which settings differ from a reference run.
    delta : float, default 0.1
        δ of each line's basin width (:func:`lossmap.analysis.geometry.basin_width`):
        the distance each way until the loss exceeds L(c) + δ, in loss units.
    epsilon : float, default 0.1
        ε of each plane's ε-sharpness read off the grid
        (:func:`lossmap.analysis.sharpness.grid_sharpness`): the worst rise over the grid
        points within radius ε of the centre, in (α, β) units.
    hessian : dict, optional
        A ``lossmap hessian -o FILE.json`` result
        (:func:`lossmap.report.curvature.load_hessian`): adds a curvature
        section with the eigenvalues, trace and spectral density.
    comparisons : dict of str to Surface, or list of (str, Surface), optional
        Paths between the same two models (``lm.scan(path=...)`` or
        interpolation lines), e.g. ``{"linear": s1, "linear, aligned": s2,
        "aligned + BN reset": s3, "trained curve": s4}``: adds one section with
        them side by side, each with its barrier (:mod:`lossmap.report.between`).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> write_report(["runs/line.lossmap"], "report.html")  # doctest: +SKIP
    PosixPath('report.html')
    """
    import torch
    from plotly.offline import get_plotlyjs

    from ..plot.interactive import TOPOJSON_CDN, TOPOJSON_LOCAL

    C.check_suffix(path, (".html", ".htm"), "write_report")
    if notes is not None and (isinstance(notes, str) or not isinstance(notes, Sequence)):
        raise InputTypeError(f"notes={notes!r} must be a list of strings")
    for name, v in (("delta", delta), ("epsilon", epsilon)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise InputError(f"{name}={v!r} must be a positive number")
    items = _check_runs(runs)
    body = []
    if notes:
        body.append(
            '<aside class="card notes"><h2>Notes</h2><ul>'
            + "".join(f"<li>{T.esc(n)}</li>" for n in notes)
            + "</ul></aside>"
        )
    toc = [
        f'<li><a href="#run-{i}">{T.esc(label)}</a> {T.status_tags(s)}</li>'
        for i, (label, s) in enumerate(items, 1)
    ]
    if comparisons is not None:
        toc.append('<li><a href="#between">Between the models</a></li>')
    if hessian is not None:
        toc.append('<li><a href="#curvature">Curvature</a></li>')
    if history is not None:
        toc.append('<li><a href="#history">Training history</a></li>')
    body.append(f'<nav class="card"><h2>Contents</h2><ol>{"".join(toc)}</ol></nav>')
    body += [_section(i, label, s, delta, epsilon) for i, (label, s) in enumerate(items, 1)]
    if comparisons is not None:
        from .between import comparison_section

        body.append(comparison_section(comparisons, _png))
    if hessian is not None:
        body.append(curvature_section(dict(hessian), _png))
    if history is not None:
        body.append(_history(history))

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sub = f"{len(items)} scan{'s' * (len(items) != 1)} · lossmap {__version__} · torch "
    sub += f"{torch.__version__} · written {now}"
    js = get_plotlyjs().replace(TOPOJSON_CDN, TOPOJSON_LOCAL).replace("https://cdn.plot.ly", "")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(T.page(title, sub, js, "\n".join(body)), encoding="utf-8")
    return out
