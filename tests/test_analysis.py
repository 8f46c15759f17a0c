"""lossmap.analysis on analytic surfaces whose answers are known exactly."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import helpers
from helpers import plane
from lossmap import Direction
from lossmap.analysis import (
    analyse,
    convexity,
    direction_cosine,
    minimum,
    slope_at_centre,
)
from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

# complete surfaces with train_loss = fn(alpha) / fn(A, B); lines scanned in float32
line = functools.partial(helpers.line, dtype="float32")


# -- slope ---------------------------------------------------------------------
def test_slope_of_a_tilted_parabola_is_exact():
    r = slope_at_centre(line(lambda a: 2 + 3 * a + 5 * a**2), "train_loss")
    assert r.value == pytest.approx(3.0, abs=1e-12)  # a central difference is exact on quadratics
    assert r.step == pytest.approx(0.2)
    assert r.method == "central"
    assert r.at == 0.0
    assert r.stationary is False and r.measured is False and r.se is None
    assert r.evidence.stand_in is None and r.evidence.centre == "finite"
    assert r.curvature == pytest.approx(10.0)  # exact on a quadratic
    assert r.vertex == pytest.approx(-0.3)  # -3 / 10: where the parabola is lowest


def test_slope_sign_is_stated():
    r = slope_at_centre(line(lambda a: 2 - 3 * a), "train_loss")
    assert r.value == pytest.approx(-3.0)
    assert "decreases towards positive alpha" in r.sentence()


def test_stationary_point():
    r = slope_at_centre(line(lambda a: a**2), "train_loss")
    assert r.value == pytest.approx(0.0, abs=1e-12)
    assert r.stationary is True


def test_stationary_rule_is_relative_to_the_loss_scale():
    # |slope| * span = 1e-3 * 2 = 2e-3; scale max(|L(0)|, 1) = 10 → threshold 1e-2 * 10 = 0.1
    r = slope_at_centre(line(lambda a: 10 + 1e-3 * a + a**2), "train_loss")
    assert r.stationary is True and (r.span, r.scale, r.tol) == pytest.approx((2.0, 10.0, 1e-2))
    r = slope_at_centre(line(lambda a: 10 + 1e-3 * a + a**2), "train_loss", tol=1e-4)
    assert r.stationary is False


def test_slope_without_zero_on_the_grid_uses_the_closest_point():
    surf = line(lambda a: 2 + 3 * a + 5 * a**2, n=20)  # even n: 0 is not a grid point
    assert surf.centre_index() is None
    r = slope_at_centre(surf, "train_loss")
    a0 = r.at
    assert abs(a0) == pytest.approx(1 / 19)
    assert r.value == pytest.approx(3 + 10 * a0)  # exact derivative there
    assert r.evidence.stand_in == {"alpha": pytest.approx(a0)}


def test_slope_with_a_missing_neighbour_falls_back_to_one_side():
    surf = line(lambda a: 2 + 3 * a)
    surf.values["train_loss"][11] = np.nan  # the neighbour at alpha = +0.1
    r = slope_at_centre(surf, "train_loss")
    assert r.method == "backward"
    assert r.value == pytest.approx(3.0)
    assert r.step == pytest.approx(0.1)


def test_slope_with_a_missing_centre_is_undetermined():
    surf = line(lambda a: a)
    surf.values["train_loss"][10] = np.nan
    r = slope_at_centre(surf, "train_loss")
    assert r.value is None and r.method is None
    assert r.stationary is None


def test_slope_needs_a_line_and_a_known_variable():
    with pytest.raises(ValueError, match="needs a line"):
        slope_at_centre(plane(lambda A, B: A), "train_loss")
    with pytest.raises(
        ValueError, match="unknown variable 'test_loss'; this surface has train_loss"
    ):
        slope_at_centre(line(lambda a: a), "test_loss")
    with pytest.raises(TypeError, match="takes a lossmap Surface"):
        slope_at_centre({"train_loss": [1, 2]}, "train_loss")


# -- convexity -----------------------------------------------------------------
def test_double_well_is_not_convex_where_the_second_derivative_is_negative():
    surf = line(lambda a: a**4 - a**2, n=41)  # h = 0.05
    r = convexity(surf, "train_loss")
    assert r.convex is False
    # the round-off is assumed: one float32 ulp of the largest value, max|L| = 0 → eps · |L(±1)|
    assert r.evidence.floor_measured is False and r.bound is None and r.n_negative == 17
    L = np.linspace(-1, 1, 41) ** 4 - np.linspace(-1, 1, 41) ** 2
    assert r.evidence.floor == pytest.approx(np.finfo(np.float32).eps * np.abs(L).max())
    assert r.ratio == pytest.approx(-r.value / r.evidence.floor)
    # the exact second difference of a quartic: h^2 (12 a^2 - 2) + 2 h^4 < 0 ⇔ a^2 < (2 - 2h^2) / 12
    h = 0.05
    inner = np.linspace(-1, 1, 41)[1:-1]
    expected = inner[inner**2 < (2 - 2 * h**2) / 12]
    np.testing.assert_allclose(np.sort(np.array(r.violating)), expected)
    assert np.all(np.abs(np.array(r.violating)) < 1 / math.sqrt(6))
    assert r.n_negative == len(expected) == 17  # alpha = -0.4, -0.35, …, 0.4
    assert r.evidence.points == 39 and r.evidence.skipped == 0
    assert r.value == pytest.approx(h**2 * -2 + 2 * h**4)
    assert r.min_curvature == pytest.approx(-2 + 2 * h**2)
    assert r.at == pytest.approx(0.0)


def test_flat_convex_parabola_in_float32_round_off_is_convex():
    # true second differences are 2 h^2 1e-6 = 8e-10, below float32 rounding (6e-8) near 1
    exact = 1.0 + 1e-6 * np.linspace(-1, 1, 101) ** 2
    noisy = exact.astype(np.float32).astype(np.float64)
    surf = line(lambda a: noisy, n=101)
    d2 = noisy[:-2] - 2 * noisy[1:-1] + noisy[2:]
    assert (d2 < 0).any()  # round-off does make some second differences negative
    r = convexity(surf, "train_loss")
    assert r.convex is True and r.n_negative == 0 and r.value < 0
    # in float64 precision the same noise is far beyond round-off
    r64 = convexity(line(lambda a: noisy, n=101, dtype="float64"), "train_loss")
    assert r64.convex is False


def test_convexity_with_noise_in_a_wide_convex_parabola():
    rng = np.random.default_rng(0)
    a = np.linspace(-1, 1, 51)
    L = (2 + a**2) * (1 + rng.uniform(-1, 1, a.size) * np.finfo(np.float32).eps)
    r = convexity(line(lambda _: L, n=51), "train_loss")
    assert r.convex is True
    assert r.value > 0


def test_convexity_skips_second_differences_that_need_a_missing_point():
    surf = line(lambda a: a**2, n=21)
    surf.values["train_loss"][5] = np.nan
    surf.values["train_loss"][15] = np.inf  # diverged
    r = convexity(surf, "train_loss")
    assert r.evidence.skipped == 6
    assert r.evidence.points == 19 - 6
    assert r.convex is True


def test_convexity_of_an_all_missing_line_is_undetermined():
    surf = line(lambda a: a * np.nan)
    r = convexity(surf, "train_loss")
    assert r.convex is None
    assert r.evidence.points == 0
    assert r.value is None


def test_convexity_of_a_plane_counts_grid_lines_per_axis():
    # convex along alpha everywhere; along beta a double well on every line
    surf = plane(lambda A, B: A**2 + B**4 - B**2, na=21, nb=15)
    r = convexity(surf, "train_loss")
    assert r.convex is False
    assert r.axes["alpha"].lines == 15 and r.axes["alpha"].lines_not_convex == 0
    assert r.axes["alpha"].n_negative == 0 and r.axes["alpha"].checked == 15 * 19
    assert r.axes["beta"].lines == 21 and r.axes["beta"].lines_not_convex == 21
    b = np.linspace(-1, 1, 15)[1:-1]
    h = b[1] - b[0]
    per_line = int((b**2 < (2 - 2 * h**2) / 12).sum())
    assert r.axes["beta"].n_negative == 21 * per_line
    assert r.n_negative == 21 * per_line
    assert r.min_curvature == pytest.approx(-2 + 2 * h**2)


def test_convex_plane():
    r = convexity(plane(lambda A, B: 1 + A**2 + 3 * B**2 + A * B), "train_loss")
    assert r.convex is True and r.n_negative == 0
    assert r.evidence.points == 15 * 19 + 21 * 13


def test_convexity_of_a_plane_with_missing_points():
    surf = plane(lambda A, B: A**2 + B**2)
    surf.values["train_loss"][3, 4] = np.nan
    r = convexity(surf, "train_loss")
    # the point spoils 3 second differences along alpha and 3 along beta
    assert r.axes["alpha"].skipped == 3 and r.axes["beta"].skipped == 3
    assert r.convex is True


# -- minimum -------------------------------------------------------------------
def test_minimum_at_the_centre():
    r = minimum(line(lambda a: 1 + a**2), "train_loss")
    assert r.lowest == 1.0 and r.value == 0.0
    assert r.coords == {"alpha": 0.0}
    assert r.at_centre is True and r.resolved is None


def test_minimum_off_centre_warns():
    r = minimum(line(lambda a: (a - 0.5) ** 2), "train_loss")
    assert r.coords["alpha"] == pytest.approx(0.5)
    assert r.at_centre is False and r.value == pytest.approx(0.25) and r.lowest == 0.0


def test_minimum_of_a_plane_ignores_missing_points():
    surf = plane(lambda A, B: (A - 0.4) ** 2 + (B + 0.5) ** 2 + 1)
    i, j = 14, 2  # alpha = 0.4, beta = -5/7: the grid minimum
    surf.values["train_loss"][i, j] = np.nan
    surf.values["train_loss"][0, 0] = -np.inf
    r = minimum(surf, "train_loss")
    assert r.index != (i, j)
    assert np.isfinite(r.lowest)
    A, B = np.meshgrid(*surf.spec.coords(), indexing="ij")
    L = (A - 0.4) ** 2 + (B + 0.5) ** 2 + 1
    L[i, j] = np.inf
    L[0, 0] = np.inf
    assert r.lowest == pytest.approx(L.min()) and r.at_centre is False
    assert r.value == pytest.approx(L[10, 7] - L.min())  # the drop below the centre


def test_minimum_without_zero_on_the_grid_compares_with_the_closest_point():
    r = minimum(line(lambda a: a**2, n=20), "train_loss")
    assert r.at_centre is True  # ties between ±1/19 resolve to the closest-to-centre point
    assert abs(r.evidence.stand_in["alpha"]) == pytest.approx(1 / 19)


def test_minimum_of_nothing():
    r = minimum(line(lambda a: a * np.nan), "train_loss")
    assert r.value is None and r.lowest is None and r.coords is None
    assert r.evidence.points == 0


# -- direction cosine ------------------------------------------------------------
def test_direction_cosine_of_directions_and_dicts():
    d1 = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0])}
    d2 = {"w": torch.tensor([0.0, 2.0]), "b": torch.tensor([0.0])}
    assert direction_cosine(d1, d2) == pytest.approx(0.0)
    assert direction_cosine(Direction(d1), Direction(d1)) == pytest.approx(1.0)
    assert direction_cosine(Direction(d1), {"w": torch.tensor([-3.0, 0.0])}) == pytest.approx(-1.0)
    assert direction_cosine(d1, {"w": torch.tensor([1.0, 1.0])}) == pytest.approx(1 / math.sqrt(2))


def test_direction_cosine_rejects_wrong_input():
    with pytest.raises(TypeError, match="d2 must be a Direction or a dict of tensors"):
        direction_cosine({"w": torch.ones(2)}, [1.0, 2.0])
    with pytest.raises(ValueError, match="share no parameter name"):
        direction_cosine({"w": torch.ones(2)}, {"v": torch.ones(2)})


# -- all at once -----------------------------------------------------------------
def test_analyse_reports_every_loss_variable():
    spec = ScanSpec(grid=(Axis(-1, 1, 21),), splits=("train", "test"), metrics=("loss", "accuracy"))
    a = spec.coords()[0]
    values = {
        "train_loss": 1 + a**2,
        "test_loss": 2 + a + a**2,
        "train_accuracy": 1 - a**2,
        "test_accuracy": 1 - a**2,
    }
    out = analyse(Surface(spec, values, np.ones(21, bool)))
    assert set(out) == {"train_loss", "test_loss"}
    assert out["train_loss"]["slope"].stationary is True
    assert out["test_loss"]["slope"].stationary is False
    assert out["test_loss"]["minimum"].at_centre is False
    assert out["train_loss"]["convexity"].convex is True
    assert out["train_loss"]["flatness"].flat is False
    p = analyse(plane(lambda A, B: A**2 + B**2))
    assert set(p["train_loss"]) == {"convexity", "flatness", "minimum"}
