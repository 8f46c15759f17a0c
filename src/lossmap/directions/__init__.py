"""Directions in weight space: the :class:`Direction` type and every builder that returns it.

* :mod:`.direction` — ``Direction``, a read-only mapping name → tensor (safetensors on disk).
* :mod:`.result` — ``Directions``, what a builder of several directions returns: a tuple of
  them that ``lm.scan`` takes as it is, with the builder's extras (``coords``…).
* :mod:`.random` — Gaussian directions normalized per filter, tensor or model
  (:mod:`.units`: which slices of each layer's weight are its output units).
* :mod:`.between` — the line between two models, the plane through three.
* :mod:`.trajectory` — principal components of a training trajectory, and its projection.
* :mod:`.subset` — ``params=``: directions over part of the model, chosen by name.
* :mod:`.recipe` — a random direction kept as its recipe and regenerated bit-identically
  (:mod:`.storage`: the threshold and the saved form).

Hessian eigen-directions come from :func:`lossmap.hessian.hessian_eigenpairs`.
"""

from .between import interpolation, plane
from .direction import Direction, as_direction
from .random import IGNORES, NORMS, check_ignore, check_norm, random_direction, random_directions
from .recipe import regenerate
from .result import Directions
from .subset import select_params
from .trajectory import fitted_grid, pca_directions, project

__all__ = [
    "IGNORES",
    "NORMS",
    "Direction",
    "Directions",
    "as_direction",
    "check_ignore",
    "check_norm",
    "fitted_grid",
    "interpolation",
    "pca_directions",
    "plane",
    "project",
    "random_direction",
    "random_directions",
    "regenerate",
    "select_params",
]
