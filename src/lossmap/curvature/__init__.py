"""Curvature of the loss as operators: Hessian, GGN, Fisher, empirical Fisher.

* :mod:`.operator` — :func:`curvature_operator` and :class:`CurvatureOperator`.
* :mod:`.engine` — lossmap's own products (dict batches, params subsets, guard).
* :mod:`.likelihood` — the output-space matrices of the GGN and the Fishers.
* :mod:`.eigen`, :mod:`.spectrum` — eigenpairs (ARPACK) and SLQ densities.
* :mod:`.blocks` — parameter groups for per-block spectra.
* :mod:`.estimators` — trace and diagonal estimators with standard errors.
"""

from .api import curvature_operator
from .operator import CurvatureOperator
from .spectrum import broaden

__all__ = ["CurvatureOperator", "broaden", "curvature_operator"]
