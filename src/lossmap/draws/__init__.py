"""Repeated direction draws: findings over draws, their comparison and pictures.

The scan itself is ``lm.scan(..., draws=K)`` (:mod:`lossmap.scan.draws`);
:func:`over_draws` (:mod:`lossmap.draws.spread`) gives every direction-dependent
number's mean ± standard deviation over the draws, :mod:`lossmap.draws.compare`
the comparison's columns, :mod:`lossmap.draws.figures` the pictures.
"""

from .compare import median_draw
from .figures import plot_draw_lines, plot_draw_planes
from .spread import DrawSpread, over_draws, per_draw

__all__ = [
    "DrawSpread",
    "median_draw",
    "over_draws",
    "per_draw",
    "plot_draw_lines",
    "plot_draw_planes",
]
