"""Compare models' loss surfaces: one colour scale, the same levels and ranges, their findings.

* :mod:`.api` — :func:`compare`, the one entry point, and its :class:`Comparison`.
* :mod:`.rule` — :func:`check_same_rule`: only the model may differ between the scans.
* :mod:`.scale` — :class:`SharedScale`: the levels, norm and ranges all panels share.
* :mod:`.draw` — the figure: models side by side, then the differences from the reference.
* :mod:`.table` — :class:`ComparisonTable`: each model's findings, one row each.
* :mod:`.page` — the self-contained HTML page.
"""

from .api import Comparison, compare
from .rule import check_same_rule
from .scale import SharedScale, shared_scale
from .table import ComparisonTable, findings_table

__all__ = [
    "Comparison",
    "ComparisonTable",
    "SharedScale",
    "check_same_rule",
    "compare",
    "findings_table",
    "shared_scale",
]
