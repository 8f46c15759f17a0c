"""Everything that reads a :class:`~lossmap.surface.Surface` and states a finding.

* :mod:`.finding` — the typed findings every analysis returns (numbers, no words).
* :mod:`.render` — every sentence stating a finding, in one place.
* :mod:`.common` — the shared rules: missing points, tolerances, the centre.
* :mod:`.slope` — the slope at the centre and its verdict.
* :mod:`.convexity` — second differences of a line and the convexity verdict.
* :mod:`.summary` — the grid minimum, the cosine of two directions, :func:`analyse`.
* :mod:`.flat` — slices flat to round-off; directions that cannot move the loss (LoRA).
* :mod:`.geometry` — basin widths, convexity maps, gradient fields.
* :mod:`.barriers` — the barrier of a line or a path (dim t).
* :mod:`.minima` — pairwise barriers of N models and their minimum spanning tree.
* :mod:`.sharpness` — ε-sharpness read off a scanned line or plane (the measures that
  evaluate the model are :func:`lossmap.sharpness`).
* :mod:`.uncertainty` — standard errors of differences, resolved or not; the train-test gap.
* :mod:`.samples` — :func:`samples_needed`: how many samples would resolve a finding.
* :mod:`.evidence` — :func:`findings`: every finding with its evidence.

Nothing here draws or evaluates a model.
"""

from .barriers import barrier
from .common import CONVEXITY_SAFETY, ROUNDOFF_SAFETY, SLOPE_TOL
from .convexity import convexity
from .evidence import findings
from .flat import flatness
from .geometry import basin_width, convexity_map, gradient_field
from .minima import BarrierMatrix, barrier_matrix, minimum_spanning_tree
from .render import finding_sentences, sentence
from .samples import FINDINGS, samples_needed
from .sharpness import grid_sharpness
from .slope import slope_at_centre
from .summary import analyse, direction_cosine, minimum
from .uncertainty import Z, gap

__all__ = [
    "CONVEXITY_SAFETY",
    "FINDINGS",
    "ROUNDOFF_SAFETY",
    "SLOPE_TOL",
    "BarrierMatrix",
    "Z",
    "analyse",
    "barrier",
    "barrier_matrix",
    "basin_width",
    "convexity",
    "convexity_map",
    "direction_cosine",
    "finding_sentences",
    "findings",
    "flatness",
    "gap",
    "gradient_field",
    "grid_sharpness",
    "minimum",
    "minimum_spanning_tree",
    "samples_needed",
    "sentence",
    "slope_at_centre",
]
