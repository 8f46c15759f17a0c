"""Interactive plotly views of a Surface, written as self-contained HTML.

Each function takes ``fig=None`` and returns the plotly Figure: with no
``fig`` it builds one (one panel per variable, side by side, on a shared
colour scale); with a ``fig`` it only adds traces (to ``row``/``col`` of a
subplot grid when given), so several views can be composed. :func:`to_html`
writes one or more figures into ONE HTML file with plotly.js embedded: it
opens offline and fetches nothing.

Missing or diverged points become gaps (JSON ``null``), never interpolated.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C

__all__ = ["contour_figure", "line_figure", "surface_figure", "to_html"]

ALPHA, BETA = "α", "β"
_COLORSCALE = "Viridis"
_CENTRE_COLOUR = "red"
_HOVER = "α=%{x:.3g}<br>β=%{y:.3g}<br>%{z:.4g}<extra>%{fullData.name}</extra>"
# plotly.js's default topojson address (used only by geographic maps, which
# lossmap never draws) names a CDN; it is replaced so the file names none.
TOPOJSON_CDN = "https://cdn.plot.ly/un/"
TOPOJSON_LOCAL = "topojson/"
# The parameters surface_figure and contour_figure share (see _panels).
_PANEL_PARAMS = """\
surface : Surface
    A plane (two directions).
variables : str or sequence of str, default ("train_loss", "test_loss")
    None for every ``<split>_loss``.
fig : plotly Figure, optional
    Add the traces to this figure (overlaid, at ``row``/``col`` if
    given) instead of building one."""


def _nulls(x: np.ndarray) -> list:
    """Nested lists with None for non-finite values (JSON null: a gap in plotly)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.isfinite(x), x, None).tolist()


def _panels(
    surface: Surface, variables: Any, what: str, fig: go.Figure | None, spec_type: str
) -> tuple[list[str], go.Figure, bool]:
    names = C.check_variables(surface, variables, what)
    if fig is not None:
        if not isinstance(fig, go.Figure):
            raise InputTypeError(f"{what}: fig must be a plotly Figure, got {type(fig).__name__}")
        return names, fig, False
    fig = make_subplots(
        rows=1,
        cols=len(names),
        specs=[[{"type": spec_type}] * len(names)],
        subplot_titles=[C.label(surface, v) for v in names],
        horizontal_spacing=0.08 if spec_type == "xy" else 0.02,
    )
    fig.update_layout(
        width=max(520 * len(names), 600),
        height=520,
        margin={"l": 40, "r": 40, "t": 60, "b": 40},
        template="plotly_white",
    )
    return names, fig, True


def _metric(surface: Surface, names: list[str]) -> str:
    """The metric the panels share ("loss"), else "value"."""
    metrics = {C.split_metric(surface, v)[1] for v in names}
    return metrics.pop() if len(metrics) == 1 else "value"


def _trace_kwargs(
    kwargs: dict[str, Any],
    surface: Surface,
    names: list[str],
    i: int,
    colorbar: dict[str, Any],
    **limits: float,
) -> dict[str, Any]:
    """A copy of ``kwargs`` with the defaults of panel ``i``'s trace.

    One colour scale for all panels (``limits``: ``cmin``/``cmax`` or
    ``zmin``/``zmax``), shown on the last panel only and titled with the
    metric (plus ``colorbar``), the variable's name and the hover text.
    """
    kw = dict(kwargs)
    kw.setdefault("colorscale", _COLORSCALE)
    for k, v in limits.items():
        kw.setdefault(k, v)
    kw.setdefault("showscale", i == len(names) - 1)
    kw.setdefault("colorbar", {"title": {"text": _metric(surface, names)}, **colorbar})
    kw.setdefault("name", C.label(surface, names[i]))
    kw.setdefault("hovertemplate", _HOVER)
    return kw


def _where(row: int | None, col: int | None, i: int, own: bool) -> dict[str, int]:
    if own:
        return {"row": 1, "col": i + 1}
    if row is not None or col is not None:
        return {"row": row or 1, "col": col or 1}
    return {}


@C.fill_doc(panel_params=_PANEL_PARAMS)
def surface_figure(
    surface: Surface,
    variables: str | Sequence[str] | None = ("train_loss", "test_loss"),
    fig: go.Figure | None = None,
    *,
    centre: bool = True,
    log: bool = False,
    row: int | None = None,
    col: int | None = None,
    **kwargs: Any,
) -> go.Figure:
    """3D surfaces of a plane, one panel per variable, the centre marked.

    Parameters
    ----------
    {panel_params}
    centre : bool, default True
        A red 3D marker at (0, 0, value) when the centre is a grid point
        (drawn 3 % of the value range above the surface so it stays visible;
        its hover text gives the exact value).
    log : bool, default False
        Logarithmic z axis (only when this function builds the figure).
    row, col : int, optional
        Subplot cell of a given ``fig``.
    **kwargs
        Passed to :class:`plotly.graph_objects.Surface` for every variable
        (defaults: ``colorscale="Viridis"``, a shared ``cmin``/``cmax``, one
        colorbar).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    C.check_surface(surface, "surface_figure")
    C.require_plane(surface, "surface_figure")
    names, fig, own = _panels(surface, variables, "surface_figure", fig, "scene")
    lo, hi = C.value_range([surface.values[v] for v in names], log=log, what="surface_figure")
    for i, v in enumerate(names):
        a, b, Z = C.grid(surface, v)
        kw = _trace_kwargs(kwargs, surface, names, i, {"len": 0.75}, cmin=lo, cmax=hi)
        where = _where(row, col, i, own)
        fig.add_trace(go.Surface(x=a, y=b, z=_nulls(Z.filled(np.nan)), **kw), **where)
        c0 = C.centre_value(surface, v) if centre else None
        if c0 is not None:
            # lifted by 3 % of the range so the surface through the same point cannot hide it
            marker = go.Scatter3d(
                x=[0.0],
                y=[0.0],
                z=[c0 + 0.03 * (hi - lo)],
                mode="markers",
                marker={"size": 8, "color": _CENTRE_COLOUR, "line": {"color": "white", "width": 2}},
                name="centre",
                hovertemplate=f"centre<br>{C.label(surface, v)} = {c0:.4g}<extra></extra>",
                showlegend=False,
            )
            fig.add_trace(marker, **where)
    if own:
        axis = {"type": "log"} if log else {}
        for i, v in enumerate(names):
            scene = "scene" if i == 0 else f"scene{i + 1}"
            fig.layout[scene].update(
                xaxis_title=ALPHA,
                yaxis_title=BETA,
                zaxis={"title": {"text": C.label(surface, v)}, **axis},
                aspectmode="manual",
                aspectratio={"x": 1, "y": 1, "z": 0.7},
                # from higher than plotly's default, so the centre of a basin is in view
                camera={"eye": {"x": 1.2, "y": 1.2, "z": 1.8}},
            )
    return fig


@C.fill_doc(panel_params=_PANEL_PARAMS)
def contour_figure(
    surface: Surface,
    variables: str | Sequence[str] | None = ("train_loss", "test_loss"),
    fig: go.Figure | None = None,
    *,
    style: str = "contour",
    ncontours: int = 30,
    centre: bool = True,
    row: int | None = None,
    col: int | None = None,
    **kwargs: Any,
) -> go.Figure:
    """Filled contour maps (or heatmaps) of a plane, one panel per variable.

    Parameters
    ----------
    {panel_params}
    style : {"contour", "heatmap"}, default "contour"
        :class:`plotly.graph_objects.Contour` or ``Heatmap`` traces.
    ncontours : int, default 30
        Maximum number of contour levels (contour style).
    centre : bool, default True
        A red star at (0, 0).
    row, col : int, optional
        Subplot cell of a given ``fig``.
    **kwargs
        Passed to the Contour (or Heatmap) trace of every variable (defaults:
        ``colorscale="Viridis"``, a shared ``zmin``/``zmax``, one colorbar).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    C.check_surface(surface, "contour_figure")
    C.require_plane(surface, "contour_figure")
    if style not in ("contour", "heatmap"):
        raise InputError(f"contour_figure: style={style!r} must be 'contour' or 'heatmap'")
    names, fig, own = _panels(surface, variables, "contour_figure", fig, "xy")
    lo, hi = C.value_range([surface.values[v] for v in names], log=False, what="contour_figure")
    for i, v in enumerate(names):
        a, b, Z = C.grid(surface, v)
        kw = _trace_kwargs(kwargs, surface, names, i, {}, zmin=lo, zmax=hi)
        z = _nulls(Z.filled(np.nan))
        if style == "contour":
            kw.setdefault("ncontours", ncontours)
            kw.setdefault("connectgaps", False)
            trace: Any = go.Contour(x=a, y=b, z=z, **kw)
        else:
            kw.setdefault("hoverongaps", False)
            trace = go.Heatmap(x=a, y=b, z=z, **kw)
        where = _where(row, col, i, own)
        fig.add_trace(trace, **where)
        if centre and C.centre_inside(surface):
            fig.add_trace(
                go.Scatter(
                    x=[0.0],
                    y=[0.0],
                    mode="markers",
                    marker={
                        "symbol": "star",
                        "size": 14,
                        "color": _CENTRE_COLOUR,
                        "line": {"color": "white", "width": 1},
                    },
                    name="centre",
                    showlegend=False,
                ),
                **where,
            )
    if own:
        fig.update_xaxes(title_text=ALPHA)
        fig.update_yaxes(title_text=BETA)
    return fig


def _colourway(fig: go.Figure) -> list[str]:
    """The trace colours of ``fig``'s template (plotly's default ten if it sets none)."""
    import plotly.colors

    template = fig.layout.template
    colours = template.layout.colorway if template is not None else None
    return list(colours or plotly.colors.qualitative.Plotly)


def line_figure(
    surface: Surface,
    variables: str | Sequence[str] | None = None,
    fig: go.Figure | None = None,
    *,
    centre: bool = True,
    **kwargs: Any,
) -> go.Figure:
    """A line scan: value against α, one trace per variable, the centre marked.

    Where the surface has standard errors (``surface.errors``), a shaded band of
    ± 2 s.e. is drawn under each variable's trace, as :func:`lossmap.plot.plot_line` does.

    Parameters
    ----------
    surface : Surface
        A line (one direction).
    variables : str or sequence of str, optional
        Default every ``<split>_loss``.
    fig : plotly Figure, optional
        Add the traces to this figure.
    centre : bool, default True
        A dotted vertical line at α = 0 and a point on each curve.
    **kwargs
        Passed to :class:`plotly.graph_objects.Scatter` for every variable
        (default ``mode="lines+markers"``).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    C.check_surface(surface, "line_figure")
    C.require_line(surface, "line_figure")
    names = C.check_variables(surface, variables, "line_figure")
    own = fig is None
    if own:
        fig = go.Figure()
        fig.update_layout(
            width=800,
            height=480,
            template="plotly_white",
            xaxis_title=ALPHA,
            yaxis_title=_metric(surface, names),
        )
    elif not isinstance(fig, go.Figure):
        raise InputTypeError(f"line_figure: fig must be a plotly Figure, got {type(fig).__name__}")
    alpha = surface.coords["alpha"]
    colours = _colourway(fig)
    shown = sum(t.showlegend is not False for t in fig.data)  # traces drawn before these
    for i, v in enumerate(names):
        kw = dict(kwargs)
        kw.setdefault("mode", "lines+markers")
        kw.setdefault("name", C.label(surface, v))
        kw.setdefault("connectgaps", False)
        line = go.Scatter(x=alpha, y=_nulls(surface.values[v]), **kw)
        if line.line.color is None:  # an explicit colour, so its band can share it
            line.line.color = colours[(shown + i) % len(colours)]
        se = surface.se(v) if surface.errors is not None else None
        if se is not None:  # ± 2 s.e.: the upper edge, then the lower filled up to it
            for sign in (2.0, -2.0):
                fig.add_trace(go.Scatter(
                    x=alpha, y=_nulls(surface.values[v] + sign * se), mode="lines",
                    line={"width": 0, "color": line.line.color},
                    fill="tonexty" if sign < 0 else None, fillcolor=line.line.color,
                    opacity=0.25, hoverinfo="skip", showlegend=False,
                    name=f"{C.label(surface, v)} ± 2 s.e."))
        fig.add_trace(line)
        c0 = C.centre_value(surface, v) if centre else None
        if c0 is not None:
            fig.add_trace(
                go.Scatter(
                    x=[0.0],
                    y=[c0],
                    mode="markers",
                    marker={"size": 10, "color": _CENTRE_COLOUR},
                    name=f"centre ({C.label(surface, v)})",
                    showlegend=False,
                )
            )
    if centre and own and C.centre_inside(surface):
        fig.add_vline(x=0.0, line_dash="dot", line_color="grey")
    return fig


def to_html(
    fig_or_figs: go.Figure | Sequence[go.Figure],
    path: str | os.PathLike,
    *,
    title: str = "lossmap",
    auto_play: bool = False,
) -> Path:
    """Write figures into one self-contained HTML file (plotly.js embedded, nothing fetched).

    Parameters
    ----------
    fig_or_figs : plotly Figure or sequence of them
        Drawn one below the other.
    path : str or PathLike
        Ends in ``.html`` (or ``.htm``); missing parent folders are made.
    title : str, default "lossmap"
        The page title.
    auto_play : bool, default False
        Start a figure's animation (its frames) when the page opens, instead
        of waiting for its play button.

    Returns
    -------
    Path
        ``path``.
    """
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    figs = [fig_or_figs] if isinstance(fig_or_figs, go.Figure) else list(fig_or_figs)
    if not figs or not all(isinstance(f, go.Figure) for f in figs):
        raise InputTypeError("to_html takes a plotly Figure or a non-empty list of them")
    C.check_suffix(path, (".html", ".htm"), "to_html")
    config = {"displaylogo": False, "topojsonURL": TOPOJSON_LOCAL}
    body = "\n".join(
        pio.to_html(f, full_html=False, include_plotlyjs=False, config=config, auto_play=auto_play)
        for f in figs
    )
    js = get_plotlyjs().replace(TOPOJSON_CDN, TOPOJSON_LOCAL)
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        f'<script type="text/javascript">{js}</script>\n'
        "</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
