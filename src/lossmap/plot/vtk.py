"""VTK files of a Surface for ParaView: a plane as a structured grid, a line as a poly-line.

Written through :mod:`pyevtk` (the ``vtk`` extra: ``pip install lossmap[vtk]``),
imported only when a file is written. ``meshio`` was the other candidate, but
it writes neither ``.vts`` nor ``.vtp``.

- A **plane** becomes a ``.vts`` (``StructuredGrid``) of ``n_alpha x n_beta``
  points: ``x = alpha``, ``y = beta``, ``z =`` the height variable. VTK numbers
  the points x-fastest, so the value at ``(alpha_i, beta_j)`` is point
  ``i + n_alpha * j``.
- A **line** becomes a ``.vtp`` (``PolyData``) holding one poly-line through
  its ``n_alpha`` points: ``x = alpha``, ``y =`` the height variable, ``z = 0``.
- A **3-D grid** (``alpha``, ``beta``, ``gamma``) becomes a ``.vti``
  (``ImageData``; with a topology's basins: :func:`lossmap.plot.vti.to_vti`):
  origin and spacing from the evenly spaced coordinates, the value at
  ``(i, j, k)`` is point ``i + n0 * (j + n1 * k)``;
  there is no height (ParaView draws isosurfaces with *Contour*, slices with
  *Slice*), so NaN/inf stay where they are, with ``finite`` to threshold on,
  and the basins of a :func:`lossmap.topology` as ``basin`` (int32, the
  position of each point's minimum in ``topology.minima``).

Every variable is point data (float64, exactly the Surface's values), with its
standard error ``<name>_se`` where measured, ``done`` (uint8, 1 where the
point is finished) and ``finite`` (uint8, 1 where the height variable is a
finite number). The height variable comes first, so ParaView colours by it on
opening.

A point's *height* is a coordinate, which must be finite for VTK's bounds,
camera and filters; where the height variable is not finite it is put where
the point belongs, and its NaN/inf stays in the point data (ParaView's NaN
colour):

- a **missing** point (not computed yet: ``done`` 0) sits on the floor, the
  lowest finite height (0 when no point has one);
- a **diverged** point (computed, +inf or NaN: ``done`` 1, ``finite`` 0) sits
  on the roof, a tenth of the finite span above the highest finite height
  (see :func:`vtk_heights`), so a blown-up region is a plateau above the
  surface, never a valley; a point at -inf sits as far below the floor.

Threshold on ``done`` keeps the finished points, on ``finite`` the finite ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError

__all__ = ["height_variable", "to_vtk", "vtk_heights"]

#: The suffix a surface of each number of dimensions is written to.
SUFFIXES = {1: ".vtp", 2: ".vts", 3: ".vti"}


class _Surface(Protocol):  # lossmap.surface.Surface, without importing it (no cycle)
    @property
    def dims(self) -> tuple[str, ...]: ...

    @property
    def coords(self) -> dict[str, np.ndarray]: ...

    values: dict[str, np.ndarray]
    done: np.ndarray


def height_variable(values: Mapping[str, np.ndarray], variable: str | None = None) -> str:
    """The variable that gives the height: ``variable``, or the first loss variable.

    Parameters
    ----------
    values : mapping of str to ndarray
        The Surface's variables (``surface.values``), in stored order.
    variable : str, optional
        The variable asked for; None picks the first whose name ends in
        ``_loss`` (``train_loss``), else the first variable.

    Returns
    -------
    str
        The name of the height variable.

    Examples
    --------
    >>> height_variable({"train_accuracy": None, "test_loss": None})
    'test_loss'
    >>> height_variable({"train_loss": None}, "train_acc")
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: height variable 'train_acc' is not in this surface: choose one of train_loss
    """  # noqa: E501
    names = list(values)
    if variable is None:
        return next((n for n in names if n.endswith("_loss")), names[0])
    if variable not in values:
        raise InputError(f"height variable {variable!r} is not in this surface: "
                         f"choose one of {', '.join(names)}")
    return variable


def vtk_heights(values: np.ndarray, done: np.ndarray) -> np.ndarray:
    """The finite height of each point: its value, or where a missing or diverged point sits.

    Parameters
    ----------
    values : ndarray
        The height variable, any shape.
    done : ndarray of bool
        Same shape: True where the point was computed.

    Returns
    -------
    ndarray of float64
        Same shape. A finite value is its own height. With ``lo``, ``hi`` the
        lowest and highest finite values (both 0 when there is none) and
        ``gap`` a tenth of ``hi - lo`` (a tenth of ``|hi|``, or 1, when that
        is 0): a point not computed sits at ``lo``; a computed point at +inf
        or NaN (diverged) at ``hi + gap``, above every finite height; one at
        -inf at ``lo - gap``.

    Examples
    --------
    >>> vtk_heights(np.array([1.0, 3.0, np.inf, np.nan, np.nan]),
    ...             np.array([True, True, True, True, False])).tolist()
    [1.0, 3.0, 3.2, 3.2, 1.0]
    """
    values = np.asarray(values, dtype=np.float64)
    done = np.asarray(done, dtype=bool)
    finite = np.isfinite(values)
    lo = float(values[finite].min()) if finite.any() else 0.0
    hi = float(values[finite].max()) if finite.any() else 0.0
    gap = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
    top = min(hi + gap, float(np.finfo(np.float64).max))
    bottom = max(lo - gap, -float(np.finfo(np.float64).max))
    heights = np.where(finite, values, lo)  # missing: on the floor
    heights[done & (np.isnan(values) | np.isposinf(values))] = top
    heights[done & np.isneginf(values)] = bottom
    return heights


def _point_data(surface: _Surface, first: str) -> dict[str, np.ndarray]:
    """Every variable as float64 (the height variable first), its ``_se``, ``done``, ``finite``."""
    names = [first, *(n for n in surface.values if n != first)]
    data = {n: np.asarray(surface.values[n], dtype=np.float64) for n in names}
    errors = getattr(surface, "errors", None) or {}
    data.update({f"{n}_se": np.asarray(errors[n], dtype=np.float64) for n in names if n in errors})
    data["done"] = np.asarray(surface.done, dtype=np.uint8)
    data["finite"] = np.isfinite(data[first]).astype(np.uint8)
    return data


def _write_plane(stem: str, surface: _Surface, first: str) -> None:
    from pyevtk.hl import gridToVTK

    alpha, beta = surface.coords["alpha"], surface.coords["beta"]
    shape = (alpha.size, beta.size, 1)  # (I, J, K); written x-fastest (Fortran order)
    x = np.ascontiguousarray(np.broadcast_to(alpha[:, None, None], shape), dtype=np.float64)
    y = np.ascontiguousarray(np.broadcast_to(beta[None, :, None], shape), dtype=np.float64)
    z = np.ascontiguousarray(vtk_heights(surface.values[first], surface.done).reshape(shape))
    data = _point_data(surface, first)
    data = {n: np.ascontiguousarray(v.reshape(shape)) for n, v in data.items()}
    gridToVTK(stem, x, y, z, pointData=data)


def _write_line(stem: str, surface: _Surface, first: str) -> None:
    from pyevtk.vtk import VtkFile, VtkPolyData

    x = np.ascontiguousarray(surface.coords["alpha"], dtype=np.float64)  # (n,)
    y = vtk_heights(surface.values[first], surface.done)  # (n,)
    z = np.zeros_like(x)
    connectivity = np.arange(x.size, dtype=np.int64)  # one poly-line through every point
    offsets = np.array([x.size], dtype=np.int64)  # where each line's connectivity ends
    data = _point_data(surface, first)
    w = VtkFile(stem, VtkPolyData)
    w.openGrid()
    w.openPiece(npoints=x.size, nlines=1)
    w.openElement("Points")
    w.addData("points", (x, y, z))
    w.closeElement("Points")
    w.openElement("Lines")
    w.addData("connectivity", connectivity)
    w.addData("offsets", offsets)
    w.closeElement("Lines")
    w.openData("Point", scalars=first)
    for name, values in data.items():
        w.addData(name, values)
    w.closeData("Point")
    w.closePiece()
    w.closeGrid()
    # The appended blocks follow the order of the headers above.
    w.appendData((x, y, z)).appendData(connectivity).appendData(offsets)
    for values in data.values():
        w.appendData(values)
    w.save()


def to_vtk(surface: _Surface, path: str | os.PathLike, variable: str | None = None) -> Path:
    """Write a plane as a ``.vts`` structured grid, a line as a ``.vtp`` poly-line.

    The plane's points are ``(alpha, beta, height)``, the line's
    ``(alpha, height, 0)``; a 3-D grid is written as ``.vti`` image data (no
    height; see the module's notes). Every variable is point data (float64), with
    ``done`` and ``finite`` (uint8). A missing or diverged point keeps NaN/inf
    in its point data; a missing one sits at the lowest finite height, a
    diverged one (+inf, NaN) above the highest (see :func:`vtk_heights`). The
    file is written next to ``path`` and then renamed onto it, so a failed
    write leaves no half file; an existing file is replaced.

    Parameters
    ----------
    surface : Surface
        A line, plane or 3-D grid, complete or partial.
    path : str or os.PathLike
        The file: ending in ``.vts`` for a plane, ``.vtp`` for a line, ``.vti`` for a 3-D grid.
    variable : str, optional
        The height variable; default the first loss variable (``train_loss``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        A suffix that does not fit the surface, an unknown variable, or pyevtk
        not installed.

    Examples
    --------
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import from_rows
    >>> spec = ScanSpec(grid=((-1, 1, 3), (0, 1, 2)), splits=("train",), metrics=("loss",))
    >>> plane = from_rows(spec, [0, 1, 2, 3, 4], [[0.5], [0.1], [0.3], [0.2], [0.9]])
    >>> to_vtk(plane, "plane.vts").name  # the sixth point is missing: its height is 0.1
    'plane.vts'
    >>> to_vtk(plane, "plane.vtp")
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: 'plane.vtp': a plane is written to a .vts file (a VTK structured grid), not .vtp: name it plane.vts
    """  # noqa: E501
    return _write(surface, Path(path), variable)


#: What each number of dimensions is, in the messages: (the surface, the file's kind).
_KINDS = {1: ("a line", "a VTK poly-line"), 2: ("a plane", "a VTK structured grid"),
          3: ("a 3-D grid", "VTK image data")}


def _write(surface: _Surface, path: Path, variable: str | None,
           extra: dict[str, np.ndarray] | None = None) -> Path:
    """Check the suffix and variable, write next to ``path``, rename onto it.

    ``extra`` (3-D only) adds point data arrays of the grid's shape.
    """
    ndim = len(surface.dims)
    if ndim not in SUFFIXES:
        raise InputError(f"VTK files are written for 1 to 3 dimensions; this surface has {ndim}: "
                         "slice it first (e.g. surf.sel(delta=0.0))")
    want = SUFFIXES[ndim]
    if path.suffix != want:
        kind, what = _KINDS[ndim]
        got = path.suffix or "a name without suffix"
        raise InputError(f"{str(path)!r}: {kind} is written to a {want} file ({what}), not {got}: "
                         f"name it {path.with_suffix(want).name}")
    first = height_variable(surface.values, variable)
    try:
        import pyevtk  # noqa: F401
    except ImportError as exc:
        raise InputError(f"writing VTK files needs pyevtk ({exc}): "
                         "pip install 'lossmap[vtk]'") from None
    tmp = path.with_name(f".{path.stem}.partial{os.getpid()}")  # pyevtk adds the suffix
    written = Path(f"{tmp}{want}")
    try:
        if ndim == 3:
            _write_image(str(tmp), surface, first, extra)
        else:
            (_write_plane if ndim == 2 else _write_line)(str(tmp), surface, first)
        os.replace(written, path)
    finally:
        if written.exists():
            written.unlink()
    return path


def _spacing(axis: np.ndarray, name: str) -> float:
    """The step of evenly spaced coordinates (VTK image data has one per axis)."""
    axis = np.asarray(axis, dtype=np.float64)
    if axis.size < 2:
        return 1.0
    steps = np.diff(axis)
    if not np.allclose(steps, steps[0], rtol=1e-9, atol=0.0):
        raise InputError(f"a .vti file needs evenly spaced coordinates; {name} is not: "
                         "write planes of it (surf.sel(...)) instead")
    return float(steps[0])


def _write_image(stem: str, surface: _Surface, first: str,
                 extra: dict[str, np.ndarray] | None = None) -> None:
    from pyevtk.hl import imageToVTK

    coords = [np.asarray(surface.coords[d], dtype=np.float64) for d in surface.dims]
    spacing = tuple(_spacing(c, d) for c, d in zip(coords, surface.dims, strict=True))
    origin = tuple(float(c[0]) for c in coords)
    data = {n: np.ascontiguousarray(v) for n, v in _point_data(surface, first).items()}
    data.update({n: np.ascontiguousarray(v) for n, v in (extra or {}).items()})
    imageToVTK(stem, origin=origin, spacing=spacing, pointData=data)
