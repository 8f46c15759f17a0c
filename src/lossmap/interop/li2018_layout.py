"""The HDF5 layout of Li et al.'s reference code (``loss-landscape``), read and checked.

This module knows the files and nothing of :class:`~lossmap.surface.Surface`
(which :mod:`lossmap.surface` builds from what it returns, so that
``lm.load("surface.h5")`` needs no import cycle). The layout, as the
reference code writes it:

Surface file (``plot_surface.py``)
    ``xcoordinates`` (nx,) and, for a plane, ``ycoordinates`` (ny,), both
    ``np.linspace``; ``dir_file``, the path of the direction file (a string);
    one dataset per quantity, ``train_loss`` and ``train_acc`` (``test_loss``,
    ``test_acc`` where computed; other ``<split>_<metric>`` names in variants).
    A plane's arrays are allocated with shape (nx, ny) but filled through the
    flat index of ``np.meshgrid(x, y)``, so the value at ``(x[i], y[j])``
    sits at flat index ``j * nx + i`` (not at ``[i, j]`` unless nx = ny and
    the surface is symmetric): read that way, non-square grids come out right.
    Points not computed yet hold -1; accuracy is in percent (0-100).
Direction file (``net_plotter.py``, ``h5_util.py``)
    A group ``xdirection`` (and ``ydirection`` for a plane) holding one
    dataset per tensor, named ``0``, ``1``, … in the order of
    ``model.parameters()`` (``dir_type="weights"``) or of
    ``model.state_dict()`` (``dir_type="states"``, buffers included). The
    names of the parameters are not stored.

Only data stored in the file itself is read. A member that is an external
or soft link, a virtual dataset, or a dataset whose values HDF5 keeps in
another file (external storage) is refused by name before any value is read
(:func:`stored_member`): such a file would otherwise make lossmap read other
files. Every shape is checked against the coordinates (and a grid against
:data:`~lossmap.scan.spec.MAX_POINTS`) before a dataset is read, so a small file
declaring a huge dataset allocates nothing.

``h5py`` (the ``li`` extra) is imported only when a file is read.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingFileError
from ..scan.spec import MAX_POINTS, Axis, ScanSpec

SUFFIXES = (".h5", ".hdf5")
NOT_COMPUTED = -1.0
"""What the reference code writes at a point not computed yet."""
SOURCE = "Li et al. (2018), loss-landscape"
_NOT_VALUES = ("xcoordinates", "ycoordinates", "dir_file")
_METRICS = {"acc": "accuracy"}  # their name -> lossmap's; accuracy is converted from percent
_FIRST_SPLITS, _FIRST_METRICS = ("train", "test"), ("loss", "accuracy")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def open_h5(path: str | os.PathLike, what: str) -> Any:
    """``path`` opened read-only with h5py, after checking it exists and is HDF5."""
    p = Path(path)
    try:
        import h5py
    except ImportError:
        raise InputError(f"reading the {what} {str(p)!r} needs h5py: pip install "
                         "'lossmap[li]' (or h5py)") from None
    if not p.is_file():
        raise MissingFileError(f"{what} {str(p)!r} does not exist: check the path")
    if not h5py.is_hdf5(p):
        raise InputError(
            f"{what} {str(p)!r} is not an HDF5 file: pass a .h5 file written by Li et al.'s "
            "loss-landscape code (or a .lossmap store)"
        )
    return h5py.File(p, "r")


def _names(f: Any) -> str:
    return ", ".join(sorted(f)) or "nothing"


def stored_member(group: Any, name: str, path: Path) -> Any:
    """``group[name]`` when the file itself stores it; None when there is no such member.

    Looks at the link before following it: an external link, a soft link, a
    virtual dataset and a dataset with external storage are refused, naming
    the member, and nothing of them (nor of the files they point to) is read.

    Parameters
    ----------
    group : h5py.Group
        The file or a group of it.
    name : str
        A member of ``group`` (one name, no ``/``).
    path : Path
        The file, for the message.

    Returns
    -------
    h5py.Group or h5py.Dataset or None
    """
    import h5py

    link = group.get(name, getlink=True)
    if link is None:
        return None
    member = f"{group.name.rstrip('/')}/{name}".lstrip("/")
    where = f"{str(path)!r}: {member!r}"
    fix = ("lossmap reads only data stored in the file itself: copy the data into the file "
           "(e.g. h5py's f[name] = f[name][()] in a copy you trust), or delete the member")
    if isinstance(link, h5py.ExternalLink):
        raise InputError(f"{where} is an external link to another file; {fix}")
    if not isinstance(link, h5py.HardLink):
        raise InputError(f"{where} is a soft link (to {link.path!r}); {fix}")
    obj = group[name]
    if isinstance(obj, h5py.Dataset):
        if obj.is_virtual:
            raise InputError(f"{where} is a virtual dataset (its values live in other "
                             f"datasets or files); {fix}")
        if obj.id.get_create_plist().get_external_count() > 0:
            raise InputError(f"{where} keeps its values in another file (HDF5 external "
                             f"storage); {fix}")
    return obj


def _stored(group: Any, path: Path) -> dict[str, Any]:
    """Every member of ``group`` by name, each checked by :func:`stored_member`."""
    return {name: stored_member(group, name, path) for name in group}


def _coordinates(f: dict[str, Any], name: str, path: Path) -> tuple[Axis, bool]:
    """The grid axis of a coordinate dataset, and whether it runs from high to low."""
    obj = f[name]
    where = f"{str(path)!r}: {name!r}"
    if not hasattr(obj, "dtype") or obj.dtype.kind not in "fiu" or obj.ndim != 1:
        raise InputError(f"{where} must be a 1-D array of numbers (np.linspace of the axis), "
                         f"got {_describe(obj)}")
    if obj.shape[0] > MAX_POINTS:
        raise InputError(f"{where} holds {obj.shape[0]:,} coordinates, more than the "
                         f"{MAX_POINTS:,} points a lossmap surface may have: the file is "
                         "damaged or not a surface file of Li et al.'s code")
    c = np.asarray(obj[()], dtype=np.float64)
    if c.size < 2 or not np.isfinite(c).all():
        raise InputError(f"{where} must hold at least 2 finite coordinates, got {c.tolist()}")
    flipped = bool(c[0] > c[-1])
    c = c[::-1] if flipped else c
    span = c[-1] - c[0]
    even = np.linspace(c[0], c[-1], c.size)
    if span <= 0 or np.abs(c - even).max() > 1e-6 * span:
        raise InputError(
            f"{where} is not evenly spaced from {c[0]:g} to {c[-1]:g}: lossmap grids are "
            "np.linspace(lo, hi, n), as the reference code writes them"
        )
    return Axis(float(c[0]), float(c[-1]), int(c.size)), flipped


def _describe(obj: Any) -> str:
    if not hasattr(obj, "dtype"):
        return "a group"
    return f"shape {obj.shape}, dtype {obj.dtype}"


def _on_grid(obj: Any, name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """The values of one dataset as an array of ``shape``: ``[i, j]`` at ``(x[i], y[j])``.

    The dataset's declared shape is checked before anything is read.
    """
    if len(shape) == 1:
        fits = tuple(obj.shape) == shape
        need = f"({shape[0]},), one value per x coordinate"
    else:
        nx, ny = shape
        fits = tuple(obj.shape) in ((nx, ny), (ny, nx))
        need = f"({nx}, {ny}) for the {nx} x coordinates and {ny} y coordinates"
    if not fits:
        raise InputError(
            f"{str(path)!r}: dataset {name!r} has shape {tuple(obj.shape)}, but the grid needs "
            f"{need}: the file is damaged or not in the layout of Li et al.'s plot_surface.py"
        )
    data = np.asarray(obj[()], dtype=np.float64)
    if len(shape) == 1:
        return data
    # filled in np.meshgrid(x, y) order: flat index j * nx + i
    return data.reshape(-1).reshape(shape[::-1]).T.copy()


def _dir_file(obj: Any) -> Any:
    """The direction file's path a surface file records: one string, else None."""
    if not hasattr(obj, "dtype") or obj.dtype.kind not in "SOU" or obj.size != 1:
        return None
    value = obj[()]
    return value.reshape(-1)[0] if isinstance(value, np.ndarray) else value


def _is_values(name: str, obj: Any) -> bool:
    """Whether a dataset holds values: numbers, named ``<split>_<metric>``."""
    split, _, metric = name.partition("_")
    return (hasattr(obj, "dtype") and obj.dtype.kind in "fiu"
            and bool(_IDENT.match(split)) and bool(_IDENT.match(metric)))


def _ordered(names: set[str], first: tuple[str, ...]) -> tuple[str, ...]:
    return (*[n for n in first if n in names], *sorted(names - set(first)))


def file_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (hex, 16 characters, like lossmap's fingerprints)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def named_settings(file_name: str, axis: str) -> dict[str, str]:
    """``norm``, ``ignore`` and ``dir_type`` of one axis, as the reference code's file name
    says them (``…_weights_xignore=biasbn_xnorm=filter.h5``); ``{}`` when it says nothing.

    Examples
    --------
    >>> named_settings("net.t7_weights_xignore=biasbn_xnorm=filter_ynorm=layer.h5", "y")
    {'dir_type': 'weights', 'norm': 'layer'}
    """
    name = Path(file_name).name
    out = {}
    kind = re.search(r"_(weights|states)(?:_|\.h5$)", name)
    if kind:
        out["dir_type"] = kind.group(1)
    for key in ("norm", "ignore"):
        m = re.search(rf"(?:^|_){axis}{key}=([A-Za-z]+)", name)
        if m:
            out[key] = m.group(1)
    return out


def read_surface(path: str | os.PathLike) -> dict[str, Any]:
    """The fields of a :class:`~lossmap.surface.Surface` read from a surface file.

    Returns
    -------
    dict
        ``spec``, ``values``, ``done``, ``fingerprints``, ``path`` and ``meta``:
        ``Surface(**fields)`` is the surface. See
        :func:`lossmap.interop.load_li_surface` for what each holds.
    """
    p = Path(path)
    with open_h5(p, "surface file") as h5:
        f = _stored(h5, p)  # every member checked before any value is read
        if "xcoordinates" not in f:
            if "xdirection" in f:
                raise InputError(
                    f"{str(p)!r} is a direction file of Li et al.'s code (group 'xdirection'), "
                    "not a surface file: read it with lossmap.interop.load_li_directions"
                )
            raise InputError(
                f"{str(p)!r} has no dataset 'xcoordinates', so it is not a surface file of Li "
                "et al.'s loss-landscape code (which holds xcoordinates, [ycoordinates,] "
                f"train_loss, train_acc, …); it holds {_names(f)}"
            )
        axes = [_coordinates(f, "xcoordinates", p)]
        if "ycoordinates" in f:
            axes.append(_coordinates(f, "ycoordinates", p))
        shape = tuple(a.n for a, _ in axes)
        if math.prod(shape) > MAX_POINTS:
            raise InputError(
                f"{str(p)!r}: its grid of {' x '.join(map(str, shape))} points has "
                f"{math.prod(shape):,}, more than the {MAX_POINTS:,} a lossmap surface may have"
            )
        raw, skipped = {}, []
        for name, obj in f.items():
            if name in _NOT_VALUES:
                continue
            if not _is_values(name, obj):
                skipped.append(name)
                continue
            raw[name] = _on_grid(obj, name, shape, p)
        dir_file = _dir_file(f["dir_file"]) if "dir_file" in f else None
    if not raw:
        raise InputError(
            f"{str(p)!r} holds coordinates but no values: Li et al.'s surface files hold "
            f"train_loss, train_acc (and test_loss, test_acc); it holds {', '.join(skipped)}"
            if skipped else f"{str(p)!r} holds coordinates but no values (train_loss, …)"
        )
    for axis, (_, flipped) in enumerate(axes):
        if flipped:  # coordinates from high to low: lossmap's grids run from low to high
            raw = {k: np.flip(v, axis=axis) for k, v in raw.items()}
    return _fields(p, [a for a, _ in axes], raw, skipped, dir_file)


def _fields(p: Path, grid: list[Axis], raw: dict[str, np.ndarray], skipped: list[str],
            dir_file: Any) -> dict[str, Any]:
    """The Surface fields from the values on the grid (-1 and percent still in them)."""
    variables: dict[str, str] = {}  # their dataset name -> lossmap's variable name
    for name in raw:
        split, _, metric = name.partition("_")
        var = f"{split}_{_METRICS.get(metric, metric)}"
        if var in variables.values():
            other = next(k for k, v in variables.items() if v == var)
            raise InputError(f"{str(p)!r}: datasets {other!r} and {name!r} both give {var!r}: "
                             "keep one of them")
        variables[name] = var
    computed = {k: v != NOT_COMPUTED for k, v in raw.items()}
    done = np.logical_and.reduce(list(computed.values()))
    partly = int((np.logical_or.reduce(list(computed.values())) & ~done).sum())
    splits = _ordered({v.partition("_")[0] for v in variables.values()}, _FIRST_SPLITS)
    metrics = _ordered({v.partition("_")[2] for v in variables.values()}, _FIRST_METRICS)
    values = {f"{s}_{m}": np.full(done.shape, np.nan) for s in splits for m in metrics}
    percent = []
    for name, var in variables.items():
        v = np.where(done, raw[name], np.nan)
        if name.partition("_")[2] == "acc":
            percent.append(name)
            v = v / 100.0
        values[var] = v
    if isinstance(dir_file, bytes):
        dir_file = dir_file.decode("utf-8", "replace")
    dir_file = str(dir_file) if dir_file is not None else None
    directions = []
    for axis in "xy"[: len(grid)]:
        d = {"kind": "imported", "source": SOURCE, "axis": axis,
             "dir_file": dir_file or "not recorded"}
        directions.append({**d, **(named_settings(dir_file, axis) if dir_file else {})})
    spec = ScanSpec(grid=tuple(grid), splits=splits, metrics=metrics, loss="unknown (imported)",
                    directions=tuple(directions))
    record: dict[str, Any] = {
        "from": f"a surface file of {SOURCE}",
        "file": str(p),
        "datasets": variables,
        "not_computed": f"entries of {NOT_COMPUTED:g} read as not computed (NaN, not done)",
    }
    if percent:
        record["accuracy"] = (f"{', '.join(percent)} stored in percent (0-100), converted to "
                              "fractions (0-1) like lossmap's accuracy")
    absent = [v for v in spec.variables if v not in variables.values()]
    for key, value in (("absent", absent), ("skipped", skipped), ("partly_computed", partly)):
        if value:
            record[key] = value
    if dir_file:
        record["dir_file"] = dir_file
    return {"spec": spec, "values": values, "done": done, "fingerprints": {"source": file_hash(p)},
            "path": str(p), "meta": {"imported": record}}


def read_direction_lists(
    path: str | os.PathLike,
    check: Callable[[list[tuple[int, ...]]], None] | None = None,
) -> list[list[np.ndarray]]:
    """The tensors of a direction file: one list per axis (``xdirection`` [, ``ydirection``]),
    each in the file's order ``0, 1, …``, checked to be complete and alike.

    ``check``, if given, is called with the shapes of the first axis's tensors
    (as the file declares them) before any tensor is read, and raises if they
    do not fit (a model's parameters)."""
    p = Path(path)
    with open_h5(p, "direction file") as h5:
        f = _stored(h5, p)
        if "xdirection" not in f:
            hint = ("it is a surface file (xcoordinates): read it with lm.load"
                    if "xcoordinates" in f else f"it holds {_names(f)}")
            raise InputError(
                f"{str(p)!r} has no group 'xdirection', so it is not a direction file of Li et "
                f"al.'s loss-landscape code (groups xdirection [, ydirection] of datasets 0, 1, "
                f"…); {hint}"
            )
        datasets = [_direction_datasets(f[g], g, p)
                    for g in ("xdirection", "ydirection")[: 1 + ("ydirection" in f)]]
        shapes = [[tuple(d.shape) for d in ds] for ds in datasets]
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            at = next((i for i, (a, b) in enumerate(zip(*shapes, strict=False)) if a != b),
                      min(map(len, shapes)))
            raise InputError(
                f"{str(p)!r}: xdirection and ydirection differ at tensor {at} "
                f"({len(shapes[0])} and {len(shapes[1])} tensors): both must follow the "
                "model's order"
            )
        if check is not None:
            check(shapes[0])
        return [[np.asarray(d[()]) for d in ds] for ds in datasets]


def _direction_datasets(grp: Any, group: str, p: Path) -> list[Any]:
    """The datasets ``0, 1, …`` of one direction group, checked, none of them read."""
    if hasattr(grp, "dtype"):
        raise InputError(f"{str(p)!r}: {group!r} is a dataset; the reference layout has "
                         "a group of datasets named 0, 1, …")
    members = _stored(grp, p)
    want = [str(i) for i in range(len(members))]
    if sorted(members, key=lambda k: (len(k), k)) != want:
        missing = sorted(set(want) - set(members), key=int)
        extra = sorted(set(members) - set(want))
        raise InputError(
            f"{str(p)!r}: group {group!r} must hold datasets 0 to {len(want) - 1}, one "
            f"per tensor; " + (f"{missing[0]!r} is missing" if missing else
                               f"it also holds {', '.join(map(repr, extra))}")
        )
    for k in want:
        obj = members[k]
        if not hasattr(obj, "dtype") or obj.dtype.kind not in "fiu":
            raise InputError(f"{str(p)!r}: {group}/{k} is {_describe(obj)}, not an "
                             "array of numbers")
    return [members[k] for k in want]
