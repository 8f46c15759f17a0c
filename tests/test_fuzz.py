"""Hostile input, property-based: never a traceback, never a damaged store."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossmap as lm
from lossmap.cli import main
from lossmap.spec import ScanSpec

FIXTURE = str(Path(__file__).parent / "cli_fixtures" / "tinynet.py")

numbers = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just("nan"),
    st.just("-inf"),
    st.just("1e309"),
    st.just(""),
    st.just("x"),
    st.just("-"),
)
grid_text = st.one_of(
    st.builds(lambda a, b, n: f"{a}:{b}:{n}", numbers, numbers, st.integers(-3, 4)),
    st.text(alphabet=":-.0123456789eEx ", max_size=12),
)
flag_values = {
    "--dirs": st.one_of(st.integers(-2, 4).map(str), st.just("two")),
    "--norm": st.sampled_from(["filter", "layer", "model", "none", "bogus", ""]),
    "--ignore": st.sampled_from(["biasbn", "none", "bias", ""]),
    "--seed": st.one_of(st.integers(-3, 3).map(str), st.just("1.5")),
    "--samples": st.one_of(st.integers(-2, 80).map(str), st.just("all")),
    "--metrics": st.sampled_from(["loss", "loss,accuracy", "accuracy", "", "bogus", "loss,loss"]),
    "--batch-size": st.one_of(st.integers(-1, 9).map(str), st.just("0.5")),
    "--loss": st.sampled_from(["cross_entropy", "mse", "nope", "math:sqrt", f"{FIXTURE}:nope"]),
    "--device": st.sampled_from(["cpu", "cuda", "tpu", "cuda:7", ""]),
    "--model": st.sampled_from([f"{FIXTURE}:make_model", f"{FIXTURE}:not_a_model", "a:b", "x"]),
    "--data": st.sampled_from([f"{FIXTURE}:make_data", f"{FIXTURE}:make_mismatched_data"]),
    "--checkpoint": st.sampled_from(["missing.pt", "notes.txt"]),
}


@st.composite
def scan_argv(draw):
    argv = ["scan"]
    for flag, values in flag_values.items():
        if draw(st.booleans()):
            argv += [flag, draw(values)]
    for _ in range(draw(st.integers(0, 3))):
        argv += ["--grid", draw(grid_text)]
    if draw(st.booleans()):
        argv.append("--orthogonal")
    argv += ["--out", draw(st.sampled_from(["store.lossmap", "notes.txt", "sub/new.lossmap"]))]
    return [*argv, "--no-progress"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("fuzz")
    (d / "notes.txt").write_text("precious\n")
    main(
        [
            "scan",
            "--model",
            f"{FIXTURE}:make_model",
            "--data",
            f"{FIXTURE}:make_data",
            "--grid",
            "-1:1:3",
            "--grid",
            "-1:1:3",
            "--out",
            str(d / "store.lossmap"),
            "--no-progress",
        ]
    )
    return d


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(argv=scan_argv())
def test_scan_arguments_never_traceback_nor_damage(workdir, argv, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    notes, store = digest(workdir / "notes.txt"), digest(workdir / "store.lossmap")
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    assert digest(workdir / "notes.txt") == notes
    same = code == 0 and "store.lossmap" in argv
    if not same:
        assert digest(workdir / "store.lossmap") == store, argv
    assert lm.load(workdir / "store.lossmap").complete


axes_values = st.lists(st.lists(st.integers(-2, 12), min_size=3, max_size=3), max_size=3)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 60) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    d=st.fixed_dictionaries(
        {
            "axes": axes_values | json_values,
            "splits": json_values | st.just(["train", "test"]),
            "metrics": json_values | st.just(["loss"]) | st.just(["loss", "accuracy"]),
        },
        optional={
            "samples": json_values,
            "seed": json_values,
            "bn": json_values,
            "format": json_values,
            "directions": json_values,
        },
    )
)
def test_tampered_spec_is_refused_plainly(workdir, tmp_path_factory, d):
    """A store whose spec was edited by hand either loads or raises one StoreError."""
    import shutil
    import sqlite3

    path = tmp_path_factory.mktemp("tamper") / "s.lossmap"
    shutil.copy(workdir / "store.lossmap", path)
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = ? WHERE key = 'spec'", (json.dumps(d),))
    try:
        surf = lm.load(path)
    except lm.StoreError as exc:
        assert "damaged" in str(exc)
    else:
        assert ScanSpec.from_dict(surf.spec.to_dict()) == surf.spec
