"""Everything that reads a :class:`~lossmap.surface.Surface` and states a finding.

* :mod:`.common` — the shared rules: missing points, tolerances, the centre.
* :mod:`.slope` — the slope at the centre and its verdict.
* :mod:`.convexity` — second differences of a line and the convexity verdict.
* :mod:`.summary` — the grid minimum, the cosine of two directions, :func:`analyse`.
* :mod:`.geometry` — barriers, basin widths, convexity maps, gradient fields.
* :mod:`.sharpness` — ε-sharpness, on a model or read off a plane.

Nothing here draws or evaluates a model (except :func:`sharpness`, which scans).
"""

from .common import CONVEXITY_SAFETY, ROUNDOFF_SAFETY, SLOPE_TOL
from .convexity import convexity
from .geometry import barrier, basin_width, convexity_map, gradient_field
from .sharpness import grid_sharpness, sharpness
from .slope import slope_at_centre
from .summary import analyse, direction_cosine, minimum

__all__ = [
    "CONVEXITY_SAFETY",
    "ROUNDOFF_SAFETY",
    "SLOPE_TOL",
    "analyse",
    "barrier",
    "basin_width",
    "convexity",
    "convexity_map",
    "direction_cosine",
    "gradient_field",
    "grid_sharpness",
    "minimum",
    "sharpness",
    "slope_at_centre",
]
