"""Curvature of the loss through Hessian-vector products; the Hessian is never formed.

* :mod:`.operator` — the Hessian of the mean loss over one split, as an operator.
* :mod:`.checks` — argument checks shared by every Hessian function.
* :mod:`.eigen` — :func:`hvp`, :func:`curvature`, :func:`hessian_eigenpairs`.
* :mod:`.spectral` — trace (Hutchinson) and spectral density (stochastic Lanczos).
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
