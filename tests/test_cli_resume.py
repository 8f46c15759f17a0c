"""A CLI scan killed with SIGKILL part-way resumes and evaluates every point exactly once.

The model (``tests/cli_fixtures/slownet.py``) sleeps in each forward, so the
scan is slow enough to be killed between commits, and logs the batch size and
the sum of its output layer's weight at each forward, so the log of the
resumed run says exactly which grid points it computed.

The grid (9 x 8 = 72 points) is larger than one evaluation chunk of the
evaluator (at most 32 points, committed together), so a kill can land
between commits whatever the chunking.
"""

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
from lossmap.cli.entry import load_entry

FIXTURES = Path(__file__).parent / "cli_fixtures"
SLOW = FIXTURES / "slownet.py"
ALPHA, BETA = np.linspace(-1, 1, 9), np.linspace(-1, 1, 8)  # beta never 0: no point is the centre
N_POINTS = ALPHA.size * BETA.size
N_SAMPLES = 48  # samples of the single split (slownet.make_data)
KILL_AFTER = 8  # committed points before the kill
DELAY = 0.03  # seconds per forward in the run that gets killed

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL"),
    pytest.mark.usefixtures("one_thread"),  # see conftest
]


def scan_argv(out: Path) -> list[str]:
    return [
        "scan",
        "--model", f"{SLOW}:make_model",
        "--data", f"{SLOW}:make_data",
        "--dirs", "2",
        "--grid", "-1:1:9",
        "--grid", "-1:1:8",
        "--batch-size", "64",  # one batch per split: one forward per point
        "--out", str(out),
        "--no-progress",
    ]  # fmt: skip


def stored_rows(path: Path) -> dict[int, tuple]:
    """Every stored row, by flat index (a plain connection, after the writer is gone)."""
    conn = sqlite3.connect(str(path))
    try:
        cur = conn.execute("SELECT idx, alpha, beta, train_loss, train_accuracy FROM points")
        return {r[0]: r[1:] for r in cur}
    finally:
        conn.close()


def run_env(log: Path, delay: float) -> dict[str, str]:
    env = dict(os.environ)
    env["LOSSMAP_TEST_FORWARD_LOG"] = str(log)
    env["LOSSMAP_TEST_DELAY"] = str(delay)
    env["OMP_NUM_THREADS"] = "1"  # see one_thread
    src = str(Path(lm.__file__).parents[1])  # this checkout's lossmap, installed or not
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def forwards(log: Path) -> list[tuple[int, float]]:
    """(batch size, output-weight sum) of every forward a run logged."""
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(int(n), float(w)) for n, w in rows]


@pytest.mark.slow  # a Python process killed mid-scan: 2-4 s
def test_sigkill_then_resume_evaluates_each_point_once(tmp_path, monkeypatch, capsys):
    store = tmp_path / "plane.lossmap"
    cmd = [sys.executable, "-m", "lossmap", *scan_argv(store)]

    # 1. Start the scan, and kill it hard once some points are committed.
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=run_env(tmp_path / "forwards-1.log", DELAY),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    kill_when_committed(proc, store, KILL_AFTER, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    at_kill = stored_rows(store)
    n_kill = len(at_kill)
    assert KILL_AFTER <= n_kill < N_POINTS, f"{n_kill} points at the kill: not part-way"
    partial = lm.load(store)
    assert int(partial.done.sum()) == n_kill and not partial.complete

    # 2. Run the very same command again (in-process, to save a torch start-up):
    #    it resumes and finishes.
    log2 = tmp_path / "forwards-2.log"
    monkeypatch.setenv("LOSSMAP_TEST_FORWARD_LOG", str(log2))
    monkeypatch.setenv("LOSSMAP_TEST_DELAY", "0")
    monkeypatch.chdir(tmp_path)
    assert main(scan_argv(store)) == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err

    final = stored_rows(store)
    assert sorted(final) == list(range(N_POINTS))  # every flat index, once
    conn = sqlite3.connect(str(store))
    try:
        n_rows, n_distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT idx) FROM points"
        ).fetchone()
    finally:
        conn.close()
    assert n_rows == n_distinct == N_POINTS
    for i, row in at_kill.items():  # points finished before the kill are kept as they were
        assert final[i] == row

    # Forwards of the resumed run, in order: set-up checks on a few samples of the
    # split (check_on_sample at the centre; first-layer reuse's safety check at the
    # centre and at one point off it); the probe at the centre on the first
    # min(PROBE_SAMPLES, N) samples (here the whole split); one full-batch forward at the
    # centre for its per-example losses; then one full-batch forward per point still missing.
    from lossmap.backends.base import PROBE_SAMPLES
    from lossmap.backends.torch.firstlayer import CHECK_POINT

    model = load_entry(f"{SLOW}:make_model", what="test")()
    d1, d2 = lm.load_directions(store)
    w_c = model.out.weight.detach().double()
    a, b = CHECK_POINT
    off = w_c + a * d1["out.weight"].double() + b * d2["out.weight"].double()
    logged = forwards(log2)
    setup = [w for n, w in logged if n < N_SAMPLES]
    full = [w for n, w in logged if n == N_SAMPLES]
    assert len(setup) + len(full) == len(logged), f"unexpected batch sizes in {logged}"
    assert logged[: len(setup)] == [(n, w) for n, w in logged if n < N_SAMPLES], (
        "set-up forwards came after grid points"
    )
    assert len(setup) >= 2, "the few-sample checks (check_on_sample, reuse check) did not run"
    for w in setup:  # each at the centre or at the reuse check's point
        assert min(abs(w - float(w_c.sum())), abs(w - float(off.sum()))) < 1e-5, w
    assert PROBE_SAMPLES >= N_SAMPLES
    np.testing.assert_allclose(full[0], float(w_c.sum()), rtol=1e-6)  # the probe
    # the centre's per-example losses, which the paired standard errors subtract
    np.testing.assert_allclose(full[1], float(w_c.sum()), rtol=1e-6)
    points = full[2:]
    assert len(points) == N_POINTS - n_kill, (
        f"the resumed run evaluated {len(points)} grid points; {N_POINTS - n_kill} were missing"
    )
    # ... and they were exactly the points missing at the kill.
    expected = []
    for i in sorted(set(range(N_POINTS)) - set(at_kill)):
        ia, ib = np.unravel_index(i, (ALPHA.size, BETA.size))
        w = w_c + ALPHA[ia] * d1["out.weight"].double() + BETA[ib] * d2["out.weight"].double()
        expected.append(float(w.sum()))
    np.testing.assert_allclose(sorted(points), sorted(expected), rtol=0, atol=1e-5)

    # 3. The values equal those of an uninterrupted run (in-process, no log).
    monkeypatch.delenv("LOSSMAP_TEST_FORWARD_LOG")
    ref_store = tmp_path / "reference.lossmap"
    assert main(scan_argv(ref_store)) == 0
    resumed, reference = lm.load(store), lm.load(ref_store)
    assert resumed.complete and reference.complete
    assert resumed.fingerprints == reference.fingerprints
    assert resumed.spec == reference.spec
    for var in reference.values:
        np.testing.assert_allclose(resumed[var], reference[var], rtol=1e-6, atol=0)
