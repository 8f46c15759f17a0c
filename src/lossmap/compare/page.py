"""The comparison as one self-contained HTML page, in the style of :mod:`lossmap.report`.

The page holds the figure (an embedded PNG), the findings table, each
model's findings in words, the shared scale, the scan rule every model
shares and where each model's scan came from. It names no external resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..report import template as T
from ..surface import Surface
from ..version import __version__
from .scale import SharedScale
from .table import ComparisonTable

__all__ = ["comparison_page"]


def _scale_rows(scale: SharedScale) -> list[tuple[str, str]]:
    rows = [
        ("variable", scale.variable),
        ("values from", f"{T.format_value(scale.vmin)} to {T.format_value(scale.vmax)}"),
        (
            "colour scale",
            f"log of the loss above the common minimum, L − min + {scale.floor:.3g}"
            if scale.log
            else "linear",
        ),
        ("contour levels", f"{len(scale.levels)}, the same in every panel"),
        ("axis ranges", " × ".join(f"[{lo:g}, {hi:g}]" for lo, hi in scale.ranges)),
    ]
    if scale.diff_limit is not None:
        rows.append(("differences", f"±{scale.diff_limit:.4g} (model − reference, one scale)"))
    return rows


def _caption(scale: SharedScale, names: Sequence[str], plane: bool) -> str:
    kind = "filled contours" if plane else "lines"
    cap = (
        f"{', '.join(names)}: {kind} of {scale.variable} on one colour scale with the same "
        "levels and axis ranges"
        if plane
        else f"{', '.join(names)}: {scale.variable} along α with one y range"
    )
    if scale.log:
        cap += ", drawn as the loss above the common minimum on a log scale"
    if scale.diff_limit is not None and len(names) > 1:
        where = "below" if plane else "in the last panel"
        cap += f"; {where}: each model − {names[0]} on one diverging scale"
    return cap + "."


def comparison_page(
    surfaces: Sequence[Surface],
    names: Sequence[str],
    scale: SharedScale,
    table: ComparisonTable,
    png_base64: str,
    *,
    title: str = "lossmap comparison",
) -> str:
    """The page's HTML text.

    Parameters
    ----------
    surfaces, names
        The models compared, the reference first.
    scale : SharedScale
    table : ComparisonTable
    png_base64 : str
        The comparison figure as a base64 PNG.
    title : str

    Returns
    -------
    str
    """
    plane = len(surfaces[0].dims) == 2
    head = ["model", *table.columns]
    rows = [[m, *(table.text(m, c) for c in table.columns)] for m in table.models]
    said = "".join(
        f"<h3>{T.esc(m)}</h3><ul class='findings'>"
        + "".join(f"<li><b>{T.esc(c)}</b> · {T.esc(s)}</li>" for c, s in table.sentences[m])
        + "</ul>"
        for m in table.models
    )
    where = [
        (n, s.path or "— (not read from a store)", s.fingerprints.get("centre", "—"))
        for n, s in zip(names, surfaces, strict=True)
    ]
    body = "\n".join(
        [
            '<section class="card" id="figure"><h2>Side by side</h2>'
            + T.figure(png_base64, "comparison", _caption(scale, names, plane))
            + "</section>",
            '<section class="card" id="table"><h2>Findings</h2>'
            + T.table(head, rows, numeric=tuple(range(1, len(head))))
            + said
            + "</section>",
            '<section class="card" id="scale"><div class="cols"><div><h2>Shared scale</h2>'
            + T.table(["setting", "value"], _scale_rows(scale))
            + "</div><div><h2>Models</h2>"
            + T.table(["model", "store", "centre fingerprint"], where)
            + "</div></div></section>",
            '<section class="card" id="rule"><h2>The scan rule every model shares</h2>'
            + T.spec_table(surfaces[0])
            + "</section>",
        ]
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sub = f"{len(names)} models · {scale.variable} · lossmap {__version__} · written {now}"
    return T.page(title, sub, "", body)


def png_base64(fig: Any, dpi: int = 110) -> str:
    """``fig`` as a base64 PNG (white background, tight box)."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")
