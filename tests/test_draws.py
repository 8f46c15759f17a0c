"""Repeated direction draws as one scan (issue 27 item 1): lm.scan(draws=K), --draws K."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import lossmap as lm
from killing import kill_when_committed
from lossmap.cli import main
from lossmap.errors import InputError
from lossmap.scan.draws import DrawLayout, draw_seed
from test_scan_kd_cli import env  # the subprocess environment of the resume tests

FIXTURES = Path(__file__).parent / "cli_fixtures"
SLOW = FIXTURES / "slownet.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    X, y = torch.randn(48, 3), torch.randint(0, 2, (48,))
    return net, {"train": (X, y)}


def _scan(net, data, dirs, **kw):
    return lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data=data,
        directions=list(dirs),
        grid=[(-1, 1, 5), (-1, 1, 3)][: len(dirs)],
        progress=False,
        **kw,
    )


def test_each_draw_is_the_plain_scan_of_its_recorded_seed(tmp_path):
    net, data = _setup()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ds = lm.random_directions(net, 2, seed=5, norm="layer")
    surf = _scan(net, data, ds, draws=3, store=tmp_path / "d.lossmap")
    assert surf.dims == ("draw", "alpha", "beta") and surf["train_loss"].shape == (3, 5, 3)
    seeds = surf.spec.draws["seeds"]
    assert (
        seeds[0] == [5, 5]
        and seeds[1] == [draw_seed(5, 1)] * 2
        and len(set(map(tuple, seeds))) == 3
    )
    for k in range(3):
        own = lm.random_directions(net, 2, seed=seeds[k][0], norm="layer")
        plain = _scan(net, data, own)
        one = surf.isel(draw=k)
        assert one.dims == ("alpha", "beta") and one.spec.draws is None
        assert one.spec.directions == plain.spec.directions  # the same rule, the recorded seed
        np.testing.assert_allclose(one["train_loss"], plain["train_loss"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            one.errors["train_loss"], plain.errors["train_loss"], rtol=1e-5, atol=1e-7
        )
        assert surf.sel(draw=float(k))["train_loss"].tolist() == one["train_loss"].tolist()
    # the draws differ away from the centre, and agree at it
    loss = surf["train_loss"]
    assert np.ptp(loss[:, 0, 0]) > 1e-3 and np.ptp(loss[:, 2, 1]) == 0.0
    # read back from the store: the same surface
    back = lm.load(tmp_path / "d.lossmap")
    assert back.spec == surf.spec and back.dims == surf.dims
    np.testing.assert_array_equal(back["train_loss"], surf["train_loss"])
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_a_slice_keeping_the_draw_keeps_every_draws_directions():
    net, data = _setup()
    surf = _scan(net, data, lm.random_directions(net, 2, seed=1), draws=2)
    line = surf.sel(beta=0.0)
    assert line.dims == ("draw", "alpha") and line.spec.draws["seeds"] == [
        [s[0]] for s in surf.spec.draws["seeds"]
    ]
    np.testing.assert_array_equal(line["train_loss"], surf["train_loss"][:, :, 1])
    np.testing.assert_array_equal(
        line.isel(draw=1)["train_loss"], surf.isel(draw=1).sel(beta=0.0)["train_loss"]
    )


def test_the_layout_puts_each_draws_coefficients_on_its_own_directions():
    out = DrawLayout(3, 2).coefficients(np.array([[0, 0.5, -1.0], [2, 1.0, 0.25]]))
    np.testing.assert_array_equal(out, [[0.5, -1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0.25]])


@pytest.mark.parametrize("draws", [1, 0, 2.5, True])
def test_draws_below_two_or_not_an_integer_are_refused(draws):
    net, data = _setup()
    with pytest.raises((InputError, TypeError), match="draws="):
        _scan(net, data, lm.random_directions(net, 2, seed=1), draws=draws)


def _random_elsewhere(net):  # drawn around another centre: not this scan's rule
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return lm.random_direction(other, seed=0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda net: {k: torch.randn_like(v) for k, v in net.named_parameters()},
            r"direction 0 .*lm\.random_directions",
        ),
        (_random_elsewhere, "does not come out again"),
    ],
    ids=["not-random", "other-centre"],
)
def test_directions_whose_draws_cannot_be_repeated_are_refused(make, message):
    net, data = _setup()
    with pytest.raises(InputError, match=message):
        _scan(net, data, [make(net)], draws=2)


# -- resume after kill -9 -----------------------------------------------------------------


def _argv(out: Path) -> list[str]:
    return [
        "scan",
        "--model",
        f"{SLOW}:make_model",
        "--data",
        f"{SLOW}:make_data",
        "--dirs",
        "2",
        "--grid",
        "-1:1:5",
        "--grid",
        "-1:1:3",
        "--draws",
        "4",
        "--seed",
        "3",
        "--batch-size",
        "64",
        "--out",
        str(out),
        "--no-progress",
    ]


@pytest.mark.slow  # a Python process killed mid-scan: a few seconds
def test_a_killed_k_draw_scan_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOSSMAP_TEST_DELAY", "0")
    store = tmp_path / "draws.lossmap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossmap", *_argv(store)],
        cwd=tmp_path,
        env=env(0.03),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    kill_when_committed(proc, store, 6)
    assert proc.returncode == -signal.SIGKILL
    partial = lm.load(store)
    n_kill = int(partial.done.sum())
    assert 6 <= n_kill < 60 and partial.dims == ("draw", "alpha", "beta")
    kept = {v: partial[v][partial.done] for v in partial.values}

    assert main(_argv(store)) == 0, capsys.readouterr().err  # the same command resumes
    assert main(_argv(tmp_path / "whole.lossmap")) == 0, capsys.readouterr().err
    resumed, whole = lm.load(store), lm.load(tmp_path / "whole.lossmap")
    assert resumed.complete and whole.complete and resumed.spec == whole.spec
    assert resumed.fingerprints == whole.fingerprints and resumed.spec.draws["count"] == 4
    for v in whole.values:
        np.testing.assert_array_equal(resumed[v][partial.done], kept[v])
        np.testing.assert_allclose(resumed[v], whole[v], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(resumed.errors[v], whole.errors[v], rtol=1e-5, atol=1e-7)
    # a store of other draws is refused, by what differs
    other = [a if a != "4" else "3" for a in _argv(store)]
    assert main(other) == 2
    assert "draws 4 stored vs 3 now" in capsys.readouterr().err


def test_plots_analyses_and_info_take_one_draw_or_the_spread(tmp_path, capsys):
    net, data = _setup()
    store = tmp_path / "line.lossmap"
    line = _scan(net, data, [lm.random_direction(net, seed=0)], draws=3, store=store)
    assert line.dims == ("draw", "alpha")  # two dims, and still not a plane
    assert repr(line).startswith("Surface(3 draws of a line 0:2:3 x -1:1:5, complete")
    from lossmap.analysis.evidence import findings

    for call in (lambda: findings(line), lambda: lm.plot.plot_line(line)):
        with pytest.raises(InputError, match=r"3 direction draws .*surf\.sel\(draw=0\)"):
            call()
    findings(line.sel(draw=0))  # one draw: an ordinary line
    assert main(["info", str(store)]) == 0
    assert "lm.over_draws(lm.load(STORE))" in capsys.readouterr().out


@pytest.mark.parametrize(
    "rule",
    [{"params": "2.*"}, {"orthogonal": True}, {"norm": "model"}, {"norm": "layer", "ignore": None}],
    ids=["subset", "orthogonal", "model-norm", "layer-all"],
)
def test_every_draw_follows_the_rule_of_the_given_directions(rule):
    net, data = _setup()
    surf = _scan(net, data, lm.random_directions(net, 2, seed=3, **rule), draws=3)
    for k in range(3):
        own = lm.random_directions(net, 2, seed=surf.spec.draws["seeds"][k][0], **rule)
        assert surf.isel(draw=k).spec.directions == tuple(d.meta for d in own)
        assert [surf.fingerprints[f"dir_{2 * k + j}"] for j in range(2)] == [
            d.fingerprint() for d in own
        ]
