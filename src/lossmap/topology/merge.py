"""The sublevel-set merge tree of values on a graph, by union–find.

Vertices enter in the order of their value, ties broken by flat index (so the
result is deterministic: no noise is added to break ties). A vertex with no
neighbour entered before it is a **minimum**: it starts a component. A vertex
whose entered neighbours lie in two or more components is a **saddle**: the
components merge there, and every one but the *elder* (the one whose minimum
entered first) dies — the elder rule of persistence. Each death is a
persistence pair ``(birth, death)`` = (the dying minimum's value, the
saddle's value); the global minimum never dies (death = +inf).

Non-finite values (NaN, ±inf: diverged or missing points) are given +inf, so
they enter after every finite point: basins that meet only through diverged
points never merge at a finite level, and their pair's death is +inf. They
are never averaged or interpolated away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MergeTree", "merge_tree"]


@dataclass(frozen=True)
class MergeTree:
    """A sublevel-set merge tree (the join tree) of values on a graph.

    Attributes
    ----------
    values : ndarray, shape (n,)
        The values the tree was built on (non-finite → +inf).
    order : ndarray of int64, shape (n,)
        The flat indices in the order they entered.
    minima : ndarray of int64, shape (m,)
        Every minimum's flat index, in order of birth (the global minimum first).
    death_at : ndarray of int64, shape (m,)
        The saddle where each minimum's component dies (−1: never, the global one).
    first_saddle : ndarray of int64, shape (m,)
        The saddle where each minimum's component first merges with another
        (its leaf's parent in the tree; −1 if it never merges).
    volume : ndarray of int64, shape (m,)
        Vertices in each minimum's component just before it dies (one that
        never dies: its whole connected part of the graph).
    nodes : ndarray of int64, shape (q,)
        The tree's nodes (vertex indices): minima and saddles, in the order they entered.
    parent : ndarray of int64, shape (q,)
        Each node's parent's position in ``nodes`` (−1 for the root).
    label : ndarray of int64, shape (n,)
        Each vertex's arc: the position in ``minima`` of the component's
        elder minimum when the vertex entered (the segmentation a landscape
        profile draws).

    Examples
    --------
    >>> import numpy as np
    >>> path = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    >>> t = merge_tree(np.array([1.0, 0.0, 2.0, 0.5, 3.0]), path)
    >>> t.nodes.tolist(), t.parent.tolist()  # minima 1 and 3 merge at the saddle 2
    ([1, 3, 2], [2, 2, -1])
    """

    values: np.ndarray
    order: np.ndarray
    minima: np.ndarray
    death_at: np.ndarray
    first_saddle: np.ndarray
    volume: np.ndarray
    nodes: np.ndarray
    parent: np.ndarray
    label: np.ndarray

    @property
    def births(self) -> np.ndarray:
        """Each minimum's value."""
        return self.values[self.minima]

    @property
    def deaths(self) -> np.ndarray:
        """Each minimum's death value (+inf for the global one)."""
        out = np.full(len(self.minima), np.inf)
        dies = self.death_at >= 0
        out[dies] = self.values[self.death_at[dies]]
        return out


def merge_tree(values: np.ndarray, edges: np.ndarray) -> MergeTree:
    """Build the sublevel-set merge tree of ``values`` on the graph ``edges``.

    Parameters
    ----------
    values : array_like, shape (n,)
        One value per vertex (any float; non-finite → +inf).
    edges : ndarray of int, shape (e, 2)
        The graph's edges as vertex index pairs.

    Returns
    -------
    MergeTree

    Examples
    --------
    >>> import numpy as np
    >>> path = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])  # a line of five points
    >>> t = merge_tree(np.array([0.0, 2.0, 1.0, 3.0, 0.5]), path)
    >>> t.minima.tolist(), t.births.tolist(), t.deaths.tolist()
    ([0, 4, 2], [0.0, 0.5, 1.0], [inf, 3.0, 2.0])
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = np.where(np.isfinite(v), v, np.inf)
    n = v.size
    order = np.lexsort((np.arange(n), v)).astype(np.int64)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    lo_first = rank[e[:, 0]] < rank[e[:, 1]]
    low = np.where(lo_first, e[:, 0], e[:, 1])
    high = np.where(lo_first, e[:, 1], e[:, 0])
    by_high = np.argsort(high, kind="stable")
    starts = np.searchsorted(high[by_high], np.arange(n + 1))
    lower = low[by_high].tolist()
    starts = starts.tolist()

    up = list(range(n))  # union–find parent
    size = [0] * n
    elder = [0] * n  # root → its component's minimum
    top = [0] * n  # root → its component's highest tree node (position in `nodes`)
    nodes: list[int] = []
    parent: list[int] = []
    minimum_of: dict[int, int] = {}  # minimum vertex → its position in the minima list
    minima: list[int] = []
    death_at: list[int] = []
    first: list[int] = []
    volume: list[int] = []
    rk = rank.tolist()
    label = [0] * n

    def find(x: int) -> int:
        while up[x] != x:
            up[x] = up[up[x]]
            x = up[x]
        return x

    for u in order.tolist():
        roots = sorted(
            {find(w) for w in lower[starts[u] : starts[u + 1]]}, key=lambda r: rk[elder[r]]
        )
        if not roots:  # a minimum
            minimum_of[u] = len(minima)
            minima.append(u)
            death_at.append(-1)
            first.append(-1)
            volume.append(0)
            size[u], elder[u], top[u] = 1, u, len(nodes)
            label[u] = minimum_of[u]
            nodes.append(u)
            parent.append(-1)
            continue
        keep = roots[0]
        if len(roots) > 1:  # a saddle: every component but the elder's dies here
            here = len(nodes)
            nodes.append(u)
            parent.append(-1)
            for r in roots:
                parent[top[r]] = here
                m = minimum_of[elder[r]]
                if first[m] < 0:
                    first[m] = u
            for r in roots[1:]:
                m = minimum_of[elder[r]]
                death_at[m], volume[m] = u, size[r]
                up[r] = keep
                size[keep] += size[r]
            top[keep] = here
        up[u] = keep
        size[keep] += 1
        label[u] = minimum_of[elder[keep]]
    for i, m in enumerate(minima):
        if death_at[i] < 0:  # never dies (the global minimum; one per connected part)
            volume[i] = size[find(m)]
    return MergeTree(
        values=v,
        order=order,
        minima=np.asarray(minima, np.int64),
        death_at=np.asarray(death_at, np.int64),
        first_saddle=np.asarray(first, np.int64),
        volume=np.asarray(volume, np.int64),
        nodes=np.asarray(nodes, np.int64),
        parent=np.asarray(parent, np.int64),
        label=np.asarray(label, np.int64),
    )
