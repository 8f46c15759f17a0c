"""Files of Li et al.'s reference code (``loss-landscape``, 2018) as surfaces and directions.

* :func:`load_li_surface` — a surface file (``plot_surface.py``) as a
  :class:`~lossmap.surface.Surface`; ``lm.load("surface.h5")`` calls it.
* :func:`load_li_directions` — a direction file (``net_plotter.py``) as
  :class:`~lossmap.directions.direction.Direction` objects, named after a model.
* :func:`import_li_surface` — a surface file written into a lossmap store
  (``lossmap import``), so that every command that reads a store reads it.

The layout of both files, and how the reference code's indexing is undone:
:mod:`lossmap.interop.li2018_layout`. ``h5py`` (the ``li`` extra) is imported
only when a file is read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..directions.direction import Direction
from ..errors import InputError, InputTypeError
from ..surface import Surface
from .li2018_layout import SOURCE, named_settings, read_direction_lists, read_surface

__all__ = ["import_li_surface", "load_li_directions", "load_li_surface"]


def load_li_surface(path: str | os.PathLike) -> Surface:
    """Read a surface file of Li et al.'s ``plot_surface.py`` (HDF5) as a Surface.

    Parameters
    ----------
    path : str or PathLike
        The ``.h5`` file: ``xcoordinates`` [, ``ycoordinates``] and values such
        as ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``.

    Returns
    -------
    Surface
        A line (``xcoordinates`` only) or a plane whose ``values[v][i, j]`` is
        the value at ``(x[i], y[j])``, read from the flat index ``j * nx + i``
        where the reference code puts it (so non-square grids come out right).
        Each dataset ``<split>_<metric>`` becomes the variable of that split and
        metric, ``acc`` becoming ``accuracy`` in fractions (0-1, theirs is in
        percent). Points holding -1 (not computed yet) are NaN and not done; a
        point is done when every dataset has a value there. ``spec.loss`` is
        ``"unknown (imported)"`` and each ``spec.directions`` entry says the
        direction was imported (with the direction file's path, and the
        normalization where its name states it); ``meta["imported"]`` records
        the file, the dataset of each variable and each conversion;
        ``fingerprints["source"]`` is a hash of the file.

    Raises
    ------
    lossmap.errors.InputError
        The file is not HDF5, or not in the reference layout (the message
        names what is missing or has the wrong shape).

    Examples
    --------
    >>> import h5py, numpy as np
    >>> x, y = np.linspace(-1, 1, 3), np.linspace(0, 1, 2)
    >>> X, Y = np.meshgrid(x, y)  # the order the reference code fills values in
    >>> with h5py.File("surface.h5", "w") as f:
    ...     f["xcoordinates"], f["ycoordinates"] = x, y
    ...     f["train_loss"] = (X**2 + Y).reshape(3, 2)  # allocated (nx, ny), filled flat
    ...     f["train_acc"] = np.full((3, 2), 50.0)  # percent
    >>> surf = load_li_surface("surface.h5")
    >>> surf.spec.shape, surf.spec.variables
    ((3, 2), ('train_loss', 'train_accuracy'))
    >>> float(surf["train_loss"][0, 1]), float(surf["train_accuracy"][0, 1])  # x = -1, y = 1
    (2.0, 0.5)
    """
    return Surface(**read_surface(path))


def _targets(model: Any, count: int, path: Path) -> tuple[list[str], list[Any], str]:
    """Names, shapes or dtypes to check against, and how the names were found."""
    if model is None:
        return [str(i) for i in range(count)], [None] * count, "positional"
    if isinstance(model, torch.nn.Module):
        params = list(model.named_parameters())
        states = list(model.state_dict().items())
        if count == len(params):
            return [n for n, _ in params], [t for _, t in params], "parameters"
        if count == len(states):
            return [n for n, _ in states], [t for _, t in states], "state"
        raise InputError(
            f"direction file {str(path)!r} holds {count} tensors per direction, but the model "
            f"has {len(params)} parameters and {len(states)} state entries: the directions "
            "were made for another model"
        )
    if isinstance(model, Mapping):
        items = list(model.items())
        targets, how = [t for _, t in items], "mapping"
    elif isinstance(model, Sequence) and not isinstance(model, str):
        items, targets, how = [(n, None) for n in model], [None] * len(model), "names"
    else:
        raise InputTypeError(
            f"model is a {type(model).__name__}: pass the torch.nn.Module the directions were "
            "made for, its state dict, or a list of tensor names (or None)"
        )
    if count != len(items):
        raise InputError(f"direction file {str(path)!r} holds {count} tensors per direction "
                         f"but {len(items)} names were given: one name per tensor")
    return [str(n) for n, _ in items], targets, how


def load_li_directions(path: str | os.PathLike, model: Any = None) -> list[Direction]:
    """Read a direction file of Li et al.'s code (``xdirection`` [, ``ydirection``]).

    Parameters
    ----------
    path : str or PathLike
        The ``.h5`` direction file: a group per direction holding one dataset
        per tensor, named ``0``, ``1``, … in the model's order.
    model : torch.nn.Module or mapping or list of str, optional
        What names the tensors (the file does not): the model the directions
        were made for — its ``named_parameters()`` (their ``dir_type="weights"``)
        or, when the counts say so, its ``state_dict()`` (``"states"``) — or a
        state dict, or a list of names in order. With a model or state dict,
        every shape is checked, and entries of integer state (BatchNorm's
        ``num_batches_tracked``) are left out. None names them ``"0"``, ``"1"``, ….

    Returns
    -------
    list of Direction
        One per axis, x first. Each ``meta`` says it was imported, from which
        file and axis, how it was named, and the normalization where the
        file's name states it.

    Raises
    ------
    lossmap.errors.InputError
        The file is not in the reference layout, or ``model`` does not match
        it (a different count or a tensor of another shape, named).

    Examples
    --------
    >>> import h5py, torch
    >>> net = torch.nn.Linear(3, 2)
    >>> with h5py.File("directions.h5", "w") as f:
    ...     for i, p in enumerate(net.parameters()):  # the reference's write_list
    ...         _ = f.create_dataset(f"xdirection/{i}", data=torch.ones_like(p).numpy())
    >>> (d,) = load_li_directions("directions.h5", model=net)
    >>> sorted(d), d["weight"].shape, d.meta["kind"]
    (['bias', 'weight'], torch.Size([2, 3]), 'imported')
    >>> load_li_directions("directions.h5", model=torch.nn.Linear(3, 5))
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: direction file 'directions.h5': xdirection/0 has shape (2, 3) ...
    """
    p = Path(path)
    found: list[tuple[list[str], list[Any], str]] = []

    def check(shapes: list[tuple[int, ...]]) -> None:  # before any tensor is read
        names, targets, how = _targets(model, len(shapes), p)
        for i, (name, shape, target) in enumerate(zip(names, shapes, targets, strict=True)):
            if isinstance(target, torch.Tensor) and shape != tuple(target.shape):
                raise InputError(
                    f"direction file {str(p)!r}: xdirection/{i} has shape {shape} but "
                    f"{name!r} of the model has {tuple(target.shape)}: the directions were "
                    "made for another model (or the order differs)"
                )
        found.append((names, targets, how))

    lists = read_direction_lists(p, check)
    names, targets, how = found[0]
    out = []
    for axis, arrays in zip("xy", lists, strict=False):
        tensors, dropped = {}, []
        for name, a, target in zip(names, arrays, targets, strict=True):
            if isinstance(target, torch.Tensor) and not target.is_floating_point():
                dropped.append(name)  # e.g. num_batches_tracked
                continue
            t = torch.from_numpy(np.ascontiguousarray(a))
            tensors[name] = t if t.is_floating_point() else t.to(torch.float32)
        meta = {"kind": "imported", "source": SOURCE, "file": str(p), "axis": axis,
                "names": how, **named_settings(p.name, axis)}
        if dropped:
            meta["dropped"] = dropped
        out.append(Direction._adopt(tensors, meta))
    return out


def import_li_surface(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    directions: str | os.PathLike | Sequence[Direction] | None = None,
    model: Any = None,
) -> Path:
    """Write a surface file of Li et al.'s code into a new lossmap store.

    Parameters
    ----------
    path : str or PathLike
        The surface file (see :func:`load_li_surface`).
    out : str or PathLike
        The store to create, e.g. ``plane.lossmap``; it must not exist yet.
    directions : str or PathLike or list of Direction, optional
        Their direction file (read with :func:`load_li_directions` and
        ``model``), or the directions themselves, one per axis: stored with
        the scan, so ``lm.load_directions(out)`` returns them and the report
        states their cosine. Without them the store holds empty directions
        (no tensor), and its spec says the directions were imported.
    model : torch.nn.Module or mapping or list of str, optional
        Names the tensors of a direction file (see :func:`load_li_directions`).

    Returns
    -------
    Path
        ``out``. ``lm.load(out)`` holds what ``load_li_surface(path)`` holds
        (values, points done, spec; with ``directions``, their metadata in the
        spec), and the store's own annotations besides.

    Examples
    --------
    >>> import h5py, numpy as np, lossmap as lm
    >>> with h5py.File("line.h5", "w") as f:
    ...     f["xcoordinates"] = np.linspace(-1, 1, 5)
    ...     f["train_loss"] = np.array([1.0, 0.5, 0.25, -1, -1])  # the last two not computed
    >>> store = import_li_surface("line.h5", "line.lossmap")
    >>> surf = lm.load(store)
    >>> surf.done.tolist(), surf.spec.variables
    ([True, True, True, False, False], ('train_loss',))
    """
    from ..store import Store

    out = Path(out)
    if out.exists():
        raise InputError(f"{str(out)!r} exists; it was left untouched: choose another path, "
                         "or delete it to import again")
    surf = load_li_surface(path)
    spec, fps = surf.spec, dict(surf.fingerprints)
    if directions is None:
        dirs = [Direction({}, m) for m in spec.directions]  # empty: not in the file
        if model is not None:
            raise InputError("model names the tensors of a direction file: pass directions= "
                             "(their .h5 direction file) too")
    else:
        if isinstance(directions, (str, os.PathLike)):
            dirs = load_li_directions(directions, model=model)
        else:
            dirs = [d if isinstance(d, Direction) else Direction(d) for d in directions]
        if len(dirs) != len(spec.grid):
            raise InputError(
                f"the surface {str(path)!r} has {len(spec.grid)} axes but {len(dirs)} "
                f"direction{'s' if len(dirs) != 1 else ''} were given: one per axis"
            )
        spec = dataclasses.replace(spec, directions=tuple(d.meta for d in dirs))
        fps.update({f"dir_{i}": d.fingerprint() for i, d in enumerate(dirs)})
    flat_done = np.flatnonzero(surf.done.reshape(-1))
    coords = np.meshgrid(*spec.coords(), indexing="ij")
    rows = [
        (int(k), [float(c.reshape(-1)[k]) for c in coords],
         [float(surf.values[v].reshape(-1)[k]) for v in spec.variables], 0.0)
        for k in flat_done
    ]
    with Store.create_or_resume(out, spec, fps, dirs, surf.meta) as store:
        store.write(rows)
    return out
