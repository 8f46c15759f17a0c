"""Findings with their sampling uncertainty: significance, resolution, samples needed, bands.

Every expected number is computed here from the per-sample values or by hand
(float64), never copied from the code's output.
"""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pytest
from scipy import stats

import helpers
import lossmap as lm
from lossmap.analysis import (
    barrier,
    basin_width,
    convexity,
    finding_sentences,
    findings,
    gap,
    grid_sharpness,
    minimum,
    samples_needed,
    slope_at_centre,
)
from lossmap.errors import InputError
from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

matplotlib.use("Agg")

N = 512


def line(values, *, lo=-1.0, hi=1.0, n=21, errors=None, slopes=None, samples=None,
         splits=("train",)):
    """A complete line; ``values`` and ``errors``: per split a function of alpha, an array or a
    number (a bare ``values`` is the train split's)."""
    if not isinstance(values, dict):
        values = {"train": values}
    assert tuple(values) == tuple(splits), "the splits are those of `values`, in order"
    errs = None if errors is None else {f"{s}_loss": f for s, f in errors.items()}
    return helpers.surface([(lo, hi, n)], {f"{s}_loss": f for s, f in values.items()},
                           errors=errs, slopes=slopes, samples=samples)


def sample_slope(mean, n=N, seed=0):
    """Per-sample directional slopes g_i ~ mean + N(0, 1): their mean, SE (sd / sqrt n) and n."""
    g = mean + np.random.default_rng(seed).standard_normal(n)
    return {"slope": float(g.mean()), "se": float(g.std(ddof=1) / math.sqrt(n)), "n": n}, g


# -- slope ---------------------------------------------------------------------
def test_a_slope_zero_in_expectation_but_not_on_the_sample_is_not_significant():
    measured, g = sample_slope(0.0, seed=3)
    m, se = g.mean(), g.std(ddof=1) / math.sqrt(N)
    assert 0.005 < abs(m) < 2 * se  # non-zero on the sample, within 2 s.e. of zero
    # the grid agrees with the sample's slope: the old fixed 1 % rule calls it a slope
    surf = line(lambda a: 1 + m * a + a**2, slopes={"train_loss": [measured]},
                samples={"train": N})
    old = slope_at_centre(line(lambda a: 1 + m * a + a**2), "train_loss")
    assert old.stationary is False and old.resolved is None and old.se is None
    r = slope_at_centre(surf, "train_loss")
    assert r.measured is True and r.resolved is False
    assert r.stationary is True
    assert r.value == pytest.approx(m) and r.se == pytest.approx(se) and r.evidence.n == N
    assert r.z_score == pytest.approx(abs(m) / se)
    # the same number from scipy: a one-sample t statistic of the per-sample slopes
    assert r.z_score == pytest.approx(abs(stats.ttest_1samp(g, 0.0).statistic))
    assert r.difference == pytest.approx(m)  # the grid's central difference, kept


def test_a_clear_slope_is_significant_and_stated_with_its_numbers():
    measured, g = sample_slope(0.5, seed=1)
    m, se = g.mean(), g.std(ddof=1) / math.sqrt(N)
    surf = line(lambda a: 1 + m * a, slopes={"train_loss": [measured]})
    r = slope_at_centre(surf, "train_loss")
    assert r.resolved is True and r.stationary is False
    assert r.z_score == pytest.approx(abs(m) / se) and r.z_score > 8
    # z is a parameter: at z = 100 the same slope is not resolved
    assert slope_at_centre(surf, "train_loss", z=100).resolved is False


def test_the_slope_is_measured_even_where_the_grid_cannot_form_a_difference():
    measured, _ = sample_slope(0.5, seed=2)
    surf = line(lambda a: 1 + a, slopes={"train_loss": [measured]})
    surf.values["train_loss"][9:12] = np.nan
    r = slope_at_centre(surf, "train_loss")
    assert r.method is None and r.resolved is True
    assert r.value == pytest.approx(measured["slope"])


# -- minimum -------------------------------------------------------------------
@pytest.mark.parametrize(("se_c", "se_m", "resolved"), [(0.1, 0.05, True), (0.2, 0.2, False)])
def test_minimum_off_centre_resolved_against_the_se_of_the_drop(se_c, se_m, resolved):
    # (a - 0.5)^2: the centre is 0.25 above the minimum at a = 0.5; the SE elsewhere is huge
    errs = np.full(21, 5.0)
    errs[10], errs[15] = se_c, se_m
    r = minimum(line(lambda a: (a - 0.5) ** 2, errors={"train": errs}, samples={"train": N}),
                "train_loss")
    se = math.sqrt(se_c**2 + se_m**2)
    assert r.coords == {"alpha": pytest.approx(0.5)} and r.value == pytest.approx(0.25)
    assert r.se == pytest.approx(se) and r.resolved is resolved
    assert r.z_score == pytest.approx(0.25 / se) and r.evidence.se_rule == "conservative"


def test_the_conservative_se_of_a_difference_bounds_the_paired_one():
    """Points of one split share samples: the paired SE is at most sqrt(se_a² + se_b²)."""
    rng = np.random.default_rng(7)
    hard = rng.exponential(1.0, N)  # per-sample difficulty, shared by every point
    a = np.linspace(-1, 1, 21)
    per = hard[None, :] * (1 + (a[:, None] - 0.3) ** 2) + 0.1 * rng.standard_normal((21, N))
    vals, errs = per.mean(axis=1), per.std(axis=1, ddof=1) / math.sqrt(N)
    r = minimum(line(vals, errors={"train": errs}), "train_loss")
    j = int(np.argmin(vals))
    paired = (per[10] - per[j]).std(ddof=1) / math.sqrt(N)
    assert r.value == pytest.approx(vals[10] - vals[j])
    assert r.se == pytest.approx(math.hypot(errs[10], errs[j]))
    assert paired < r.se


# -- gap -----------------------------------------------------------------------
@pytest.mark.parametrize(("shift", "resolved"), [(0.3, True), (0.02, False)])
def test_train_test_gap_matches_welchs_statistic(shift, resolved):
    rng = np.random.default_rng(11)
    tr, te = rng.exponential(1.0, 400), rng.exponential(1.0, 600) + shift
    se_tr, se_te = tr.std(ddof=1) / 20, te.std(ddof=1) / math.sqrt(600)
    surf = line({"train": tr.mean(), "test": te.mean()}, splits=("train", "test"),
                errors={"train": se_tr, "test": se_te}, samples={"train": 400, "test": 600})
    r = gap(surf)
    welch = stats.ttest_ind(te, tr, equal_var=False).statistic  # independent samples: exact
    assert r.value == pytest.approx(te.mean() - tr.mean())
    assert r.se == pytest.approx(math.hypot(se_tr, se_te))
    assert r.z_score == pytest.approx(abs(welch))
    assert r.resolved is resolved is bool(abs(welch) > 2)
    assert r.split_n == (400, 600) and r.evidence.se_rule == "exact"


def test_gap_without_standard_errors_says_so():
    r = gap(line({"train": 0.3, "test": 0.4}, splits=("train", "test")))
    assert r.value == pytest.approx(0.1) and r.se is None and r.resolved is None
    assert r.sentence().endswith("(uncertainty not measured)")
    with pytest.raises(InputError, match="gap needs 'test_loss'"):
        gap(line(lambda a: a))


# -- barrier -------------------------------------------------------------------
def _interp(height, se0=0.02, se1=0.04, se_mid=0.03):
    spec = ScanSpec(grid=(Axis(-0.5, 1.5, 41),), splits=("train",), metrics=("loss",),
                    directions=({"kind": "interpolation"},))
    a = spec.coords()[0]
    errs = np.full(41, 0.01)
    errs[[10, 30, 20]] = se0, se1, se_mid  # alpha = 0, 1 and the peak at 0.5
    values = 1 + 0.1 * a + height * 4 * a * (1 - a)  # excess over the chord peaks at 0.5
    return Surface(spec, {"train_loss": values}, np.ones(41, bool), errors={"train_loss": errs},
                   samples={"train": 1000})


@pytest.mark.parametrize(("height", "resolved"), [(0.1, True), (0.05, False)])
def test_barrier_resolved_against_the_chord_se(height, resolved):
    r = barrier(_interp(height), "train_loss")
    se = math.sqrt(0.03**2 + (0.5 * 0.02 + 0.5 * 0.04) ** 2)  # sqrt(se_t² + ((1-t)se0 + t se1)²)
    assert r.value == pytest.approx(height) and r.at == pytest.approx(0.5)
    assert r.se == pytest.approx(se) and r.resolved is resolved and r.above_roundoff


def test_barrier_se_bounds_the_paired_se_of_the_excess():
    rng = np.random.default_rng(5)
    hard = rng.exponential(1.0, N)
    t = np.array([0.0, 0.5, 1.0])
    per = hard[None, :] * np.array([1.0, 1.3, 0.9])[:, None] + 0.2 * rng.standard_normal((3, N))
    se = per.std(axis=1, ddof=1) / math.sqrt(N)
    from lossmap.analysis.uncertainty import _chord_se

    excess = per[1] - (1 - t[1]) * per[0] - t[1] * per[2]
    paired = excess.std(ddof=1) / math.sqrt(N)
    assert paired <= _chord_se(se[1], se[0], se[2], 0.5)


# -- basin width ---------------------------------------------------------------
def test_basin_width_interval_from_the_noise_band():
    # |alpha| is linear between grid points, so each crossing is exact: the difference
    # |a| ± 2·sqrt(2)·0.1 crosses delta = 1 at |a| = 1 ∓ 0.2828
    surf = line(np.abs, lo=-2.0, hi=2.0, n=41, errors={"train": 0.1})
    r = basin_width(surf, "train_loss", 1.0)
    b = 2 * math.sqrt(2) * 0.1
    assert r.value == pytest.approx(2.0)
    assert r.left_range == pytest.approx((1 - b, 1 + b))
    assert r.width_range == pytest.approx((2 * (1 - b), 2 * (1 + b)))
    assert r.resolved is True
    # a lower band that never reaches delta on the grid: not resolved at this sample size
    wide = basin_width(line(np.abs, lo=-2.0, hi=2.0, n=41, errors={"train": 0.5}),
                       "train_loss", 1.0)
    assert wide.value == pytest.approx(2.0) and wide.resolved is False
    assert wide.width_range[1] is None  # the lower band never reaches delta on the grid
    plain = basin_width(line(np.abs, lo=-2.0, hi=2.0, n=41), "train_loss", 1.0)
    assert plain.width_range is None and plain.resolved is None and plain.se_centre is None


# -- sharpness -----------------------------------------------------------------
@pytest.mark.parametrize(("s", "resolved"), [(0.05, True), (0.1, False)])
def test_grid_sharpness_resolution(s, resolved):
    spec = ScanSpec(grid=((-1, 1, 21), (-1, 1, 21)), splits=("train",), metrics=("loss",))
    A, B = np.meshgrid(*spec.coords(), indexing="ij")
    surf = Surface(spec, {"train_loss": 1 + A**2 + 3 * B**2}, np.ones((21, 21), bool),
                   errors={"train_loss": np.full((21, 21), s)})
    r = grid_sharpness(surf, "train_loss", 0.3)
    assert r.value == pytest.approx(0.27)  # 3 · 0.3², at beta = ±0.3
    assert r.se == pytest.approx(s * math.sqrt(2)) and r.resolved is resolved
    assert r.z_score == pytest.approx(0.27 / (s * math.sqrt(2)))


# -- convexity -----------------------------------------------------------------
def test_convexity_keeps_its_round_off_verdict_and_states_its_scope():
    def f(a):
        return a**4 - a**2

    plain = convexity(line(f), "train_loss")
    errs = np.linspace(0.01, 0.03, 21)
    r = convexity(line(f, errors={"train": errs}, samples={"train": N}), "train_loss")
    assert r.convex is plain.convex is False and r.n_negative == plain.n_negative  # noise
    assert r.evidence.n == N and r.evidence.split == "train"  # does not decide
    assert r.se_typical == pytest.approx(np.median(errs))
    assert r.se_ratio == pytest.approx(abs(r.value) / np.median(errs))
    assert plain.se_ratio is None and plain.se_typical is None and plain.evidence.n is None


# -- samples_needed ------------------------------------------------------------
def test_samples_needed_for_a_minimum_follows_the_formula_and_resolves_there():
    errs = np.full(21, 0.2)
    surf = line(lambda a: (a - 0.5) ** 2, errors={"train": errs}, samples={"train": 500})
    r = samples_needed(surf, "minimum")
    se = 0.2 * math.sqrt(2)
    assert r.effect == pytest.approx(0.25) and r.se == pytest.approx(se)
    assert r.resolved is False and r.n == 500
    want = math.ceil(500 * (2 * se / 0.25) ** 2 - 1e-9)
    assert r.n_needed == want
    # with n_needed samples the SE (∝ 1/√n) puts the effect at 2 s.e.; one fewer, not yet
    assert 2 * se * math.sqrt(500 / want) <= 0.25 * (1 + 1e-12)
    assert 2 * se * math.sqrt(500 / (want - 1)) > 0.25
    assert f"about {want:,} samples" in r.sentence()


def test_samples_needed_for_slope_gap_and_barrier():
    measured, g = sample_slope(0.0, seed=3)
    surf = line(lambda a: 1 + a**2, slopes={"train_loss": [measured]})
    r = samples_needed(surf, "slope")
    se = g.std(ddof=1) / math.sqrt(N)
    assert r.n_needed == math.ceil(N * (2 * se / abs(g.mean())) ** 2 - 1e-9)
    assert r.resolved is False and r.n == N

    two = line({"train": 0.30, "test": 0.31}, splits=("train", "test"),
               errors={"train": 0.01, "test": 0.02}, samples={"train": 400, "test": 100})
    r = samples_needed(two, "gap")
    k = (2 * math.hypot(0.01, 0.02) / 0.01) ** 2
    assert r.factor == pytest.approx(k)
    assert r.per_split == {"train": math.ceil(400 * k - 1e-9), "test": math.ceil(100 * k - 1e-9)}
    assert r.n_needed == r.per_split["train"] and r.variable is None

    r = samples_needed(_interp(0.05), "barrier")
    se = math.sqrt(0.03**2 + 0.03**2)
    assert r.n_needed == math.ceil(1000 * (2 * se / 0.05) ** 2 - 1e-9)


def test_samples_needed_of_a_resolved_finding_and_of_a_zero_effect():
    errs = np.full(21, 0.01)
    r = samples_needed(line(lambda a: (a - 0.5) ** 2, errors={"train": errs},
                            samples={"train": 500}), "minimum")
    assert r.resolved is True and r.n_needed < 500 and "is resolved" in r.sentence()
    at = samples_needed(line(lambda a: a**2, errors={"train": errs}), "minimum")
    assert at.n_needed is None and at.factor == math.inf
    assert "no number of samples resolves it" in at.sentence()


def test_samples_needed_without_standard_errors_says_how_to_get_them():
    with pytest.raises(InputError, match=r"has none for 'train_loss'.*`reduction`.*CrossEntropy"):
        samples_needed(line(lambda a: (a - 0.5) ** 2), "minimum")
    with pytest.raises(InputError, match=r"Surface\.slopes"):
        samples_needed(line(lambda a: a, errors={"train": 0.1}), "slope")
    with pytest.raises(InputError, match="finding='width' is not one of"):
        samples_needed(line(lambda a: a), "width")
    with pytest.raises(InputError, match="z=-1 must be a positive number"):
        samples_needed(line(lambda a: a), "minimum", z=-1)
    assert lm.samples_needed is samples_needed


# -- findings (summary.json, lossmap info) -------------------------------------
def test_findings_are_json_safe_and_list_what_more_samples_would_resolve():
    se = np.full(21, 0.01)
    surf = line({"train": lambda a: 1 + a**2, "test": lambda a: 1.005 + a**2},
                splits=("train", "test"), errors={"train": se, "test": se},
                samples={"train": 1000, "test": 1000})
    f = findings(surf)
    json.dumps(f.to_dict(), allow_nan=False)
    assert f.standard_errors is True and f.samples == {"train": 1000, "test": 1000}
    assert f.gap.resolved is False
    assert [(u.finding, u.n_needed) for u in f.unresolved] == [
        ("gap", math.ceil(1000 * (2 * 0.01 * math.sqrt(2) / 0.005) ** 2 - 1e-9))]
    labels = [label for label, _ in finding_sentences(f)]
    assert labels.count("samples needed") == 1 and "train vs test" in labels


def test_findings_of_an_old_store_without_errors_line_and_plane():
    old_line = line({"train": lambda a: 1 + a**2, "test": lambda a: 1.2 + a**2},
                    splits=("train", "test"))
    spec = ScanSpec(grid=((-1, 1, 11), (-1, 1, 9)), splits=("train",), metrics=("loss",))
    A, B = np.meshgrid(*spec.coords(), indexing="ij")
    old_plane = Surface(spec, {"train_loss": 1 + A**2 + B**2}, np.ones((11, 9), bool))
    for surf in (old_line, old_plane):
        f = findings(surf)
        json.dumps(f.to_dict(), allow_nan=False)
        assert f.standard_errors is False and f.unresolved == ()
        text = " ".join(t for _, t in finding_sentences(f))
        assert "not measured" in text


# -- error bands -----------------------------------------------------------------
def test_line_plot_draws_labelled_error_bands_only_where_errors_exist():
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from lossmap.plot import plot_line

    se = np.linspace(0.01, 0.05, 21)
    values = {"train": lambda a: 1 + a**2, "test": lambda a: 1.2 + a**2}
    surf = line(values, splits=("train", "test"), errors={"train": se})  # test: none
    fig, ax = plt.subplots()
    plot_line(surf, ax=ax)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert [b.get_label() for b in bands] == ["train ± 2 s.e."]
    y = surf["train_loss"]
    ys = np.concatenate([p.vertices[:, 1] for p in bands[0].get_paths()])
    assert ys.max() == pytest.approx((y + 2 * se).max())
    assert ys.min() == pytest.approx((y - 2 * se).min())
    assert "train ± 2 s.e." in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    for kw, s in (({}, line(values, splits=("train", "test"))), ({"band": None}, surf)):
        fig, ax = plt.subplots()
        plot_line(s, ax=ax, **kw)
        assert not ax.collections
        plt.close(fig)


@pytest.mark.slow  # two reports: seconds
def test_report_states_the_uncertainty_and_draws_bands(tmp_path):
    from lossmap.report import write_report

    se = np.full(21, 0.01)
    noisy = line({"train": lambda a: 1 + a**2, "test": lambda a: 1.005 + a**2},
                 splits=("train", "test"), errors={"train": se, "test": se},
                 samples={"train": 1000, "test": 1000})
    old = Surface(noisy.spec, noisy.values, noisy.done)
    text = write_report([("noisy", noisy)], tmp_path / "a.html").read_text()
    assert "Shaded: ±2 standard errors" in text
    assert "samples needed" in text and "32,000 samples per split" in text
    assert "the claim is about the empirical train loss on these n=1000 samples" in text
    text = write_report([("old", old)], tmp_path / "b.html").read_text()
    assert "Shaded" not in text and "stored no standard errors" in text


@pytest.mark.slow  # a scan and two CLI calls: seconds
def test_info_prints_every_finding_with_its_uncertainty(tmp_path, capsys):
    import torch
    from torch import nn

    from cli_run import run_cli

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    data = {s: (torch.randn(200, 5), torch.randint(0, 3, (200,))) for s in ("train", "test")}
    path = tmp_path / "line.lossmap"
    lm.scan(net, nn.CrossEntropyLoss(), data=data, directions=lm.random_directions(net, 1),
            grid=(-1, 1, 9), store=path, progress=False)
    surf = lm.load(path)
    code, out, err = run_cli(capsys, "info", path)
    assert code == 0, err
    assert "  findings    (resolved beyond 2 s.e.; standard errors" in out
    found = findings(surf)
    for label, text in finding_sentences(found):
        assert f"    {label} · {text}" in out
    code, out, err = run_cli(capsys, "info", "--json", path)
    assert json.loads(out)["findings"] == json.loads(json.dumps(found.to_dict()))
    if surf.errors:  # the store keeps standard errors: the gap's is exact, from both splits
        se = math.hypot(surf.se("train_loss")[4], surf.se("test_loss")[4])
        assert found.gap.se == pytest.approx(se)


def test_paired_errors_resolve_what_the_conservative_bound_cannot():
    """With Surface.paired (the SE of each point's difference from the centre over the same
    samples), the minimum's drop and a rise are judged by it; without, by the bound."""
    spec = lm.ScanSpec(grid=((-1, 1, 5),), splits=("train",), metrics=("loss",), samples=512)
    L = np.array([0.60, 0.49, 0.50, 0.52, 0.58])
    errors = {"train_loss": np.full(5, 0.02)}  # each point: ± 0.02
    paired = {"train_loss": np.array([0.004, 0.002, 0.0, 0.002, 0.004])}
    done = np.ones(5, bool)
    loose = lm.Surface(spec, {"train_loss": L}, done, errors=errors)
    tight = lm.Surface(spec, {"train_loss": L}, done, errors=errors, paired=paired)
    m_loose, m_tight = lm.analysis.minimum(loose, "train_loss"), lm.analysis.minimum(
        tight, "train_loss")
    assert m_loose.value == pytest.approx(0.01)
    assert m_loose.se == pytest.approx(np.hypot(0.02, 0.02))  # the conservative bound
    assert m_loose.resolved is False and m_loose.evidence.se_rule == "conservative"
    assert m_tight.se == pytest.approx(0.002) and m_tight.resolved is True  # 5 s.e.
    assert m_tight.evidence.se_rule == "paired"
    need = lm.samples_needed(loose, "minimum", variable="train_loss").n_needed
    assert abs(need - 512 * (2 * np.hypot(0.02, 0.02) / 0.01) ** 2) <= 1  # 16,384: ceil'd
    assert lm.samples_needed(tight, "minimum", variable="train_loss").resolved is True
