"""Topology of a scanned function: sublevel-set merge tree, persistence pairs, basins, SMAD.

:func:`topology` (``lm.topology``) returns a :class:`Topology` finding; the
merge tree itself is :func:`merge_tree` on the graphs of :mod:`.graph`.
Pictures are in :mod:`lossmap.plot.topology`; see docs/topology.md.
"""

from .api import smad, topology
from .graph import grid_edges, knn_edges
from .merge import MergeTree, merge_tree
from .result import Basin, Critical, Pair, Topology

__all__ = [
    "Basin",
    "Critical",
    "MergeTree",
    "Pair",
    "Topology",
    "grid_edges",
    "knn_edges",
    "merge_tree",
    "smad",
    "topology",
]
