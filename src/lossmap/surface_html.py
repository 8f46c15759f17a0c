"""The HTML summary of a Surface in Jupyter (``Surface._repr_html_``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scan.spec import ScanSpec

# a lossmap.surface.Surface: not imported (surface.py imports this module)
Surface = Any


def surface_html(surface: Surface) -> str:
    """An HTML summary for Jupyter: the spec, progress, centre and minimum, a small picture.

    The numbers and the picture (a line plot, or a filled contour map of a
    plane, 4 x 3 inches at 72 dpi, as an inline base64 PNG drawn with
    matplotlib's Agg canvas, imported here) are of the first loss variable;
    a partial plane is drawn from :meth:`filled` and says so. Every name and
    value that comes from the user is HTML-escaped.
    """
    from html import escape

    spec, s = surface.spec, surface.summary()
    metric = "loss" if "loss" in spec.metrics else spec.metrics[0]
    var = f"{spec.splits[0]}_{metric}"
    var = var if var in surface.values else next(iter(surface.values))
    at, c = s[var], surface.centre_index()
    where = ", ".join(f"{_GREEK.get(d, d)}={x:.3g}" for d, x in at.get("argmin", {}).items())
    state = "complete" if surface.complete else "partial"
    centre = f"{at['centre']:.6g}" if c is not None and surface.done[c] else "not finished yet"
    rows = [
        ("grid", grid_text(spec)),
        ("splits", ", ".join(spec.splits)),
        ("metrics", ", ".join(spec.metrics) + f" (loss function: {spec.loss})"),
        ("samples", "all" if spec.samples is None else f"{spec.samples:,} per split"),
        ("directions", ", ".join(_direction_kind(d) for d in spec.directions) or "unknown"),
        ("progress", f"{s['done']}/{s['points']} points, {state}"),
        (f"{var} at the centre", "not on the grid" if c is None else centre),
        (f"{var} grid minimum", f"{at['min']:.6g} at {where}" if "min" in at else "none yet"),
    ]
    rows += [("diverged", f"{s['diverged']} points")] if s["diverged"] else []
    rows += [("store", surface.path)] if surface.path else []
    rows += [(f"meta: {k}", _short(v)) for k, v in surface.meta.items()]
    if not surface.done.any():
        picture = "<p>no finished point yet</p>"
    elif len(surface.dims) > 2 or spec.design is not None:
        picture = "<p>no picture of more than two dimensions: slice it (surf.sel)</p>"
    else:
        shown = surface.filled() if len(surface.dims) == 2 else surface
        note = f"interpolated from {s['done']}/{s['points']} points"
        note = "" if shown is surface else f"<br><small>{note}</small>"
        try:
            from .plot.thumbnail import thumbnail_src

            src = thumbnail_src(spec.coords(), shown.values[var], label=var)
            picture = f'<div><img src="{src}" alt="{escape(var)}">{note}</div>'
        except Exception as exc:  # the summary shows even where no picture can be drawn
            picture = f"<p>no picture: {escape(f'{type(exc).__name__}: {exc}')}</p>"
    cells = "".join(
        f'<tr><th style="text-align:left">{escape(str(k))}</th>'
        f'<td style="text-align:left">{escape(str(v))}</td></tr>'
        for k, v in rows
    )
    kind = surface._kind()
    return (
        '<div class="lossmap-surface" style="display:flex;gap:1em;align-items:flex-start">'
        f'<table><caption style="text-align:left"><b>lossmap Surface</b>: {kind}</caption>'
        f"{cells}</table>{picture}</div>"
    )


_GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ"}


def grid_text(spec: ScanSpec) -> str:
    """``-1:1:11 x -1:1:11``, or for a design ``64 points in [-1, 1] x [-1, 1]``."""
    if spec.design is not None:
        box = " x ".join(f"[{a.lo:g}, {a.hi:g}]" for a in spec.grid)
        return f"{spec.design['points']} points in {box}"
    return " x ".join(str(a) for a in spec.grid)


def _direction_kind(meta: dict) -> str:
    """``"random (filter)"``: how a direction was made, from its stored meta."""
    kind = str(meta.get("kind", "custom"))
    return f"{kind} ({meta['norm']})" if meta.get("norm") else kind


def _short(value: Any, limit: int = 80) -> str:
    """``value`` as text of at most ``limit`` characters (a long path of coordinates…)."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
