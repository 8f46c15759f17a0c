"""torchrun: points sharded over 2 ranks equal a single run; a killed rank resumes cleanly."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lossmap as lm

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


def test_two_ranks_equal_one(workdir):
    tmp, env = workdir
    subprocess.run(command(tmp / "one.lossmap", "python"), env=env, check=True, capture_output=True)
    res = subprocess.run(
        command(tmp / "two.lossmap", "torchrun"), env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("two.lossmap: Surface(") == 1  # one rank reports
    one, two = lm.load(tmp / "one.lossmap"), lm.load(tmp / "two.lossmap")
    assert two.complete
    for v in one.values:
        np.testing.assert_array_equal(one[v], two[v])


def committed(path):
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as c:
            return c.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_rank_fails_the_job_and_rerun_resumes(workdir):
    tmp, env = workdir
    subprocess.run(command(tmp / "one.lossmap", "python"), env=env, check=True, capture_output=True)
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
    one, two = lm.load(tmp / "one.lossmap"), lm.load(out)
    assert two.complete
    for v in one.values:
        np.testing.assert_array_equal(one[v], two[v])
    with sqlite3.connect(out) as c:
        assert c.execute("SELECT COUNT(DISTINCT idx), COUNT(*) FROM points").fetchone() == (35, 35)
