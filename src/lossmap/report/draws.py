"""The report's part on a K-draw scan: the spread of each direction-dependent number.

A store scanned with ``lm.scan(..., draws=K)`` is reported as its median draw
(:func:`lossmap.draws.compare.median_draw`: the draw whose peak is the
median) with every figure and finding of an ordinary line or plane, and this
part beside it: :func:`lossmap.draws.plot_draw_lines` (a line) or
:func:`lossmap.draws.plot_draw_planes` (a plane: the median draw large, the
others as small multiples), one sentence stating the spread
(:func:`lossmap.analysis.render.sentence` of the height's
:class:`~lossmap.draws.DrawSpread`) and a table of :func:`lossmap.over_draws`'
numbers for every loss: mean ± s.d. over draws, s.e. over samples, draw share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..analysis.render import sentence
from ..draws import over_draws, plot_draw_lines, plot_draw_planes
from ..draws.compare import median_draw
from ..plot import common as C
from . import template as T

__all__ = ["draws_part", "spread_rows"]

HEAD = ["loss", "number", "mean over draws", "± s.d. over draws", "s.e. over samples", "draw share"]


def spread_rows(spreads: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One table row per (variable, number): mean, s.d. over draws, s.e. over samples, share.

    Parameters
    ----------
    spreads : dict of str to dict of str to DrawSpread
        ``{variable: lm.over_draws(surface, variable)}``.

    Returns
    -------
    list of list of str
        Rows of :data:`HEAD`, numbers as :func:`lossmap.report.template.format_value` writes them.
    """
    rows = []
    for variable, spread in spreads.items():
        for name, f in spread.items():
            label = name.replace("_", " ") + (
                f" (r = {f.radius:g})" if f.radius is not None else ""
            )
            share = "—" if f.draw_share is None else f"{f.draw_share:.0%}"
            rows.append(
                [
                    variable.replace("_", " "),
                    label,
                    T.format_value(f.value),
                    T.format_value(f.sd),
                    T.format_value(f.se_samples),
                    share,
                ]
            )
    return rows


def draws_part(surface: Any, png: Callable[[Any], str], *, delta: float) -> tuple[int, str]:
    """The median draw's index and the HTML of the spread over draws.

    Parameters
    ----------
    surface : Surface
        A line or plane scanned with ``draws=K`` (dims ``draw, alpha[, beta]``).
    png : callable
        Figure → base64 PNG (closes the figure).
    delta : float
        δ of the basin widths (loss units), as the report's.

    Returns
    -------
    (int, str)
        The median draw (by the first loss's peak) and an ``<h3>`` part.
    """
    names = C.loss_variables(surface)
    spreads = {v: over_draws(surface, v, delta=delta) for v in names}
    first = spreads[names[0]]
    mid = median_draw(first)
    k = surface.spec.draws["count"]
    plane = len(surface.dims) == 3
    draw = plot_draw_planes if plane else plot_draw_lines
    fig = draw(surface, names[0])
    cap = (
        f"The median draw (draw {mid}, by its peak) large, the other {k - 1} as small "
        "multiples, one colour scale."
        if plane
        else f"All {k} draws of the line."
    )
    said = f"{names[0].replace('_', ' ')} over {k} direction draws · {sentence(first['height'])}"
    return mid, (
        f"<h3>Spread over {k} direction draws</h3>"
        f'<p class="draw-spread">{T.esc(said)}</p>'
        + str(T.figure(png(fig), "direction draws", cap))
        + '<div class="scroll">'
        + str(T.table(HEAD, spread_rows(spreads), numeric=(2, 3, 4)))
        + '</div><p class="note">The figures and findings above are the median draw\'s. '
        "s.e. over samples: the root mean square of the draws' own; draw share: the part of "
        "the variance over draws the directions make (a lower bound). Definitions: "
        "docs/draws.md.</p>"
    )
