"""``lossmap scan`` in k dimensions: a 4-D scan killed with SIGKILL resumes to the uninterrupted
result; ``--design`` and ``--dry-run``."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lossmap as lm
from killing import kill_when_committed
from lossmap.cli import main

FIXTURES = Path(__file__).parent / "cli_fixtures"
SLOW = FIXTURES / "slownet.py"
GRID = ["-1:1:3", "-1:1:4", "-0.5:1:3", "-1:0.5:3"]  # 108 points, one chunk is at most 32
N_POINTS = 3 * 4 * 3 * 3
KILL_AFTER = 8

pytestmark = pytest.mark.usefixtures("one_thread")


def command(out: Path, dirs: int, grid: list[str], *extra: str) -> list[str]:
    grids = [x for g in grid for x in ("--grid", g)]
    model, data = f"{SLOW}:make_model", f"{SLOW}:make_data"
    return ["scan", "--model", model, "--data", data, "--dirs", str(dirs), *grids,
            "--out", str(out), "--no-progress", *extra]  # fmt: skip


def argv(out: Path, *extra: str) -> list[str]:
    return command(out, 4, GRID, "--batch-size", "64", "--seed", "3", *extra)


def env(delay: float) -> dict[str, str]:
    e = dict(os.environ, LOSSMAP_TEST_DELAY=str(delay), OMP_NUM_THREADS="1")
    src = str(Path(lm.__file__).parents[1])
    e["PYTHONPATH"] = os.pathsep.join(p for p in (src, e.get("PYTHONPATH")) if p)
    return e


@pytest.mark.slow  # a Python process killed mid-scan: a few seconds
def test_4d_scan_killed_and_resumed_equals_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOSSMAP_TEST_DELAY", "0")
    store = tmp_path / "cube.lossmap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lossmap", *argv(store)],
        cwd=tmp_path,
        env=env(0.03),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    kill_when_committed(proc, store, KILL_AFTER)
    assert proc.returncode == -signal.SIGKILL
    partial = lm.load(store)
    n_kill = int(partial.done.sum())
    assert KILL_AFTER <= n_kill < N_POINTS and partial.dims == ("alpha", "beta", "gamma", "delta")
    kept = {v: partial[v][partial.done] for v in partial.values}

    assert main(argv(store)) == 0, capsys.readouterr().err  # the same command resumes
    assert main(argv(tmp_path / "whole.lossmap")) == 0, capsys.readouterr().err
    resumed, whole = lm.load(store), lm.load(tmp_path / "whole.lossmap")
    assert resumed.complete and whole.complete and resumed.spec == whole.spec
    assert resumed.fingerprints == whole.fingerprints
    for v in whole.values:
        np.testing.assert_array_equal(resumed[v][partial.done], kept[v])  # kept as they were
        np.testing.assert_allclose(resumed[v], whole[v], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(resumed.errors[v], whole.errors[v], rtol=1e-5, atol=1e-7)
    conn = sqlite3.connect(str(store))
    try:
        assert conn.execute("SELECT COUNT(DISTINCT idx), COUNT(*) FROM points").fetchone() == (
            N_POINTS,
            N_POINTS,
        )
    finally:
        conn.close()


def test_dry_run_prints_the_cost_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "cube.lossmap"
    assert main(argv(store, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "(dry run): 108 points (3 x 4 x 3 x 3; alpha, beta, gamma, delta)" in out
    assert "points/s" in out and "bytes)" in out
    assert not store.exists()


def test_design_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "design.lossmap"
    cmd = command(store, 5, ["-1:1"], "--design", "lhs", "--points", "16")
    assert main(cmd) == 0, capsys.readouterr().err
    surf = lm.load(store)
    assert surf.dims == ("point",) and surf.complete and surf.points().shape == (16, 5)
    assert surf.spec.design == {"kind": "lhs", "points": 16, "seed": 0}
    assert ((surf.points() >= -1) & (surf.points() <= 1)).all()
    capsys.readouterr()
    no_points = [x for x in cmd if x not in ("--points", "16")]
    assert main(no_points) == 2
    assert "--design and --points go together" in capsys.readouterr().err
    assert main([*argv(tmp_path / "x.lossmap")[:5], "--dirs", "7", "--out", "x"]) == 2
    assert "--dirs 7 must be 1 (line), 2 (plane) or up to 6" in capsys.readouterr().err


def test_a_design_store_prints_as_a_spec_file_that_resumes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "design.lossmap"
    assert (
        main(command(store, 3, ["-1:1", "0:2", "-1:0"], "--design", "sobol", "--points", "8")) == 0
    )
    capsys.readouterr()
    assert main(["info", str(store), "--spec"]) == 0
    text = capsys.readouterr().out
    assert "design: sobol" in text and "points: 8" in text and "'0:2'" in text
    (tmp_path / "spec.yaml").write_text(text)
    assert main(["scan", "--spec", str(tmp_path / "spec.yaml"), "--no-progress"]) == 0
    assert lm.load(store).complete and lm.load(store).spec.design["points"] == 8


def test_info_of_a_3d_store_shows_the_slice_to_take(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "cube.lossmap"
    assert main(command(store, 3, ["-1:1:3", "-1:1:2", "-1:1:3"])) == 0
    capsys.readouterr()
    assert main(["info", str(store)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "(alpha, beta, gamma)" in out and "lm.load(STORE).sel(gamma=0.0)" in out
    assert main(["export", str(store), "-o", str(tmp_path / "cube.csv")]) == 0
    assert (tmp_path / "cube.csv").read_text().splitlines()[0].startswith("alpha,beta,gamma,")
