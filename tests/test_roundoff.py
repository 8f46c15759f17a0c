"""The measured round-off floor and the convexity verdicts that use it (issue 15).

The lines here are built from models whose loss along the line is known
exactly: a two-layer linear network without bias, ``o = v·w·x``, with x = 1
and MSE against targets ``ȳ ± 2``, so that ``L(α) = (o(α) − ȳ)² + 4``. Moving
both weights by α from 0 gives ``o = α²`` and the quartic
``L = (α² − c)² + 4``, non-convex for |α| < sqrt(c/3); moving only the first
gives a quadratic.
"""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.analysis import barrier, convexity
from lossmap.backends.torch.roundoff import floor_points
from lossmap.cli.main import main as cli
from lossmap.store import Store

N = 64  # samples
C = 0.016  # L = (α² − C)² + 4: second derivative 12α² − 4C, negative for |α| < 0.073
GRID = (-0.5, 0.5, 41)  # h = 0.025: exact D(0) = h²(−4C) + 2h⁴ = −3.9e-5
EPS32 = float(np.finfo(np.float32).eps)


def two_layer(v0: float, w0: float, dtype=torch.float32) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(w0)
        net[1].weight.fill_(v0)
    return net.to(dtype)


def data(dtype=torch.float32):
    X = torch.ones(N, 1, dtype=dtype)
    y = (C + 2.0 * torch.tensor([1.0, -1.0]).repeat(N // 2)).to(torch.float32).to(dtype)
    return {"train": (X, y.reshape(N, 1))}


def direction(both: bool, dtype=torch.float32) -> dict:
    one = torch.ones(1, 1, dtype=dtype)
    return {"0.weight": one, "1.weight": one if both else torch.zeros_like(one)}


def quartic(dtype=torch.float32, grid=GRID, **kw) -> lm.Surface:
    """The non-convex line: o = α², L = (α² − C)² + 4 (float32 by default)."""
    return lm.scan(two_layer(0.0, 0.0, dtype), nn.MSELoss(), data=data(dtype),
                   directions=direction(True, dtype), grid=grid, progress=False, **kw)


def quadratic(dtype=torch.float32, **kw) -> lm.Surface:
    """The convex line: o = 0.01·α, L = (0.01 α − ȳ)² + 4, D = 2e-4 h² = 1.25e-7 only."""
    return lm.scan(two_layer(0.01, 0.0, dtype), nn.MSELoss(), data=data(dtype),
                   directions=direction(False, dtype), grid=GRID, progress=False, **kw)


def exact_second_differences(L) -> np.ndarray:
    a = np.linspace(*GRID[:2], GRID[2])
    y = data(torch.float64)["train"][1].numpy().ravel()
    values = np.array([np.mean((L(x) - y) ** 2) for x in a])
    return values[:-2] - 2 * values[1:-1] + values[2:]


def old_rule_violations(surf: lm.Surface) -> int:
    """Negative second differences beyond lossmap 0.1's tolerance, 32·eps·Σ|L|."""
    L = surf["train_loss"]
    d2 = L[:-2] - 2 * L[1:-1] + L[2:]
    tol = 32 * EPS32 * (np.abs(L[:-2]) + 2 * np.abs(L[1:-1]) + np.abs(L[2:]))
    return int((d2 < -tol).sum())


# -- the verdicts ----------------------------------------------------------------------
def test_smooth_non_convex_float32_line_is_reported_not_convex():
    surf = quartic()
    floor = surf.roundoff["train_loss"]
    assert 0 < floor < 1e-6  # float32 round-off of a loss near 4
    exact = exact_second_differences(lambda a: a * a)
    bound = 2 * 4 * floor
    # far above round-off, yet inside the old tolerance, which saw nothing
    assert exact.min() < -50 * floor and old_rule_violations(surf) == 0
    assert exact.min() > -32 * EPS32 * 4 * 4  # the old tolerance near L = 4 hid it
    r = convexity(surf, "train_loss")
    assert r.convex is False and r.evidence.floor_measured is True
    assert r.evidence.floor == floor and r.bound == pytest.approx(bound)
    assert r.n_negative == int((exact < -bound).sum()) == 5
    np.testing.assert_allclose(r.violating, [-0.05, -0.025, 0.0, 0.025, 0.05], atol=1e-12)
    assert r.value == pytest.approx(exact.min(), abs=bound)  # D is off by < the bound
    assert r.ratio == pytest.approx(-r.value / floor)
    assert r.sentence().startswith(  # the renderer's words for this finding
        "this slice is not convex, so the surface is not convex: 5 second differences below "
        f"{-bound:.1e}, the measured round-off bound (deepest {r.value:.1e}, "
        f"{r.ratio:.3g}× the measured round-off {floor:.1e}); the claim is about the empirical "
        "train loss on ")
    # the same line evaluated in float64 gives the same verdict
    r64 = convexity(quartic(torch.float64), "train_loss")
    assert r64.convex is False and r64.evidence.floor_measured is True
    assert r64.n_negative == 5 and r64.value == pytest.approx(exact.min(), rel=1e-9)


def test_convex_quadratic_with_float32_round_off_is_reported_convex():
    surf = quadratic()
    L = surf["train_loss"]
    d2 = L[:-2] - 2 * L[1:-1] + L[2:]
    # the true second differences, 1.25e-7, are of the size of float32 round-off
    exact = exact_second_differences(lambda a: 0.01 * a)
    np.testing.assert_allclose(exact, 2e-4 * 0.025**2, rtol=1e-6)
    assert np.abs(d2 - exact).max() > 1e-2 * exact.max()  # the float32 values are noisy
    r = convexity(surf, "train_loss")
    bound = 8 * surf.roundoff["train_loss"]
    assert r.convex is True and r.n_negative == 0 and r.evidence.floor_measured is True
    assert r.bound == pytest.approx(bound)
    r64 = convexity(quadratic(torch.float64), "train_loss")
    assert r64.convex is True and r64.value > 0


def test_float64_scan_floor_is_measured_against_another_sample_order():
    surf = quartic(torch.float64)
    floor = surf.roundoff["train_loss"]
    # at least eps·|L| (L ~ 4), and float64-small
    assert np.finfo(np.float64).eps * 4 <= floor < 1e-12


# -- the floor -------------------------------------------------------------------------
def brute_force_floor(build, both: bool, autocast=None, grid=GRID) -> float:
    """max over the floor's points of max(|v_scan − v64|, eps32·|v64|), by a plain loop.

    The scan runs one batch without first-layer reuse, so its float32 value at a
    point is what this loop computes: the weights c + a·d in float32, the model,
    the loss.
    """
    worst = 0.0
    X, y = data()["train"]
    for (a,) in floor_points([np.linspace(*grid[:2], grid[2])]):
        values = []
        for dtype in (torch.float32, torch.float64):
            net = build().to(dtype)
            with torch.no_grad():
                for name, d in direction(both).items():
                    p = net.get_parameter(name)
                    p.add_(d.to(dtype), alpha=float(a))
                with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None and
                                    dtype == torch.float32):
                    loss = nn.MSELoss()(net(X.to(dtype)), y.to(dtype))
            values.append(float(loss.double()))
        worst = max(worst, abs(values[0] - values[1]), EPS32 * abs(values[1]))
    return worst


@pytest.mark.parametrize("autocast", [None, "bfloat16"])
def test_floor_equals_a_brute_force_recomputation(autocast):
    grid = (-0.3, 0.7, 41)  # ends that bfloat16 cannot hold exactly
    surf = quartic(grid=grid, reuse_first_layer=False, batch_size=N, autocast=autocast)
    expected = brute_force_floor(lambda: two_layer(0.0, 0.0), True,
                                 getattr(torch, autocast) if autocast else None, grid)
    assert surf.roundoff["train_loss"] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    if autocast:  # bfloat16's own error dominates: the floor is measured, not eps-bound
        assert surf.roundoff["train_loss"] > 100 * EPS32 * 4


def test_floor_is_stored_read_back_and_shown_by_info(tmp_path, capsys):
    path = tmp_path / "line.lossmap"
    surf = quartic(store=path)
    assert set(surf.roundoff) == {"train_loss"} and surf.roundoff["train_loss"] > 0
    loaded = lm.load(path)
    assert loaded.roundoff == surf.roundoff
    with Store.open(path) as store:
        assert store.roundoff == surf.roundoff
    assert "roundoff" not in loaded.meta  # a record of the store's own, not an annotation
    assert convexity(loaded, "train_loss") == convexity(surf, "train_loss")
    assert cli(["info", str(path)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "roundoff" in ln]
    assert lines == [f"  roundoff    train_loss {surf.roundoff['train_loss']:.2g}"]
    assert cli(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["roundoff"] == surf.roundoff


def test_a_store_without_a_floor_loads_and_its_verdict_says_assumed(tmp_path, capsys):
    path = tmp_path / "old.lossmap"
    quartic(store=path)
    with sqlite3.connect(path) as conn:  # as a store written before the floor existed
        conn.execute("DELETE FROM meta WHERE key = 'roundoff'")
    surf = lm.load(path)
    assert surf.roundoff is None
    r = convexity(surf, "train_loss")
    assert r.evidence.floor_measured is False and r.bound is None
    assert "(within round-off; round-off assumed from float32 eps, not measured)" in r.sentence()
    assert r.convex is True  # the old, assumed bound cannot see this non-convexity
    line = lm.Surface(lm.ScanSpec(grid=((0.0, 1.0, 5),), splits=("train",), metrics=("loss",)),
                      {"train_loss": np.linspace(1, 0, 5)}, np.ones(5, bool))  # by hand
    assert barrier(line, "train_loss").evidence.floor_measured is False
    assert barrier(line, "train_loss").sentence().endswith(
        "(round-off assumed from float32 eps, not measured)")
    measured = lm.Surface(line.spec, line.values, line.done, roundoff={"train_loss": 1e-7})
    assert barrier(measured, "train_loss").evidence.floor == 1e-7
    assert "assumed" not in barrier(measured, "train_loss").sentence()
    assert cli(["info", str(path)]) == 0
    assert "  roundoff    not measured" in capsys.readouterr().out


def test_a_model_that_cannot_run_in_float64_scans_without_a_floor():
    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1, bias=False)
            self.scale = torch.ones(1, 1)  # a plain float32 tensor, not a buffer

        def forward(self, x):
            return self.lin(x) @ self.scale

    with pytest.warns(RuntimeWarning, match="round-off floor was not measured"):
        surf = lm.scan(Fixed(), nn.MSELoss(), data=data(), directions={"lin.weight":
                       torch.ones(1, 1)}, grid=(-1, 1, 5), progress=False)
    assert surf.roundoff is None and surf.done.all()
    assert convexity(surf, "train_loss").evidence.floor_measured is False


def test_batchnorm_recompute_floor_recomputes_the_statistics_in_float64():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():  # stored statistics far from the data's: a reference that kept
        net[1].running_mean.fill_(5.0)  # them would differ by far more than round-off
    X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    surf = lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)},
                   directions=lm.random_direction(net, seed=0), grid=(-1, 1, 5),
                   bn="recompute", progress=False)
    assert surf.roundoff["train_loss"] < 1e-5
    assert surf.profile["roundoff_seconds"] > 0


def test_floor_points_are_the_centre_and_the_corners():
    a, b = np.linspace(-1, 1, 4), np.linspace(0, 2, 3)
    pts = floor_points([a, b])
    assert len(pts) == 5 and abs(pts[0, 0]) == pytest.approx(1 / 3) and pts[0, 1] == 0
    assert pts[1:].tolist() == [[-1, 0], [-1, 2], [1, 0], [1, 2]]
    assert floor_points([np.linspace(-1, 1, 5)]).tolist() == [[0.0], [-1.0], [1.0]]


def test_convexity_map_uses_the_measured_floor():
    surf = lm.scan(two_layer(0.0, 0.0), nn.MSELoss(), data=data(),
                   directions=[direction(True), direction(False)],
                   grid=[(-0.5, 0.5, 21), (-0.5, 0.5, 5)], progress=False)
    m = lm.convexity_map(surf, "train_loss")
    assert m.evidence.floor == surf.roundoff["train_loss"] and m.evidence.floor_measured
    assert m.concave_fraction + m.saddle_fraction > 0  # the non-convex core is seen


# -- the demo's θ0 line ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("init", ["flax", "torch"])
def test_demo_theta0_line_float32_verdict_agrees_with_float64(init):
    """The demo's θ0 line (its CNN at θ0 drawn as ``lossmap.demo`` draws it, Flax's default
    or PyTorch's, a layer-normalized Gaussian direction, ``line_points`` on [−span, span]) on
    256 samples: the float32 verdict agrees with a float64 rescan. With PyTorch's
    initialization this line was reported convex although float64 shows it is not."""
    from lossmap import data as datasets
    from lossmap import models
    from lossmap.demo import DemoSettings
    from lossmap.directions.random import random_directions

    st = DemoSettings(init=init)
    splits = {"train": datasets.fashion_mnist("train"), "test": datasets.fashion_mnist("test")}
    theta0 = models.fashion_cnn(dropout=0.0, seed=st.seed, init=st.init).state_dict()
    d = random_directions(theta0, 2, norm="layer", ignore=None, seed=st.seed)[0]
    common = dict(directions=d, grid=(-st.span, st.span, st.line_points), samples=256,
                  seed=st.seed, progress=False)
    net = models.fashion_cnn(dropout=0.0, seed=st.seed)
    s32 = lm.scan(net, nn.CrossEntropyLoss(), data=splits, centre=theta0, **common)
    net64 = models.fashion_cnn(dropout=0.0, seed=st.seed).double()
    data64 = {k: (X.double(), y) for k, (X, y) in splits.items()}
    s64 = lm.scan(net64, nn.CrossEntropyLoss(), data=data64,
                  centre={k: v.double() for k, v in theta0.items()}, **common)
    for var in ("train_loss", "test_loss"):
        r32, r64 = convexity(s32, var), convexity(s64, var)
        assert r32.evidence.floor_measured and r64.evidence.floor_measured
        assert r32.convex is r64.convex, (r32, r64)
        # the float32 values are as close to float64 as the floor says (within k = 2)
        err = np.abs(s32[var] - s64[var]).max()
        f32 = r32.evidence.floor
        assert err <= 2 * f32 and f32 < 1e-6
        assert r32.value == pytest.approx(r64.value, abs=4 * 2 * f32)
        if init == "torch":  # the line: not convex, 100x beyond the round-off
            assert r32.convex is False and r32.ratio > 50
        assert math.isclose(r32.ratio, -r32.value / f32) or r32.convex


def test_no_floor_for_a_model_whose_float64_copy_exceeds_the_budget(monkeypatch):
    """Large models skip the measurement (no float64 copy), and verdicts say 'assumed'."""
    from lossmap.backends.torch import roundoff as R

    net = torch.nn.Linear(3, 2)
    X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    kw = dict(data={"t": (X, y)}, directions=lm.random_direction(net, seed=0),
              grid=(-1, 1, 5), progress=False)
    assert lm.scan(net, torch.nn.CrossEntropyLoss(), **kw).roundoff is not None
    monkeypatch.setattr(R, "BUDGET", 8 * 8 * 2 - 1)  # one byte short of 8 values x 2 copies
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skipped on purpose: no warning
        surf = lm.scan(net, torch.nn.CrossEntropyLoss(), **kw)
    assert surf.roundoff is None
    assert lm.analysis.convexity(surf, "t_loss").evidence.floor_measured is False


def test_a_resumed_store_keeps_its_floor_and_does_not_measure_again(tmp_path, monkeypatch):
    from lossmap.backends.torch.backend import TorchBackend

    net = torch.nn.Linear(3, 2)
    X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    kw = dict(data={"t": (X, y)}, directions=lm.random_direction(net, seed=0),
              grid=(-1, 1, 9), progress=False, store=tmp_path / "s.lossmap")
    first = lm.scan(net, torch.nn.CrossEntropyLoss(), **kw)
    with sqlite3.connect(kw["store"]) as conn:
        conn.execute("DELETE FROM points WHERE idx > 3")
    calls = []
    original = TorchBackend.roundoff
    monkeypatch.setattr(TorchBackend, "roundoff",
                        lambda self, *a: calls.append(1) or original(self, *a))
    resumed = lm.scan(net, torch.nn.CrossEntropyLoss(), **kw)
    assert calls == [] and resumed.complete
    assert resumed.roundoff == first.roundoff is not None
