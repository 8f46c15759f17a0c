"""Trained curves and elastic bands (issue 14): Curve, lm.curve, lm.neb, `lossmap curve`."""

from __future__ import annotations

import math
import textwrap
from itertools import pairwise
from math import comb

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import lossmap as lm
from lossmap import params as P
from lossmap.cli.main import main
from lossmap.curves import Curve
from lossmap.curves.neb import neb_function
from lossmap.errors import InputError, InputTypeError

pytestmark = pytest.mark.usefixtures("one_thread")


def _points(m: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"fc.weight": torch.randn(3, 4, generator=g).to(dtype),
             "fc.bias": torch.randn(3, generator=g).to(dtype)} for _ in range(m + 1)]


def _de_casteljau(weights: list[float], t: float) -> float:
    """The Bézier curve of scalar control values at t, by repeated linear interpolation."""
    w = list(weights)
    while len(w) > 1:
        w = [(1 - t) * a + t * b for a, b in pairwise(w)]
    return w[0]


def _fingerprint(model: nn.Module) -> tuple:
    return (P.fingerprint(model.state_dict()), [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


# ----------------------------------------------------------------------------- basis


@pytest.mark.parametrize("kind, m", [("bezier", 1), ("bezier", 3), ("bezier", 5),
                                     ("polychain", 1), ("polychain", 4)])
def test_basis_is_a_partition_of_unity_with_unit_endpoints(kind, m):
    c = Curve(_points(m), kind)
    t = np.random.default_rng(0).uniform(0, 1, 200)
    B = c.basis(t)
    assert B.shape == (200, m + 1)
    np.testing.assert_allclose(B.sum(1), 1.0, rtol=0, atol=1e-14)
    assert (B >= 0).all()
    e = c.basis([0.0, 1.0])
    assert e[0].tolist() == [1.0] + [0.0] * m and e[1].tolist() == [0.0] * m + [1.0]


def test_bernstein_basis_matches_de_casteljau():
    m = 4
    c = Curve(_points(m), "bezier")
    for t in np.linspace(0, 1, 17):
        row = c.basis(t)[0]
        for j in range(m + 1):  # basis_j(t) is the curve whose control values are e_j
            unit = [1.0 if i == j else 0.0 for i in range(m + 1)]
            assert row[j] == pytest.approx(_de_casteljau(unit, t), abs=1e-14)
            assert row[j] == pytest.approx(comb(m, j) * t**j * (1 - t) ** (m - j), abs=1e-14)


def test_bezier_state_matches_de_casteljau_on_every_value():
    pts = _points(3, dtype=torch.float64)
    c = Curve(pts, "bezier")
    for t in (0.1, 0.37, 0.8):
        s = c.state(t)
        for name in pts[0]:
            ref = [_de_casteljau([float(p[name].reshape(-1)[i]) for p in pts], t)
                   for i in range(pts[0][name].numel())]
            np.testing.assert_allclose(s[name].reshape(-1).numpy(), ref, rtol=1e-13, atol=1e-13)


def test_polychain_with_knots_is_piecewise_linear_interpolation():
    pts = _points(3, dtype=torch.float64)
    knots = [0.0, 0.1, 0.75, 1.0]
    c = Curve(pts, "polychain", knots=knots)
    for t in np.linspace(0, 1, 23):
        s = c.state(t)
        for name in pts[0]:
            flat = np.stack([p[name].reshape(-1).numpy() for p in pts])  # (4, n)
            ref = [np.interp(t, knots, flat[:, i]) for i in range(flat.shape[1])]
            np.testing.assert_allclose(s[name].reshape(-1).numpy(), ref, rtol=1e-13, atol=1e-13)
    assert c.knots.tolist() == knots


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_endpoints_and_knots_are_bit_identical(kind, dtype):
    pts = _points(3, seed=4, dtype=dtype)
    c = Curve(pts, kind)
    checks = [(0.0, 0), (1.0, 3)] + ([(1 / 3, 1), (2 / 3, 2)] if kind == "polychain" else [])
    for t, j in checks:
        s = c.state(t)
        assert all(torch.equal(s[k], pts[j][k]) and s[k].dtype == dtype for k in pts[j])
    assert all(v.dtype == dtype for v in c.state(0.3).values())


def test_directions_and_coefficients_rebuild_the_state():
    pts = _points(2, dtype=torch.float64)
    c = Curve(pts, "bezier")
    centre, dirs = c.directions()
    assert len(dirs) == 2 and isinstance(dirs[0], lm.Direction)
    for t in (0.0, 0.25, 0.9, 1.0):
        coef = c.coefficients([t])[0]
        for k in pts[0]:
            rebuilt = centre[k] + sum(a * d[k] for a, d in zip(coef, dirs, strict=True))
            assert float((rebuilt - c.state(t)[k]).abs().max()) <= 1e-12


def test_line_is_the_straight_path():
    a, b = _points(1, seed=2, dtype=torch.float64)
    c = Curve.line(a, b)
    assert c.kind == "polychain" and c.bends == 0
    for t in (0.2, 0.5, 0.7):
        for k in a:
            assert float((c.state(t)[k] - ((1 - t) * a[k] + t * b[k])).abs().max()) <= 1e-15


def test_control_points_are_copies():
    pts = _points(1)
    c = Curve(pts, "bezier")
    pts[0]["fc.bias"].add_(1.0)  # the caller's tensor changes; the curve's does not
    c.control_points[1]["fc.bias"].add_(1.0)  # a copy handed out changes; the curve's does not
    assert not torch.equal(c.state(0.0)["fc.bias"], pts[0]["fc.bias"])
    assert torch.equal(c.state(1.0)["fc.bias"], _points(1)[1]["fc.bias"])


# ----------------------------------------------------------------------------- files


def test_save_load_round_trip_is_bit_exact(tmp_path):
    pts = _points(3, seed=7, dtype=torch.float64)
    c = Curve(pts, "polychain", knots=[0.0, 0.2, 0.5, 1.0], meta={"note": "x", "n": [1, 2]})
    path = c.save(tmp_path / "c.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary left
    back = Curve.load(path)
    assert back.kind == "polychain" and back.names == c.names and back.meta == c.meta
    assert back.knots.tolist() == c.knots.tolist()
    for p, q in zip(c.control_points, back.control_points, strict=True):
        assert all(torch.equal(p[k], q[k]) and p[k].dtype == q[k].dtype for k in p)
    assert Curve.load(Curve(_points(2), "bezier").save(tmp_path / "b.safetensors")).kind == \
        "bezier"


def test_load_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match=r"not a lossmap curve file.*Curve.save"):
        Curve.load(tmp_path / "plain.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Curve.load(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- bad input


def test_curve_construction_errors_name_the_problem():
    a, b = _points(1)
    with pytest.raises(InputError, match=r"kind='spline'.*'bezier' or 'polychain'"):
        Curve([a, b], "spline")
    with pytest.raises(InputError, match="at least 2 control points"):
        Curve([a], "bezier")
    with pytest.raises(InputError, match="knots are for kind='polychain'"):
        Curve([a, b], "bezier", knots=[0, 1])
    with pytest.raises(InputError, match="rise strictly from 0 to 1"):
        Curve([a, b, a], "polychain", knots=[0, 0.7, 0.5])
    with pytest.raises(InputError, match="knots has 2 values for 3 control points"):
        Curve([a, b, a], "polychain", knots=[0, 1])
    with pytest.raises(InputError, match="control point 1 has shape"):
        Curve([a, {**b, "fc.bias": torch.zeros(5)}], "bezier")
    with pytest.raises(InputError, match=r"control point 1 has no tensor for 'fc.bias'"):
        Curve([a, {"fc.weight": b["fc.weight"]}], "bezier")
    with pytest.raises(InputTypeError, match="list of dicts"):
        Curve(a, "bezier")
    with pytest.raises(InputError, match="must be finite"):
        Curve([a, b], "bezier").state(float("nan"))


def test_docstrings_match_signatures(assert_docstring_matches_signature):
    for fn in (lm.curve, lm.neb, neb_function, Curve):
        assert_docstring_matches_signature(fn)


@pytest.fixture
def tiny():
    from lossmap.models import mlp

    X = torch.randn(96, 4, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long()
    return mlp((4, 8, 2), seed=0), mlp((4, 8, 2), seed=1), (X, y)


def test_curve_and_neb_refuse_bad_input_and_leave_models_unchanged(tiny):
    from lossmap.models import mlp

    a, b, data = tiny
    before = _fingerprint(a), _fingerprint(b)
    wide = mlp((4, 9, 2), seed=1)
    other = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    for fn in (lm.curve, lm.neb):
        with pytest.raises(InputError, match=r"model_b has shape.*same architecture"):
            fn(a, wide, F.cross_entropy, data, progress=False)
        with pytest.raises(InputError, match=r"model_b has no tensor for.*same architecture"):
            fn(a, other, F.cross_entropy, data, progress=False)
        with pytest.raises(InputTypeError, match="loss_fn is a str"):
            fn(a, b, "cross_entropy", data, progress=False)
    with pytest.raises(InputError, match="`bends`=-1 must be >= 0"):
        lm.curve(a, b, F.cross_entropy, data, bends=-1, progress=False)
    with pytest.raises(InputError, match="kind='cubic' is not a curve kind"):
        lm.curve(a, b, F.cross_entropy, data, kind="cubic", progress=False)
    with pytest.raises(InputError, match="`pivots`=0 must be >= 1"):
        lm.neb(a, b, F.cross_entropy, data, pivots=0, progress=False)
    with pytest.raises(InputError, match=r"the loss of model_a on the data failed.*fits the model"):
        lm.curve(a, b, F.cross_entropy, (torch.zeros(8, 5), torch.zeros(8).long()),
                 progress=False)
    with pytest.raises(InputError, match="diverged; lower lr"):
        lm.curve(a, b, lambda o, t: F.cross_entropy(o, t) * float("nan"), data,
                 progress=False)
    calls = []

    def failing(out, target):  # an error in the middle of training
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return F.cross_entropy(out, target)

    with pytest.raises(RuntimeError, match="boom"):
        lm.curve(a, b, failing, data, batch_size=16, progress=False)
    assert (_fingerprint(a), _fingerprint(b)) == before


def test_curve_is_seeded_and_keeps_the_models(tiny):
    a, b, data = tiny
    a.train(False)
    before = _fingerprint(a), _fingerprint(b)
    rng = torch.get_rng_state()
    c1 = lm.curve(a, b, F.cross_entropy, data, epochs=2, batch_size=16, progress=False)
    c2 = lm.curve(a, b, F.cross_entropy, data, epochs=2, batch_size=16, progress=False)
    c3 = lm.curve(a, b, F.cross_entropy, data, epochs=2, batch_size=16, seed=1, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert (_fingerprint(a), _fingerprint(b)) == before
    bend = lambda c: c.control_points[1]["1.weight"]  # noqa: E731
    assert torch.equal(bend(c1), bend(c2)) and not torch.equal(bend(c1), bend(c3))
    assert c1.meta["steps"] == 12 and len(c1.meta["history"]) == 2
    for t, model in ((0.0, a), (1.0, b)):  # the endpoints are the models, bit for bit
        assert all(torch.equal(c1.state(t)[k], v) for k, v in model.named_parameters())
    line = lm.curve(a, b, F.cross_entropy, data, bends=0, progress=False)
    assert len(line) == 2 and line.meta["steps"] == 0


def test_curve_trains_a_polychain_with_batchnorm_without_touching_buffers():
    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    a, b = net(0), net(1)
    X = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    before = _fingerprint(a)
    c = lm.curve(a, b, F.cross_entropy, {"test": (X[:8], X[:8, 0].long()),
                                         "train": (X, (X[:, 0] > 0).long())},
                 kind="polychain", bends=2, epochs=1, batch_size=16, progress=False)
    assert c.kind == "polychain" and len(c) == 4 and c.meta["samples"] == 64
    assert "1.running_mean" not in c.names  # parameters only
    assert _fingerprint(a) == before


# ----------------------------------------------------------------------------- NEB


def _valley(p):
    """Minima (±1, 1), height 0; the one saddle (0, 0), height 1; the straight line peaks at 2."""
    return (p[0] ** 2 - 1) ** 2 + (p[1] - p[0] ** 2) ** 2


def test_neb_with_climbing_image_finds_the_saddle_height():
    line = Curve.line({"x": torch.tensor([-1.0, 1.0], dtype=torch.float64)},
                      {"x": torch.tensor([1.0, 1.0], dtype=torch.float64)})
    assert max(float(_valley(line.state(t)["x"])) for t in np.linspace(0, 1, 21)) == 2.0
    # 6 pivots: none sits on the saddle by symmetry; without climbing the top pivot is lower
    plain = neb_function(_valley, [-1, 1], [1, 1], pivots=6, steps=300, momentum=0.5)
    assert plain.meta["saddle"]["value"] < 0.95
    band = neb_function(_valley, [-1, 1], [1, 1], pivots=6, steps=300, momentum=0.5,
                          climbing=True)
    top = band.meta["saddle"]
    assert abs(top["value"] - 1.0) < 1e-3
    np.testing.assert_allclose(band.control_points[top["index"]]["x"].numpy(), [0, 0],
                               atol=1e-3)
    assert band.kind == "polychain" and band.knots[0] == 0 and band.knots[-1] == 1
    assert band.state(0.0)["x"].tolist() == [-1.0, 1.0]
    values = [float(_valley(p["x"])) for p in band.control_points]
    np.testing.assert_allclose(band.meta["values"], values, rtol=1e-12)


def test_neb_insertion_adds_pivots_where_the_band_is_coarse():
    def ridges(p):  # minima at x = ±0.5, ±1.5; ridges of height 1 at x = -1, 0, 1
        return torch.cos(2 * math.pi * p[0]) + p[1] ** 2

    coarse = neb_function(ridges, [-1.5, 0], [1.5, 0], pivots=2, steps=50)
    assert coarse.meta["saddle"]["value"] == pytest.approx(-1.0)  # the pivots miss the ridges
    fine = neb_function(ridges, [-1.5, 0], [1.5, 0], pivots=2, steps=50, insert=3)
    assert fine.meta["inserted"] == 3 and len(fine) == 7
    assert fine.meta["saddle"]["value"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_neb_finds_the_mueller_brown_saddle():
    from scipy.optimize import root

    A, a, b, c = [-200, -100, -170, 15], [-1, -1, -6.5, 0.7], [0, 0, 11, 0.6], [-10, -10, -6.5,
                                                                                 0.7]
    x0, y0 = [1, 0, -0.5, -1], [0, 0.5, 1.5, 1]

    def mb(p):
        return sum(A[i] * torch.exp(a[i] * (p[0] - x0[i]) ** 2 + b[i] * (p[0] - x0[i])
                                    * (p[1] - y0[i]) + c[i] * (p[1] - y0[i]) ** 2)
                   for i in range(4))

    def grad(v):  # the saddle as a root of the gradient, by Newton's method in float64
        p = torch.tensor(v, dtype=torch.float64, requires_grad=True)
        return torch.autograd.grad(mb(p), p)[0].numpy()

    saddle = root(grad, [-0.82, 0.62], tol=1e-14).x
    height = float(mb(torch.tensor(saddle)))
    assert height == pytest.approx(-40.665, abs=1e-3)  # the value in the literature
    band = neb_function(mb, [-0.558, 1.442], [-0.050, 0.467], pivots=7, steps=1500, lr=1e-4,
                        spring=100.0, momentum=0.5, climbing=True)
    assert abs(band.meta["saddle"]["value"] - height) < 1e-3


# ----------------------------------------------------------------------------- networks


@pytest.fixture(scope="module")
def digits_pair():
    from lossmap.data.digits import digits
    from lossmap.models import mlp
    from lossmap.train.trainer import train

    torch.set_num_threads(1)
    X, y = digits("train")
    models = []
    for seed in (0, 1):
        m = mlp((64, 32, 10), seed=seed)
        train(m, (X, y), epochs=15, lr=0.1, batch_size=64, seed=seed, progress=False)
        models.append(m)
    return models[0], models[1], (X, y)


def _losses(model: nn.Module, c: Curve, data, n: int = 21) -> list[float]:
    X, y = data
    with torch.no_grad():
        return [F.cross_entropy(functional_call(model, c.state(t), (X,)), y).item()
                for t in np.linspace(0, 1, n)]


@pytest.mark.slow
def test_trained_bezier_curve_beats_the_straight_path_on_digits(digits_pair):
    a, b, data = digits_pair
    before = _fingerprint(a), _fingerprint(b)
    c = lm.curve(a, b, F.cross_entropy, data, epochs=10, progress=False)
    assert (_fingerprint(a), _fingerprint(b)) == before
    along, straight = _losses(a, c, data), _losses(a, Curve.line(a, b), data)
    assert max(along) < 0.7 * max(straight), (max(along), max(straight))
    for t, model in ((0.0, a), (1.0, b)):
        assert all(torch.equal(c.state(t)[k], v) for k, v in model.named_parameters())


@pytest.mark.slow
def test_neb_lowers_the_straight_path_on_digits(digits_pair):
    a, b, data = digits_pair
    before = _fingerprint(a), _fingerprint(b)
    band = lm.neb(a, b, F.cross_entropy, data, pivots=3, steps=60, progress=False)
    assert (_fingerprint(a), _fingerprint(b)) == before
    straight = _losses(a, Curve.line(a, b), data)
    assert max(band.meta["values"]) < 0.7 * max(straight)
    assert len(band) == 5 and torch.equal(band.state(1.0)["3.bias"], b[3].bias.detach())


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_files(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    (tmp_path / "cli_curve_entry.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make():
            return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

        def data():
            X = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
            return {"train": (X, (X[:, 0] > 0).long())}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        save_file(dict(net.state_dict()), str(tmp_path / f"m{seed}.safetensors"))
    torch.manual_seed(0)
    save_file(dict(nn.Sequential(nn.Linear(4, 9), nn.ReLU(), nn.Linear(9, 2)).state_dict()),
              str(tmp_path / "wide.safetensors"))
    return tmp_path


def test_cli_curve_writes_a_curve_with_the_checkpoints_as_endpoints(cli_files, capsys):
    from safetensors.torch import load_file

    base = ["curve", "m0.safetensors", "m1.safetensors", "--model", "cli_curve_entry:make",
            "--data", "cli_curve_entry:data", "--epochs", "2", "--batch-size", "16",
            "--no-progress"]
    assert main([*base, "-o", "c.safetensors"]) == 0
    c = Curve.load(cli_files / "c.safetensors")
    assert c.kind == "bezier" and len(c) == 3 and c.meta["model"] == "cli_curve_entry:make"
    a, b = load_file("m0.safetensors"), load_file("m1.safetensors")
    assert all(torch.equal(c.state(0.0)[k], a[k]) and torch.equal(c.state(1.0)[k], b[k])
               for k in a)
    assert main([*base, "--neb", "--pivots", "2", "--steps", "3", "-o", "n.safetensors"]) == 0
    assert Curve.load(cli_files / "n.safetensors").meta["made_by"] == "lossmap.neb"
    assert "wrote n.safetensors" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--bends", "-1"], "`bends`=-1 must be >= 0"),
    (["-o", "c.txt"], "use -o FILE.safetensors"),
    (["--epochs", "0"], "`epochs`=0 must be >= 1"),
])
def test_cli_curve_bad_input_is_one_line_and_status_2(cli_files, capsys, extra, message):
    args = ["curve", "m0.safetensors", "m1.safetensors", "--model", "cli_curve_entry:make",
            "--data", "cli_curve_entry:data", "--no-progress"]
    if "-o" not in extra:
        extra = [*extra, "-o", "c.safetensors"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("lossmap curve: error:")
    assert not (cli_files / "c.safetensors").exists()


def test_cli_curve_refuses_a_checkpoint_of_another_model(cli_files, capsys):
    code = main(["curve", "m0.safetensors", "wide.safetensors", "--model",
                 "cli_curve_entry:make", "--data", "cli_curve_entry:data", "-o",
                 "c.safetensors"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "wide.safetensors" in err
