"""lossmap: loss-surface slices of neural networks.

>>> import lossmap as lm
>>> lm.__version__
'0.1.0'
"""

from . import metrics  # lm.metrics: token-exact losses for dict batches (torch only)
from .align import align
from .analysis.barriers import barrier
from .analysis.geometry import basin_width, convexity_map, gradient_field
from .analysis.minima import BarrierMatrix, barrier_matrix
from .analysis.samples import samples_needed
from .analysis.sharpness import grid_sharpness
from .callbacks.recorder import TrajectoryRecorder
from .compare import compare
from .curvature.api import curvature_operator
from .curvature.operator import CurvatureOperator
from .curves.curve import Curve
from .curves.fit import curve
from .curves.neb import neb
from .directions.between import interpolation, plane
from .directions.direction import Direction
from .directions.random import random_direction, random_directions
from .directions.result import Directions
from .directions.trajectory import fitted_grid, pca_directions, project
from .draws import over_draws
from .errors import InputError, InputTypeError, LossmapError, StoreError
from .hessian.eigen import curvature, hessian_eigenpairs, hvp
from .hessian.spectral import broaden, hessian_density, hessian_trace, slq_nodes_weights
from .scan.api import load_directions, scan
from .scan.design import Design, design
from .scan.estimate import Estimate, estimate
from .scan.path import curve_plane
from .scan.plan import Plan, ScanOptions, plan_scan
from .scan.spec import Axis, ScanSpec
from .sharpness.api import sharpness
from .surface import Surface, load
from .topology import topology
from .version import __version__

__all__ = [
    "Axis",
    "BarrierMatrix",
    "CurvatureOperator",
    "Curve",
    "Design",
    "Direction",
    "Directions",
    "Estimate",
    "InputError",
    "InputTypeError",
    "LossmapError",
    "Plan",
    "ScanOptions",
    "ScanSpec",
    "StoreError",
    "Surface",
    "TrajectoryRecorder",
    "__version__",
    "align",
    "barrier",
    "barrier_matrix",
    "basin_width",
    "broaden",
    "compare",
    "convexity_map",
    "curvature",
    "curvature_operator",
    "curve",
    "curve_plane",
    "design",
    "estimate",
    "fitted_grid",
    "gradient_field",
    "grid_sharpness",
    "hessian_density",
    "hessian_eigenpairs",
    "hessian_trace",
    "hvp",
    "interpolation",
    "load",
    "load_directions",
    "metrics",
    "neb",
    "over_draws",
    "pca_directions",
    "plan_scan",
    "plane",
    "project",
    "random_direction",
    "random_directions",
    "samples_needed",
    "scan",
    "sharpness",
    "slq_nodes_weights",
    "topology",
]


def __getattr__(name: str):
    """``lm.jax`` (and ``lm.plot``) load on first use: the core never imports JAX."""
    if name in ("jax", "plot"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lossmap' has no attribute {name!r}")
