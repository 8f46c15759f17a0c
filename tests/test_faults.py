"""Faults: a full disk, two processes on one store, reading a store while it is written."""

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.errors import StoreError


def setup():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))
    X, y = torch.randn(30, 12), torch.randint(0, 3, (30,))
    return m, {"train": (X, y)}, lm.random_directions(m, 2, seed=0)


def test_full_disk_is_a_clean_error_and_keeps_finished_points(tmp_path):
    m, data, dirs = setup()
    path = tmp_path / "s.lossmap"
    kw = dict(
        data=data, directions=dirs, grid=[(-1, 1, 25), (-1, 1, 25)], store=path, progress=False
    )
    # set-up checks, the round-off floor's 5 points in float32 and float64, the slopes at
    # the centre (one call per direction: a metric without per-example terms is asked once)
    # and the centre's per-example pass; then points
    calls, limit = [], [6 + 10 + 2 + 1]

    def loss(out, t):  # stop after a few points, then shrink the "disk" and resume
        calls.append(1)
        if len(calls) > limit[0]:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, t)

    with pytest.raises(KeyboardInterrupt):
        lm.scan(m, loss, **kw)
    with sqlite3.connect(path) as c:
        pages = c.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own size limit makes every later write fail with SQLITE_FULL.
    real_connect = lm.store.Store._connect

    def tiny_disk(p):
        conn = real_connect(p)
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    limit[0] = 10**9
    lm.store.Store._connect = staticmethod(tiny_disk)
    try:
        with pytest.raises(StoreError, match=r"full.*finished points are kept"):
            lm.scan(m, loss, **kw)
    finally:
        lm.store.Store._connect = staticmethod(real_connect)
    kept = lm.load(path)
    assert 5 <= kept.done.sum() < 625
    done = lm.scan(m, loss, **kw)  # space again: resume to the end
    assert done.complete


SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    import lossmap as lm
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3))
    X, y = torch.randn(30, 12), torch.randint(0, 3, (30,))

    def loss(out, t):  # slow enough that a round of about 1 s is some 50 points, not all
        time.sleep(0.02)
        return nn.functional.cross_entropy(out, t)

    lm.scan(m, loss, data={"train": (X, y)},
            directions=lm.random_directions(m, 2, seed=0), grid=[(-1, 1, 13), (-1, 1, 13)],
            store=sys.argv[1], progress=False)
""")


@pytest.mark.slow  # two Python processes, 169 slowed points: 10-30 s
def test_two_processes_on_one_store_cooperate_safely(tmp_path):
    path = tmp_path / "s.lossmap"
    script = tmp_path / "scan.py"
    script.write_text(SCRIPT)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    seen_partial = []
    while any(p.poll() is None for p in procs):  # a reader meanwhile: always a valid picture
        try:
            surf = lm.load(path)
            seen_partial.append(int(surf.done.sum()))
        except (FileNotFoundError, StoreError):
            pass
    errs = [p.stderr.read().decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM points").fetchone() == (
            169,
            169,
        )
    m, data, dirs = setup()
    ref = lm.scan(
        m,
        nn.CrossEntropyLoss(),
        data=data,
        directions=dirs,
        grid=[(-1, 1, 13), (-1, 1, 13)],
        progress=False,
    )
    np.testing.assert_allclose(lm.load(path)["train_loss"], ref["train_loss"], rtol=1e-6)
    # the reader read the store while it was written and saw it grow to the end
    assert any(0 < n < 169 for n in seen_partial), (
        f"the reader saw no partial store while it was written: {sorted(set(seen_partial))}"
    )
    seen_partial.append(int(lm.load(path).done.sum()))
    assert seen_partial == sorted(seen_partial) and seen_partial[-1] == 169, seen_partial
