"""Barriers between N minima: every pair's path scanned, the matrix and its minimum spanning tree.

:func:`barrier_matrix` scans the path between every pair of models (the
straight line, or a trained curve; after aligning the hidden units with
``lm.align`` if asked) and returns a :class:`BarrierMatrix`: the pairwise
barriers (:func:`lossmap.analysis.barriers.barrier`), where each sits, and
their minimum spanning tree (Draxler et al. 2018: the tree of lowest barriers
over many minima).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from .barriers import barrier

PATHS = ("linear", "curve")
ALIGNS = (None, "weights", "activations")


@dataclass(frozen=True)
class BarrierMatrix:
    """Pairwise barriers between N models and their minimum spanning tree.

    Attributes
    ----------
    names : list of str
        The models' names.
    barriers : ndarray, shape (N, N)
        Symmetric, 0 on the diagonal: the barrier of the path between models
        i and j (NaN where an end's loss is not finite).
    where : ndarray, shape (N, N)
        Where it sits: ``where[i, j]`` is the t of the barrier on the path from
        model i (t = 0) to model j (t = 1), so ``where[j, i] = 1 − where[i, j]``;
        NaN on the diagonal and where there is none.
    losses : ndarray, shape (N,)
        Each model's own loss (t = 0 of its first path).
    variable : str
        The variable the barriers are of, e.g. ``"train_loss"``.
    path : str
        ``"linear"`` or ``"curve"``.
    align : str or None
        How model j was aligned to model i before the path was made.
    surfaces : dict of (int, int) to Surface
        The path scans, keyed by ``(i, j)`` with i < j.

    Examples
    --------
    >>> B = np.array([[0, 2.0, 0.5], [2.0, 0, 1.0], [0.5, 1.0, 0]])
    >>> bm = BarrierMatrix(["a", "b", "c"], B, np.full((3, 3), 0.5), np.ones(3), "train_loss")
    >>> bm.tree, bm.highest_on_tree()
    ([(0, 2, 0.5), (1, 2, 1.0)], 1.0)
    """

    names: list[str]
    barriers: np.ndarray
    where: np.ndarray
    losses: np.ndarray
    variable: str
    path: str = "linear"
    align: str | None = None
    surfaces: dict[tuple[int, int], Any] = field(default_factory=dict, compare=False,
                                                  repr=False)

    @property
    def tree(self) -> list[tuple[int, int, float]]:
        """The minimum spanning tree's edges ``(i, j, barrier)``, i < j, lowest first."""
        return minimum_spanning_tree(self.barriers)

    def highest_on_tree(self) -> float:
        """The highest barrier on the tree: the lowest barrier that connects all the models."""
        return max((w for _, _, w in self.tree), default=0.0)

    def plot(self, *, fig: Any = None, **kwargs: Any) -> Any:
        """The matrix as a heatmap and the tree over the models (:func:`~lossmap.plot.plot_barrier_matrix`)."""  # noqa: E501
        from ..plot.between import plot_barrier_matrix

        return plot_barrier_matrix(self, fig=fig, **kwargs)

    def __repr__(self) -> str:
        tree = ", ".join(f"{self.names[i]}–{self.names[j]} {w:.3g}" for i, j, w in self.tree)
        return (f"BarrierMatrix({len(self.names)} models, {self.variable}, path={self.path!r}, "
                f"align={self.align!r}; tree: {tree})")


def minimum_spanning_tree(barriers: Any) -> list[tuple[int, int, float]]:
    """The minimum spanning tree of a symmetric matrix of barriers, as edges ``(i, j, w)``.

    Zero barriers are edges like any other (scipy reads a zero as "no edge", so
    the weights are shifted by a constant first, which leaves the tree
    unchanged); a NaN barrier is an edge of the largest weight, used only
    where nothing else connects.

    Examples
    --------
    >>> m = np.array([[0, 1, 4], [1, 0, 0], [4, 0, 0]], dtype=float)
    >>> minimum_spanning_tree(m)
    [(1, 2, 0.0), (0, 1, 1.0)]
    """
    from scipy.sparse.csgraph import minimum_spanning_tree as mst

    w = np.asarray(barriers, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise InputError(f"barriers has shape {w.shape}: it must be a square (N, N) matrix")
    n = len(w)
    if n < 2:
        return []
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    finite = w[upper][np.isfinite(w[upper])]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) - low + 1.0 if finite.size else 1.0
    shifted = np.where(np.isfinite(w), w - low + 1.0, 2.0 * high + 1.0)  # every edge > 0
    tree = mst(np.where(upper, shifted, 0.0)).tocoo()
    edges = [(int(min(i, j)), int(max(i, j))) for i, j in zip(tree.row, tree.col, strict=True)]
    return sorted(((i, j, float(w[i, j])) for i, j in edges),
                  key=lambda e: (np.nan_to_num(e[2], nan=np.inf), e[0], e[1]))


def barrier_matrix(
    models: Sequence[Any] | Mapping[str, Any],
    loss_fn: Any,
    data: Mapping[str, Any],
    *,
    align: str | None = None,
    path: str = "linear",
    points: int = 21,
    curve_kwargs: Mapping[str, Any] | None = None,
    variable: str | None = None,
    progress: bool = False,
    **scan_options: Any,
) -> BarrierMatrix:
    """Scan the path between every pair of N models; their barriers and minimum spanning tree.

    For each pair i < j: model j is aligned to model i (``align``), the path
    from i (t = 0) to j (t = 1) is made — the straight line or a trained curve
    (``lm.curve``) — and scanned on ``points`` values of t in [0, 1] with
    model i's architecture; the barrier is :func:`barrier` of that scan.

    Parameters
    ----------
    models : sequence of nn.Module, or dict of str to nn.Module
        Two or more models of one architecture (names: ``m0, m1, …`` or the keys).
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch mean.
    data : dict of str to split
        As for :func:`lossmap.scan.api`; the barrier is of the first split's loss
        unless ``variable`` says otherwise.
    align : {None, "weights", "activations"}, default None
        Permute model j's hidden units to match model i first (``lm.align``;
        activation matching uses ``data``).
    path : {"linear", "curve"}, default "linear"
        The straight line, or a curve trained between the pair (``lm.curve``).
    points : int, default 21
        Grid points in t, ends included (odd puts t = 0.5 on the grid).
    curve_kwargs : dict, optional
        Keywords of ``lm.curve`` (``kind``, ``bends``, ``epochs``, ``lr``, ``seed``…).
    variable : str, optional
        Default ``"<first split>_loss"``.
    progress : bool, default False
        Progress bars of the scans.
    **scan_options
        Passed to every :func:`lossmap.scan.api` (``bn="recompute"`` for BatchNorm
        networks — the REPAIR-style reset — ``samples``, ``device``, …).

    Returns
    -------
    BarrierMatrix

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> nets = [torch.nn.Linear(3, 2) for _ in range(3)]
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> bm = lm.barrier_matrix(nets, torch.nn.CrossEntropyLoss(), {"train": (X, y)}, points=5)
    >>> bm.barriers.shape, len(bm.tree)
    ((3, 3), 2)
    """
    from ..curves.curve import Curve
    from ..scan.api import scan

    names, nets = _models(models)
    if path not in PATHS:
        raise InputError(f"path={path!r} must be 'linear' (the straight line) or 'curve' "
                         "(a curve trained by lm.curve)")
    if align not in ALIGNS:
        raise InputError(f"align={align!r} must be None, 'weights' or 'activations'")
    if not isinstance(points, int) or isinstance(points, bool) or points < 3:
        raise InputError(f"points={points!r} must be an integer >= 3 (t = 0, 1 and between)")
    if curve_kwargs is not None and path != "curve":
        raise InputError("curve_kwargs is for path='curve': drop it, or set path='curve'")
    if "path" in scan_options or "directions" in scan_options or "grid" in scan_options:
        raise InputError("barrier_matrix makes each path and its grid: drop path=, "
                         "directions= and grid= from the scan options")
    n = len(nets)
    B, W = np.zeros((n, n)), np.full((n, n), np.nan)
    losses, surfaces = np.full(n, np.nan), {}
    for i in range(n):
        for j in range(i + 1, n):
            other = _aligned(nets[i], nets[j], align, data)
            if path == "linear":
                curve = Curve.line(nets[i], other)
            else:
                from ..curves.fit import curve as train_curve

                curve = train_curve(nets[i], other, loss_fn, data,
                                    **{"progress": progress, **dict(curve_kwargs or {})})
            surf = scan(nets[i], loss_fn, data=data, path=curve, grid=(0.0, 1.0, points),
                        progress=progress, **scan_options)
            var = variable or f"{surf.spec.splits[0]}_loss"
            r = barrier(surf, var)
            B[i, j] = B[j, i] = np.nan if r.value is None else r.value
            if r.at is not None:
                W[i, j], W[j, i] = r.at, 1.0 - r.at
            # an aligned copy computes the same function: its loss is the model's own
            losses[i] = r.loss_a if np.isnan(losses[i]) else losses[i]
            losses[j] = r.loss_b if np.isnan(losses[j]) else losses[j]
            surfaces[(i, j)] = surf
    return BarrierMatrix(names, B, W, losses, var, path, align, surfaces)


def _models(models: Any) -> tuple[list[str], list[Any]]:
    from torch import nn

    if isinstance(models, Mapping):
        names, nets = [str(k) for k in models], list(models.values())
    elif isinstance(models, Sequence) and not isinstance(models, str):
        names, nets = [f"m{i}" for i in range(len(models))], list(models)
    else:
        raise InputTypeError(f"models is a {type(models).__name__}; pass a list of models or "
                             "a dict of name to model")
    if len(nets) < 2:
        raise InputError(f"{len(nets)} model given: a barrier needs at least 2")
    for name, m in zip(names, nets, strict=True):
        if not isinstance(m, nn.Module):
            raise InputTypeError(f"model {name!r} is a {type(m).__name__}; pass torch.nn.Module "
                                 "models (their forward is used along the paths)")
    return names, nets


def _aligned(model_a: Any, model_b: Any, align: str | None, data: Any) -> Any:
    """``model_b``, or a copy with its hidden units permuted to match ``model_a``."""
    if align is None:
        return model_b
    from ..align import align as align_models  # imported only when asked for

    return align_models(model_a, model_b, method=align,
                        data=data if align == "activations" else None)
