"""VTK image data (``.vti``) of a 3-D grid with its basins, for ParaView.

:func:`lossmap.plot.vtk.to_vtk` writes a 3-D grid as ``.vti`` too; :func:`to_vti`
adds the ``basin`` of every point from a :func:`lossmap.topology` of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .vtk import _Surface, _write

__all__ = ["to_vti"]


def to_vti(
    surface: _Surface,
    path: str | os.PathLike,
    variable: str | None = None,
    topology: object | None = None,
) -> Path:
    """Write a 3-D grid as VTK image data (``.vti``) for ParaView.

    Every variable is point data (float64, the Surface's values, NaN/inf kept),
    the first variable first (ParaView colours by it), its ``_se`` where
    measured, ``done`` and ``finite`` (uint8), and with ``topology`` the
    ``basin`` of every point (int32: the position in ``topology.minima`` of
    the minimum whose arc of the merge tree it lies on). Written next to
    ``path`` and renamed onto it.

    Parameters
    ----------
    surface : Surface
        Three dimensions with evenly spaced coordinates (any object with
        ``dims``, ``coords``, ``values``, ``done`` and optionally ``errors``).
    path : str or os.PathLike
        Ending in ``.vti``.
    variable : str, optional
        The first variable; default the first loss variable.
    topology : Topology, optional
        What :func:`lossmap.topology` returned for this grid.

    Returns
    -------
    pathlib.Path
    """
    dims = tuple(surface.dims)
    if len(dims) != 3:
        raise InputError(f"a .vti file holds a 3-D grid; this surface has {len(dims)} dimensions")
    shape = np.shape(next(iter(surface.values.values())))
    extra = {}
    tree = getattr(topology, "tree", None)
    if tree is not None:
        if tree.label.size != int(np.prod(shape)):
            raise InputError("topology= was computed on another grid: its size differs")
        extra["basin"] = tree.label.reshape(shape).astype(np.int32)
    return _write(surface, Path(path), variable, extra)
