"""The 0.1 Hessian functions, thin calls on :func:`lossmap.curvature_operator` (deprecated).

* :mod:`.eigen` — :func:`hvp`, :func:`curvature`, :func:`hessian_eigenpairs`.
* :mod:`.spectral` — trace (Hutchinson) and spectral density (stochastic Lanczos).

Each warns (``FutureWarning``) naming the operator call that replaces it.
"""

from .eigen import curvature, hessian_eigenpairs, hvp
from .spectral import broaden, hessian_density, hessian_trace, slq_nodes_weights

__all__ = [
    "broaden",
    "curvature",
    "hessian_density",
    "hessian_eigenpairs",
    "hessian_trace",
    "hvp",
    "slq_nodes_weights",
]
