"""Store reliability (issue 17: items 2, 3, 5, 8, 9; issue 12: user metadata).

- leftover SQLite files of a deleted store never leak into a new store at its path;
- a finished store reads in a read-only folder, and readers never write;
- a store that opens but holds bad contents gives one StoreError line naming the damage;
- two processes creating the same store with side files leave directions that verify;
- a resume by another computation (the probe at the centre differs) is refused;
- the caller's ``meta`` has its own namespace and cannot damage the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.cli import main
from lossmap.errors import StoreError
from lossmap.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "cli_fixtures"
SRC = str(Path(lm.__file__).parents[1])  # this checkout's lossmap, installed or not
GRID = [(-1, 1, 5), (-0.5, 0.5, 4)]


def setup():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))
    X, y = torch.randn(40, 12), torch.randint(0, 3, (40,))
    return m, {"train": (X, y)}, lm.random_directions(m, 2, seed=0)


def run(path, loss=None, **kw):
    m, data, dirs = setup()
    args = dict(data=data, directions=dirs, grid=GRID, store=path, progress=False, batch_size=100)
    args.update(kw)
    return lm.scan(m, loss or nn.CrossEntropyLoss(), **args)


class Stop:
    """A cross-entropy loss that raises KeyboardInterrupt after ``n`` calls."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self, out, t):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, t)


def raw_points(path) -> dict[int, tuple]:
    """Every row of the points table, read by plain SQLite (the independent reference)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0]: r[1:] for r in conn.execute("SELECT idx, train_loss FROM points")}
    finally:
        conn.close()


def cli(argv, capsys) -> tuple[int, str]:
    """Run the CLI in-process; (exit status, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line(code, err, *needles):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err, err


def same_surface(a, b):
    assert a.spec == b.spec and a.fingerprints == b.fingerprints
    np.testing.assert_array_equal(a.done, b.done)
    for v in b.values:
        np.testing.assert_array_equal(a[v], b[v])


# -- item 2: leftover side files of a deleted store -----------------------------------
KILL_SCRIPT = textwrap.dedent("""
    import importlib.util, sys, torch
    import lossmap as lm
    spec = importlib.util.spec_from_file_location("killnet", sys.argv[2])
    killnet = importlib.util.module_from_spec(spec); spec.loader.exec_module(killnet)
    torch.set_num_threads(1)
    m = killnet.make_model()
    lm.scan(m, torch.nn.CrossEntropyLoss(), data=killnet.make_data(),
            directions=lm.random_directions(m, 2, seed=0), grid=[(-1, 1, 11), (-1, 1, 11)],
            store=sys.argv[1], progress=False, batch_size=64, strategy="loop")
""")


def killnet():
    spec = importlib.util.spec_from_file_location("killnet", FIXTURES / "killnet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def killnet_scan(path, seed, n):
    kn = killnet()
    m = kn.make_model()
    return lm.scan(m, nn.CrossEntropyLoss(), data=kn.make_data(),
                   directions=lm.random_directions(m, 2, seed=seed), grid=[(-1, 1, n)] * 2,
                   store=path, progress=False, batch_size=64, strategy="loop")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A scan SIGKILLed part-way (a real kill): the store with its -wal and -shm files."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs POSIX SIGKILL")
    d = tmp_path_factory.mktemp("killed")
    script = d / "scan.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", LOSSMAP_TEST_DELAY="0.05",
               LOSSMAP_TEST_KILL_AT="60", LOSSMAP_TEST_KILL_RANK="0",
               TORCHELASTIC_RESTART_COUNT="0",
               PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    env.pop("LOSSMAP_TEST_FORWARD_LOG", None)
    store = d / "s.lossmap"
    proc = subprocess.run([sys.executable, str(script), str(store), str(FIXTURES / "killnet.py")],
                          env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    wal = Path(f"{store}-wal")
    # the log holds committed points the store file itself does not: the dangerous case
    assert wal.exists() and wal.stat().st_size > 32 + 2 * (24 + 4096)
    assert Path(f"{store}-shm").exists()
    assert 0 < len(raw_points(store)) < 121
    return d


def copy_killed(killed, to: Path) -> Path:
    to.mkdir(exist_ok=True)
    for f in killed.glob("s.lossmap*"):
        shutil.copy(f, to / f.name)
    return to / "s.lossmap"


@pytest.mark.slow  # a scan killed in a subprocess: seconds
@pytest.mark.parametrize("n", [11, 7], ids=["same-grid", "other-grid"])
def test_a_deleted_store_leaves_nothing_to_a_new_one(killed, tmp_path, n):
    path = copy_killed(killed, tmp_path / "runs")
    path.unlink()  # the user deletes the store file only, as the refusal message says
    assert Path(f"{path}-wal").exists()
    again = killnet_scan(path, seed=1, n=n)  # other settings, same path
    clean = killnet_scan(tmp_path / "clean.lossmap", seed=1, n=n)
    same_surface(again, clean)
    same_surface(lm.load(path), lm.load(tmp_path / "clean.lossmap"))
    assert sorted(raw_points(path)) == list(range(n * n))


HOT_JOURNAL = textwrap.dedent("""
    import os, sqlite3, sys
    c = sqlite3.connect(sys.argv[1], isolation_level=None)
    c.execute("PRAGMA journal_mode = DELETE")
    c.execute("PRAGMA cache_size = 2")  # changed pages spill to the file before the commit
    c.execute("CREATE TABLE t(x)")
    c.execute("BEGIN")
    for _ in range(200):
        c.execute("INSERT INTO t VALUES (?)", (b"x" * 3000,))
    c.execute("COMMIT")
    c.execute("BEGIN")
    c.execute("UPDATE t SET x = ?", (b"y" * 3000,))
    os._exit(0)  # killed mid-transaction: a hot rollback journal stays
""")


def test_a_leftover_rollback_journal_is_not_rolled_into_a_new_store(tmp_path):
    """SQLite rolls a hot -journal back into whatever file then has its name."""
    path = tmp_path / "s.lossmap"
    script = tmp_path / "hot.py"
    script.write_text(HOT_JOURNAL)
    subprocess.run([sys.executable, str(script), str(path)], check=True, timeout=60)
    assert Path(f"{path}-journal").stat().st_size > 100_000
    path.unlink()
    same_surface(run(path), run(tmp_path / "clean.lossmap"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.lossmap", "hot.py", "s.lossmap"]


# -- item 5: read-only -----------------------------------------------------------------
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` and its files read-only for this thread, for real.

    ``chmod`` alone does not stop root, who bypasses file permissions through
    the capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. As root, this
    thread drops those two from its effective set (Linux ``capset``; still
    permitted, so they come back afterwards). The folder is then checked to
    refuse a new file, or the test is skipped.
    """
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    restore = None
    try:
        if os.geteuid() == 0:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                hdr, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
                if libc.capget(ctypes.byref(hdr), data) != 0:
                    raise OSError(ctypes.get_errno(), "capget")
                saved = data[0].effective
                data[0].effective &= ~((1 << 1) | (1 << 2))
                if libc.capset(ctypes.byref(hdr), data) != 0:
                    raise OSError(ctypes.get_errno(), "capset")
            except (OSError, AttributeError) as exc:
                pytest.skip(f"cannot make a folder read-only for root here ({exc})")

            def restore():
                data[0].effective = saved
                libc.capset(ctypes.byref(hdr), data)

        try:
            (folder / "probe-file").touch()
        except PermissionError:
            pass
        else:
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if restore is not None:
            restore()
        for p, mode in modes.items():
            p.chmod(mode)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_finished_store_reads_in_a_read_only_folder(tmp_path, capsys):
    folder, out = tmp_path / "ro", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    path = folder / "s.lossmap"
    surf = run(path, meta={"note": "kept"})
    _m, _data, dirs = setup()
    before = listing(folder)
    assert list(before) == ["s.lossmap"]  # a finished store: the -wal was checkpointed away
    with read_only(folder):
        back = lm.load(path)
        with Store.open(path) as store:
            stored = store.directions()
        info = cli(["info", path], capsys)
        export = cli(["export", path, "-o", out / "s.nc"], capsys)
        report = cli(["report", path, "-o", out / "r.html"], capsys)
    assert listing(folder) == before  # nothing created, nothing written
    same_surface(back, surf)
    assert back.meta["note"] == "kept"
    assert [d.fingerprint() for d in stored] == [d.fingerprint() for d in dirs]
    for code, err in (info, export, report):
        assert code == 0 and "Traceback" not in err, err
    assert (out / "s.nc").stat().st_size > 0 and (out / "r.html").stat().st_size > 0


@pytest.mark.slow  # a subprocess scan or race: seconds
def test_store_with_pending_log_reads_in_a_read_only_folder(killed, tmp_path):
    path = copy_killed(killed, tmp_path / "ro")
    rows = raw_points(path)  # (a mode=ro reader: writes nothing either)
    before = listing(path.parent)
    with read_only(path.parent):
        part = lm.load(path)
    assert listing(path.parent) == before
    assert int(part.done.sum()) == len(rows)
    flat = part["train_loss"].reshape(-1)
    for i, (v,) in rows.items():
        assert flat[i] == v


@pytest.mark.slow  # a subprocess scan or race: seconds
def test_pending_log_without_its_index_in_a_read_only_folder_is_one_clear_line(killed, tmp_path):
    """SQLite cannot read a -wal without the -shm it may not create: say so, never skip it."""
    path = copy_killed(killed, tmp_path / "ro")
    Path(f"{path}-shm").unlink()
    pending = "writes pending in 's.lossmap-wal'"
    with read_only(path.parent), pytest.raises(StoreError, match=re.escape(pending)):
        lm.load(path)


def test_readers_leave_the_folder_as_it_was(tmp_path, capsys):
    """Reading (load, open, info, export) adds no file beside a store and changes no byte."""
    path = tmp_path / "s.lossmap"
    run(path)
    before = listing(tmp_path)
    lm.load(path)
    with Store.open(path) as store:
        store.directions()
        with pytest.raises(StoreError, match="opened to read"):
            store.write([(0, (0.0, 0.0), [1.0, 1.0], 0.1)])
    assert cli(["info", path], capsys)[0] == 0
    assert listing(tmp_path) == before


@pytest.mark.slow  # a subprocess scan or race: seconds
def test_reader_of_a_killed_scan_sees_its_log(killed, tmp_path):
    path = copy_killed(killed, tmp_path / "w")
    rows = raw_points(path)
    part = lm.load(path)
    assert int(part.done.sum()) == len(rows) and raw_points(path) == rows


def test_resume_in_a_read_only_folder_is_refused_plainly(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "s.lossmap"
    with pytest.raises(KeyboardInterrupt):
        run(path, loss=Stop(6))
    with read_only(folder), pytest.raises(StoreError) as err:
        run(path)
    assert "damaged" not in str(err.value)
    assert "writ" in str(err.value)  # cannot be written / cannot write


def test_store_in_a_read_only_folder_cannot_be_created_plainly(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        with pytest.raises(StoreError, match=r"cannot create store .*: check that its folder"):
            run(folder / "s.lossmap")
        with pytest.raises(StoreError, match="cannot create store"):
            run(folder / "sub" / "s.lossmap")
    assert list(folder.iterdir()) == []


# -- item 8: stores that open but hold bad contents ----------------------------------------
@pytest.fixture(scope="module")
def good_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "s.lossmap"
    run(path, meta={"note": "n"})
    return path


DAMAGE = {
    "spec-json": ("UPDATE meta SET value = '{\"grid\": [' WHERE key = 'spec'",
                  "meta 'spec' is not valid JSON"),
    "spec-content": ("UPDATE meta SET value = '{\"grid\": 5}' WHERE key = 'spec'",
                     "meta 'spec' is not a valid scan spec"),
    "spec-missing": ("DELETE FROM meta WHERE key = 'spec'", "meta 'spec' is missing"),
    "fingerprints-json": ("UPDATE meta SET value = 'not json' WHERE key = 'fingerprints'",
                          "meta 'fingerprints' is not valid JSON"),
    "fingerprints-list": ("UPDATE meta SET value = '[1, 2]' WHERE key = 'fingerprints'",
                          "meta 'fingerprints' is not a mapping of names to hash strings"),
    "fingerprints-number": ("UPDATE meta SET value = '{\"centre\": 5}' WHERE key = 'fingerprints'",
                            "meta 'fingerprints' is not a mapping of names to hash strings"),
    "probe": ("INSERT OR REPLACE INTO meta VALUES ('probe', '\"x\"')",
              "meta 'probe' is not a mapping of variable names to numbers"),
    "user-meta-json": ("UPDATE user_meta SET value = '{' WHERE key = 'note'",
                       "user meta 'note' is not valid JSON"),
    "meta-blob": ("UPDATE meta SET value = X'00' WHERE key = 'created'",
                  "meta 'created' holds a bytes, not JSON text"),
    "text-in-values": ("UPDATE points SET train_loss = 'abc' WHERE idx = 3",
                       "point 3 holds 'abc' in the column 'train_loss', not a number"),
    "blob-in-values": ("UPDATE points SET train_accuracy = X'0102' WHERE idx = 7",
                       "point 7 holds b'\\x01\\x02' in the column 'train_accuracy'"),
    "index-outside": ("UPDATE points SET idx = 999 WHERE idx = 0",
                      "a point index 999 lies outside the 20-point grid"),
    "file-outside": ("UPDATE directions SET data = NULL, file = '../outside.safetensors' "
                     "WHERE idx = 0",
                     "direction 0: '../outside.safetensors' is not a file name beside the store"),
    "file-absolute": ("UPDATE directions SET data = NULL, file = '/etc/passwd' WHERE idx = 1",
                      "direction 1: '/etc/passwd' is not a file name beside the store"),
    "direction-missing": ("DELETE FROM directions WHERE idx = 1",
                          "it holds directions [0] for a 2-D grid"),
    "no-points-table": ("DROP TABLE points", "its table 'points' is missing"),
    "no-meta-table": ("DROP TABLE meta", "its table 'meta' is missing"),
    "no-user-meta-table": ("DROP TABLE user_meta", "its table 'user_meta' is missing"),
    "bad-utf8": ("UPDATE meta SET value = CAST(X'22FF22' AS TEXT) WHERE key = 'created'",
                 "SQLite reports: Could not decode to UTF-8"),
    "column-missing": ("ALTER TABLE points DROP COLUMN train_accuracy",
                       "the points table lacks the column 'train_accuracy' of the spec"),
}


def damaged_copy(good_store, tmp_path, sql) -> Path:
    path = tmp_path / "s.lossmap"
    shutil.copy(good_store, path)
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_contents_give_one_line(good_store, tmp_path, capsys, kind):
    sql, what = DAMAGE[kind]
    path = damaged_copy(good_store, tmp_path, sql)
    before = path.read_bytes()
    expected = f"store {str(path)!r} is damaged: {what}"
    with pytest.raises(StoreError) as err:
        lm.load(path)
    assert expected in str(err.value) and "delete it to start over" in str(err.value)
    with pytest.raises(StoreError, match="is damaged: "):
        Store.open(path)
    with pytest.raises(StoreError, match="is damaged: "):
        lm.load_directions(path)
    assert_one_line(*cli(["info", path], capsys), expected)
    assert_one_line(*cli(["report", path, "-o", tmp_path / "r.html"], capsys), expected)
    assert_one_line(*cli(["export", path, "-o", tmp_path / "e.csv"], capsys), expected)
    assert path.read_bytes() == before  # left untouched
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "e.csv").exists()


@pytest.mark.slow  # a lossmap process
def test_damaged_store_through_the_real_command_line(good_store, tmp_path):
    path = damaged_copy(good_store, tmp_path, DAMAGE["fingerprints-json"][0])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "lossmap", "info", str(path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert_one_line(proc.returncode, proc.stderr, "meta 'fingerprints' is not valid JSON")


def test_side_file_changed_on_disk_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr("lossmap.store.contents.INLINE_LIMIT", 0)
    path = tmp_path / "s.lossmap"
    run(path)
    sides = sorted(tmp_path.glob("s.lossmap.d*.safetensors"))
    assert len(sides) == 2
    sides[1].write_bytes(sides[1].read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(StoreError, match=r"direction 1 .* is corrupt"):
        lm.load_directions(path)
    sides[1].unlink()
    with pytest.raises(StoreError, match="which is missing"):
        lm.load_directions(path)


# -- item 9: two processes creating the same store with side files ---------------------------
RACE_SCRIPT = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    import lossmap as lm
    import lossmap.store.contents
    from lossmap.errors import StoreError
    from lossmap.scan.spec import ScanSpec
    from lossmap.store import Store

    lossmap.store.contents.INLINE_LIMIT = 0  # every direction to a side file
    torch.set_num_threads(1)
    folder, me, reps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    net = torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 256))
    spec = ScanSpec(grid=[(-1, 1, 3), (-1, 1, 3)], splits=("train",), metrics=("loss",))


    def arrived(what, r):
        (folder / f"{what}-{r}-{me}").touch()
        return len(list(folder.glob(f"{what}-{r}-*"))) == 2


    for r in range(reps):
        # even repetitions: the same scan twice; odd ones: b scans other directions
        seed = r % 2 if me == "b" else 0
        dirs = lm.random_directions(net, 2, seed=seed, norm="none")
        fps = {f"dir_{i}": d.fingerprint() for i, d in enumerate(dirs)}
        arrived("ready", r)
        while not arrived("ready", r):  # a barrier: both start each creation together
            time.sleep(0.0002)
        try:
            with Store.create_or_resume(folder / f"s{r}.lossmap", spec, fps, dirs) as store:
                ok = True
                while True:  # read while the other process creates (or is refused)
                    got = store.directions()
                    ok &= all(torch.equal(a[k], b[k]) for a, b in zip(got, dirs) for k in b)
                    if arrived("made", r):
                        break
            print(r, "ok" if ok else "different", flush=True)
        except StoreError as exc:
            arrived("made", r)
            print(r, "refused" if "holds a different scan" in str(exc) else repr(exc), flush=True)
""")


@pytest.mark.slow  # a subprocess scan or race: seconds
def test_two_processes_creating_one_store_leave_directions_that_verify(tmp_path):
    """Each repetition: a and b create one store at once, with directions in side files.

    With the same directions both succeed; with different ones the first wins and
    the other is refused. Either way the store's directions verify, by hash and
    against the originals of the scan its fingerprints name (in lossmap 0.1 the
    loser's side file replaced the winner's, under the same name).
    """
    reps = 12
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    folder = tmp_path / "stores"
    folder.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), me, str(reps)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    results = [dict(line.split(" ", 1) for line in out.splitlines()) for out, _ in outs]
    net = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 256))
    originals = {s: lm.random_directions(net, 2, seed=s, norm="none") for s in (0, 1)}
    by_fingerprint = {d[0].fingerprint(): d for d in originals.values()}
    for r in range(reps):
        outcome = sorted(res[str(r)] for res in results)
        assert outcome == (["ok", "ok"] if r % 2 == 0 else ["ok", "refused"]), (r, outcome)
        path = folder / f"s{r}.lossmap"
        with Store.open(path) as store:
            dirs = by_fingerprint[store.fingerprints["dir_0"]]
            stored = store.directions()  # verified against the stored hashes
        for a, b in zip(stored, dirs, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in b)
        # the loser removed its own side files: two per store, none left over
        assert len(list(folder.glob(f"s{r}.lossmap.d*.safetensors"))) == 2
    assert not list(folder.glob("*.tmp"))


# -- item 3 (store side): the probe --------------------------------------------------------
@pytest.fixture
def parts(tmp_path):
    """(spec, fingerprints, directions) of a real scan."""
    surf = run(tmp_path / "ref.lossmap")
    return surf.spec, surf.fingerprints, setup()[2]


def test_probe_is_recorded_and_a_different_computation_refused(tmp_path, parts):
    path = tmp_path / "s.lossmap"
    probe = {"train_loss": 1.1314, "train_accuracy": 0.25}
    Store.create_or_resume(path, *parts, probe=probe).close()
    with Store.open(path) as store:
        assert store.probe == probe
    before = path.read_bytes()
    near = {"train_loss": 1.1314 * (1 + 0.9e-4), "train_accuracy": 0.25 + 0.9e-4}
    Store.create_or_resume(path, *parts, probe=near).close()  # within the tolerance
    with pytest.raises(StoreError) as err:
        Store.create_or_resume(path, *parts, probe={**probe, "train_loss": 1.2489})
    assert str(err.value) == (
        f"store {str(path)!r} was filled by another computation: at the centre, 'train_loss' "
        "on the probe sample is 1.2489 now but 1.1314 in the store — another model, loss "
        "setting or metric; use another store path or delete it to start over"
    )
    with pytest.raises(StoreError, match=r"'train_accuracy' on the probe sample is 0\.2502 now"):
        Store.create_or_resume(path, *parts, probe={**probe, "train_accuracy": 0.2502})
    assert path.read_bytes() == before
    Store.create_or_resume(path, *parts).close()  # no probe now: nothing to compare


@pytest.mark.parametrize(
    ("stored", "now", "accepted"),
    [
        (math.nan, math.nan, True),
        (math.nan, 1.0, False),
        (math.inf, math.inf, True),
        (math.inf, 1e300, False),
        (1e-5, 8e-5, True),  # below 1 the tolerance is absolute: 1e-4
        (1e-5, 1.2e-4, False),
        (1000.0, 1000.09, True),  # above 1, relative
        (1000.0, 1000.11, False),
    ],
)
def test_probe_tolerance(tmp_path, parts, stored, now, accepted):
    path = tmp_path / "s.lossmap"
    Store.create_or_resume(path, *parts, probe={"train_loss": stored}).close()
    if accepted:
        Store.create_or_resume(path, *parts, probe={"train_loss": now}).close()
    else:
        with pytest.raises(StoreError, match="filled by another computation"):
            Store.create_or_resume(path, *parts, probe={"train_loss": now})


def test_store_without_probe_is_resumed(tmp_path, parts):
    """Stores of lossmap 0.1 recorded no probe: a resume with one is accepted."""
    path = tmp_path / "s.lossmap"
    Store.create_or_resume(path, *parts).close()
    with Store.create_or_resume(path, *parts, probe={"train_loss": 7.0}) as store:
        assert store.probe is None


def test_scan_records_the_probe_at_the_centre(tmp_path):
    """The scan's probe (the lead's side) reaches the store: the values at the centre."""
    path = tmp_path / "s.lossmap"
    run(path)
    with Store.open(path) as store:
        probe = store.probe
    assert probe is not None, "the scan recorded no probe"
    m, data, _ = setup()
    X, y = data["train"]
    with torch.no_grad():
        out = m(X[:64])
    assert probe["train_loss"] == pytest.approx(float(nn.functional.cross_entropy(out, y[:64])))


# -- issue 12: the caller's metadata ----------------------------------------------------------
USER_META = {"spec": "mine", "fingerprints": [1, 2], "version": 3, "lossmap_version": "0.0",
             "probe": {"train_loss": "not a number"}, "created": None, "store_format": "x"}


def test_user_meta_has_its_own_namespace(tmp_path, capsys):
    path = tmp_path / "s.lossmap"
    setup_calls = Stop(10**9)
    ref = run(tmp_path / "ref.lossmap", loss=setup_calls)
    with pytest.raises(KeyboardInterrupt):
        run(path, loss=Stop(setup_calls.calls - 20 + 6), meta=USER_META)
    part = lm.load(path)
    assert 0 < part.done.sum() < 20
    for key, value in USER_META.items():
        assert part.meta[key] == value
    with Store.open(path) as store:
        assert store.user_meta() == USER_META
        assert store.spec == ref.spec and store.fingerprints == ref.fingerprints
        assert store.meta("lossmap_version") == lm.__version__  # the store's own record
    full = run(path, loss=Stop(10**9), meta=USER_META)  # resumes
    same_surface(full, ref)
    assert lm.load(path).meta["spec"] == "mine"
    code, err = cli(["info", path], capsys)
    assert code == 0, err


def test_stores_of_lossmap_0_1_keep_their_user_meta(tmp_path):
    """Format 1: the caller's keys in ``meta`` beside the store's own; they read and resume."""
    path = tmp_path / "s.lossmap"
    setup_calls = Stop(10**9)  # loss calls before the first point: checks, probe, round-off
    ref = run(tmp_path / "ref.lossmap", loss=setup_calls)
    with pytest.raises(KeyboardInterrupt):
        run(path, loss=Stop(setup_calls.calls - 20 + 3),
            meta={"command": {"grid": [1]}, "path": [[0, 1]]})
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO meta SELECT key, value FROM user_meta")
    conn.execute("DROP TABLE user_meta")
    conn.execute("DELETE FROM meta WHERE key IN ('store_format', 'probe', 'roundoff', 'samples', "
                 "'slopes')")
    for (col,) in conn.execute("SELECT name FROM pragma_table_info('points')").fetchall():
        if col.endswith(("_se", "_dse")):  # 0.1 kept no standard errors
            conn.execute(f'ALTER TABLE points DROP COLUMN "{col}"')
    conn.commit()
    conn.close()
    part = lm.load(path)
    assert part.meta["command"] == {"grid": [1]} and part.meta["path"] == [[0, 1]]
    assert "lossmap_version" in part.meta and "spec" not in part.meta
    with Store.open(path) as store:
        assert store.user_meta() == {"command": {"grid": [1]}, "path": [[0, 1]]}
        assert store.probe is None
    same_surface(run(path, loss=Stop(10**9)), ref)


def test_meta_keys_must_be_strings(tmp_path):
    with pytest.raises(TypeError, match="meta key 1 is a int"):
        run(tmp_path / "s.lossmap", meta={1: "x"})
    assert not (tmp_path / "s.lossmap").exists()


def test_refused_resume_closes_its_connection(tmp_path, parts):
    """A store refused at resume is not left open (a Windows user could not delete it)."""
    path = tmp_path / "s.lossmap"
    Store.create_or_resume(path, *parts, probe={"train_loss": 1.0}).close()
    closed = []
    real = Store.close
    try:
        Store.close = lambda self: (closed.append(True), real(self))
        with pytest.raises(StoreError):
            Store.create_or_resume(path, *parts, probe={"train_loss": 2.0})
    finally:
        Store.close = real
    assert closed == [True]


def test_created_stores_leave_no_temporary_files(tmp_path):
    run(tmp_path / "s.lossmap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.lossmap"]
