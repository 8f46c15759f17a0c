"""Comparing models scanned over K draws: is their difference beyond the draw-to-draw spread?

``lm.compare`` given surfaces with a ``draw`` dimension (``lm.scan(...,
draws=K)``, the same rule and seeds for every model) draws the median draw of
each — the same draw for every model: the one whose ``peak`` is the
reference's median — and adds to its table, per number of :func:`over_draws`
shown (the height at r, the peak, the basin widths):

* ``<number> over K draws``: the mean, its ``±`` the standard deviation over
  draws (not a standard error: the spread one plane would show);
* ``<number>: Δ / draw spread``: for every model but the reference,
  ``|mean − mean_ref| / √(sd² + sd_ref²)``: the difference in units of the
  spread of the difference of two single draws. Above ``z`` (2) the
  difference *exceeds the draw-to-draw spread* — one plane per model would
  show it — and the sentence says so; below, one plane per model could show
  the opposite order. (The standard error of the difference of the means,
  ``√(sd²/K + sd_ref²/K)``, is in the sentence: many draws can resolve a
  difference smaller than the spread of one.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.uncertainty import Z
from .spread import DrawSpread, over_draws

SHOWN = ("height", "peak", "basin_width_alpha", "basin_width_beta")


def has_draws(surfaces: Sequence[Any]) -> bool:
    """Whether the surfaces are K-draw scans (all of them: the rule check refuses a mix)."""
    return any("draw" in s.dims for s in surfaces)


def median_draw(spread: dict[str, DrawSpread]) -> int:
    """The draw whose peak is the median of the draws' peaks (the lower middle for even K).

    Examples
    --------
    >>> from lossmap.draws import DrawSpread
    >>> median_draw({"peak": DrawSpread(variable="v", value=None, draws=(5.0, 1.0, 3.0))})
    2
    """
    peaks = np.asarray(spread["peak"].draws, dtype=np.float64)
    order = np.argsort(np.where(np.isfinite(peaks), peaks, np.inf), kind="stable")
    return int(order[(len(order) - 1) // 2])


def _ratio(a: DrawSpread, ref: DrawSpread) -> tuple[float | None, float | None]:
    if None in (a.value, ref.value, a.sd, ref.sd):
        return None, None
    spread = math.sqrt(a.sd**2 + ref.sd**2)
    diff = abs(a.value - ref.value)
    se = math.sqrt(a.sd**2 / a.count + ref.sd**2 / ref.count)
    return (diff / spread if spread > 0 else (math.inf if diff else 0.0)), se


def spread_columns(
    surfaces: Sequence[Any], names: Sequence[str], variable: str, *, delta: float, z: float = Z
) -> tuple[list[Any], dict[str, dict[str, dict]]]:
    """The median draw of each surface, and per model the table cells over draws.

    Returns ``(surfaces, cells)``: ``cells[name][column] = {"value", "se", "sentence"}``
    (``se`` holds the s.d. over draws in the spread columns, nothing in the ratio ones),
    the form ``lm.compare``'s ``findings=`` takes.
    """
    spreads = [over_draws(s, variable, delta=delta, z=z) for s in surfaces]
    k = median_draw(spreads[0])
    ref_name, ref = names[0], spreads[0]
    cells: dict[str, dict[str, dict]] = {}
    for name, spread in zip(names, spreads, strict=True):
        row: dict[str, dict] = {}
        for q in SHOWN:
            f = spread.get(q)
            if f is None:
                continue
            label = q.replace("_", " ") + (f" at r = {f.radius:g}" if f.radius is not None else "")
            row[f"{label} over {len(f.draws)} draws"] = {
                "value": f.value,
                "se": f.sd,
                "sentence": f.sentence(),
            }
            if name == ref_name:
                continue
            ratio, se = _ratio(f, ref[q])
            if ratio is None:
                said = f"{label}: fewer than two finite draws: the spread is not known"
            else:
                beyond = "exceeds" if ratio > z else "is within"
                said = (
                    f"{label}: the difference from {ref_name}, "
                    f"{f.value - ref[q].value:.3g} (s.e. of the means' difference "
                    f"{se:.2g}), {beyond} {z:g}× the draw-to-draw spread of one draw each "
                    f"({ratio:.3g}×)"
                )
            row[f"{label}: Δ / draw spread"] = {"value": ratio, "se": None, "sentence": said}
        cells[name] = row
    return [s.isel(draw=k) for s in surfaces], cells
