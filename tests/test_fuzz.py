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
from lossmap.scan.spec import ScanSpec

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


# -- hand-edited stores: loads with what the store holds, or one StoreError -----------------
@pytest.fixture(scope="module")
def api_store(tmp_path_factory):
    """A small finished store written through the API, with the caller's metadata."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    X, y = torch.randn(24, 6), torch.randint(0, 3, (24,))
    path = tmp_path_factory.mktemp("edits") / "s.lossmap"
    lm.scan(m, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
            directions=lm.random_directions(m, 2, seed=0), grid=[(-1, 1, 4), (-1, 1, 3)],
            store=path, progress=False, meta={"note": "n", "path": [[0.0, 0.5]]})
    return path


sql_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    json_values.map(json.dumps),
)
meta_keys = st.sampled_from(["spec", "fingerprints", "probe", "lossmap_version", "created",
                             "store_format", "command", "extra"])
edits = st.one_of(
    st.tuples(st.just("meta"), meta_keys, sql_values),
    st.tuples(st.just("user_meta"), st.sampled_from(["note", "path", "spec", "new"]), sql_values),
    st.tuples(st.just("points"), st.integers(-2, 14),
              st.sampled_from(["idx", "alpha", "train_loss", "train_accuracy", "seconds"]),
              sql_values),
    st.tuples(st.just("directions"), st.integers(0, 2), st.sampled_from(["idx", "data", "file",
                                                                        "sha"]),
              sql_values | st.sampled_from(["../x.safetensors", "/etc/passwd", "s.lossmap"])),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                  st.integers(1, 255)), min_size=1, max_size=4)),
    st.tuples(st.just("drop"), st.sampled_from(["meta", "user_meta", "points", "directions"])),
)


def apply_edit(path, edit):
    """One hand edit of the store file at ``path`` (an edit SQLite refuses is skipped)."""
    import sqlite3

    kind = edit[0]
    if kind == "flip":
        data = bytearray(path.read_bytes())
        for where, xor in edit[1]:
            data[int(where * len(data))] ^= xor
        path.write_bytes(bytes(data))
        return
    conn = sqlite3.connect(path)
    try:
        if kind == "drop":
            conn.execute(f"DROP TABLE {edit[1]}")
        elif kind in ("meta", "user_meta"):
            conn.execute(f"INSERT OR REPLACE INTO {kind} VALUES (?, ?)", edit[1:])
        else:
            _, idx, col, value = edit
            conn.execute(f'UPDATE {kind} SET "{col}" = ? WHERE idx = ?', (value, idx))
        conn.commit()
    except (sqlite3.Error, UnicodeDecodeError):  # refused, or a flip broke the schema: no edit
        pass
    finally:
        conn.close()


def stored_points(path):
    """The points table as plain SQLite reads it (the reference), or None if it cannot."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT idx, train_loss, train_accuracy FROM points").fetchall()
        finally:
            conn.close()
    except (sqlite3.Error, UnicodeDecodeError):
        return None


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.lists(edits, min_size=1, max_size=3))
def test_hand_edited_store_loads_truly_or_is_refused_plainly(api_store, tmp_path_factory,
                                                             capsys, changes):
    """Random SQL updates and byte flips: the values the store holds, or one StoreError."""
    import shutil

    import numpy as np

    path = tmp_path_factory.mktemp("edited") / "s.lossmap"
    shutil.copy(api_store, path)
    for change in changes:
        apply_edit(path, change)
    try:
        surf = lm.load(path)
    except lm.StoreError as exc:
        assert "\n" not in str(exc)
    else:
        rows = stored_points(path)
        assert rows is not None
        flat = {v: surf[v].reshape(-1) for v in ("train_loss", "train_accuracy")}
        assert int(surf.done.sum()) == len(rows)
        for idx, loss, acc in rows:
            assert surf.done.reshape(-1)[idx]
            for v, want in (("train_loss", loss), ("train_accuracy", acc)):
                got = flat[v][idx]
                assert (np.isnan(got) if want is None else got == want), (v, idx, got, want)
        if not any(c[0] in ("meta", "user_meta", "flip", "drop") for c in changes):
            assert surf.meta["note"] == "n" and surf.meta["path"] == [[0.0, 0.5]]
        try:
            lm.load_directions(path)
        except lm.StoreError as exc:
            assert "\n" not in str(exc)
    capsys.readouterr()
    code = main(["info", str(path)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
