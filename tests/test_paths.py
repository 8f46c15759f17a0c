"""Scanning along a path (lm.scan(path=curve)), barriers of N models, the comparison report.

Every value is checked against a brute-force loop: a copy of the model with
``curve.state(t)`` loaded, the loss over all the data in one pass.
"""

from __future__ import annotations

import copy
import itertools
import sqlite3
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.analysis.minima import minimum_spanning_tree
from lossmap.curves import Curve
from lossmap.errors import InputError, InputTypeError, StoreError

sys.path.insert(0, str(Path(__file__).parent))
from cli_run import run_cli

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

LOSS = nn.CrossEntropyLoss()


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(7)
    X, y = torch.randn(150, 6, generator=g), torch.randint(0, 3, (150,), generator=g)
    Xt, yt = torch.randn(60, 6, generator=g), torch.randint(0, 3, (60,), generator=g)
    return {"train": (X, y), "test": (Xt, yt)}


def brute(model: nn.Module, state: dict, data: dict) -> dict[str, float]:
    """Each split's loss at ``state``: a copy of the model, the state loaded, one pass."""
    m = copy.deepcopy(model)
    m.load_state_dict(state, strict=False)
    m.eval()
    with torch.no_grad():
        dtype = next(m.parameters()).dtype
        return {f"{s}_loss": float(LOSS(m(X.to(dtype)), y)) for s, (X, y) in data.items()}


def check_against_brute(surf, curve, model, data, rtol=1e-5):
    for k, t in enumerate(surf.coords["t"]):
        ref = brute(model, curve.state(float(t)), data)
        for var, want in ref.items():
            got = surf[var][k]
            assert abs(got - want) <= rtol * abs(want), (var, t, got, want)


def test_bezier_path_equals_brute_force_and_its_ends_are_the_models(data):
    a, b, bend1, bend2 = mlp(0), mlp(1), mlp(2), mlp(3)
    curve = Curve([a, bend1, bend2, b], kind="bezier")
    surf = lm.scan(a, LOSS, data=data, path=curve, grid=(0, 1, 9), progress=False)
    assert surf.dims == ("t",) and surf.complete
    assert surf.spec.path["kind"] == "bezier" and surf.spec.path["control_points"] == 4
    assert len(surf.spec.directions) == 3  # θ1 − θ0, θ2 − θ0, θ3 − θ0
    check_against_brute(surf, curve, a, data)
    ends = brute(a, dict(a.named_parameters()), data), brute(a, dict(b.named_parameters()), data)
    for var in ("train_loss", "test_loss"):
        assert surf[var][0] == pytest.approx(ends[0][var], rel=1e-6)
        assert surf[var][-1] == pytest.approx(ends[1][var], rel=1e-5)
    assert "path (bezier, 2 bends)" in repr(surf)


def test_polychain_with_knots_equals_brute_force_beyond_the_ends_too(data):
    a, b = mlp(0), mlp(1)
    curve = Curve([a, mlp(4), mlp(5), b], kind="polychain", knots=[0, 0.2, 0.7, 1])
    surf = lm.scan(a, LOSS, data=data, path=curve, grid=(-0.25, 1.25, 13), progress=False)
    check_against_brute(surf, curve, a, data)
    # at a knot the state is that control point exactly
    k = int(np.argmin(np.abs(surf.coords["t"] - 0.7)))
    assert surf.coords["t"][k] == pytest.approx(0.75)  # not a knot: grid steps of 0.125
    knot = lm.scan(a, LOSS, data=data, path=curve, grid=(0, 0.7, 3), progress=False)
    want = brute(a, curve.control_points[2], data)["train_loss"]
    assert knot["train_loss"][-1] == pytest.approx(want, rel=1e-5)


def test_the_user_model_is_unchanged_and_a_line_path_equals_the_interpolation_line(data):
    a, b = mlp(0), mlp(1)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    path = lm.scan(a, LOSS, data=data, path=Curve.line(a, b), grid=(0, 1, 11), progress=False)
    line = lm.scan(a, LOSS, data=data, directions=lm.interpolation(a, b), grid=(0, 1, 11),
                   progress=False)
    np.testing.assert_allclose(path["train_loss"], line["train_loss"], rtol=1e-6)
    for k, v in a.state_dict().items():
        assert torch.equal(v, before[k])
    rp, rl = lm.barrier(path, "train_loss"), lm.barrier(line, "train_loss")
    assert rp.value == pytest.approx(rl.value, rel=1e-5, abs=1e-9)
    assert rp.at == rl.at
    assert (rp.evidence.coordinate, rl.evidence.coordinate) == ("t", "alpha")


def bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():  # running statistics that are far from the data's
        net[1].running_mean.fill_(3.0)
        net[1].running_var.fill_(0.1)
    return net


def test_bn_recompute_along_a_path_equals_a_scan_centred_at_each_state(data):
    a, b = bn_net(0), bn_net(1)
    curve = Curve([a, bn_net(2), b], kind="bezier")
    opts = {"bn": "recompute", "bn_samples": 100, "progress": False}
    surf = lm.scan(a, LOSS, data=data, path=curve, grid=(0, 1, 5), **opts)
    plain = lm.scan(a, LOSS, data=data, path=curve, grid=(0, 1, 5), progress=False)
    d = lm.random_direction(a, seed=0)
    for k, t in enumerate(surf.coords["t"]):
        at = lm.scan(a, LOSS, data=data, directions=d, centre=curve.state(float(t)),
                     grid=(0, 1, 2), **opts)
        assert surf["train_loss"][k] == pytest.approx(at["train_loss"][0], rel=1e-5)
    # re-estimated statistics are not the stored (bad) ones: the values differ
    assert not np.allclose(surf["train_loss"], plain["train_loss"], rtol=1e-3)


def _partial(path, keep):
    with sqlite3.connect(path) as conn:
        ids = [r[0] for r in conn.execute("SELECT idx FROM points ORDER BY finished, idx")]
        conn.executemany("DELETE FROM points WHERE idx = ?", [(i,) for i in ids[keep:]])


def test_resume_completes_a_partial_path_store_and_refuses_another_curve(data, tmp_path, capsys):
    a, b = mlp(0), mlp(1)
    curve = Curve([a, mlp(2), b], kind="bezier")
    path = tmp_path / "p.lossmap"
    full = lm.scan(a, LOSS, data=data, path=curve, grid=(0, 1, 9), store=path, progress=False)
    _partial(path, 3)
    assert lm.load(path).done.sum() == 3
    again = lm.scan(a, LOSS, data=data, path=curve, grid=(0, 1, 9), store=path, progress=False)
    assert again.complete and again.dims == ("t",)
    for v in full.values:
        np.testing.assert_allclose(again[v], full[v], rtol=1e-12)
    other = Curve([a, mlp(3), b], kind="bezier")
    with pytest.raises(StoreError, match=r"path: control point 1 \(a bend\) differs"):
        lm.scan(a, LOSS, data=data, path=other, grid=(0, 1, 9), store=path, progress=False)
    chain = Curve([a, mlp(2), b], kind="polychain")
    with pytest.raises(StoreError, match=r"different scan \(path bezier, 1 bend stored vs "
                                         r"polychain, 1 bend, knots 0, 0.5, 1 now\):"):
        lm.scan(a, LOSS, data=data, path=chain, grid=(0, 1, 9), store=path, progress=False)
    with pytest.raises(StoreError, match="path bezier, 1 bend stored vs none now"):
        lm.scan(a, LOSS, data=data, directions=lm.random_direction(a, seed=0), grid=(0, 1, 9),
                store=path, progress=False)
    code, out, _ = run_cli(capsys, "info", path)
    assert code == 0 and "path        bezier, 1 bend" in out and "(t)" in out


def test_bad_path_arguments_are_refused_with_the_fix(data):
    a, b = mlp(0), mlp(1)
    line = Curve.line(a, b)
    with pytest.raises(InputError, match=r"directions= .* or path= .*, not both"):
        lm.scan(a, LOSS, data=data, path=line, directions=lm.random_direction(a), grid=(0, 1, 3))
    with pytest.raises(InputError, match="drop centre="):
        lm.scan(a, LOSS, data=data, path=line, centre=b, grid=(0, 1, 3))
    with pytest.raises(InputError, match="1 directions"):
        lm.scan(a, LOSS, data=data, path=line, grid=[(0, 1, 3), (0, 1, 3)])
    with pytest.raises(InputTypeError, match="pass a lossmap Curve"):
        lm.scan(a, LOSS, data=data, path=42, grid=(0, 1, 3))
    wide = nn.Sequential(nn.Linear(6, 11), nn.Tanh(), nn.Linear(11, 3))
    with pytest.raises(InputError, match="the curve has shape"):
        lm.scan(wide, LOSS, data=data, path=line, grid=(0, 1, 3))
    with pytest.raises(InputTypeError, match=r"path= .a Curve"):
        lm.scan(a, LOSS, data=data, grid=(0, 1, 3))


@pytest.mark.slow
def test_curve_plane_holds_the_curve_and_draws_it(data, tmp_path):
    a, b = mlp(0), mlp(1)
    curve = Curve([a, mlp(2), b], kind="bezier")
    centre, dirs, meta = lm.curve_plane(curve, points=11)
    assert meta["models"]["a"] == pytest.approx([0, 0]) and meta["models"]["b"] == [1.0, 0.0]
    # a one-bend Bézier curve lies in the plane: θ0 + α d1 + β d2 is state(t) exactly
    for t, (al, be) in zip(meta["curve_t"], meta["curve"], strict=True):
        want = curve.state(t)
        for k, v in want.items():
            got = centre[k].double() + al * dirs[0][k].double() + be * dirs[1][k].double()
            torch.testing.assert_close(got, v.double(), rtol=1e-5, atol=1e-6)
    store = tmp_path / "plane.lossmap"
    grid = lm.fitted_grid(np.asarray(meta["curve"]), n=7)
    surf = lm.scan(a, LOSS, data=data, centre=centre, directions=dirs, grid=grid, meta=meta,
                   store=store, progress=False)
    import lossmap.plot as lp

    def drawn(ax):
        return next(ln for ln in ax.lines if ln.get_label() == "curve").get_xydata()

    stored = drawn(lp.curve_on_plane(surf))
    # read back from the store's directions
    projected = drawn(lp.curve_on_plane(surf, curve, ax=matplotlib.pyplot.figure().gca()))
    np.testing.assert_allclose(projected[[0, 50, 100]], stored[[0, 5, 10]], atol=1e-5)
    with pytest.raises(InputError, match="no bend"):
        lm.curve_plane(Curve.line(a, b))


def brute_barrier(model, sa, sb, data, ts):
    L = np.array([brute(model, {k: (1 - t) * sa[k] + t * sb[k] for k in sa}, data)["train_loss"]
                  for t in ts])
    excess = L - ((1 - ts) * L[0] + ts * L[-1])
    k = int(np.argmax(excess))
    return max(float(excess[k]), 0.0), float(ts[k])


def test_barrier_matrix_of_three_models_equals_brute_force(data):
    nets = {"x": mlp(0), "y": mlp(1), "z": mlp(2)}
    bm = lm.barrier_matrix(nets, LOSS, data, points=11)
    assert bm.names == ["x", "y", "z"] and bm.barriers.shape == (3, 3)
    ts = np.linspace(0, 1, 11)
    states = [{k: v.detach().double() for k, v in m.named_parameters()} for m in nets.values()]
    ref = np.zeros((3, 3))
    for i, j in itertools.combinations(range(3), 2):
        h, at = brute_barrier(mlp(0).double(), states[i], states[j], data, ts)
        ref[i, j] = ref[j, i] = h
        assert bm.barriers[i, j] == pytest.approx(h, rel=1e-4, abs=1e-6)
        if h > 1e-4:
            assert bm.where[i, j] == pytest.approx(at) and bm.where[j, i] == pytest.approx(1 - at)
    assert np.all(np.diag(bm.barriers) == 0)
    # three models: the tree is the two lowest of the three edges
    edges = sorted(((ref[i, j], i, j) for i, j in itertools.combinations(range(3), 2)))[:2]
    assert {(i, j) for _, i, j in edges} == {(i, j) for i, j, _ in bm.tree}
    own = [brute(mlp(0), dict(m.named_parameters()), data)["train_loss"] for m in nets.values()]
    np.testing.assert_allclose(bm.losses, own, rtol=1e-5)
    fig = bm.plot()
    assert len(fig.axes) == 3 and "minimum spanning tree" in fig.axes[1].get_title()
    with pytest.raises(InputError, match="path='nope' must be"):
        lm.barrier_matrix(nets, LOSS, data, path="nope")
    with pytest.raises(InputError, match="at least 2"):
        lm.barrier_matrix([mlp(0)], LOSS, data)


def _all_trees(w):
    """Every spanning tree of the complete graph on len(w) nodes with its weight (reference)."""
    n = len(w)
    pairs = list(itertools.combinations(range(n), 2))
    for edges in itertools.combinations(pairs, n - 1):
        parent = list(range(n))

        def find(x, parent=parent):
            while parent[x] != x:
                x = parent[x]
            return x

        ok = True
        for i, j in edges:
            ri, rj = find(i), find(j)
            if ri == rj:
                ok = False
                break
            parent[ri] = rj
        if ok:
            yield sum(w[i, j] for i, j in edges), set(edges)


def test_minimum_spanning_tree_of_a_hand_made_matrix_zeros_and_nan_included():
    w = np.array([[0.0, 0.0, 3.0, 9.0, 2.5],
                  [0.0, 0.0, 0.0, 4.0, 7.0],
                  [3.0, 0.0, 0.0, 1.0, 8.0],
                  [9.0, 4.0, 1.0, 0.0, np.nan],
                  [2.5, 7.0, 8.0, np.nan, 0.0]])
    tree = minimum_spanning_tree(w)
    # by hand: 0-1 (0), 1-2 (0), 2-3 (1), 0-4 (2.5); zero barriers are edges too
    assert tree == [(0, 1, 0.0), (1, 2, 0.0), (2, 3, 1.0), (0, 4, 2.5)]
    finite = np.where(np.isfinite(w), w, 1e9)
    best = min(_all_trees(finite), key=lambda x: x[0])
    assert {(i, j) for i, j, _ in tree} == best[1]
    rng = np.random.default_rng(0)
    for _ in range(5):  # random matrices against every spanning tree
        r = rng.integers(0, 4, size=(5, 5)).astype(float)
        r = np.triu(r, 1) + np.triu(r, 1).T
        got = sum(x for _, _, x in minimum_spanning_tree(r))
        assert got == min(_all_trees(r), key=lambda x: x[0])[0]


@pytest.mark.slow
def test_figure_paths_and_the_report_section(data, tmp_path):
    a, b = mlp(0), mlp(1)
    line = lm.scan(a, LOSS, data=data, path=Curve.line(a, b), grid=(0, 1, 9), progress=False)
    bent = lm.scan(a, LOSS, data=data, path=Curve([a, mlp(2), b]), grid=(0, 1, 9),
                   progress=False)
    import lossmap.plot as lp

    fig = lp.figure_paths({"linear": line, "trained curve": bent})
    h = lm.barrier(line, "train_loss").value
    assert fig.axes[0].get_title() == f"linear\nbarrier {h:.3g}"
    assert fig.axes[0].get_xlabel() == "t"
    assert lp.plot_line(line).get_xlabel() == "t"
    from lossmap.report.page import write_report
    from lossmap.report.template import format_value

    page = write_report([("curve", bent)], tmp_path / "r.html",
                        comparisons=[("linear", line), ("trained curve", bent)])
    html = page.read_text()
    assert 'id="between"' in html and "Between the models" in html
    assert "bezier, 1 bend" in html and "straight line" in html
    assert format_value(h) in html


@pytest.mark.slow
def test_cli_scan_along_a_curve_file(tmp_path, capsys):
    fixtures = Path(__file__).parent / "cli_fixtures"
    sys.path.insert(0, str(fixtures))
    import tinynet

    a, b, c = tinynet.make_model(), tinynet.make_other_init(), mlp(9)
    bend = {k: (v + w) / 2 + 0.1 for (k, v), w in
            zip(a.named_parameters(), b.parameters(), strict=True)}
    del c
    curve_file = Curve([a, bend, b]).save(tmp_path / "c.safetensors")
    out = tmp_path / "p.lossmap"
    tiny = f"{fixtures / 'tinynet.py'}"
    argv = ["scan", "--model", f"{tiny}:make_model", "--data", f"{tiny}:make_data",
            "--path", curve_file, "--grid", "0:1:5", "--out", out, "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    surf = lm.load(out)
    data = tinynet.make_data()
    api = lm.scan(a, LOSS, data=data, path=Curve.load(curve_file), grid=(0, 1, 5),
                  progress=False)
    for v in api.values:
        np.testing.assert_allclose(surf[v], api[v], rtol=1e-6)
    code, out_text, _ = run_cli(capsys, "info", out)
    assert "path        bezier, 1 bend" in out_text
    code, spec_text, _ = run_cli(capsys, "info", out, "--spec")
    assert f"path: {curve_file}" in spec_text
    # bad input: one line on stderr, exit status 2
    for extra, needle in [
        (["--path", tmp_path / "missing.safetensors"], "does not exist"),
        (["--path", curve_file, "--interpolate", curve_file, curve_file], "cannot be combined"),
        (["--path", tmp_path / "p.lossmap"], "not a lossmap curve file"),
    ]:
        argv = ["scan", "--model", f"{tiny}:make_model", "--data", f"{tiny}:make_data",
                *extra, "--out", tmp_path / "bad.lossmap", "--no-progress"]
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
        assert err.startswith("lossmap scan: error: ")
    argv = ["scan", "--model", f"{tiny}:make_other_model", "--data", f"{tiny}:make_data",
            "--path", curve_file, "--out", tmp_path / "bad.lossmap", "--no-progress"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "the curve has" in err and len(err.splitlines()) == 1


def permuted(model: nn.Module, seed: int) -> nn.Module:
    """A copy of an MLP with its hidden units shuffled: the same function, other weights."""
    out = copy.deepcopy(model)
    perm = torch.randperm(model[0].out_features, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out[0].weight.copy_(model[0].weight[perm])
        out[0].bias.copy_(model[0].bias[perm])
        out[2].weight.copy_(model[2].weight[:, perm])
    return out


def test_barrier_matrix_with_weight_matching_finds_a_permuted_copy(data):
    m0 = mlp(0)
    nets = [m0, permuted(m0, 1), mlp(2)]
    plain = lm.barrier_matrix(nets, LOSS, data, points=11)
    aligned = lm.barrier_matrix(nets, LOSS, data, points=11, align="weights")
    spread = [np.ptp(m.surfaces[(0, 1)]["train_loss"]) for m in (plain, aligned)]
    assert spread[0] > 1e-3  # the shuffled copy is far away in weight space: the loss moves
    assert spread[1] <= 1e-6 and aligned.barriers[0, 1] <= 1e-6  # matched: the same point
    assert aligned.align == "weights" and aligned.tree[0][:2] == (0, 1)
    # pair (0, 2): the barrier of the straight line to the aligned copy, by brute force
    other = lm.align(nets[0], nets[2], method="weights")
    sa = {k: v.detach().double() for k, v in nets[0].named_parameters()}
    sb = {k: v.detach().double() for k, v in other.named_parameters()}
    h, _ = brute_barrier(mlp(0).double(), sa, sb, data, np.linspace(0, 1, 11))
    assert aligned.barriers[0, 2] == pytest.approx(h, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(aligned.losses, plain.losses, rtol=1e-5)  # same functions
