"""Repeated direction draws: findings over draws, their comparison and pictures.

The scan itself is ``lm.scan(..., draws=K)`` (:mod:`lossmap.scan.draws`);
:func:`over_draws` (:mod:`lossmap.draws.spread`) gives every direction-dependent
number's mean ± standard deviation over the draws.
"""

from .spread import DrawSpread, over_draws, per_draw

__all__ = ["DrawSpread", "over_draws", "per_draw"]
