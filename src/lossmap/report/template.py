"""HTML pieces of :mod:`lossmap.report`: the stylesheet, escaped tables, figures, the page frame.

Everything here returns HTML text. Plain strings are escaped with
:func:`html.escape`; a string already made of HTML is wrapped in :class:`Html`
so it passes through unchanged. Nothing here names an external resource: the
stylesheet uses the system's fonts and no ``url()``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..plot import common as C
from ..surface import Surface

__all__ = [
    "CSS",
    "DIGITS",
    "Html",
    "esc",
    "figure",
    "format_at",
    "format_value",
    "numbers_table",
    "page",
    "provenance_table",
    "spec_table",
    "stat_cards",
    "status_tags",
    "table",
]

_SHORT = {True: "convex within round-off", False: "not convex", None: "undetermined"}
DIGITS = 5
"""Significant digits of the values printed in the report."""

CSS = """
:root { --ink:#1f2430; --muted:#5d6473; --line:#e3e6ec; --bg:#f5f6f8; --card:#fff;
  --accent:#2f5fa7; --ok:#1d7a46; --warn:#a35d00; --bad:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); line-height:1.5; font-size:15px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 48px; }
header.top { background: linear-gradient(120deg, #1f3b66, #2f5fa7); color: #fff; }
header.top > div { max-width: 1180px; margin: 0 auto; padding: 30px 24px 26px; }
header.top h1 { margin: 0 0 6px; font-size: 28px; font-weight: 650; letter-spacing: -0.01em; }
header.top p { margin: 0; opacity: .85; font-size: 14px; }
h2 { font-size: 22px; margin: 0 0 14px; letter-spacing: -0.01em; }
h3 { font-size: 15px; margin: 26px 0 10px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .06em; font-weight: 600; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 22px 26px; margin: 0 0 22px; box-shadow: 0 1px 2px rgba(20,30,50,.04); }
.notes { border-left: 4px solid var(--warn); }
.notes h2, nav h2 { font-size: 17px; margin-bottom: 8px; }
.notes ul, nav ol { margin: 0; padding-left: 22px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
.tag { display: inline-block; font-size: 12px; font-weight: 600; padding: 2px 9px;
  border-radius: 999px; background: #e8eef8; color: var(--accent); margin-left: 6px;
  vertical-align: middle; letter-spacing: .02em; }
.tag.ok { background: #e3f3ea; color: var(--ok); }
.tag.warn { background: #fbefdd; color: var(--warn); }
.tag.bad { background: #fbe4e2; color: var(--bad); }
.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  margin: 4px 0 8px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  background: #fafbfc; }
.stat b { display: block; font-size: 21px; font-variant-numeric: tabular-nums; font-weight: 620; }
.stat span { font-size: 12.5px; color: var(--muted); }
ul.findings { list-style: none; padding: 0; margin: 0; }
ul.findings li { border-left: 3px solid var(--accent); background: #f7f9fc; padding: 7px 12px;
  margin: 6px 0; border-radius: 0 6px 6px 0; }
ul.findings li.warn { border-color: var(--warn); background: #fdf7ee; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; margin: 4px 0; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fcfcfd; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 12.5px; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px;
  overflow-x: auto; margin: 4px 0; white-space: pre-wrap; word-break: break-all; }
figure { margin: 10px 0 18px; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
.plotly-box { border: 1px solid var(--line); border-radius: 6px; margin: 10px 0 16px;
  overflow: hidden; background: #fff; }
.scroll { max-height: 420px; overflow-y: auto; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 22px; }
@media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
footer { color: var(--muted); font-size: 12.5px; text-align: center; margin-top: 30px; }
"""


class Html(str):
    """Text that is already HTML: :func:`esc` and :func:`table` leave it as is."""


def esc(x: Any) -> str:
    """``x`` as HTML text: escaped, unless it is :class:`Html`."""
    return x if isinstance(x, Html) else html.escape(str(x))


def table(
    header: Sequence[Any], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = ()
) -> Html:
    """A table; the columns whose indices are in ``numeric`` are right-aligned."""

    def cell(tag: str, i: int, x: Any) -> str:
        cls = ' class="num"' if i in numeric else ""
        return f"<{tag}{cls}>{esc(x)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "\n".join(
        "<tr>" + "".join(cell("td", i, x) for i, x in enumerate(r)) + "</tr>" for r in rows
    )
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>")


def figure(png_base64: str, alt: str, caption: str) -> Html:
    """An embedded PNG (a ``data:`` URI) with its caption."""
    return Html(
        f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{png_base64}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def page(title: str, subtitle: str, plotly_js: str, body: str) -> str:
    """The whole document: head with the stylesheet and plotly.js (once), then ``body``."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n"
        f'<script type="text/javascript">{plotly_js}</script>\n</head>\n<body>\n'
        f'<header class="top"><div><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></div></header>\n'
        f"<main>\n{body}\n<footer>Self-contained page written by lossmap: every figure, style "
        "and script is embedded; it fetches nothing.</footer>\n</main>\n</body>\n</html>\n"
    )


def format_value(v: Any, digits: int = DIGITS) -> str:
    """A value as the report prints it: ``digits`` significant digits, ``—`` when missing.

    Integers print as they are; trailing zeros are kept, so a column of values
    shows its precision.

    Examples
    --------
    >>> format_value(2.302585), format_value(1.15), format_value(3), format_value(None)
    ('2.3026', '1.1500', '3', '—')
    """
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if v is None or not math.isfinite(v := float(v)):
        return "—"
    return f"{v:#.{digits}g}".rstrip(".")


def format_at(coords: Mapping[str, float] | None) -> str:
    """``"α = 0.1, β = -0.2"`` (or ``—``)."""
    if not coords:
        return "—"
    return ", ".join(f"{'α' if d == 'alpha' else 'β'} = {c:.3g}" for d, c in coords.items())


def spec_table(surface: Surface) -> Html:
    """The scan spec (grid, splits, metrics, samples, …) and one row per direction's meta."""
    sp = surface.spec
    grid = " × ".join(
        f"{'αβ'[i]} ∈ [{a.lo:g}, {a.hi:g}], {a.n} points" for i, a in enumerate(sp.grid)
    )
    rows = [
        ("grid", grid),
        ("splits", ", ".join(sp.splits)),
        ("metrics", ", ".join(sp.metrics)),
        ("loss", sp.loss),
        ("samples per split", "all" if sp.samples is None else sp.samples),
        ("subset seed", sp.seed),
        ("dtype, BatchNorm", f"{sp.dtype}, {sp.bn}"),
        ("store format", sp.format),
    ]
    keys = list(dict.fromkeys(k for d in sp.directions for k in d if k != "index"))
    dirs = [
        [i + 1, *(json.dumps(d.get(k, "—")).strip('"') for k in keys)]
        for i, d in enumerate(sp.directions)
    ]
    return Html(
        table(["setting", "value"], rows)
        + "<h3>Directions</h3>"
        + table(["direction", *keys], dirs)
    )


def provenance_table(surface: Surface) -> Html:
    """Versions, creation time, store path, other annotations, then the fingerprints."""
    meta = dict(surface.meta)
    rows = [
        ("lossmap version", meta.pop("lossmap_version", "unknown")),
        ("torch version", meta.pop("torch_version", "unknown")),
    ]
    created = meta.pop("created", None)
    if isinstance(created, (int, float)):
        rows.append(
            ("created", datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M UTC"))
        )
    rows.append(("store", surface.path or "— (not read from a store)"))
    if "path" in meta:
        rows.append(("training path", f"{len(meta.pop('path') or [])} projected points"))
    if isinstance(meta.get("models"), Mapping):
        rows.append(("models", "; ".join(f"{k} at {v}" for k, v in meta.pop("models").items())))
    for k, v in meta.items():
        rows.append((k, Html(f"<pre>{esc(json.dumps(v, indent=1, default=str))}</pre>")))
    fps = [(k, Html(f"<code>{esc(v)}</code>")) for k, v in surface.fingerprints.items()]
    return Html(
        table(["annotation", "value"], rows)
        + "<h3>Fingerprints</h3>"
        + table(["of", "sha-256 prefix"], fps)
    )


def stat_cards(surface: Surface, names: list[str], cosine: float | None) -> Html:
    """Key numbers as cards: centre and minimum of each loss, points done, the cosine."""
    s = surface.summary()
    cards = [(format_value(s[v]["centre"]), f"{C.label(surface, v)} at the centre") for v in names]
    cards += [
        (format_value(s[v].get("min")), f"{C.label(surface, v)}, grid minimum") for v in names
    ]
    cards.append((f"{s['done']}/{s['points']}", f"points done, {s['diverged']} diverged"))
    if cosine is not None:
        cards.append((f"{cosine:.4f}", "cosine of the directions"))
    return Html(
        '<div class="stats">'
        + "".join(f"<div class='stat'><b>{esc(b)}</b><span>{esc(t)}</span></div>" for b, t in cards)
        + "</div>"
    )


def numbers_table(surface: Surface, analysis: dict) -> Html:
    """Per variable: value at the centre, grid minimum and where, slope and convexity.

    ``analysis`` maps each variable to its findings by kind
    (:attr:`lossmap.analysis.Findings.variables`).
    """
    s = surface.summary()
    line = C.kind_of(surface) == "line"
    header = ["variable", "at the centre", "grid minimum", "minimum at"]
    header += ["slope at α = 0", "convexity"] if line else ["non-convex lines along α", "along β"]
    rows = []
    for v in surface.values:
        e, a = s[v], analysis.get(v)
        row = [C.label(surface, v), format_value(e["centre"]), format_value(e.get("min"))]
        row.append(format_at(e.get("argmin")))
        if a is None:
            row += ["—", "—"]
        elif line:
            sl = a.get("slope")  # none along a path: t = 0 is a model, not a centre
            pm = f" ± {sl.se:.2g}" if sl is not None and sl.se is not None else ""
            slope = "—" if sl is None else format_value(
                math.nan if sl.value is None else sl.value, 3) + pm
            row += [slope, _SHORT[a["convexity"].convex]]
        else:
            axes = a["convexity"].axes
            row += [f"{axes[d].lines_not_convex} of {axes[d].lines}" for d in ("alpha", "beta")]
        rows.append(row)
    return table(header, rows, numeric=(1, 2, 4) if line else (1, 2, 4, 5))


def status_tags(surface: Surface) -> str:
    """Badges: line or plane and its grid, complete or partial, diverged points."""
    s, grid = surface.summary(), " × ".join(str(a.n) for a in surface.spec.grid)
    tags = f'<span class="tag">{C.kind_of(surface)} · {grid}</span>'
    if surface.complete:
        tags += '<span class="tag ok">complete</span>'
    else:
        tags += f'<span class="tag warn">partial {s["done"]}/{s["points"]}</span>'
    if s["diverged"]:
        tags += f'<span class="tag bad">{s["diverged"]} diverged</span>'
    return tags
