"""One self-contained HTML page per set of scans: figures, numbers and findings.

* :mod:`.page` — :func:`write_report`.  :mod:`.template` — HTML pieces and number formats.
* :mod:`.curvature` — the Hessian section (eigenvalues, trace, density) and scan annotations.
"""

from .page import BASIN_DELTA, SHARPNESS_EPSILON, write_report
from .template import format_value

__all__ = ["BASIN_DELTA", "SHARPNESS_EPSILON", "format_value", "write_report"]
