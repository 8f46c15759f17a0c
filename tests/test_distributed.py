"""torchrun: points sharded over 2 ranks equal a single run; a killed rank resumes cleanly."""

import importlib.util
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap.backends.torch.firstlayer import CHECK_POINT

USER = """
import os, time
import torch
from torch import nn

class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x):
        delay = float(os.environ.get("LOSSMAP_TEST_DELAY", "0"))
        if delay:
            with open(os.environ["LOSSMAP_TEST_PIDS"], "a") as f:
                f.write(f"{os.getpid()}\\n")
            time.sleep(delay)
        return self.net(x)

def model():
    torch.manual_seed(0)
    return Slow()

def data():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(128, 1, 4, 4, generator=g)
    y = torch.randint(0, 4, (128,), generator=g)
    return {"train": (X, y), "test": (X[:32], y[:32])}

def data_by_rank():  # each rank draws its own samples: a mistake the scan must refuse
    g = torch.Generator().manual_seed(1 + int(os.environ.get("RANK", "0")))
    X = torch.randn(128, 1, 4, 4, generator=g)
    y = torch.randint(0, 4, (128,), generator=g)
    return {"train": (X, y), "test": (X[:32], y[:32])}
"""

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def command(out, launcher):
    args = [
        "-m",
        "lossmap",
        "scan",
        "--model",
        "user.py:model",
        "--data",
        "user.py:data",
        "--grid",
        "-1:1:7",
        "--grid",
        "-1:1:5",
        "--out",
        str(out),
        "--no-progress",
        "--batch-size",
        "1000",
    ]
    if launcher == "torchrun":
        return [TORCHRUN, "--nproc-per-node", "2", "--standalone", *args]
    return [sys.executable, *args]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "user.py").write_text(USER)
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSMAP_TEST_PIDS": str(tmp_path / "pids")}
    env.pop("LOSSMAP_TEST_DELAY", None)
    return tmp_path, env


@pytest.fixture(scope="module")
def one(tmp_path_factory) -> Path:
    """The single-process scan of user.py (one python process), made once for the tests
    that compare a torchrun job with it."""
    folder = tmp_path_factory.mktemp("one")
    (folder / "user.py").write_text(USER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSMAP_TEST_PIDS": str(folder / "pids")}
    env.pop("LOSSMAP_TEST_DELAY", None)
    subprocess.run(
        command(folder / "one.lossmap", "python"), env=env, cwd=folder, check=True,
        capture_output=True,
    )  # fmt: skip
    return folder / "one.lossmap"


@pytest.mark.slow  # two torchrun jobs: 5-13 s
def test_two_ranks_equal_one(workdir, one):
    tmp, env = workdir
    res = subprocess.run(
        command(tmp / "two.lossmap", "torchrun"), env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("two.lossmap: Surface(") == 1  # one rank reports
    one, two = lm.load(one), lm.load(tmp / "two.lossmap")
    assert two.complete
    for v in one.values:
        np.testing.assert_array_equal(one[v], two[v])


@pytest.mark.slow  # one torchrun job: 5-10 s
def test_ranks_that_read_different_data_are_refused(workdir):
    """Rank 0 alone writes the store: a rank with other data would merge another scan into it."""
    tmp, env = workdir
    out = tmp / "two.lossmap"
    cmd = command(out, "torchrun")
    cmd[cmd.index("user.py:data")] = "user.py:data_by_rank"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode != 0
    # one line naming the rank and what differs, and exit status 2
    # (the two ranks write stderr at once, so their lines may run together: find each message)
    said = re.findall(r"rank 1's train data differs from rank 0's \(fingerprint [^\s)]+ vs "
                      r"[^\s)]+\): every rank must read the same data", res.stderr)
    # every rank refuses; one may be stopped by torchrun before it has printed its line
    assert 1 <= len(said) == res.stderr.count("differs from rank 0") <= 2, res.stderr[-3000:]
    # the first rank to refuse exits 2; torchrun may stop the other (SIGTERM) before it does
    codes = re.findall(r"exitcode\s*:\s*(-?\d+)", res.stderr)
    assert "2" in codes and set(codes) <= {"2", "-15"}, res.stderr[-3000:]
    assert not out.exists()  # refused before the store was made


def committed(path):
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow  # two torchrun jobs: 6-15 s
def test_killed_rank_fails_the_job_and_rerun_resumes(workdir, one):
    tmp, env = workdir
    out = tmp / "two.lossmap"
    slow = {**env, "LOSSMAP_TEST_DELAY": "0.05"}
    proc = subprocess.Popen(
        command(out, "torchrun"),
        env=slow,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while committed(out) < 6 and time.time() < deadline:
            time.sleep(0.1)
        assert committed(out) >= 6
        pids = {int(p) for p in (tmp / "pids").read_text().split()}
        os.kill(max(pids), signal.SIGKILL)  # one worker rank dies
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc != 0  # the job fails cleanly instead of hanging
    kept = committed(out)
    assert 6 <= kept < 35
    res = subprocess.run(command(out, "torchrun"), env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    one, two = lm.load(one), lm.load(out)
    assert two.complete
    for v in one.values:
        np.testing.assert_array_equal(one[v], two[v])
    with sqlite3.connect(out) as c:
        assert c.execute("SELECT COUNT(DISTINCT idx), COUNT(*) FROM points").fetchone() == (35, 35)


KILLNET = Path(__file__).parent / "cli_fixtures" / "killnet.py"


def killnet_command(out, *launcher):
    return [
        *launcher,
        "-m",
        "lossmap",
        "scan",
        "--model",
        f"{KILLNET}:make_model",
        "--data",
        f"{KILLNET}:make_data",
        "--grid",
        "-1:1:12",
        "--grid",
        "-1:1:12",
        "--out",
        str(out),
        "--no-progress",
    ]


@pytest.mark.slow  # 24-43 s on a shared 2-core machine (four torch startups); in make test
def test_max_restarts_resumes_inside_the_job(workdir):
    """torchrun --max-restarts: a rank SIGKILLed mid-scan, the agent restarts the
    workers, the new attempt forms its group again and resumes from the store."""
    tmp, env = workdir
    one = tmp / "one.lossmap"
    subprocess.run(killnet_command(one, sys.executable), env=env, check=True, capture_output=True)
    out, log = tmp / "two.lossmap", tmp / "forwards"
    killing = {
        **env,
        "LOSSMAP_TEST_DELAY": "0.05",  # rounds of about 20 points per rank
        # rank 1 dies in its third round, after two commits (after ~14 set-up forwards:
        # sample check, reuse check, probe, round-off floor in float32 and float64)
        "LOSSMAP_TEST_KILL_AT": "44",
        "LOSSMAP_TEST_SKEW": "3",  # the restarted ranks reach the group 3 s apart
        "LOSSMAP_TEST_FORWARD_LOG": str(log),
    }
    launcher = (TORCHRUN, "--standalone", "--nproc-per-node", "2", "--max-restarts", "1")
    res = subprocess.run(
        killnet_command(out, *launcher), env=killing, capture_output=True, text=True, timeout=180
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "exitcode: -9" in res.stderr  # the first attempt did lose a rank to SIGKILL
    assert res.stdout.count("two.lossmap: Surface(") == 1
    # float32 forwards only: the first attempt also measures the round-off floor against
    # float64 (a few points, once per new store)
    lines = [(a, r, s) for a, r, s, dtype in
             (line.split() for line in log.read_text().splitlines()) if dtype == "torch.float32"]
    assert {(a, r) for a, r, _ in lines} == {("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")}
    # Each forward is one grid point, except the evaluator's set-up checks: at the
    # centre (sample check, probe) and at first-layer reuse's check point.
    spec = importlib.util.spec_from_file_location("killnet", KILLNET)
    killnet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(killnet)
    d1, d2 = lm.load_directions(out)
    with torch.no_grad():
        w = killnet.make_model().out.weight.detach()
        check = w.clone()  # formed as the reuse check forms it, in float32
        for coef, d in zip(CHECK_POINT, (d1, d2), strict=True):
            check.add_(d["out.weight"].to(w), alpha=coef)
    setup = {repr(float(w.double().sum())), repr(float(check.double().sum()))}
    first = [s for a, _, s in lines if a == "0" and s not in setup]
    second = [s for a, _, s in lines if a == "1" and s not in setup]
    assert len(first) >= 20 and len(second) < 144 - 20  # resumed, not started over
    assert len(set(second)) == len(second)  # no point evaluated twice by the restart
    assert len(set(first) | set(second)) == 144
    # Recomputed: only the round in flight (at most 1 s / 0.05 s = 20 points per rank).
    assert len(set(first) & set(second)) <= 2 * 20
    ref, got = lm.load(one), lm.load(out)
    assert got.complete
    for v in ref.values:
        np.testing.assert_array_equal(ref[v], got[v])
    with sqlite3.connect(out) as c:
        counts = c.execute("SELECT COUNT(DISTINCT idx), COUNT(*) FROM points").fetchone()
    assert counts == (144, 144)
