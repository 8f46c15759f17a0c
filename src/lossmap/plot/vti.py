"""VTK image data (``.vti``) of a 3-D grid for ParaView (see :mod:`lossmap.plot.vtk`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .vtk import _point_data, _Surface, height_variable

__all__ = ["to_vti"]


def _spacing(axis: np.ndarray, name: str) -> float:
    """The step of evenly spaced coordinates (VTK image data has one per axis)."""
    axis = np.asarray(axis, dtype=np.float64)
    if axis.size < 2:
        return 1.0
    steps = np.diff(axis)
    if not np.allclose(steps, steps[0], rtol=1e-9, atol=0.0):
        raise InputError(
            f"a .vti file needs evenly spaced coordinates; {name} is not: "
            "write each plane with to_vtk instead"
        )
    return float(steps[0])


def to_vti(
    surface: _Surface,
    path: str | os.PathLike,
    variable: str | None = None,
    topology: object | None = None,
) -> Path:
    """Write a 3-D grid as VTK image data (``.vti``) for ParaView.

    Every variable is point data (float64, the Surface's values, NaN/inf kept),
    the height variable first (ParaView colours by it), its ``_se`` where
    measured, ``done`` and ``finite`` (uint8), and with ``topology`` the
    ``basin`` of every point (int32). Written next to ``path`` and renamed
    onto it.

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
    path = Path(path)
    dims = tuple(surface.dims)
    if len(dims) != 3:
        raise InputError(f"a .vti file holds a 3-D grid; this surface has {len(dims)} dimensions")
    if path.suffix != ".vti":
        raise InputError(
            f"{str(path)!r}: a 3-D grid is written to a .vti file (VTK image data), "
            f"not {path.suffix or 'a name without suffix'}: "
            f"name it {path.with_suffix('.vti').name}"
        )
    first = height_variable(surface.values, variable)
    try:
        from pyevtk.hl import imageToVTK
    except ImportError as exc:
        raise InputError(
            f"writing VTK files needs pyevtk ({exc}): pip install 'lossmap[vtk]'"
        ) from None
    coords = [np.asarray(surface.coords[d], dtype=np.float64) for d in dims]
    spacing = tuple(_spacing(c, d) for c, d in zip(coords, dims, strict=True))
    origin = tuple(float(c[0]) for c in coords)
    data = {n: np.ascontiguousarray(v) for n, v in _point_data(surface, first).items()}
    tree = getattr(topology, "tree", None)
    if tree is not None:
        if tree.label.size != data[first].size:
            raise InputError("topology= was computed on another grid: its size differs")
        data["basin"] = np.ascontiguousarray(tree.label.reshape(data[first].shape), np.int32)
    tmp = path.with_name(f".{path.stem}.partial{os.getpid()}")
    written = Path(f"{tmp}.vti")
    try:
        imageToVTK(str(tmp), origin=origin, spacing=spacing, pointData=data)
        os.replace(written, path)
    finally:
        if written.exists():
            written.unlink()
    return path
