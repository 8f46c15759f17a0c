"""The neighbourhood graphs a merge tree is built on: a grid's, or sampled points' k-NN graph.

A grid's graph joins each cell to its ``2k`` axis neighbours (the faces it
shares in k dimensions; no diagonals). This is the edge set of gudhi's
cubical complex built on the grid's *vertices*
(``gudhi.CubicalComplex(vertices=...)``: an edge of that complex joins two
vertices one step apart along one axis), so the 0-dimensional persistence
pairs of both agree; it is also the graph landscaper's empty-region (Gabriel)
graph gives on an evenly spaced grid. Sampled designs (points, not a grid)
use the symmetric k-nearest-neighbour graph of the points after each
coordinate is scaled to the unit interval.
"""

from __future__ import annotations

import numpy as np

__all__ = ["grid_edges", "knn_edges"]


def grid_edges(shape: tuple[int, ...]) -> np.ndarray:
    """Every pair of axis neighbours of a C-ordered grid, as flat indices.

    Parameters
    ----------
    shape : tuple of int
        The grid's shape (any number of dimensions).

    Returns
    -------
    ndarray of int64, shape (m, 2)
        Each row ``(i, j)`` with ``i < j``: flat indices one step apart along one axis.

    Examples
    --------
    >>> grid_edges((2, 2)).tolist()
    [[0, 2], [1, 3], [0, 1], [2, 3]]
    """
    index = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    parts = []
    for axis in range(len(shape)):
        lo = np.delete(index, -1, axis=axis) if shape[axis] > 1 else index[:0]
        hi = np.delete(index, 0, axis=axis) if shape[axis] > 1 else index[:0]
        parts.append(np.stack([lo.reshape(-1), hi.reshape(-1)], axis=1))
    return np.concatenate(parts) if parts else np.empty((0, 2), np.int64)


def knn_edges(points: np.ndarray, k: int = 8) -> np.ndarray:
    """The symmetric k-nearest-neighbour graph of sampled points.

    Each coordinate is first scaled to [0, 1] over the points (so that a
    direction scanned over a wider range does not dominate the distances);
    ``i`` and ``j`` are joined when either is among the other's ``k``
    nearest. Ties in distance are broken by index (scipy's KD-tree order).

    Parameters
    ----------
    points : ndarray, shape (n, d)
        The sampled coordinates.
    k : int, default 8
        Neighbours per point (at most n − 1).

    Returns
    -------
    ndarray of int64, shape (m, 2)
        Each row ``(i, j)`` with ``i < j``, each edge once.

    Examples
    --------
    >>> knn_edges(np.array([[0.0], [1.0], [3.0], [7.0]]), k=1).tolist()
    [[0, 1], [1, 2], [2, 3]]
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    span = np.ptp(pts, axis=0)
    scaled = (pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0)
    k = min(int(k), len(pts) - 1)
    if k < 1:
        return np.empty((0, 2), np.int64)
    _, nbr = cKDTree(scaled).query(scaled, k=k + 1)
    rows = np.repeat(np.arange(len(pts)), k)
    cols = nbr[:, 1:].reshape(-1)
    pairs = np.sort(np.stack([rows, cols], axis=1), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0).astype(np.int64)
