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

Every variable is point data (float64, exactly the Surface's values), with its
standard error ``<name>_se`` where measured and
``done`` (uint8, 1 where the point is finished). The height variable comes
first, so ParaView colours by it on opening.

Missing points (not computed yet, or diverged: NaN or ±inf) keep their NaN/inf
in the point data, where ParaView draws them in its NaN colour; their *height*
(a coordinate, which must be finite for VTK's bounds, camera and filters) is
put at the lowest finite height of the surface, or 0 when no point has one. So
a partial plane is a whole sheet with the missing points on its floor; use
Threshold on ``done`` to keep only finished points.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import InputError

__all__ = ["height_variable", "to_vtk"]

#: The suffix a surface of each number of dimensions is written to.
SUFFIXES = {1: ".vtp", 2: ".vts"}


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


def _floored(height: np.ndarray) -> np.ndarray:
    """``height`` (float64) with every non-finite value put at the lowest finite one (or 0)."""
    height = np.asarray(height, dtype=np.float64)
    finite = np.isfinite(height)
    floor = float(height[finite].min()) if finite.any() else 0.0
    return np.where(finite, height, floor)


def _point_data(surface: _Surface, first: str) -> dict[str, np.ndarray]:
    """Every variable as float64 (the height variable first), its ``_se``, then ``done``."""
    names = [first, *(n for n in surface.values if n != first)]
    data = {n: np.asarray(surface.values[n], dtype=np.float64) for n in names}
    errors = getattr(surface, "errors", None) or {}
    data.update({f"{n}_se": np.asarray(errors[n], dtype=np.float64) for n in names if n in errors})
    data["done"] = np.asarray(surface.done, dtype=np.uint8)
    return data


def _write_plane(stem: str, surface: _Surface, first: str) -> None:
    from pyevtk.hl import gridToVTK

    alpha, beta = surface.coords["alpha"], surface.coords["beta"]
    shape = (alpha.size, beta.size, 1)  # (I, J, K); written x-fastest (Fortran order)
    x = np.ascontiguousarray(np.broadcast_to(alpha[:, None, None], shape), dtype=np.float64)
    y = np.ascontiguousarray(np.broadcast_to(beta[None, :, None], shape), dtype=np.float64)
    z = np.ascontiguousarray(_floored(surface.values[first]).reshape(shape))
    data = _point_data(surface, first)
    data = {n: np.ascontiguousarray(v.reshape(shape)) for n, v in data.items()}
    gridToVTK(stem, x, y, z, pointData=data)


def _write_line(stem: str, surface: _Surface, first: str) -> None:
    from pyevtk.vtk import VtkFile, VtkPolyData

    x = np.ascontiguousarray(surface.coords["alpha"], dtype=np.float64)  # (n,)
    y = _floored(surface.values[first])  # (n,)
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
    ``(alpha, height, 0)``; every variable is point data (float64), with
    ``done`` (uint8). A missing or diverged point keeps NaN/inf in its point
    data and sits at the lowest finite height (see the module's notes). The
    file is written next to ``path`` and then renamed onto it, so a failed
    write leaves no half file; an existing file is replaced.

    Parameters
    ----------
    surface : Surface
        A line or plane, complete or partial.
    path : str or os.PathLike
        The file: ending in ``.vts`` for a plane, ``.vtp`` for a line.
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
    path = Path(path)
    ndim = len(surface.dims)
    want = SUFFIXES[ndim]
    if path.suffix != want:
        kind = "a plane" if ndim == 2 else "a line"
        what = "a VTK structured grid" if ndim == 2 else "a VTK poly-line"
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
        (_write_plane if ndim == 2 else _write_line)(str(tmp), surface, first)
        os.replace(written, path)
    finally:
        if written.exists():
            written.unlink()
    return path
