"""lossmap.analysis.geometry and .sharpness on surfaces whose answers are known exactly."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

import helpers
import lossmap as lm
from helpers import plane
from lossmap.errors import InputError, InputTypeError
from lossmap.surface import Surface

# train_loss = fn(alpha) on [-0.5, 1.5] (the models at 0 and 1), float64
line = functools.partial(helpers.line, lo=-0.5, hi=1.5, n=41, dtype="float64")


# -- barrier -------------------------------------------------------------------
def test_barrier_of_a_bump_on_a_sloped_chord():
    # L(0) = 2, L(1) = 1, chord 2 − α, a bump 0.8·sin(πα) on top: barrier 0.8 at α = 0.5.
    surf = line(lambda a: 2 - a + 0.8 * np.sin(np.pi * a))
    r = lm.barrier(surf, "train_loss")
    assert r.value == pytest.approx(0.8, abs=1e-12)
    assert r.at == pytest.approx(0.5)
    assert r.chord == pytest.approx(1.5)
    assert (r.loss_a, r.loss_b) == pytest.approx((2.0, 1.0))
    a = surf.coords["alpha"][10:31]  # the grid points of [0, 1]
    assert r.peak_over_ends == pytest.approx(max(2 - a + 0.8 * np.sin(np.pi * a)) - 2)
    assert r.monotone is False and r.start == 0.0 and r.above_roundoff is True
    assert r.evidence.coordinate == "alpha" and r.evidence.floor_measured is False


def test_no_barrier_and_monotone_from_the_worse_end():
    # Worse end at α = 1 (L = 3), convex decreasing towards α = 0: below the chord, monotone.
    surf = line(lambda a: 1 + 2 * a**2)
    r = lm.barrier(surf, "train_loss")
    assert r.value == 0.0 and r.start == 1.0 and r.monotone is True
    assert r.max_rise < 0 and r.above_roundoff is False


def test_barrier_points_outside_zero_one_do_not_count():
    surf = line(lambda a: np.where((a < 0) | (a > 1), 100.0, 1.0 - a))
    r = lm.barrier(surf, "train_loss")
    assert r.value == pytest.approx(0.0, abs=1e-12) and r.monotone is True


def test_barrier_with_a_missing_end_or_interior_point():
    surf = line(lambda a: 1 + np.sin(np.pi * a))
    vals = surf["train_loss"].copy()
    vals[20] = np.nan  # α = 0.5, the peak: skipped, the next-highest points count
    r = lm.barrier(Surface(surf.spec, {"train_loss": vals}, surf.done), "train_loss")
    assert r.evidence.skipped == 1 and r.at in (pytest.approx(0.45), pytest.approx(0.55))
    vals[10] = np.nan  # α = 0
    r = lm.barrier(Surface(surf.spec, {"train_loss": vals}, surf.done), "train_loss")
    assert r.value is None and r.monotone is None and r.end_states == ("diverged", "finite")


def test_barrier_bad_input():
    with pytest.raises(InputError, match="alpha = 1 is not a grid point"):
        lm.barrier(line(lambda a: a, lo=-1, hi=0.9, n=20), "train_loss")
    with pytest.raises(InputError, match="needs a line"):
        lm.barrier(plane(lambda A, B: A), "train_loss")
    with pytest.raises(InputError, match="unknown variable"):
        lm.barrier(line(lambda a: a), "test_loss")
    with pytest.raises(InputTypeError):
        lm.barrier({"train_loss": [1, 2]}, "train_loss")


# -- convexity map -------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "eig", "kind"),
    [
        (lambda A, B: 3 * A**2 + B**2 + A * B, np.linalg.eigvalsh([[6, 1], [1, 2]]), 1.0),
        (lambda A, B: A**2 - 2 * B**2, np.array([-4.0, 2.0]), 0.0),
        (lambda A, B: -(A**2) - 0.5 * B**2 + 2 * A * B, np.linalg.eigvalsh([[-2, 2], [2, -1]]),
         0.0),
        (lambda A, B: -(A**2) - B**2, np.array([-2.0, -2.0]), -1.0),
    ],
    ids=["bowl", "saddle", "tilted-saddle", "cap"],
)
def test_convexity_map_of_quadratics_is_exact(fn, eig, kind):
    r = lm.convexity_map(plane(fn), "train_loss")
    inner = (slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(r.lambda_min[inner], eig[0], atol=1e-9)
    np.testing.assert_allclose(r.lambda_max[inner], eig[1], atol=1e-9)
    np.testing.assert_allclose(r.ratio[inner], abs(eig[0] / eig[1]), atol=1e-9)
    assert np.all(r.classes[inner] == kind)
    assert r.hessian.shape == (21, 15, 2, 2)
    border = ~r.valid
    assert border.sum() == 21 * 15 - 19 * 13
    assert np.isnan(r.lambda_min[border]).all() and np.isnan(r.ratio[0]).all()
    frac = {1.0: "convex_fraction", 0.0: "saddle_fraction", -1.0: "concave_fraction"}[kind]
    assert getattr(r, frac) == 1.0


def test_convexity_map_mixed_term_and_missing_points():
    surf = plane(lambda A, B: A * B)  # Hessian [[0, 1], [1, 0]]: eigenvalues ±1
    vals = surf["train_loss"].copy()
    vals[10, 7] = np.nan
    r = lm.convexity_map(Surface(surf.spec, {"train_loss": vals}, surf.done), "train_loss")
    ok = r.valid
    assert ok.sum() == 19 * 13 - 9  # the 3×3 block around the missing point is NaN
    assert np.isnan(r.lambda_min[9:12, 6:9]).all()
    np.testing.assert_allclose(r.lambda_min[ok], -1.0, atol=1e-9)
    np.testing.assert_allclose(r.lambda_max[ok], 1.0, atol=1e-9)
    assert r.saddle_fraction == 1.0 and r.interior == 19 * 13 - 9
    with pytest.raises(InputError, match="needs a plane"):
        lm.convexity_map(line(lambda a: a), "train_loss")


# -- gradient field ------------------------------------------------------------
def test_gradient_of_a_quadratic_is_exact_everywhere():
    surf = plane(lambda A, B: 2 * A**2 - A * B + 3 * B + 1)
    A, B = np.meshgrid(*surf.spec.coords(), indexing="ij")
    ga, gb = lm.gradient_field(surf, "train_loss")
    np.testing.assert_allclose(ga, 4 * A - B, atol=1e-12)  # edges too (edge_order=2)
    np.testing.assert_allclose(gb, -A + 3, atol=1e-12)


def test_gradient_of_a_line_and_missing_points():
    surf = line(lambda a: a**3, lo=-1, hi=1, n=201)
    (g,) = lm.gradient_field(surf, "train_loss")
    a = surf.coords["alpha"]
    np.testing.assert_allclose(g[1:-1], 3 * a[1:-1] ** 2, atol=(a[1] - a[0]) ** 2 + 1e-12)
    vals = surf["train_loss"].copy()
    vals[50] = np.nan
    (g,) = lm.gradient_field(Surface(surf.spec, {"train_loss": vals}, surf.done), "train_loss")
    assert np.isnan(g[49:52]).all() and np.isfinite(g[:49]).all() and np.isfinite(g[52:]).all()


# -- basin width ---------------------------------------------------------------
def test_basin_width_of_a_parabola_on_grid_points_and_between():
    surf = line(lambda a: 3 + a**2, lo=-2, hi=2, n=41)
    r = lm.basin_width(surf, "train_loss", 0.25)  # crossings at ±0.5, grid points
    assert (r.left, r.right) == pytest.approx((0.5, 0.5), abs=1e-12)
    assert r.value == pytest.approx(1.0) and r.threshold == 3.25
    assert (r.left_stop, r.right_stop) == ("crossed", "crossed")
    # Between grid points the chord of the parabola is crossed: exact for the chord.
    r = lm.basin_width(surf, "train_loss", 0.2)  # √0.2 ≈ 0.4472, between 0.4 and 0.5
    lo, hi = 0.4, 0.5
    t = (0.2 - lo**2) / (hi**2 - lo**2)
    assert r.right == pytest.approx(lo + t * (hi - lo), abs=1e-12)
    assert abs(r.right - np.sqrt(0.2)) < 0.01  # within the interpolation error h²/8·L''


def test_basin_width_of_a_v_is_exact_and_asymmetric():
    surf = line(lambda a: np.where(a < 0, -2 * a, a), lo=-1, hi=1, n=11)
    r = lm.basin_width(surf, "train_loss", 0.33)
    assert r.left == pytest.approx(0.165) and r.right == pytest.approx(0.33)
    assert r.left_at == pytest.approx(-0.165)


def test_basin_width_none_when_never_exceeded_or_missing():
    surf = line(lambda a: 0.1 * np.abs(a), lo=-1, hi=1, n=21)
    r = lm.basin_width(surf, "train_loss", 1.0)
    assert r.left is None and r.right is None and r.value is None
    assert (r.left_stop, r.right_stop) == ("end", "end")
    vals = surf["train_loss"].copy()
    vals[12] = np.nan
    r = lm.basin_width(Surface(surf.spec, {"train_loss": vals}, surf.done), "train_loss", 0.05)
    assert r.right is None and r.left == pytest.approx(0.5)
    assert r.right_stop == "missing" and r.right_missing == pytest.approx(0.2)
    for bad in (0, -1, float("nan"), "x", True):
        with pytest.raises(InputError, match="delta"):
            lm.basin_width(surf, "train_loss", bad)


# -- sharpness -----------------------------------------------------------------
def least_squares():
    """A linear model at its least-squares optimum: L(w* + εd) − L(w*) = ε² dᵀ(XᵀX/N)d."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    net = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.linalg.lstsq(X, y).solution.T)
    return net, X, y


def test_sharpness_of_a_quadratic_matches_the_sampled_directions():
    net, X, y = least_squares()
    eps = 0.3
    r = lm.sharpness(net, nn.MSELoss(), {"train": (X, y), "test": (X, y)}, epsilon=eps,
                     n_directions=6, n_points=3, seed=5)
    A = (X.T @ X / len(X)).numpy()
    dirs = lm.random_directions(net, 6, norm="none", ignore=None, seed=5)
    want = [eps**2 * float(v @ A @ v) for v in (d["weight"].numpy().ravel() / d.norm()
                                                for d in dirs)]
    np.testing.assert_allclose(r.per_direction, want, rtol=1e-9)
    assert r.value == pytest.approx(max(want), rel=1e-9)
    assert r.value <= eps**2 * np.linalg.eigvalsh(A)[-1] + 1e-12  # a lower bound
    assert r.worst["direction"] == int(np.argmax(want)) and abs(r.worst["alpha"]) == eps
    assert r.split == "train" and r.evaluations == 18 and r.n_directions == 6
    assert r.relative == pytest.approx(r.value / (1 + r.centre_value))


def test_sharpness_filter_norm_and_bad_input():
    net, X, y = least_squares()
    r = lm.sharpness(net, nn.MSELoss(), (X, y), epsilon=0.05, n_directions=2, norm="filter")
    assert r.value > 0 and r.norm == "filter" and r.split == "data"
    with pytest.raises(InputError, match="epsilon"):
        lm.sharpness(net, nn.MSELoss(), (X, y), epsilon=0)
    with pytest.raises(InputError, match="odd"):
        lm.sharpness(net, nn.MSELoss(), (X, y), epsilon=0.1, n_points=4)
    with pytest.raises(InputError, match="norm"):
        lm.sharpness(net, nn.MSELoss(), (X, y), epsilon=0.1, norm="bogus")
    with pytest.raises(InputError, match="split='val'"):
        lm.sharpness(net, nn.MSELoss(), {"train": (X, y)}, epsilon=0.1, split="val")


# -- docs ----------------------------------------------------------------------
@pytest.mark.parametrize("module", ["lossmap.analysis.geometry", "lossmap.analysis.sharpness",
                                    "lossmap.analysis.barriers", "lossmap.analysis.flat",
                                    "lossmap.analysis.render"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize(
    "fn", [lm.barrier, lm.convexity_map, lm.gradient_field, lm.basin_width, lm.sharpness,
           lm.analysis.flatness, lm.analysis.sentence],
    ids=lambda f: f.__name__,
)
def test_docstrings_match_signatures(fn, assert_docstring_matches_signature):
    assert_docstring_matches_signature(fn)


def test_geometry_barrier_is_deprecated_for_lm_barrier():
    """One public name per idea: the line-only geometry.barrier warns and gives lm.barrier's."""
    from lossmap.analysis import geometry

    surf = line(lambda a: 2 - a + 0.8 * np.sin(np.pi * a))
    with pytest.warns(DeprecationWarning, match="use lossmap.barrier"):
        old = geometry.barrier(surf, "train_loss")
    assert old == lm.barrier(surf, "train_loss")
    assert "barrier" not in geometry.__all__ and lm.barrier is lm.analysis.barrier
