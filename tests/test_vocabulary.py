"""One vocabulary across API, CLI, YAML, spec, store and `lossmap info` (issue 12).

- the grid is ``grid`` everywhere; ``ScanSpec.axes`` / ``axes=`` and stores
  written by 0.1 (spec key ``axes``) still work;
- every command that writes takes ``-o/--out``; ``--output`` still works with
  a one-line deprecation note;
- ``--bn``, ``--bn-samples``, ``--bn-split``, ``--strategy``,
  ``--no-reuse-first-layer`` (and their YAML keys) reach ``lm.scan``;
- ``scan --hessian-dirs K`` (old ``--hessian``) vs ``report --hessian FILE``;
  ``hessian_trace(probes=)`` (old ``n_samples=``);
- ``lossmap info STORE --spec`` ⇄ ``lossmap scan --spec``: the printed spec
  resumes the same store, and a changed key is refused naming the difference;
- counts (issue 22): ``n`` is how many directions or eigenpairs a builder
  makes (``hessian_eigenpairs(k=)`` still works, with a warning), ``samples``
  the data subset, ``probes`` the random probe vectors; every builder of
  several directions returns ``lm.Directions`` (tests/test_api_shapes.py).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

import lossmap as lm
from cli_run import run_cli as run
from lossmap.cli.main import _build_parser
from lossmap.cli.specfile import axis_text, spec_keys
from lossmap.scan.spec import Axis, ScanSpec

TINY = Path(__file__).parent / "cli_fixtures" / "tinynet.py"
_spec = importlib.util.spec_from_file_location("lossmap_test_vocabulary_tinynet", TINY)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
PLANE = ("-1:1:5", "-0.5:0.5:4")
VARIABLES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

BN_MODEL = '''
import torch
from torch import nn


def make_model():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    net[1].running_mean.fill_(0.3)  # stored statistics far from the data's
    net[1].running_var.fill_(2.0)
    return net
'''




def scan_argv(out: Path, *extra) -> list[str]:
    argv = ["scan", "--model", f"{TINY}:make_model", "--data", f"{TINY}:make_data"]
    return argv + [f"--grid={g}" for g in PLANE] + ["-o", str(out), "--no-progress", *extra]


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(Path(lm.__file__).parents[1])  # this checkout's lossmap
    e["PYTHONPATH"] = os.pathsep.join(p for p in (src, e.get("PYTHONPATH")) if p)
    return e


def cli(*argv, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lossmap", *map(str, argv)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=300)


def rows(path: Path) -> dict[int, tuple]:
    """Every stored row by flat index: the values and the time it was finished."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = conn.execute(f"SELECT idx, {', '.join(VARIABLES)}, finished FROM points")
        return {r[0]: r[1:] for r in cur}
    finally:
        conn.close()


def deprecation_line(err: str, old: str, new: str) -> None:
    """stderr is exactly one line: the note that ``old`` is now ``new``."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "deprecated" in lines[0] and old in lines[0] and new in lines[0], lines[0]


# -- 1. grid everywhere ---------------------------------------------------------------


def test_spec_grid_with_the_old_axes_name_deprecated():
    grid = (Axis(-1, 1, 5), Axis(-0.5, 0.5, 4))
    spec = ScanSpec(grid=grid, splits=("train",), metrics=("loss",))
    d = spec.to_dict()
    assert d["grid"] == [[-1.0, 1.0, 5], [-0.5, 0.5, 4]] and "axes" not in d
    assert json.loads(spec.to_json())["grid"] == d["grid"]
    with pytest.warns(DeprecationWarning, match=r"ScanSpec\.axes.*ScanSpec\.grid"):
        assert spec.axes == grid
    with pytest.warns(DeprecationWarning, match=r"grid="):
        old = ScanSpec(axes=grid, splits=("train",), metrics=("loss",))
    assert old == spec
    with pytest.raises(TypeError, match="give the grid once"):
        ScanSpec(axes=grid, grid=grid, splits=("train",), metrics=("loss",))
    # A 0.1 dict (key "axes") reads back as the same spec, without a warning.
    d01 = {("axes" if k == "grid" else k): v for k, v in d.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ScanSpec.from_dict(d01) == spec
    with pytest.raises(ValueError, match="both 'grid' and 'axes'"):
        ScanSpec.from_dict({**d, "axes": d["grid"]})
    # A difference in the grid is named as the grid.
    other = ScanSpec(grid=(Axis(-1, 1, 5), Axis(-1, 1, 4)), splits=("train",), metrics=("loss",))
    assert other.differences(spec) == ["grid -1:1:5 x -0.5:0.5:4 stored vs -1:1:5 x -1:1:4 now"]


def test_a_store_written_by_0_1_opens_and_resumes(tmp_path, capsys):
    """A real store whose meta table holds the 0.1 spec (key ``axes``) loads, shows, resumes."""
    path = tmp_path / "old.lossmap"
    assert run(capsys, *scan_argv(path))[0] == 0
    new = lm.load(path)
    conn = sqlite3.connect(str(path))
    spec = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()[0])
    assert "grid" in spec and "axes" not in spec  # what 0.2 writes
    spec["axes"] = spec.pop("grid")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'spec'", (json.dumps(spec),))
    conn.execute("DELETE FROM points WHERE idx IN (3, 11)")  # an unfinished 0.1 scan
    conn.commit()
    conn.close()

    old = lm.load(path)
    assert old.spec == new.spec and old.fingerprints == new.fingerprints
    assert int(old.done.sum()) == 18
    code, out, err = run(capsys, "info", path)
    assert code == 0, err
    assert "-1:1:5 x -0.5:0.5:4" in out and "18/20 done" in out
    code, out, err = run(capsys, "info", "--json", path)
    assert json.loads(out)["spec"]["grid"] == [[-1.0, 1.0, 5], [-0.5, 0.5, 4]]
    # Resuming it with the same command is not refused and fills the two points.
    code, _, err = run(capsys, *scan_argv(path))
    assert code == 0, err
    done = lm.load(path)
    assert done.complete
    for var in VARIABLES:
        np.testing.assert_allclose(done[var], new[var], rtol=1e-6, atol=1e-12, err_msg=var)


# -- 2. one output flag ---------------------------------------------------------------------

# A minimal valid command line per writing command (the output flag goes last), and the
# attribute the output lands in.
WRITERS = {
    "scan": (["scan"], "out"),
    "train": (["train"], "out"),
    "demo": (["demo"], "out"),
    "export": (["export", "s.lossmap"], "output"),
    "report": (["report", "s.lossmap"], "output"),
    "plot": (["plot", "s.lossmap"], "output"),
    "hessian": (["hessian", "--model", "m:f", "--data", "m:d"], "output"),
    "align": (["align", "a.safetensors", "b.safetensors", "--model", "m:f"], "out"),
}


@pytest.mark.parametrize("command", WRITERS)
def test_every_writing_command_takes_o_and_out(command, capsys):
    argv, dest = WRITERS[command]
    for flag in ("-o", "--out"):
        args = _build_parser().parse_args([*argv, flag, "target"])
        assert getattr(args, dest) == "target", (command, flag)
    assert capsys.readouterr().err == ""  # the new spellings say nothing


@pytest.mark.parametrize("command", ["export", "report", "plot", "hessian"])
def test_output_still_works_with_a_deprecation_line(command, capsys):
    argv, dest = WRITERS[command]
    args = _build_parser().parse_args([*argv, "--output", "target"])
    assert getattr(args, dest) == "target"
    err = capsys.readouterr().err
    deprecation_line(err, "--output", "-o/--out")
    assert err.startswith(f"lossmap {command}: warning: ")


def test_required_output_accepts_either_spelling_and_names_both(capsys):
    with pytest.raises(SystemExit) as exc:
        _build_parser().parse_args(["export", "s.lossmap"])
    assert exc.value.code == 2
    assert "-o/--out/--output" in capsys.readouterr().err


def test_export_with_the_old_flag_end_to_end(tmp_path, capsys):
    store, csv = tmp_path / "s.lossmap", tmp_path / "s.csv"
    assert run(capsys, *scan_argv(store))[0] == 0
    code, out, err = run(capsys, "export", store, "--output", csv)
    assert code == 0 and csv.exists() and "wrote" in out
    deprecation_line(err, "--output", "-o/--out")


# -- 3. the evaluation flags ------------------------------------------------------------------


@pytest.fixture
def bn_model(tmp_path) -> str:
    (tmp_path / "bnnet.py").write_text(BN_MODEL)
    return f"{tmp_path / 'bnnet.py'}:make_model"


def _api_bn_surface(bn_model: str, **kw) -> lm.Surface:
    from lossmap.cli.entry import load_entry

    model = load_entry(bn_model, what="--model")()
    dirs = lm.random_directions(model, 1, norm="filter", ignore="biasbn", seed=0)
    return lm.scan(model, nn.CrossEntropyLoss(), data=tiny.make_data(), directions=dirs,
                   grid=[(-1, 1, 5)], progress=False, seed=0, **kw)


def test_bn_flags_reach_the_scan(bn_model, tmp_path, capsys, monkeypatch):
    module = sys.modules["lossmap.scan.api"]  # `lossmap.scan.api` is the function
    seen: dict = {}
    real = module.scan

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "scan", spy)
    out = tmp_path / "bn.lossmap"
    code, _, err = run(capsys, "scan", "--model", bn_model, "--data", f"{TINY}:make_data",
                       "--dirs", "1", "--grid=-1:1:5", "-o", out, "--no-progress",
                       "--bn", "recompute", "--bn-samples", "20", "--bn-split", "test",
                       "--strategy", "loop", "--no-reuse-first-layer")
    assert code == 0, err
    assert {k: seen[k] for k in ("bn", "bn_samples", "bn_split", "strategy",
                                 "reuse_first_layer")} == {
        "bn": "recompute", "bn_samples": 20, "bn_split": "test", "strategy": "loop",
        "reuse_first_layer": False}
    surf = lm.load(out)
    assert (surf.spec.bn, surf.spec.bn_split, surf.spec.bn_samples) == ("recompute", "test", 20)
    ref = _api_bn_surface(bn_model, bn="recompute", bn_samples=20, bn_split="test")
    for var in VARIABLES:
        np.testing.assert_allclose(surf[var], ref[var], rtol=1e-6, atol=1e-12, err_msg=var)
    # The flags change the numbers: the stored statistics give another surface.
    stored = _api_bn_surface(bn_model)
    assert np.abs(surf["train_loss"] - stored["train_loss"]).max() > 1e-3
    # info --spec gives them back (as stored: the samples actually used), and resumes.
    keys = _round_trip(capsys, tmp_path, out)
    assert (keys["bn"], keys["bn_split"], keys["bn_samples"]) == ("recompute", "test", 20)

    # The same through YAML keys.
    seen.clear()
    spec = tmp_path / "bn.yaml"
    spec.write_text(yaml.safe_dump({
        "model": bn_model, "data": f"{TINY}:make_data", "dirs": 1, "grid": ["-1:1:5"],
        "bn": "recompute", "bn_samples": 20, "bn_split": "test", "strategy": "loop",
        "reuse_first_layer": False, "out": str(tmp_path / "bn2.lossmap")}))
    code, _, err = run(capsys, "scan", "--spec", spec, "--no-progress")
    assert code == 0, err
    assert (seen["bn"], seen["bn_samples"], seen["bn_split"], seen["strategy"],
            seen["reuse_first_layer"]) == ("recompute", 20, "test", "loop", False)
    assert lm.load(tmp_path / "bn2.lossmap").spec == surf.spec

    # Left out, none of them is passed: lm.scan's defaults apply.
    seen.clear()
    assert run(capsys, *scan_argv(tmp_path / "plain.lossmap"))[0] == 0
    assert not {"bn", "bn_samples", "bn_split", "strategy", "reuse_first_layer"} & set(seen)


BAD_FLAGS = {
    "bn samples without recompute": (("--bn-samples", "5"), "--bn-samples needs --bn recompute"),
    "bn split without recompute": (("--bn", "eval", "--bn-split", "test"),
                                   "--bn-split needs --bn recompute"),
    "bn samples zero": (("--bn", "recompute", "--bn-samples", "0"),
                        "--bn-samples 0 must be an integer >= 1"),
    "bn split unknown": (("--bn", "recompute", "--bn-split", "val"),
                         "bn_split='val' is not a split"),
    "bn mode unknown": (("--bn", "sometimes"), "invalid choice: 'sometimes'"),
    "strategy unknown": (("--strategy", "map"), "invalid choice: 'map'"),
}


@pytest.mark.parametrize(("extra", "needle"), BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_evaluation_flags_are_one_line(extra, needle, tmp_path, capsys):
    code, _, err = run(capsys, *scan_argv(tmp_path / "x.lossmap", *extra))
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "x.lossmap").exists()


def test_bad_evaluation_yaml_keys_are_one_line(tmp_path, capsys):
    for key, value, needle in (("bn", "sometimes", "--bn 'sometimes' must be eval"),
                               ("strategy", "map", "--strategy 'map' must be one of"),
                               ("reuse_first_layer", "no", "must be true or false")):
        spec = tmp_path / "s.yaml"
        spec.write_text(yaml.safe_dump({"model": f"{TINY}:make_model",
                                        "data": f"{TINY}:make_data", "grid": list(PLANE),
                                        "out": str(tmp_path / "x.lossmap"), key: value}))
        code, _, err = run(capsys, "scan", "--spec", spec)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, (key, err)


# -- 4. probes and samples, Hessian count and file ---------------------------------------------


def test_hessian_dirs_and_its_old_spelling(tmp_path, capsys):
    new, old = tmp_path / "new.lossmap", tmp_path / "old.lossmap"
    code, _, err = run(capsys, *scan_argv(new, "--hessian-dirs", "2"))
    assert code == 0 and err == "", err
    code, _, err = run(capsys, *scan_argv(old, "--hessian", "2"))
    assert code == 0, err
    deprecation_line(err, "--hessian", "--hessian-dirs")
    a, b = lm.load(new), lm.load(old)
    assert a.meta["hessian"]["k"] == 2 and a.meta["command"]["hessian_dirs"] == 2
    assert a.spec == b.spec and a.fingerprints == b.fingerprints
    # The YAML key `hessian` (0.1) maps to hessian_dirs, with the same note.
    spec = tmp_path / "h.yaml"
    spec.write_text(yaml.safe_dump({"model": f"{TINY}:make_model", "data": f"{TINY}:make_data",
                                    "grid": list(PLANE), "hessian": 2, "out": str(old)}))
    code, _, err = run(capsys, "scan", "--spec", spec, "--no-progress")
    assert code == 0, err
    deprecation_line(err, "'hessian'", "'hessian_dirs'")
    # report's --hessian is the JSON file, a different thing with its own name.
    args = _build_parser().parse_args(["report", "s.lossmap", "--hessian", "h.json", "-o", "r"])
    assert args.hessian == "h.json"


def test_trace_probes_and_the_old_n_samples():
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g))
    loss = nn.CrossEntropyLoss()
    est = lm.hessian_trace(net, loss, data, probes=6, seed=1)
    with pytest.warns(DeprecationWarning, match=r"n_samples=.*probes="):
        old = lm.hessian_trace(net, loss, data, n_samples=6, seed=1)
    assert old == est
    assert lm.hessian_trace(net, loss, data, probes=7, seed=1) != est  # the count is used
    # `samples` stays the data subset: another subset, another estimate.
    assert lm.hessian_trace(net, loss, data, probes=6, seed=1, samples=8) != est


# -- 5. lossmap info --spec ⇄ lossmap scan --spec ⇄ the store --------------------------------


@pytest.mark.slow  # four lossmap processes
def test_cli_spec_store_round_trip(tmp_path):
    """scan (a process) → partial store → info --spec → scan --spec resumes it, same values."""
    store = tmp_path / "plane.lossmap"
    argv = scan_argv(Path("plane.lossmap"), "--samples", "48", "--seed", "3", "--norm", "layer",
                     "--batch-size", "16")
    done = cli(*argv, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    full = rows(store)
    conn = sqlite3.connect(str(store))  # an interrupted scan: 5 of 20 points missing
    conn.execute("DELETE FROM points WHERE idx IN (0, 6, 7, 13, 19)")
    conn.commit()
    conn.close()

    shown = cli("info", "plane.lossmap", "--spec", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    keys = yaml.safe_load(shown.stdout)
    assert keys == {
        "model": f"{TINY}:make_model", "data": f"{TINY}:make_data", "loss": "cross_entropy",
        "dirs": 2, "norm": "layer", "ignore": "biasbn", "grid": list(PLANE), "samples": 48,
        "seed": 3, "metrics": ["loss", "accuracy"], "out": "plane.lossmap"}
    assert "# batch_size: 16" in shown.stdout  # speed only: shown as a comment
    (tmp_path / "s.yaml").write_text(shown.stdout)

    resumed = cli("scan", "--spec", "s.yaml", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = rows(store)
    assert set(after) == set(full)  # complete again
    for i, row in after.items():
        np.testing.assert_allclose(row[:-1], full[i][:-1], rtol=1e-6, atol=1e-12, err_msg=i)
        if i not in (0, 6, 7, 13, 19):
            assert row[-1] == full[i][-1], i  # kept, not recomputed

    # A changed key is refused with the difference named; the store is left as it was.
    changed = shown.stdout.replace("seed: 3", "seed: 4")
    assert changed != shown.stdout
    (tmp_path / "s.yaml").write_text(changed)
    refused = cli("scan", "--spec", "s.yaml", "--no-progress", cwd=tmp_path)
    assert refused.returncode == 2
    assert "holds a different scan" in refused.stderr and "seed 3 stored vs 4 now" in refused.stderr
    assert rows(store) == after


@pytest.fixture
def ckpt(tmp_path) -> dict[str, Path]:
    """Checkpoints A, B, C of the tiny model (C off the line through A and B)."""
    sa, sb = tiny.make_model().state_dict(), tiny.make_other_init().state_dict()
    g = torch.Generator().manual_seed(0)
    sc = {k: (sa[k] + sb[k]) / 2 + torch.randn(v.shape, generator=g) for k, v in sa.items()}
    files = {n: tmp_path / f"{n}.safetensors" for n in "ABC"}
    for n, s in zip("ABC", (sa, sb, sc), strict=True):
        save_file(s, str(files[n]))
    return files


def _round_trip(capsys, tmp_path: Path, store: Path) -> dict:
    """info --spec of ``store``, scanned again with --spec: resumes without a change."""
    code, text, err = run(capsys, "info", store, "--spec")
    assert code == 0, err
    before = rows(store)
    (tmp_path / "again.yaml").write_text(text)
    code, _, err = run(capsys, "scan", "--spec", tmp_path / "again.yaml", "--no-progress")
    assert code == 0, err
    assert rows(store) == before  # resumed a complete store: nothing recomputed
    return yaml.safe_load(text)


@pytest.mark.slow  # several CLI runs end to end
def test_checkpoint_directions_round_trip_by_their_files(ckpt, tmp_path, capsys):
    # --plane without --grid: the fitted grid is not round, and must come back exactly.
    store = tmp_path / "abc.lossmap"
    code, _, err = run(capsys, "scan", "--model", f"{TINY}:make_model", "--data",
                       f"{TINY}:make_data", "--plane", *ckpt.values(), "-o", store,
                       "--no-progress", "--samples", "16")
    assert code == 0, err
    grid = lm.load(store).spec.grid
    assert any(float(f"{a.lo:g}") != a.lo for a in grid)  # str(axis) would round it
    keys = _round_trip(capsys, tmp_path, store)
    assert keys["plane"] == [str(p) for p in ckpt.values()]
    assert keys["grid"] == [axis_text(a) for a in grid]
    assert "dirs" not in keys and "checkpoint" not in keys
    # A line between two checkpoints.
    store = tmp_path / "ab.lossmap"
    code, _, err = run(capsys, "scan", "--model", f"{TINY}:make_model", "--data",
                       f"{TINY}:make_data", "--interpolate", ckpt["A"], ckpt["B"],
                       "--grid=-0.5:1.5:5", "-o", store, "--no-progress")
    assert code == 0, err
    assert _round_trip(capsys, tmp_path, store)["interpolate"] == [str(ckpt["A"]),
                                                                  str(ckpt["B"])]


def test_hessian_directions_round_trip(ckpt, tmp_path, capsys):
    store = tmp_path / "h.lossmap"
    code, _, err = run(capsys, *scan_argv(store, "--hessian-dirs", "3", "--checkpoint",
                                          ckpt["B"], "--hessian-split", "test"))
    assert code == 0, err
    keys = _round_trip(capsys, tmp_path, store)
    assert {k: keys[k] for k in ("hessian_dirs", "dirs", "hessian_split", "checkpoint")} == {
        "hessian_dirs": 3, "dirs": 2, "hessian_split": "test", "checkpoint": str(ckpt["B"])}
    assert "norm" not in keys and "bn" not in keys


def test_a_python_scan_prints_what_the_keys_cannot_say(tmp_path, capsys):
    model = tiny.make_model()
    data = tiny.make_data()
    # Random directions whose seed is the scan's: expressible as keys.
    d = lm.random_directions(model, 2, norm="filter", ignore=None, seed=0, orthogonal=True)
    store = tmp_path / "api.lossmap"
    lm.scan(model, nn.CrossEntropyLoss(), data=data, directions=d, grid=[(-1, 1, 3)] * 2,
            store=store, progress=False)
    code, text, err = run(capsys, "info", store, "--spec")
    assert code == 0, err
    keys = yaml.safe_load(text)
    assert {k: keys[k] for k in ("dirs", "norm", "ignore", "orthogonal")} == {
        "dirs": 2, "norm": "filter", "ignore": "none", "orthogonal": True}
    assert "model" not in keys and "# model, data, loss: this scan was not made by" in text
    # Directions from elsewhere: no keys, a comment says so.
    plane = lm.Direction({k: torch.ones_like(v) for k, v in model.named_parameters()})
    store = tmp_path / "own.lossmap"
    lm.scan(model, nn.CrossEntropyLoss(), data=data, directions=plane, grid=(-1, 1, 3),
            store=store, progress=False)
    code, text, err = run(capsys, "info", store, "--spec")
    keys = yaml.safe_load(text)
    assert "dirs" not in keys and "norm" not in keys
    assert "cannot be given as keys" in text and "lm.load_directions" in text
    assert keys["grid"] == ["-1:1:3"] and keys["out"] == str(store)


def test_a_0_1_command_record_prints_hessian_dirs():
    spec = ScanSpec(grid=(Axis(-1, 1, 3),), splits=("train",), metrics=("loss",),
                    directions=({"kind": "hessian", "index": 0},))
    keys, notes = spec_keys(spec, {"command": {"model": "m:f", "data": "m:d", "hessian": 2,
                                               "loss": "mse"}}, "s.lossmap")
    assert keys["hessian_dirs"] == 2 and keys["dirs"] == 1 and "hessian" not in keys
    assert notes == []


def test_info_spec_and_json_exclude_each_other(tmp_path, capsys):
    store = tmp_path / "s.lossmap"
    assert run(capsys, *scan_argv(store))[0] == 0
    code, _, err = run(capsys, "info", store, "--spec", "--json")
    assert code == 2 and "--spec and --json cannot be combined" in err


# -- 6. one name per count ---------------------------------------------------------------------

COUNTS = {  # function: (its count of what it makes, the other counts it takes)
    lm.random_directions: ("n", set()),
    lm.pca_directions: ("n", set()),
    lm.hessian_eigenpairs: ("n", {"samples"}),
    lm.hessian_trace: ("probes", {"samples"}),
    lm.hessian_density: ("probes", {"samples"}),
    lm.slq_nodes_weights: ("probes", {"samples"}),
}


@pytest.mark.parametrize("fn", COUNTS, ids=lambda f: f.__name__)
def test_counts_have_one_name_each(fn):
    params = set(inspect.signature(fn).parameters)
    made, others = COUNTS[fn]
    assert made in params and others <= params, sorted(params)
    deprecated = {"k", "n_probes", "n_samples"} & params  # kept one release, warning
    doc = inspect.getdoc(fn)
    assert all(f"Deprecated name of ``{made}``" in doc.split(f"{d} :")[1] for d in deprecated)
