"""The SQLite store: resume without recomputation, refusal of other scans, damage, export."""

import sqlite3

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import lossmap as lm
from lossmap.errors import StoreError
from lossmap.store import Store, is_store


class Counting:
    """A loss that counts its calls (one per batch)."""

    def __init__(self, stop_after=None):
        self.calls = 0
        self.stop_after = stop_after

    def __call__(self, out, t):
        self.calls += 1
        if self.stop_after is not None and self.calls > self.stop_after:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, t)


def setup():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))
    X, y = torch.randn(40, 12), torch.randint(0, 3, (40,))
    return m, {"train": (X, y)}, lm.random_directions(m, 2, seed=0)


GRID = [(-1, 1, 5), (-0.5, 0.5, 4)]


def setup_calls(tmp_path, *, resumed=False):
    """Loss calls of a scan before its first grid point (shape check, probe…, and for a
    new store the round-off floor; a resumed store keeps the floor it was made with)."""
    path = tmp_path / ("resumed.lossmap" if resumed else "count.lossmap")
    if resumed:
        run(path, loss=Counting())
        with sqlite3.connect(path) as c:
            c.execute("DELETE FROM points")
    counter = Counting()
    run(path, loss=counter)
    return counter.calls - 20


def run(path, loss=None, **kw):
    m, data, dirs = setup()
    args = dict(data=data, directions=dirs, grid=GRID, store=path, progress=False, batch_size=100)
    args.update(kw)
    return lm.scan(m, loss or nn.CrossEntropyLoss(), **args)


def test_resume_evaluates_each_point_once(tmp_path):
    ref = run(tmp_path / "ref.lossmap", loss=Counting())  # the same reduction (a batch mean)
    setup = setup_calls(tmp_path)
    path = tmp_path / "s.lossmap"
    first = Counting(stop_after=setup + 7)  # the set-up checks, then 7 points
    with pytest.raises(KeyboardInterrupt):
        run(path, loss=first)
    assert lm.load(path).done.sum() == 7
    second = Counting()
    surf = run(path, loss=second)
    resumed_setup = setup_calls(tmp_path, resumed=True)
    assert resumed_setup < setup  # no round-off floor measured again
    assert second.calls == resumed_setup + 20 - 7  # the set-up checks + only the missing points
    assert surf.complete
    for v in ref.values:
        np.testing.assert_array_equal(surf[v], ref[v])
    third = Counting()
    run(path, loss=third)
    # nothing left to do: not even the pass over the data at the centre (one batch of 40)
    # that the paired standard errors need before the first point
    assert third.calls == resumed_setup - 1
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT COUNT(*), COUNT(DISTINCT idx) FROM points").fetchone() == (20, 20)


def test_progressive_order_covers_the_range_first(tmp_path):
    path = tmp_path / "p.lossmap"
    with pytest.raises(KeyboardInterrupt):
        run(path, loss=Counting(stop_after=setup_calls(tmp_path) + 4))
    done = lm.load(path).done
    assert done[0, 0] and done[-1, -1] and done[0, -1] and done[-1, 0]  # corners first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(grid=[(-1, 1, 5), (-0.5, 0.5, 6)]), "grid -1:1:5 x -0.5:0.5:4 stored vs"),
        (dict(samples=20), "samples None stored vs 20 now"),
        (dict(metrics=("loss",)), "metrics"),
        (dict(data="other"), "the data of split 'train' differs"),
        (dict(directions="other"), "direction 0 differs"),
        (dict(centre="other"), "the centre weights differ"),
    ],
)
def test_other_scan_is_refused_and_store_untouched(tmp_path, change, message):
    path = tmp_path / "s.lossmap"
    run(path)
    before = path.read_bytes()
    m, data, _dirs = setup()
    if change.get("data") == "other":
        change["data"] = {"train": (data["train"][0] + 1, data["train"][1])}
    if change.get("directions") == "other":
        change["directions"] = lm.random_directions(m, 2, seed=1)
    if change.get("centre") == "other":
        change["centre"] = {k: v + 0.01 for k, v in m.state_dict().items()}
    with pytest.raises(StoreError, match=message) as err:
        run(path, **change)
    assert "another output path" in str(err.value)
    assert path.read_bytes() == before


def test_not_a_store_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.lossmap"
    path.write_text("my precious notes\n" * 20)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a lossmap store"):
        run(path)
    assert path.read_bytes() == before
    other_db = tmp_path / "other.db"
    with sqlite3.connect(other_db) as c:
        c.execute("CREATE TABLE t(x)")
    before = other_db.read_bytes()
    with pytest.raises(StoreError, match="not a lossmap store"):
        run(other_db)
    assert other_db.read_bytes() == before
    assert not is_store(other_db) and not is_store(tmp_path / "missing")


def test_damaged_store_is_reported(tmp_path):
    path = tmp_path / "s.lossmap"
    run(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = b"\xff" * (len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(StoreError, match="damaged"):
        lm.load(path)
    assert path.read_bytes() == before


def test_load_missing_store():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lm.load("no/such/file.lossmap")


def test_store_holds_spec_fingerprints_and_directions(tmp_path):
    path = tmp_path / "s.lossmap"
    surf = run(path)
    _m, _data, dirs = setup()
    with Store.open(path) as store:
        assert store.spec == surf.spec
        assert store.fingerprints["dir_0"] == dirs[0].fingerprint()
        stored = store.directions()
    assert [d.meta for d in stored] == [d.meta for d in dirs]
    for a, b in zip(stored, dirs, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert lm.load_directions(path)[1].fingerprint() == dirs[1].fingerprint()


def test_surface_exports(tmp_path):
    surf = run(tmp_path / "s.lossmap")
    ds = surf.to_xarray()
    assert ds["train_loss"].dims == ("alpha", "beta")
    assert set(ds.data_vars) >= {"train_loss", "train_accuracy", "done"}
    assert lm.ScanSpec.from_dict(__import__("json").loads(ds.attrs["spec"])) == surf.spec
    nc = surf.to_netcdf(tmp_path / "s.nc")
    back = xr.open_dataset(nc, engine="scipy")
    np.testing.assert_allclose(back["train_loss"].values, surf["train_loss"])
    np.testing.assert_allclose(back["beta"].values, np.linspace(-0.5, 0.5, 4))
    csv = surf.to_csv(tmp_path / "s.csv")
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == 20 and list(df.columns[:2]) == ["alpha", "beta"]
    row = df[(df.alpha == 1.0) & (np.isclose(df.beta, -0.5))]
    assert row.train_loss.item() == pytest.approx(surf["train_loss"][-1, 0], rel=1e-8)


def test_two_processes_writing_the_same_points_keep_one_row(tmp_path):
    path = tmp_path / "s.lossmap"
    run(path)
    store = Store.open(path, write=True)
    n = store.write([(0, (0.0, 0.0), [9.0, 9.0], 0.1)])
    assert n == 0  # first writer wins
    assert store.rows()[1][0] != [9.0, 9.0]
    store.close()


def test_partial_store_fills_the_whole_picture(tmp_path):
    path = tmp_path / "p.lossmap"
    with pytest.raises(KeyboardInterrupt):
        run(path, loss=Counting(stop_after=setup_calls(tmp_path) + 8))
    part = lm.load(path)
    assert part.done.sum() == 8 and np.isnan(part["train_loss"]).sum() == 12
    full = part.filled()
    assert full.meta["partial"] == {"done": 8, "points": 20}
    assert np.isfinite(full["train_loss"]).all()
    np.testing.assert_array_equal(full["train_loss"][part.done], part["train_loss"][part.done])
    ref = run(tmp_path / "ref.lossmap")
    lo, hi = ref["train_loss"].min(), ref["train_loss"].max()
    assert (full["train_loss"] >= lo - 0.5 * (hi - lo)).all()  # interpolation stays in range
    assert ref.filled() is ref
