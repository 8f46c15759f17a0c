"""lm.topology (issue 25 item 2): merge tree, persistence pairs, basins, SMAD and their uncertainty.

References, each independent of lossmap's union–find: gudhi's cubical complex
on the grid's vertices (the persistence pairs), a 1-D brute-force persistence
(the 3-D Gaussian function whose topology reduces to its central line), and
landscaper 1.3.1 (minima, saddle–minimum pairs and SMAD).
"""

from __future__ import annotations

import json
import math

import gudhi
import numpy as np
import pytest
import xarray as xr

import lossmap as lm
from lossmap.errors import InputError
from lossmap.topology import grid_edges, merge_tree


# -- references ----------------------------------------------------------------
def gudhi_pairs(values: np.ndarray) -> list[tuple[float, float]]:
    """gudhi's 0-dimensional pairs of the vertex filtration (NaN given +inf, as lossmap does)."""
    v = np.where(np.isfinite(values), values, np.inf)
    cc = gudhi.CubicalComplex(vertices=v)
    return sorted((b, d) for dim, (b, d) in cc.persistence(homology_coeff_field=2) if dim == 0)


def line_persistence(g: np.ndarray) -> list[tuple[int, float, float, int | None]]:
    """1-D persistence by brute force: (minimum, birth, death, saddle) per local minimum.

    A local minimum's death is the lowest height one must climb, walking left
    or right, to reach a point lower than it (ties: lower flat index counts
    as lower); the saddle is the highest point of that walk.
    """
    n, out = len(g), []
    lower = lambda i, j: (g[j], j) < (g[i], i)  # noqa: E731  j enters before i
    for i in range(n):
        if any(0 <= j < n and lower(i, j) for j in (i - 1, i + 1)):
            continue
        best = (math.inf, None)
        for step in (-1, 1):
            top, at, j = -math.inf, None, i + step
            while 0 <= j < n:
                if lower(i, j):
                    best = min(best, (top, at), key=lambda x: x[0])
                    break
                if g[j] > top:
                    top, at = g[j], j
                j += step
        out.append((i, float(g[i]), best[0], best[1]))
    return out


def gaussian_line(a: np.ndarray) -> np.ndarray:
    """Three Gaussian wells of different depths on a slight bowl."""
    wells = ((-1.2, 1.0, 0.25), (0.1, 0.6, 0.3), (1.3, 0.8, 0.2))
    return 0.05 * a**2 - sum(d * np.exp(-((a - c) ** 2) / (2 * w**2)) for c, d, w in wells)


# -- the 3-D Gaussian function with known minima and saddles -------------------
def test_gaussian_3d_minima_and_pairs_are_the_known_ones():
    """f = g(α) + s(β) + s(γ), s(y) = 1 − exp(−y²) ≥ 0 with s(0) = 0 exactly.

    Every sublevel component reaches the line β = γ = 0 by walking β, γ to 0
    (f falls), and a path's projection on the line stays in the sublevel set,
    so the merge tree of f is that of g on the line: the minima are
    (αᵢ, 0, 0) at g's local minima, each pair (g(min), g(saddle)).
    """
    a = np.linspace(-2, 2, 41)
    b = np.linspace(-1, 1, 11)  # holds 0 exactly
    g = gaussian_line(a)
    s = 1.0 - np.exp(-(b**2))
    f = g[:, None, None] + s[None, :, None] + s[None, None, :]
    t = lm.topology(f, coords={"alpha": a, "beta": b, "gamma": b}, bootstrap=0)
    known = line_persistence(g)
    assert len(known) == 3  # the three wells
    assert sorted(m.where for m in t.minima) == sorted((i, 5, 5) for i, *_ in known)
    got = sorted((p.minimum.where[0], p.birth, p.death) for p in t.pairs)
    for (i, birth, death, saddle), (gi, gb, gd) in zip(sorted(known), got, strict=True):
        assert gi == i and gb == pytest.approx(birth, abs=1e-15)
        assert gd == pytest.approx(death, abs=1e-15) or (death == gd == math.inf)
        if saddle is not None:
            p = next(p for p in t.pairs if p.minimum.where[0] == i)
            assert p.saddle.where == (saddle, 5, 5)
            assert p.depth == pytest.approx(g[saddle] - g[i], abs=1e-15)
    assert t.tree.volume[0] == f.size  # the global basin holds every cell
    assert [m.coords["beta"] for m in t.minima] == [0.0] * 3


# -- gudhi ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(30,), (9, 12), (6, 7, 5), (4, 5, 3, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_pairs_equal_gudhis_on_random_grids(shape, seed):
    v = np.random.default_rng(seed).standard_normal(shape)
    t = lm.topology(v, bootstrap=0)
    ours = sorted((p.birth, p.death) for p in t.pairs)
    assert np.allclose(ours, gudhi_pairs(v), rtol=0, atol=0)


def test_pairs_equal_gudhis_with_ties_and_diverged_points():
    rng = np.random.default_rng(3)
    v = np.round(rng.standard_normal((10, 10, 4)), 1)  # many ties
    v[rng.random(v.shape) < 0.1] = np.nan
    v[rng.random(v.shape) < 0.05] = np.inf
    t = lm.topology(v, bootstrap=0)
    ours = sorted((p.birth, p.death) for p in t.pairs if p.depth > 0)  # gudhi drops length 0
    assert ours == [tuple(x) for x in gudhi_pairs(v)]
    assert t.diverged == int((~np.isfinite(v)).sum())


# -- landscaper 1.3.1 --------------------------------------------------------------
def wells(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    f = 0.3 * sum(x**2 for x in axes)
    width = rng.uniform(0.15, 0.3)
    for _ in range(int(rng.integers(2, 5))):
        c, d = rng.uniform(-0.7, 0.7, len(shape)), rng.uniform(0.5, 1.5)
        f = f - d * np.exp(
            -sum((x - ci) ** 2 for x, ci in zip(axes, c, strict=True)) / (2 * width**2)
        )
    return f + 1e-9 * rng.standard_normal(shape)  # no ties


def contour_equals_merge_near_minima(f: np.ndarray) -> bool:
    """No split saddle (a saddle of −f) lies between the lowest minimum and the highest
    first saddle (above the lowest minimum at all, where one minimum never merges): then
    each minimum's arc in the contour tree landscaper reads its pairs from ends at the
    same saddle as in the merge tree."""
    e = grid_edges(f.shape)
    join, split = merge_tree(f, e), merge_tree(-f, e)
    lo = f.reshape(-1)[join.minima].min()
    hi = max(f.reshape(-1)[s] if s >= 0 else np.inf for s in join.first_saddle)
    split_saddles = -split.values[split.nodes[len(split.minima) :]]
    return not np.any((split_saddles > lo) & (split_saddles < hi))


@pytest.mark.slow  # landscaper builds its contour tree and Morse–Smale complex in Python (~8 s)
def test_minima_pairs_and_smad_equal_landscapers():
    from landscaper import LossLandscape
    from landscaper.tda import saddle_minima_pairs

    rng = np.random.default_rng(0)
    compared = 0
    for shape in [(11, 11)] * 6 + [(6, 6, 6)] * 3:
        f = wells(shape, rng)
        if not contour_equals_merge_near_minima(f):
            continue
        compared += 1
        ranges = [np.linspace(-1, 1, n) for n in shape]
        ls = LossLandscape(f, ranges)
        ct = ls.get_contour_tree()
        index = ls.get_topological_indices(ct)
        theirs = sorted(
            (a, b) if index[a] == 0 else (b, a) for a, b in saddle_minima_pairs(ct, index)
        )
        t = lm.topology(f, coords=ranges, bootstrap=0)
        tree = t.tree
        ours = sorted(
            (int(m), int(s)) for m, s in zip(tree.minima, tree.first_saddle, strict=True) if s >= 0
        )
        assert ours == theirs
        assert sorted(m.index for m in t.minima) == sorted(m for m, _ in theirs)
        assert t.smad == pytest.approx(ls.smad(), rel=1e-12)
    assert compared >= 5


# -- uncertainty ---------------------------------------------------------------------
def test_a_pair_within_two_standard_errors_is_not_resolved():
    a = np.linspace(-3, 3, 61)
    g = gaussian_line(a)
    assert g[54] < g[55] < g[56]  # rising towards α = 3
    g[55] = g[54] - 0.01  # a dent: a basin 0.01 deep at α = 2.5, below 2 paired s.e. (0.028)
    se = np.full_like(a, 0.01)
    t = lm.topology(g, coords=[a], se=se, bootstrap=50, seed=1)
    shallow = min(t.pairs, key=lambda p: p.depth)
    assert shallow.minimum.index == 55 and shallow.depth == pytest.approx(0.01, abs=1e-15)
    assert shallow.se == pytest.approx(math.hypot(0.01, 0.01))
    assert shallow.resolved is False
    deep = [p for p in t.pairs if p is not shallow]
    assert all(p.resolved for p in deep)
    assert t.n_minima == 4 and t.n_basins == 3
    assert t.n_basins_se is not None and t.smad_se > 0
    again = lm.topology(g, coords=[a], se=se, bootstrap=50, seed=1)
    assert (again.smad_se, again.n_basins_se) == (t.smad_se, t.n_basins_se)  # seeded


def test_without_standard_errors_nothing_is_judged():
    t = lm.topology(gaussian_line(np.linspace(-2, 2, 41)))
    assert t.smad_se is None and t.n_basins_se is None and t.n_basins == t.n_minima == 3
    assert all(p.resolved is None for p in t.pairs)
    assert "not measured" in t.sentence()


# -- diverged points, ties, inputs ------------------------------------------------------
def test_diverged_points_wall_basins_off_and_are_not_averaged():
    v = np.array([1.0, 0.2, 1.0, np.nan, np.inf, 2.0, 0.5, 3.0])
    t = lm.topology(v, bootstrap=0)
    assert [m.value for m in t.minima] == [0.2, 0.5]
    assert t.pairs[1].death == math.inf and t.diverged == 2
    # both diverged points are +inf; 3 enters first (ties by index) and joins the left
    # basin only, so the two meet at 4
    assert t.pairs[1].saddle.index == 4 and t.pairs[1].saddle.value == math.inf


def test_ties_are_broken_by_index():
    t = lm.topology(np.zeros((4, 5)), bootstrap=0)
    assert [m.index for m in t.minima] == [0] and t.smad == 0.0
    flat = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    assert [m.index for m in lm.topology(flat).minima] == [0, 2, 4]


def test_hand_built_3d_dataset_reads_its_standard_errors():
    a, b, c = np.linspace(-1, 1, 7), np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)
    f = wells((7, 6, 5), np.random.default_rng(2))
    ds = xr.Dataset(
        {
            "train_loss": (("alpha", "beta", "gamma"), f),
            "train_loss_se": (("alpha", "beta", "gamma"), np.full(f.shape, 1e-3)),
        },
        coords={"alpha": a, "beta": b, "gamma": c},
    )
    t = lm.topology(ds, bootstrap=20)
    assert t.dims == ("alpha", "beta", "gamma") and t.shape == (7, 6, 5)
    assert all(p.se == pytest.approx(math.hypot(1e-3, 1e-3)) for p in t.pairs[1:])
    lo = np.unravel_index(np.argmin(f), f.shape)
    assert t.minima[0].coords == {"alpha": a[lo[0]], "beta": b[lo[1]], "gamma": c[lo[2]]}
    assert sorted((p.birth, p.death) for p in t.pairs) == gudhi_pairs(f)
    with pytest.raises(InputError, match=r"no variable .test_loss.*train_loss"):
        lm.topology(ds, "test_loss")


def test_sampled_points_use_a_knn_graph():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-2, 2, (400, 2))
    vals = (pts[:, 0] ** 2 - 1) ** 2 + pts[:, 1] ** 2 + 0.2 * pts[:, 0]
    t = lm.topology(vals, points=pts, k=10, se=np.full(400, 0.01), bootstrap=20)
    assert t.graph == "knn" and t.k == 10
    big = [b for b in t.basins if b.resolved and b.share > 0.05]
    assert len(big) == 2
    assert sorted(round(b.minimum.coords["alpha"]) for b in big) == [-1, 1]


def test_to_dict_is_json_and_errors_name_the_fix():
    t = lm.topology(gaussian_line(np.linspace(-2, 2, 41)), se=np.full(41, 1e-3), bootstrap=10)
    d = json.loads(json.dumps(t.to_dict()))
    assert d["kind"] == "topology" and d["smad"] == t.smad and len(d["pairs"]) == 3
    assert d["pairs"][0]["death"] is None  # +inf, JSON-safe
    with pytest.raises(InputError, match="se has shape"):
        lm.topology(np.zeros(5), se=np.zeros(4))
    with pytest.raises(InputError, match="bootstrap"):
        lm.topology(np.zeros(5), bootstrap=-1)
