"""Scan options declared once; each input checked once, where it enters (issue 22 items 5, 6);
a grid whose points overflow the scan's dtype refused in one line (issue 21 item 12).
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path

import pytest
import torch

import lossmap as lm
from cli_run import run_cli as run
from lossmap import checks
from lossmap.cli.config import ScanConfig
from lossmap.cli.main import _build_parser
from lossmap.scan.options import INPUTS, ScanOptions, declared, speed_only, yaml_keys
from lossmap.scan.spec import ScanSpec

TINY = Path(__file__).parent / "cli_fixtures" / "tinynet.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def _net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    return net, {"train": (X, y)}


# -- item 6: one declaration -------------------------------------------------------------------


def test_scan_signature_and_docstring_match_the_declaration():
    sig = inspect.signature(lm.scan)
    keywords = {n: p for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert set(keywords) == set(INPUTS) | {f.name for f in declared()}
    for f in declared():  # the same defaults
        assert keywords[f.name].default == f.default, f.name
    doc = lm.scan.__doc__
    for name in keywords:  # each keyword documented
        assert f"\n    {name} :" in doc, name
    # plan_scan takes the same options (and the inputs but store and meta, which run takes)
    plan_params = inspect.signature(lm.plan_scan).parameters
    assert set(INPUTS) - {"store", "meta"} <= set(plan_params)
    assert {"store", "meta"} <= set(inspect.signature(lm.Plan.run).parameters)


def test_cli_flags_yaml_keys_and_record_come_from_the_declaration():
    scan = _build_parser().commands["scan"]
    flags = {s: a for a in scan._actions for s in a.option_strings}
    for f in declared():
        about = f.metadata
        if about["flag"] is None:
            assert f"--{f.name.replace('_', '-')}" not in flags
            continue
        action = flags[about["flag"]]
        assert action.dest == f.name and action.help == about["help"] and action.default is None
        assert tuple(action.choices or ()) == tuple(about["choices"] or ())
    assert set(yaml_keys()) <= set(ScanConfig.field_names())
    assert {"progress", "profile", "channels_last"}.isdisjoint(ScanConfig.field_names())
    assert set(speed_only()) == {"device", "batch_size", "strategy", "reuse_first_layer", "compile"}


def test_options_are_checked_by_their_declared_checker():
    assert ScanOptions.checked({"autocast": torch.bfloat16, "strategy": "loop"}).autocast == (
        "bfloat16"
    )
    with pytest.raises(lm.InputError, match=r"samples=0 must be an integer >= 1 or None"):
        ScanOptions.checked({"samples": 0})
    with pytest.raises(TypeError, match=r"unknown scan option.*sampels"):
        ScanOptions.checked({"sampels": 3})
    cli = pytest.raises(lm.InputError, match=r"--samples 0 must be an integer >= 1 \(leave")
    with checks.cli_names(), cli:  # the command line's names for the same rule
        ScanOptions.checked({"samples": 0})


# -- item 5: each input checked once -----------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Count the passes of each input through lossmap.checks, apart from reading a file back."""
    passes: Counter = Counter()
    reading = [False]  # inside ScanSpec.from_dict: a store read back (the file's own door)

    def counting(name, real, key):
        def wrapper(*args, **kwargs):
            if not reading[0]:
                passes[key(*args, **kwargs)] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(checks, name, wrapper)

    counting("check_axis", checks.check_axis, lambda obj, index=0: f"grid axis {index}")
    counting("check_count", checks.check_count, lambda v, name, **kw: name)
    counting("check_choice", checks.check_choice, lambda v, name, choices: name)
    counting("check_strategy", checks.check_strategy, lambda v: "strategy")
    counting("check_loss_fn", checks.check_loss_fn, lambda v, **kw: "loss_fn")
    real = ScanSpec.from_dict.__func__

    def from_dict(cls, d):
        reading[0] = True
        try:
            return real(cls, d)
        finally:
            reading[0] = False

    monkeypatch.setattr(ScanSpec, "from_dict", classmethod(from_dict))
    return passes


ONCE = ("grid axis 0", "grid axis 1", "samples", "bn", "strategy", "loss_fn")


def test_each_input_is_checked_once_through_the_api(spy, tmp_path):
    net, data = _net()
    lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data=data,
        directions=lm.random_directions(net, 2, seed=0),
        grid=[(-1, 1, 3), "-1:1:3"],
        samples=8,
        bn="eval",
        strategy="loop",
        store=tmp_path / "s.lossmap",
        progress=False,
    )
    assert set(ONCE) | {"autocast", "batch_size", "bn_samples"} == set(spy)
    assert set(spy.values()) == {1}, spy  # before: grid 2 passes per axis, samples, bn, ... 2


def test_each_input_is_checked_once_through_the_cli(spy, tmp_path, capsys):
    code, _, err = run(
        capsys,
        "scan",
        "--model",
        f"{TINY}:make_model",
        "--data",
        f"{TINY}:make_data",
        "--grid=-1:1:3",
        "--grid=-1:1:3",
        "--samples",
        "8",
        "--bn",
        "eval",
        "--strategy",
        "loop",
        "-o",
        tmp_path / "s.lossmap",
        "--no-progress",
    )
    assert code == 0, err
    assert set(ONCE) | {"autocast", "batch_size", "bn_samples"} == set(spy)
    assert set(spy.values()) == {1}, spy  # before: grid 3 passes per axis, samples 3, bn 3


@pytest.mark.parametrize("bad", ["grid", "samples"])
def test_a_bad_input_passes_one_checker_on_each_door(spy, bad, tmp_path, capsys):
    net, data = _net()
    grid, samples = ("-1:1:1" if bad == "grid" else "-1:1:3"), (0 if bad == "samples" else 8)
    key = "grid axis 0" if bad == "grid" else "samples"
    with pytest.raises(lm.InputError):
        lm.scan(
            net,
            torch.nn.CrossEntropyLoss(),
            data=data,
            directions=lm.random_direction(net, seed=0),
            grid=grid,
            samples=samples,
            progress=False,
        )
    assert spy[key] == 1
    spy.clear()
    code, _, err = run(
        capsys,
        "scan",
        "--model",
        f"{TINY}:make_model",
        "--data",
        f"{TINY}:make_data",
        "--dirs",
        "1",
        f"--grid={grid}",
        "--samples",
        str(samples),
        "-o",
        tmp_path / "s.lossmap",
        "--no-progress",
    )
    assert code == 2 and spy[key] == 1, err
    assert not (tmp_path / "s.lossmap").exists()


# -- issue 21 item 12: a grid that overflows -------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "needle"),
    [
        ("-1e308:1e308:3", "the span hi - lo of -1e+308:1e+308 overflows"),
        ("-1e39:1e39:3", "beyond the largest torch.float32 (3.4e+38)"),
    ],
)
def test_grid_overflowing_the_dtype_is_one_line(grid, needle, tmp_path, capsys):
    net, data = _net()
    with pytest.raises(
        lm.InputError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")
    ):
        lm.scan(
            net,
            torch.nn.CrossEntropyLoss(),
            data=data,
            directions=lm.random_direction(net, seed=0),
            grid=grid,
            progress=False,
        )
    out = tmp_path / "big.lossmap"
    code, _, err = run(
        capsys,
        "scan",
        "--model",
        f"{TINY}:make_model",
        "--data",
        f"{TINY}:make_data",
        "--dirs",
        "1",
        f"--grid={grid}",
        "-o",
        out,
        "--no-progress",
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err and not out.exists()


def test_grid_dtype_check_follows_the_dtype_and_the_directions():
    net, (data,) = _net()[0], _net()[1].values()
    wide = net.double()
    X, y = data
    d = lm.random_direction(wide, seed=0)
    # 1e39 is finite in float64: scanned (the losses are what they are, no traceback)
    lm.plan_scan(
        wide,
        torch.nn.CrossEntropyLoss(),
        data={"train": (X.double(), y)},
        directions=d,
        grid="-1e39:1e39:3",
    )
    # in float32 a coordinate of 1e38 is finite, but 1e38 times a direction of size 10 is not
    net32, data32 = _net()
    big = lm.Direction({k: 10 * torch.ones_like(v) for k, v in net32.named_parameters()})
    with pytest.raises(lm.InputError, match=r"the weights c \+ a·d reach"):
        lm.plan_scan(
            net32, torch.nn.CrossEntropyLoss(), data=data32, directions=big, grid="-1e38:1e38:3"
        )


def test_a_centre_that_is_already_not_finite_is_scanned_not_refused():
    """The grid check bounds finite weights: a nan weight makes points diverge, as before."""
    net, data = _net()
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    surf = lm.scan(net, torch.nn.CrossEntropyLoss(), data=data,
                   directions=lm.random_direction(_net()[0], seed=0), grid=(-1, 1, 3),
                   progress=False)
    assert surf.done.all() and torch.isnan(torch.as_tensor(surf["train_loss"])).all()


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("seed", "abc", "seed='abc' must be an integer"),
    ("seed", -1, "seed=-1 must be >= 0"),
    ("compile", "no", "compile='no' must be True or False"),
    ("progress", "no", "progress='no' must be True or False"),
    ("profile", 1, "profile=1 must be True or False"),
    ("channels_last", "no", "channels_last='no' must be True or False"),
])
def test_every_option_has_a_checker(option, value, needle):
    assert all(f.metadata["check"] is not None for f in declared()), "an option is unchecked"
    with pytest.raises((lm.InputError, lm.InputTypeError), match=needle):
        ScanOptions.checked({option: value})
