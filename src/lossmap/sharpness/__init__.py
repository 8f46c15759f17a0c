"""Sharpness measures: worst-case (Auto-PGD), m-sharpness, average-case, PAC-Bayes σ, random.

:func:`sharpness` (``lm.sharpness``) is the one entry point; it returns a
:class:`~lossmap.analysis.finding.SharpnessMeasure` whose ``direction`` (the
perturbation found) ``lm.scan`` takes, and :func:`worst_case_directions` adds
a random direction orthogonal to it for a plane (docs/sharpness.md).

* :mod:`.objective` — the loss at ``w + s ⊙ γ`` per unit (the whole split or a
  batch of m examples), its gradient, and the paired standard error.
* :mod:`.ascent` — Auto-PGD in an ℓ2 ball or ℓ∞ box.
* :mod:`.gaussian` — Gaussian, PAC-Bayes and random-direction perturbations.
* :mod:`.landscape` — the worst-case direction and an orthogonal one.
* :mod:`.legacy` — the random-lines ε-sharpness of lossmap 0.1.
"""

from .api import KINDS, sharpness
from .landscape import worst_case_directions

__all__ = ["KINDS", "sharpness", "worst_case_directions"]
