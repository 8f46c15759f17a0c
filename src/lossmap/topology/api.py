"""``lm.topology``: the merge tree, persistence pairs, basins and SMAD of a scanned function."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..analysis.finding import Evidence
from ..checks import check_float, check_int
from .graph import grid_edges, knn_edges
from .inputs import Field, read_field
from .merge import MergeTree, merge_tree
from .result import Basin, Critical, Pair, Topology, depth_resolved

__all__ = ["smad", "topology"]


def smad(tree: MergeTree) -> float:
    """The saddle–minimum average distance of a merge tree.

    The mean, over every minimum whose component merges with another at a
    finite level, of the value of the saddle where it first merges (its leaf's
    parent in the tree) minus the minimum's value. The global minimum counts
    (its component merges too, as the elder). 0 when there is one minimum
    (landscaper's convention: a tree without branches).

    Parameters
    ----------
    tree : MergeTree

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.topology import grid_edges, merge_tree
    >>> v = np.array([1.0, 0.0, 2.0, 0.5, 3.0])  # minima 0 and 0.5, saddle 2
    >>> smad(merge_tree(v, grid_edges(v.shape)))  # ((2 - 0) + (2 - 0.5)) / 2
    1.75
    """
    s = tree.first_saddle
    ok = s >= 0
    gaps = tree.values[s[ok]] - tree.values[tree.minima[ok]]
    gaps = gaps[np.isfinite(gaps)]
    return float(gaps.mean()) if gaps.size else 0.0


def _tree(f: Field, values: np.ndarray, edges: np.ndarray) -> MergeTree:
    v = np.where(f.missing, np.inf, values).reshape(-1)
    return merge_tree(v, edges)


def _pair_se(err: np.ndarray | None, tree: MergeTree) -> np.ndarray | None:
    """√(se_birth² + se_death²) per minimum (NaN where either is not measured or diverged)."""
    if err is None:
        return None
    e = err.reshape(-1)
    dies = tree.death_at >= 0
    at = np.where(dies, tree.death_at, tree.minima)
    out = np.sqrt(e[tree.minima] ** 2 + np.where(dies, e[at] ** 2, 0.0))
    return out


def _count(tree: MergeTree, pse: np.ndarray | None, z: float) -> int:
    depth = tree.deaths - tree.births
    if pse is None:
        return len(tree.minima)
    return int(np.sum(~np.isfinite(depth) | (depth > z * np.nan_to_num(pse, nan=np.inf))))


def topology(
    surface_or_array: Any,
    variable: str = "train_loss",
    *,
    se: Any = None,
    coords: Any = None,
    points: Any = None,
    k: int = 8,
    z: float = 2.0,
    bootstrap: int = 200,
    seed: int = 0,
) -> Topology:
    """The sublevel-set topology of a scanned function: minima, persistence pairs, basins, SMAD.

    The merge tree is built by union–find over the grid graph, each cell joined
    to its 2k axis neighbours (the edges of gudhi's cubical complex on the
    grid's vertices, so the persistence pairs equal gudhi's), entering in
    order of value with ties broken by flat index (deterministic). Sampled
    points use a symmetric k-nearest-neighbour graph. Diverged (NaN, ±inf)
    and missing points are given +inf: they enter last, so basins that only
    diverged points separate never merge at a finite level.

    Each pair's depth (death − birth) is compared with its paired standard
    error √(se_birth² + se_death²): within ``z`` of them, the pair is not
    resolved. The SMAD's and the basin count's uncertainties come from a
    parametric bootstrap: ``bootstrap`` redraws of every finite value as
    value + se · N(0, 1), independently per point (seeded), each through its
    own merge tree; ``se`` is the draws' standard deviation. Neighbouring
    values of a scan share their samples, so their errors are positively
    correlated: independent draws roughen the surface more than a re-measurement
    would, and the spread is conservative.

    Parameters
    ----------
    surface_or_array : Surface, xarray.Dataset or DataArray, or array_like
        A Surface (its ``<variable>`` and standard errors), a Dataset as
        ``Surface.to_xarray()`` makes (``<variable>_se`` read as the errors,
        ``done`` as the finished points), or an array of values on a grid (any
        number of dimensions; with ``points``, one value per sampled point).
    variable : str, default "train_loss"
        The variable of a Surface or Dataset.
    se : array_like, optional
        The standard error of each value, for an array.
    coords : dict or sequence of array_like, optional
        An array's coordinates per dimension (default: the grid indices).
    points : array_like, shape (n, d), optional
        Sampled coordinates (not a grid): a k-NN graph joins them.
    k : int, default 8
        Neighbours per point of the k-NN graph.
    z : float, default 2.0
        Paired standard errors a depth must exceed to be resolved.
    bootstrap : int, default 200
        Parametric bootstrap draws (0: no uncertainty for SMAD and the count).
    seed : int, default 0
        The bootstrap's seed.

    Returns
    -------
    Topology
        ``.minima``, ``.pairs``, ``.basins``, ``.smad``, ``.smad_se``,
        ``.n_basins`` (with ``.n_basins_se``), ``.diagram``, ``.to_dict()``.

    Examples
    --------
    >>> import numpy as np, lossmap as lm
    >>> x = np.linspace(-2, 2, 41)
    >>> t = lm.topology((x**2 - 1) ** 2 + 0.1 * x, coords=[x])  # two wells, the right one higher
    >>> [m.coords["alpha"] for m in t.minima], round(t.pairs[1].depth, 6), round(t.smad, 6)
    ([-1.0, 1.0], 0.9, 1.0)
    """
    z = check_float(z, "z", low=0.0, strict=True)
    k = check_int(k, "k", minimum=1)
    bootstrap = check_int(bootstrap, "bootstrap", minimum=0)
    seed = check_int(seed, "seed")
    f = read_field(surface_or_array, variable, se=se, coords=coords, points=points)
    if f.values.size == 0:
        from ..errors import InputError

        raise InputError("topology needs at least one value; the grid is empty")
    edges = grid_edges(f.values.shape) if f.points is None else knn_edges(f.points, k)
    tree = _tree(f, f.values, edges)
    err = None if f.se is None else np.where(np.isfinite(f.se), f.se, np.nan)
    pse = _pair_se(err, tree)
    draws_smad, draws_count = _bootstrap(f, edges, err, z, bootstrap, seed)
    value = smad(tree)
    sd = float(np.std(draws_smad, ddof=1)) if len(draws_smad) > 1 else None
    pairs, basins, minima = _describe(f, tree, pse, z)
    finite = np.isfinite(f.values) & ~f.missing
    n_basins = _count(tree, pse, z)
    return Topology(
        variable=variable,
        value=value,
        se=sd,
        z=z,
        resolved=None if sd is None else bool(value > z * sd),
        evidence=Evidence(
            coordinate=f.dims[0] if f.dims else "alpha",
            points=int(finite.sum()),
            skipped=int((~finite).sum()),
            n=f.samples,
            split=variable.split("_", 1)[0] if "_" in variable else None,
            se_rule=None if sd is None else f"parametric bootstrap, {bootstrap} draws",
        ),
        minima=minima,
        pairs=pairs,
        basins=basins,
        n_minima=len(tree.minima),
        n_basins=n_basins,
        n_basins_se=None if sd is None else float(np.std(draws_count, ddof=1)),
        n_basins_interval=None
        if sd is None
        else (float(np.percentile(draws_count, 2.5)), float(np.percentile(draws_count, 97.5))),
        dims=f.dims,
        shape=None if f.points is not None else tuple(f.values.shape),
        graph="grid" if f.points is None else "knn",
        k=None if f.points is None else k,
        diverged=int((~np.isfinite(f.values) & ~f.missing).sum()),
        missing=int(f.missing.sum()),
        bootstrap=len(draws_smad),
        seed=seed if len(draws_smad) else None,
        tree=tree,
    )


def _bootstrap(
    f: Field, edges: np.ndarray, err: np.ndarray | None, z: float, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """SMAD and the resolved basin count of each redrawn surface (empty without errors)."""
    if err is None or draws == 0 or not np.isfinite(err).any():
        return np.empty(0), np.empty(0)
    rng = np.random.default_rng(seed)
    scale = np.nan_to_num(err, nan=0.0)
    out_s, out_c = np.empty(draws), np.empty(draws)
    for b in range(draws):
        noisy = f.values + scale * rng.standard_normal(f.values.shape)
        t = _tree(f, noisy, edges)
        out_s[b], out_c[b] = smad(t), _count(t, _pair_se(err, t), z)
    return out_s, out_c


def _critical(f: Field, i: int, values: np.ndarray) -> Critical:
    if f.points is not None:
        where = None
        at = {d: float(x) for d, x in zip(f.dims, f.points[i], strict=True)}
    else:
        where = tuple(int(j) for j in np.unravel_index(i, f.values.shape))
        at = {d: float(f.coords[d][j]) for d, j in zip(f.dims, where, strict=True)}
    return Critical(index=int(i), where=where, coords=at, value=float(values[i]))


def _describe(
    f: Field, tree: MergeTree, pse: np.ndarray | None, z: float
) -> tuple[tuple[Pair, ...], tuple[Basin, ...], tuple[Critical, ...]]:
    v = tree.values
    total = int(v.size)
    pairs, basins, minima = [], [], []
    for j, m in enumerate(tree.minima.tolist()):
        lo = _critical(f, m, v)
        d = int(tree.death_at[j])
        hi = _critical(f, d, v) if d >= 0 else None
        death = v[d] if d >= 0 else math.inf
        depth = float(death - v[m])
        s = None if pse is None or not math.isfinite(pse[j]) else float(pse[j])
        ok = depth_resolved(depth, s, z)
        minima.append(lo)
        pairs.append(
            Pair(
                birth=float(v[m]),
                death=float(death),
                depth=depth,
                se=s,
                resolved=ok,
                minimum=lo,
                saddle=hi,
            )
        )
        vol = int(tree.volume[j])
        basins.append(
            Basin(minimum=lo, depth=depth, volume=vol, share=vol / total, resolved=ok, saddle=hi)
        )
    basins.sort(key=lambda b: (-b.depth, b.minimum.value, b.minimum.index))
    return tuple(pairs), tuple(basins), tuple(minima)
