"""The typed finding :func:`lossmap.topology` returns: minima, persistence pairs, basins, SMAD."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..analysis.finding import Finding, plain
from .merge import MergeTree

__all__ = ["Basin", "Critical", "Pair", "Topology"]


class _Record:
    """``to_dict()`` of a small record: its fields as JSON-safe data (+inf → None)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe data."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class Critical(_Record):
    """A critical point of the grid: ``index`` (flat), ``where`` (grid index per
    dimension, or None for sampled points), ``coords`` (dimension → coordinate), ``value``.

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> m = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0).minima[1]
    >>> m.value, m.where, m.coords
    (0.5, (3,), {'alpha': 3.0})
    """

    index: int
    where: tuple[int, ...] | None
    coords: dict[str, float]
    value: float


@dataclass(frozen=True, kw_only=True)
class Pair(_Record):
    """A persistence pair of the sublevel filtration (0-dimensional).

    ``birth`` the minimum's value, ``death`` the value of the saddle where its
    component merges into an elder one (+inf: never, at a finite level);
    ``depth`` = death − birth; ``se`` = √(se_birth² + se_death²) (None where
    not measured); ``resolved``: depth > z · se (None without ``se``; True
    for an infinite depth: the global minimum's, or a basin walled off by
    diverged points).

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)  # two wells
    >>> p = t.pairs[1]
    >>> p.birth, p.death, p.depth, p.saddle.index
    (0.5, 2.0, 1.5, 2)
    """

    birth: float
    death: float
    depth: float
    se: float | None
    resolved: bool | None
    minimum: Critical
    saddle: Critical | None


@dataclass(frozen=True, kw_only=True)
class Basin(_Record):
    """A basin of the merge tree: its ``minimum``, ``depth`` (its pair's; +inf for one
    that never merges), ``volume`` (grid cells or points in its sublevel component just
    before it merges) and ``share`` (volume / all cells), ``resolved`` as its pair's.

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)  # two wells
    >>> b = t.basins[1]  # deepest first: the global basin, then this one
    >>> b.minimum.value, b.depth, b.volume, b.share
    (0.5, 1.5, 1, 0.2)
    """

    minimum: Critical
    depth: float
    volume: int
    share: float
    resolved: bool | None
    saddle: Critical | None


@dataclass(frozen=True, kw_only=True)
class Topology(Finding):
    """The topology of a scanned function (``value``: SMAD, ``se``: its bootstrap s.e.).

    ``minima`` every local minimum (lowest first), ``pairs`` one persistence
    pair per minimum (the global one's death +inf), ``basins`` one per
    minimum (deepest first); ``n_basins`` the basins that are resolved (depth
    beyond ``z`` paired standard errors, and those that never merge) —
    every minimum where no standard errors were stored — with
    ``n_basins_se`` and ``n_basins_interval`` (2.5 and 97.5 percentiles) from
    the parametric bootstrap; ``n_minima`` all minima; ``graph`` the
    connectivity (``"grid"``: 2k axis neighbours, ``"knn"``); ``k`` the
    neighbours of a k-NN graph; ``dims``, ``shape``; ``diverged`` and
    ``missing`` points (given +inf); ``bootstrap`` draws and ``seed``;
    ``tree`` the :class:`~lossmap.topology.merge.MergeTree` (not in
    ``to_dict``).

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> t = lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), bootstrap=0)  # two wells
    >>> t.n_minima, t.smad, t.diagram.tolist()
    (2, 1.75, [[0.0, inf], [0.5, 2.0]])
    """

    kind: ClassVar[str] = "topology"
    minima: tuple[Critical, ...] = ()
    pairs: tuple[Pair, ...] = ()
    basins: tuple[Basin, ...] = ()
    n_minima: int = 0
    n_basins: int = 0
    n_basins_se: float | None = None
    n_basins_interval: tuple[float, float] | None = None
    dims: tuple[str, ...] = ()
    shape: tuple[int, ...] | None = None
    graph: str = "grid"
    k: int | None = None
    diverged: int = 0
    missing: int = 0
    bootstrap: int = 0
    seed: int | None = None
    tree: MergeTree | None = field(default=None, repr=False, compare=False)

    @property
    def smad(self) -> float | None:
        """The saddle–minimum average distance (= ``value``)."""
        return self.value

    @property
    def smad_se(self) -> float | None:
        """Its standard error (= ``se``; parametric bootstrap)."""
        return self.se

    @property
    def diagram(self) -> np.ndarray:
        """The persistence diagram as an array of ``(birth, death)`` rows (shape (m, 2))."""
        return np.array([(p.birth, p.death) for p in self.pairs], dtype=np.float64).reshape(-1, 2)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (``kind`` first; the merge tree left out; +inf → None)."""
        out = {k: v for k, v in super().to_dict().items() if k != "tree"}
        out["smad"], out["smad_se"] = plain(self.value), plain(self.se)
        return out


def depth_resolved(depth: float, se: float | None, z: float) -> bool | None:
    """``depth > z · se``; None without ``se``; True for an infinite depth (nothing to merge)."""
    if not math.isfinite(depth):
        return None if se is None else True
    if se is None or not math.isfinite(se):
        return None
    return bool(depth > z * se)
