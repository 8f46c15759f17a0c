"""The report's caption words on error bands.

The statements of findings (the gap, samples needed, what a verdict is
about) are made by :mod:`lossmap.analysis.render`, for the report and
``lossmap info`` alike.
"""

from __future__ import annotations

from ..surface import Surface

__all__ = ["band_note"]


def band_note(surface: Surface, names: list[str]) -> str:
    """The figure caption's words on the error bands ("" when no variable drawn has them)."""
    if surface.errors is None or not any(v in surface.errors for v in names):
        return ""
    return (" Shaded: ±2 standard errors of each point (the sampling noise of its mean over "
            "the scan's samples).")
