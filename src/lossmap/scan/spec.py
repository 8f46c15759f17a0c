"""ScanSpec: what a scan computes, validated and serializable.

A spec holds everything that determines the stored values — the grid,
splits, metrics, data subset, precision and how each direction was made — and
nothing that only changes speed (device, batch size). Two scans with equal
specs and equal fingerprints (centre, directions, data) compute the same
numbers, which is what lets a store resume safely.
"""

from __future__ import annotations

import functools
import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import checks as C
from ..checks import MAX_POINTS, check_axis, check_grid_size  # noqa: F401  (their old home)
from ..errors import InputError, InputTypeError
from .axis import Axis
from .pathspec import PATH_DIM, check_path, path_differences
from .pathspec import plain as _plain

FORMAT_VERSION = 1
DIM_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
MAX_DIMS = len(DIM_NAMES)  # a scan has 1 to 6 directions
AUTOCAST = tuple(C.AUTOCAST)
POINT_DIM = "point"  # the one dimension of a sampled design
DRAW_DIM = "draw"  # the leading dimension of repeated direction draws (lossmap.scan.draws)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name: Any, *, what: str) -> str:
    """A split or metric name must be an identifier: it becomes a column and a variable."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"{what} name {name!r} must be an identifier (letters, digits, underscores, "
            "not starting with a digit), e.g. 'train' or 'top5'"
        )
    return name


@dataclass(frozen=True)
class ScanSpec:
    """The validated description of one scan (see the module docstring).

    Attributes
    ----------
    grid : tuple of Axis
        One axis per direction, 1 to 6: 1 → a line (dim ``alpha``), 2 → a plane
        (dims ``alpha``, ``beta``), then ``gamma``, ``delta``, ``epsilon``,
        ``zeta``. With a ``design`` the axes are the box the points are drawn
        in. (Called ``axes`` before 0.2; ``axes=`` and ``.axes`` still work,
        with a DeprecationWarning.)
    splits : tuple of str
        Data split names, e.g. ``("train", "test")``.
    metrics : tuple of str
        Metric names; variables are ``f"{split}_{metric}"``.
    loss : str
        Name of the loss function (for the record).
    samples : int or None
        Size of the fixed random subset of each split, None for all samples.
    seed : int
        Seed of that subset.
    directions : tuple of dict
        How each direction was made (its ``meta``).
    dtype : str
        Parameter dtype of the evaluation, e.g. ``"float32"``.
    autocast : str or None
        ``torch.autocast`` dtype of the forward passes (``"bfloat16"`` or
        ``"float16"``), None for full precision.
    bn : str
        BatchNorm mode: ``"eval"`` uses the stored running statistics,
        ``"recompute"`` re-estimates them at every point.
    bn_split, bn_samples : str or None, int or None
        With ``bn="recompute"``: the split and the number of its samples the
        statistics are estimated from.
    path : dict or None
        A scan along a :class:`~lossmap.curves.Curve` (``lm.scan(path=...)``):
        ``{"kind", "control_points", "knots" (polychain), "fingerprints"}``
        (one fingerprint per control point), the grid one axis in ``t`` (dim
        ``t``) and the directions θ_j − θ_0. None for a line or plane.
    design : dict or None
        A sampled design instead of the product grid (:mod:`lossmap.scan.design`):
        ``{"kind": "sobol" | "lhs", "points": N, "seed": s}``, N points in the
        box of ``grid``; the one dimension is ``point``. None for a product grid.
    draws : dict or None
        Repeated direction draws (``lm.scan(draws=K)``, :mod:`lossmap.scan.draws`):
        ``{"count": K, "seeds": [[seed of each direction] for each draw]}``; the
        first grid axis is then the draw number 0 … K−1 (dim ``draw``) and
        ``directions`` holds the K·D directions, draw after draw. None otherwise.
    format : int
        Version of the stored format.
    """

    grid: tuple[Axis, ...]
    splits: tuple[str, ...]
    metrics: tuple[str, ...]
    loss: str = "loss"
    samples: int | None = None
    seed: int = 0
    directions: tuple[dict, ...] = field(default_factory=tuple)
    dtype: str = "float32"
    autocast: str | None = None
    bn: str = "eval"
    bn_split: str | None = None
    bn_samples: int | None = None
    format: int = FORMAT_VERSION
    path: dict | None = None  # a scan along a curve (lossmap.scan.path); None: line or plane
    design: dict | None = None  # sampled points in the grid's box (lossmap.scan.design)
    draws: dict | None = None  # repeated direction draws (lossmap.scan.draws); dim "draw" first

    def __post_init__(self) -> None:
        if isinstance(self.grid, (str, Axis)):
            raise InputTypeError(f"grid={self.grid!r} must be a sequence of axes, one per "
                                 "direction, e.g. (Axis(-1, 1, 51),)")
        # An Axis comes checked from its door (lm.scan, the CLI, a store); other forms here.
        grid = tuple(a if isinstance(a, Axis) else C.check_axis(a, index=i)
                     for i, a in enumerate(self.grid))
        object.__setattr__(self, "grid", grid)
        if not 1 <= len(grid) <= MAX_DIMS:
            raise InputError(f"a scan has 1 to {MAX_DIMS} grid axes (one per direction), got "
                             f"{len(grid)}: scan at most {MAX_DIMS} directions at once")
        if not self.splits:
            raise InputError("a scan needs at least one data split")
        for s in self.splits:
            check_name(s, what="split")
        for m in self.metrics:
            check_name(m, what="metric")
        if not self.metrics:
            raise InputError("a scan needs at least one metric, e.g. metrics=('loss',)")
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        # As JSON sees it (tuples are lists), so a spec equals its stored copy.
        object.__setattr__(self, "directions", tuple(_plain(dict(d)) for d in self.directions))
        if self.path is not None:
            object.__setattr__(self, "path", check_path(self.path, len(grid)))
        if self.design is not None:
            from .design import check_design

            object.__setattr__(self, "design", check_design(self.design))
        if self.draws is not None:
            object.__setattr__(self, "draws", _check_draws(self.draws, grid))

    # -- derived ---------------------------------------------------------
    @property
    def axes(self) -> tuple[Axis, ...]:
        """Deprecated name of :attr:`grid` (lossmap 0.1)."""
        warnings.warn("ScanSpec.axes is deprecated: use ScanSpec.grid", DeprecationWarning,
                      stacklevel=2)
        return self.grid

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimension names: ``("alpha",)``, ``("alpha", "beta")``, … up to ``zeta``;
        ``("t",)`` along a path, ``("point",)`` for a sampled design."""
        if self.design is not None:
            return (POINT_DIM,)
        if self.draws is not None:
            return (DRAW_DIM, *DIM_NAMES[: len(self.grid) - 1])
        return (PATH_DIM,) if self.path is not None else DIM_NAMES[: len(self.grid)]

    @property
    def coordinate_names(self) -> tuple[str, ...]:
        """The coordinates of each point, one per axis (a design's ``point`` has k of them)."""
        return DIM_NAMES[: len(self.grid)] if self.design is not None else self.dims

    @property
    def direction_count(self) -> int:
        """How many directions the store keeps: one per axis, K·D for draws, one per control
        point after the first along a path."""
        if self.path is not None:
            return self.path["control_points"] - 1
        if self.draws is not None:
            return self.draws["count"] * (len(self.grid) - 1)
        return len(self.coordinate_names)

    @property
    def shape(self) -> tuple[int, ...]:
        """Grid shape, one entry per axis; ``(N,)`` for a design of N points."""
        if self.design is not None:
            return (self.design["points"],)
        return tuple(a.n for a in self.grid)

    @property
    def variables(self) -> tuple[str, ...]:
        """Stored variable names, ``split_metric`` for every split and metric."""
        return tuple(f"{s}_{m}" for s in self.splits for m in self.metrics)

    def coords(self) -> tuple[np.ndarray, ...]:
        """Coordinates of each axis (a design: the point numbers 0 … N−1)."""
        if self.design is not None:
            return (np.arange(self.design["points"], dtype=np.float64),)
        return tuple(a.values() for a in self.grid)

    def points(self) -> np.ndarray:
        """The coordinates of every point, shape (size, k), in flat (C-order) index order."""
        if self.design is not None:
            from .design import design_points

            return design_points(self.design, self.grid)
        return np.stack(np.meshgrid(*self.coords(), indexing="ij"), axis=-1).reshape(
            -1, len(self.grid))

    def order(self) -> np.ndarray:
        """The order the points are visited in: coarse to fine (a design: as drawn)."""
        if self.design is not None:  # Sobol points are balanced at every power of 2
            return np.arange(self.design["points"], dtype=np.int64)
        return progressive_order(self.shape, self.centre_index())

    def centre_index(self) -> tuple[int, ...] | None:
        """Grid index of the centre (every coordinate 0), or None if it is not on the grid."""
        if self.design is not None:
            return None
        idx = []
        for c in self.coords():
            hit = np.flatnonzero(np.isclose(c, 0.0, atol=1e-12))
            if not hit.size:
                return None
            idx.append(int(hit[0]))
        return tuple(idx)

    def point(self, index: int) -> tuple[float, ...]:
        """Coordinates of the grid point with flat (C-order) index ``index``."""
        if self.design is not None:
            return tuple(float(x) for x in self.points()[index])
        ijk = np.unravel_index(index, self.shape)
        return tuple(float(a.values()[i]) for a, i in zip(self.grid, ijk, strict=True))

    # -- serialization ----------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (each grid axis as ``[lo, hi, n]``)."""
        d = asdict(self)
        d["grid"] = [[a.lo, a.hi, a.n] for a in self.grid]
        d["splits"] = list(self.splits)
        d["metrics"] = list(self.metrics)
        d["directions"] = [dict(x) for x in self.directions]
        if self.path is None:
            del d["path"]  # a line or plane is stored as before paths existed
        if self.design is None:
            del d["design"]  # a product grid is stored as before designs existed
        if self.draws is None:
            del d["draws"]  # one draw is stored as before draws existed
        return d

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal specs give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ScanSpec:
        """Rebuild a spec from :meth:`to_dict` output (also a 0.1 dict, whose key was ``axes``)."""
        d = dict(d)
        if "axes" in d:  # written by lossmap 0.1
            if "grid" in d:
                raise InputError("the spec has both 'grid' and 'axes' (its 0.1 name): keep one")
            d["grid"] = d.pop("axes")
        fmt = d.get("format", FORMAT_VERSION)
        if fmt > FORMAT_VERSION:
            raise InputError(
                f"this store has format {fmt}, newer than this lossmap understands "
                f"({FORMAT_VERSION}): upgrade lossmap"
            )
        # A file is a door: its grid and the options a spec records are checked here.
        d["grid"] = tuple(C.check_axis(a, index=i) for i, a in enumerate(d["grid"]))
        from .options import ScanOptions

        recorded = {k: d[k] for k in ("samples", "autocast", "bn") if k in d}
        options = ScanOptions.checked(recorded)
        d.update({k: getattr(options, k) for k in recorded})
        d["splits"] = tuple(d["splits"])
        d["metrics"] = tuple(d["metrics"])
        d["directions"] = tuple(d.get("directions", ()))
        return cls(**d)

    def differences(self, other: ScanSpec) -> list[str]:
        """Human-readable list of what differs from ``other`` (empty if equal)."""
        a, b = self.to_dict(), other.to_dict()
        out = []
        for key in [*a, *(k for k in b if k not in a)]:
            if a.get(key) != b.get(key):
                if key == "directions" and "path" in a and "path" in b:
                    continue  # made from the control points: the path's line says what differs
                if "draws" in a and "draws" in b and a["draws"] != b["draws"] and (
                        key == "directions" or (key == "grid" and a[key][1:] == b[key][1:])):
                    continue  # other draws (their count or seeds): the draws' line says so
                if key == "draws" and a.get(key) and b.get(key):
                    out.append(_draws_difference(b[key], a[key]))
                    continue
                if key == "path":
                    out += path_differences(b.get(key), a.get(key))
                elif key == "grid":
                    out.append(
                        "grid "
                        + " x ".join(str(x) for x in other.grid)
                        + " stored vs "
                        + " x ".join(str(x) for x in self.grid)
                        + " now"
                    )
                else:
                    out.append(f"{key} {b.get(key)!r} stored vs {a.get(key)!r} now")
        return out


def _draws_difference(stored: dict, now: dict) -> str:
    """``draws 3 stored vs 4 now``, or which seeds differ."""
    if stored["count"] != now["count"]:
        return f"draws {stored['count']} stored vs {now['count']} now"
    return f"draw seeds {stored['seeds']} stored vs {now['seeds']} now"


def _check_draws(draws: Any, grid: tuple[Axis, ...]) -> dict:
    """The record of repeated draws: K ≥ 2 draws of the D directions, the draw axis first."""
    if not isinstance(draws, dict) or set(draws) != {"count", "seeds"}:
        raise InputError(f"draws={draws!r} must be {{'count': K, 'seeds': [[...], ...]}}")
    k, seeds = draws["count"], _plain(draws["seeds"])
    first = grid[0]
    if (isinstance(k, bool) or not isinstance(k, int) or k < 2 or len(grid) < 2
            or (first.lo, first.hi, first.n) != (0.0, float(k - 1), k)
            or len(seeds) != k or any(len(s) != len(grid) - 1 for s in seeds)):
        raise InputError(f"draws={draws!r} does not match the grid {' x '.join(map(str, grid))}"
                         ": the first axis must be 0:K-1:K and each draw one seed per direction")
    return {"count": k, "seeds": seeds}


def _accept_axes_keyword(init: Any) -> Any:
    """Wrap ``ScanSpec.__init__`` so the 0.1 keyword ``axes=`` still works (deprecated)."""

    @functools.wraps(init)
    def init_accepting_axes(self: ScanSpec, *args: Any, **kwargs: Any) -> None:
        if "axes" in kwargs:
            if "grid" in kwargs or args:
                raise InputTypeError("give the grid once: grid=... (axes= is its old name)")
            warnings.warn("ScanSpec(axes=...) is deprecated: use ScanSpec(grid=...)",
                          DeprecationWarning, stacklevel=2)
            kwargs["grid"] = kwargs.pop("axes")
        init(self, *args, **kwargs)

    return init_accepting_axes


ScanSpec.__init__ = _accept_axes_keyword(ScanSpec.__init__)  # type: ignore[method-assign]




def _levels(n: int) -> np.ndarray:
    """Refinement level of each index: 0 for the ends, then bisections of the interval."""
    level = np.full(n, -1, dtype=np.int64)
    depth = max(1, math.ceil(math.log2(max(n - 1, 1))))
    for lv in range(depth + 1):
        idx = np.rint(np.arange(2**lv + 1) * (n - 1) / 2**lv).astype(np.int64)
        level[idx[level[idx] < 0]] = lv  # repeated indices get the same level: no sort needed
    level[level < 0] = depth + 1  # unreachable, kept for safety
    return level


def progressive_order(shape: tuple[int, ...], centre: tuple[int, ...] | None = None) -> np.ndarray:
    """Flat indices of a grid ordered coarse to fine (nested grids).

    Level 0 holds the ends of every axis; each further level bisects the
    intervals of the one before (the middle of the range comes at level 1),
    so a scan stopped early has covered the whole range at a lower
    resolution. The grid index of the centre, if given, comes first of all.

    Examples
    --------
    >>> progressive_order((5,)).tolist()
    [0, 4, 2, 1, 3]
    >>> progressive_order((21,))[:5].tolist()
    [0, 20, 10, 5, 15]
    """
    grids = np.meshgrid(*[_levels(n) for n in shape], indexing="ij")
    level = np.max(np.stack(grids), axis=0).reshape(-1)
    flat = np.arange(level.size)
    if centre is not None:
        level[np.ravel_multi_index(centre, shape)] = -1
    return flat[np.lexsort((flat, level))]
