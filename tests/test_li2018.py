"""Li et al.'s HDF5 files in: surfaces and directions of the reference code (lossmap.interop).

Every file here is written by the test itself, the way the reference code
(``loss-landscape``: ``plot_surface.py``, ``scheduler.py``, ``h5_util.py``)
writes it: a plane's array is allocated with shape (nx, ny), all -1, and the
value at ``(x[i], y[j])`` goes to flat index ``k`` of ``np.meshgrid(x, y)``,
that is ``j * nx + i``; accuracy is in percent. Expected values come from the
function itself, evaluated point by point in float64 (a brute-force loop), never
from the array the file holds.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.cli.main import main
from lossmap.errors import InputError, MissingFileError
from lossmap.interop import import_li_surface, load_li_directions, load_li_surface

TINY = Path(__file__).parent / "cli_fixtures" / "tinynet.py"


def loss_at(a: float, b: float = 0.0) -> float:
    """A made-up loss: positive everywhere (never -1), and f(a, b) != f(b, a)."""
    return 1.0 + a * a + (b - 0.3) ** 2 + 0.1 * a * b


def acc_at(a: float, b: float = 0.0) -> float:
    """A made-up accuracy in percent, as the reference code stores it."""
    return 100.0 * math.exp(-(a * a + 0.5 * b * b)) * (0.9 + 0.05 * a)


def test_loss_at_and_acc_at_tell_the_axes_apart():  # else a transposed read could pass
    assert loss_at(0.5, -1.0) != loss_at(-1.0, 0.5)
    assert acc_at(0.5, -1.0) != acc_at(-1.0, 0.5)


def write_surface(path, x, y=None, fns=None, *, skip=(), dir_file=None, shape=None):
    """A surface file as plot_surface.py writes it; ``skip``: flat indices left at -1."""
    fns = fns or {"train_loss": loss_at, "train_acc": acc_at}
    x = np.asarray(x, dtype=np.float64)
    with h5py.File(path, "w") as f:
        if dir_file is not None:
            f["dir_file"] = dir_file
        f["xcoordinates"] = x
        if y is not None:
            y = np.asarray(y, dtype=np.float64)
            f["ycoordinates"] = y
            xm, ym = np.meshgrid(x, y)  # scheduler.get_unplotted_indices
            points = list(zip(xm.ravel(), ym.ravel(), strict=True))
            alloc = (len(x), len(y))  # crunch(): shape (len(x), len(y))
        else:
            points = [(a, 0.0) for a in x]
            alloc = x.shape
        for name, fn in fns.items():
            vals = -np.ones(shape=alloc)
            for k, (a, b) in enumerate(points):
                if k not in skip:
                    vals.ravel()[k] = fn(a, b)  # crunch(): losses.ravel()[ind] = loss
            f[name] = vals.reshape(shape) if shape is not None else vals
    return path


# -- surfaces ---------------------------------------------------------------------------


def test_a_line_file_reads_with_its_coordinates_variables_and_values(tmp_path):
    x = np.linspace(-1, 1, 11)
    fns = {"train_loss": loss_at, "train_acc": acc_at,
           "test_loss": lambda a, b: 2 * loss_at(a), "test_acc": lambda a, b: acc_at(a) / 2}
    surf = load_li_surface(write_surface(tmp_path / "line.h5", x, fns=fns))
    assert surf.dims == ("alpha",) and surf.spec.shape == (11,)
    assert np.array_equal(surf.coords["alpha"], x)
    assert surf.spec.splits == ("train", "test") and surf.spec.metrics == ("loss", "accuracy")
    assert surf.spec.variables == ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    assert surf.complete and surf.done.shape == (11,)
    for i, a in enumerate(x):
        assert surf["train_loss"][i] == loss_at(a)
        assert surf["test_loss"][i] == 2 * loss_at(a)
        assert surf["train_accuracy"][i] == pytest.approx(acc_at(a) / 100, rel=1e-15)
        assert surf["test_accuracy"][i] == pytest.approx(acc_at(a) / 200, rel=1e-15)
    assert surf.centre_index() == (5,)
    imported = surf.meta["imported"]
    assert "percent" in imported["accuracy"] and "train_acc" in imported["accuracy"]
    assert imported["datasets"] == {"train_loss": "train_loss", "train_acc": "train_accuracy",
                                    "test_loss": "test_loss", "test_acc": "test_accuracy"}
    assert surf.spec.directions == ({"kind": "imported", "axis": "x",
                                     "source": "Li et al. (2018), loss-landscape",
                                     "dir_file": "not recorded"},)


@pytest.mark.parametrize(("nx", "ny"), [(5, 5), (7, 4), (3, 6)])
def test_a_plane_reads_every_value_at_its_x_and_y(tmp_path, nx, ny):
    x, y = np.linspace(-1, 1, nx), np.linspace(-0.5, 1.5, ny)
    path = write_surface(tmp_path / "plane.h5", x, y)
    surf = load_li_surface(path)
    assert surf.dims == ("alpha", "beta") and surf.spec.shape == (nx, ny)
    assert np.array_equal(surf.coords["alpha"], x) and np.array_equal(surf.coords["beta"], y)
    assert surf.spec.variables == ("train_loss", "train_accuracy") and surf.complete
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            assert surf["train_loss"][i, j] == loss_at(a, b), (i, j)
            assert surf["train_accuracy"][i, j] == pytest.approx(acc_at(a, b) / 100, rel=1e-15)
    with h5py.File(path) as f:  # the naive reading (the array's own [i, j]) is wrong here
        naive = f["train_loss"][()]
    assert not np.array_equal(naive, surf["train_loss"])


def test_a_plane_array_of_shape_ny_nx_reads_the_same(tmp_path):
    """Some variants store the meshgrid's own shape (ny, nx); the flat order is the same."""
    x, y = np.linspace(-1, 1, 7), np.linspace(0, 1, 4)
    a = load_li_surface(write_surface(tmp_path / "a.h5", x, y))
    b = load_li_surface(write_surface(tmp_path / "b.h5", x, y, shape=(4, 7)))
    assert np.array_equal(a["train_loss"], b["train_loss"])


def test_coordinates_from_high_to_low_are_turned_around(tmp_path):
    x, y = np.linspace(1, -1, 5), np.linspace(0.5, -0.5, 3)
    surf = load_li_surface(write_surface(tmp_path / "down.h5", x, y))
    assert np.array_equal(surf.coords["alpha"], x[::-1])
    for i, a in enumerate(surf.coords["alpha"]):
        for j, b in enumerate(surf.coords["beta"]):
            assert surf["train_loss"][i, j] == pytest.approx(loss_at(a, b), rel=1e-14)


def test_points_left_at_minus_one_are_not_computed(tmp_path):
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 1, 4)
    skip = {0, 3, 7, 19}  # flat indices j * nx + i
    surf = load_li_surface(write_surface(tmp_path / "part.h5", x, y, skip=skip))
    assert int(surf.done.sum()) == 20 - len(skip) and not surf.complete
    for i, a in enumerate(x):
        for j, b in enumerate(y):
            if j * 5 + i in skip:
                assert not surf.done[i, j]
                assert np.isnan(surf["train_loss"][i, j])
                assert np.isnan(surf["train_accuracy"][i, j])
            else:
                assert surf.done[i, j] and surf["train_loss"][i, j] == loss_at(a, b)
    assert surf.summary()["diverged"] == 0  # not computed is not diverged
    assert "partly_computed" not in surf.meta["imported"]


def test_a_point_is_done_when_every_dataset_has_it(tmp_path):
    """The test pass of the reference code runs after the train pass: half-done files exist."""
    x = np.linspace(-1, 1, 6)
    path = write_surface(tmp_path / "train.h5", x, fns={"train_loss": loss_at})
    with h5py.File(path, "a") as f:
        f["test_loss"] = np.array([2.0, 2.5, -1, -1, -1, -1])
    surf = load_li_surface(path)
    assert surf.done.tolist() == [True, True, False, False, False, False]
    assert np.isnan(surf["train_loss"][2:]).all() and surf["test_loss"][1] == 2.5
    assert surf.meta["imported"]["partly_computed"] == 4


def test_a_nan_in_the_file_is_a_diverged_point(tmp_path):
    x = np.linspace(-1, 1, 5)
    path = write_surface(tmp_path / "nan.h5", x, fns={"train_loss": loss_at})
    with h5py.File(path, "a") as f:
        f["train_loss"][3] = np.nan
    surf = load_li_surface(path)
    assert surf.done.all() and surf.summary()["diverged"] == 1


def test_other_value_names_become_variables_and_the_rest_is_skipped(tmp_path):
    x = np.linspace(-1, 1, 5)
    path = write_surface(tmp_path / "more.h5", x, fns={"train_loss": loss_at,
                                                       "train_loss_ax": lambda a, b: 3.0 + a})
    with h5py.File(path, "a") as f:
        f["note"] = "not values"
        f["counts"] = np.arange(3)
    surf = load_li_surface(path)
    assert surf.spec.metrics == ("loss", "loss_ax")
    assert np.array_equal(surf["train_loss_ax"], 3.0 + x)
    assert surf.meta["imported"]["skipped"] == ["counts", "note"]


def test_a_split_without_every_metric_gets_nan_for_the_missing_one(tmp_path):
    x = np.linspace(-1, 1, 5)
    fns = {"train_loss": loss_at, "train_acc": acc_at, "test_loss": lambda a, b: 2.0}
    surf = load_li_surface(write_surface(tmp_path / "three.h5", x, fns=fns))
    assert surf.spec.variables == ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
    assert np.isnan(surf["test_accuracy"]).all() and (surf["test_loss"] == 2.0).all()
    assert surf.meta["imported"]["absent"] == ["test_accuracy"]


def test_the_direction_settings_in_dir_file_are_recorded(tmp_path):
    name = "net.t7_weights_xignore=biasbn_xnorm=filter_yignore=biasbn_ynorm=filter.h5"
    path = write_surface(tmp_path / "s.h5", np.linspace(-1, 1, 3), np.linspace(-1, 1, 3),
                         dir_file=name)
    d = load_li_surface(path).spec.directions
    assert [m["axis"] for m in d] == ["x", "y"]
    assert all(m["norm"] == "filter" and m["ignore"] == "biasbn" and m["dir_type"] == "weights"
               and m["dir_file"] == name for m in d)


def test_lm_load_reads_h5_and_hdf5_files(tmp_path):
    x, y = np.linspace(-1, 1, 4), np.linspace(-1, 1, 3)
    for suffix in (".h5", ".hdf5", ".H5"):
        path = write_surface(tmp_path / f"s{suffix}", x, y)
        surf, ref = lm.load(path), load_li_surface(path)
        assert surf.spec == ref.spec and surf.meta == ref.meta
        assert np.array_equal(surf["train_loss"], ref["train_loss"])
        assert surf.path == str(path) and surf.fingerprints == ref.fingerprints


# -- files of another layout ---------------------------------------------------------------


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_files_of_another_layout_get_errors_that_name_what_is_wrong(tmp_path):
    p = tmp_path / "nox.h5"
    with h5py.File(p, "w") as f:
        f["train_loss"] = np.ones(3)
        f["coords"] = np.linspace(-1, 1, 3)
    msg = _error(lm.load, p)
    assert "'xcoordinates'" in msg and "not a surface file" in msg and "coords" in msg

    p = write_surface(tmp_path / "shape.h5", np.linspace(-1, 1, 4), np.linspace(-1, 1, 3))
    with h5py.File(p, "a") as f:
        del f["train_loss"]
        f["train_loss"] = np.ones((4, 4))
    msg = _error(load_li_surface, p)
    assert "'train_loss'" in msg and "(4, 4)" in msg and "(4, 3)" in msg

    p = write_surface(tmp_path / "line.h5", np.linspace(-1, 1, 4))
    with h5py.File(p, "a") as f:
        f["test_loss"] = np.ones(5)
    assert "'test_loss'" in _error(load_li_surface, p)

    p = tmp_path / "uneven.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.array([-1.0, 0.0, 0.2, 1.0])
        f["train_loss"] = np.ones(4)
    assert "not evenly spaced" in _error(load_li_surface, p)

    p = tmp_path / "novalues.h5"
    with h5py.File(p, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, 4)
    assert "no values" in _error(load_li_surface, p)

    p = tmp_path / "text.h5"
    p.write_text("not HDF5")
    assert "not an HDF5 file" in _error(lm.load, p)
    with pytest.raises(MissingFileError, match="does not exist"):
        lm.load(tmp_path / "missing.h5")


def test_a_direction_file_given_as_a_surface_says_so(tmp_path):
    p = write_directions(tmp_path / "d.h5", [[np.ones(2)]])
    assert "load_li_directions" in _error(load_li_surface, p)
    s = write_surface(tmp_path / "s.h5", np.linspace(-1, 1, 3))
    assert "surface file" in _error(load_li_directions, s)


# -- directions ------------------------------------------------------------------------


def write_directions(path, lists):
    """A direction file as net_plotter.setup_direction writes it (h5_util.write_list)."""
    with h5py.File(path, "w") as f:
        for group, tensors in zip(("xdirection", "ydirection"), lists, strict=False):
            grp = f.create_group(group)
            for i, t in enumerate(tensors):
                grp.create_dataset(str(i), data=np.asarray(t))
    return path


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_a_direction_file_reads_with_the_model_s_names(tmp_path):
    net = _net()
    rng = np.random.default_rng(0)
    lists = [[rng.standard_normal(tuple(p.shape)).astype(np.float32) for p in net.parameters()]
             for _ in range(2)]
    path = write_directions(tmp_path / "dirs.h5", lists)
    dx, dy = load_li_directions(path, model=net)
    names = [n for n, _ in net.named_parameters()]
    for d, arrays, axis in ((dx, lists[0], "x"), (dy, lists[1], "y")):
        assert list(d) == names
        for name, a in zip(names, arrays, strict=True):
            assert d[name].dtype == torch.float32 and np.array_equal(d[name].numpy(), a)
        assert d.meta["kind"] == "imported" and d.meta["axis"] == axis
        assert d.meta["names"] == "parameters"
    positional = load_li_directions(path)
    assert [list(d) for d in positional] == [["0", "1", "2", "3"]] * 2
    assert np.array_equal(positional[1]["2"].numpy(), lists[1][2])
    given = load_li_directions(path, model=["a", "b", "c", "d"])
    assert list(given[0]) == ["a", "b", "c", "d"]
    by_dict = load_li_directions(path, model=dict(net.named_parameters()))
    assert list(by_dict[0]) == names


def test_a_states_direction_file_takes_the_state_dict_s_names(tmp_path):
    """dir_type='states': one tensor per state_dict entry, buffers included."""
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    state = net.state_dict()
    lists = [[np.full(tuple(t.shape), float(i), np.float32) for i, t in enumerate(state.values())]]
    (d,) = load_li_directions(write_directions(tmp_path / "states.h5", lists), model=net)
    assert "1.running_mean" in d and "1.num_batches_tracked" not in d
    assert d.meta["names"] == "state" and d.meta["dropped"] == ["1.num_batches_tracked"]
    assert float(d["2.weight"][0, 0]) == list(state).index("2.weight")


def test_a_direction_file_for_another_model_is_refused_with_the_reason(tmp_path):
    net = _net()
    lists = [[np.zeros(tuple(p.shape), np.float32) for p in net.parameters()]]
    path = write_directions(tmp_path / "dirs.h5", lists)
    other = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    msg = _error(load_li_directions, path, model=other)
    assert "xdirection/0" in msg and "(4, 3)" in msg and "(5, 3)" in msg and "'0.weight'" in msg
    msg = _error(load_li_directions, path, model=nn.Linear(3, 4))
    assert "4 tensors" in msg and "2 parameters" in msg
    assert "3 names" in _error(load_li_directions, path, model=["a", "b", "c"])
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        load_li_directions(path, model=3)


def test_an_incomplete_direction_file_names_the_missing_tensor(tmp_path):
    path = write_directions(tmp_path / "d.h5", [[np.ones(2), np.ones(3), np.ones(1)]])
    with h5py.File(path, "a") as f:
        del f["xdirection/1"]
    assert "'1' is missing" in _error(load_li_directions, path)
    path = write_directions(tmp_path / "xy.h5", [[np.ones(2), np.ones(3)], [np.ones(2)]])
    assert "xdirection and ydirection differ" in _error(load_li_directions, path)
    path = tmp_path / "none.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.ones(3)
    assert "no group 'xdirection'" in _error(load_li_directions, path)


# -- the store and the command line --------------------------------------------------------


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_lossmap_import_writes_a_store_that_info_and_load_read(tmp_path, capsys):
    x, y = np.linspace(-1, 1, 5), np.linspace(-1, 0.5, 4)
    h5 = write_surface(tmp_path / "s.h5", x, y, skip={2, 11})
    store = tmp_path / "s.lossmap"
    code, out, err = cli(capsys, "import", h5, "-o", store)
    assert code == 0 and err == "" and "18/20 points" in out
    code, out, _ = cli(capsys, "info", store)
    assert code == 0 and "-1:1:5 x -1:0.5:4" in out and "18/20 done, 0 diverged" in out
    assert "kind=imported" in out and "  imported " in out
    code, out, _ = cli(capsys, "info", store, "--json")
    assert code == 0 and "percent" in json.loads(out)["annotations"]["imported"]["accuracy"]
    surf, ref = lm.load(store), load_li_surface(h5)
    assert surf.spec == ref.spec and np.array_equal(surf.done, ref.done)
    for v in ref.spec.variables:
        assert np.array_equal(surf[v], ref[v], equal_nan=True)
    assert surf.meta["imported"] == ref.meta["imported"]
    assert [len(d) for d in lm.load_directions(store)] == [0, 0]  # not in the file

    code, _, err = cli(capsys, "import", h5, "-o", store)  # never replaced
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["train_loss"] = np.ones(3)
    code, _, err = cli(capsys, "import", bad, "-o", tmp_path / "bad.lossmap")
    assert code == 2 and "'xcoordinates'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.lossmap").exists()


def test_lossmap_import_stores_the_directions_named_by_the_model(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("li_tinynet", TINY)
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    net = tiny.make_model()
    rng = np.random.default_rng(1)
    lists = [[rng.standard_normal(tuple(p.shape)).astype(np.float32) for p in net.parameters()]
             for _ in range(2)]
    dirs = write_directions(tmp_path / "dirs.h5", lists)
    h5 = write_surface(tmp_path / "s.h5", np.linspace(-1, 1, 3), np.linspace(-1, 1, 3))
    store = tmp_path / "s.lossmap"
    code, _, err = cli(capsys, "import", h5, "-o", store, "--directions", dirs,
                       "--model", f"{TINY}:make_model")
    assert code == 0, err
    dx, dy = lm.load_directions(store)
    assert sorted(dx) == sorted(n for n, _ in net.named_parameters())  # safetensors sorts
    assert np.array_equal(dy["3.bias"].numpy(), lists[1][3])
    assert [m["axis"] for m in lm.load(store).spec.directions] == ["x", "y"]
    assert lm.load(store).spec.directions[0]["file"] == str(dirs)

    code, _, err = cli(capsys, "import", h5, "-o", tmp_path / "m.lossmap",
                       "--model", f"{TINY}:make_model")
    assert code == 2 and "--directions" in err
    line = write_surface(tmp_path / "line.h5", np.linspace(-1, 1, 3))
    with pytest.raises(InputError, match="1 axes but 2 directions"):
        import_li_surface(line, tmp_path / "line.lossmap", directions=dirs)


@pytest.mark.slow
def test_lossmap_report_reads_an_h5_surface_in_one_command(tmp_path, capsys):
    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    h5 = write_surface(tmp_path / "resnet.h5", x, y, skip={5})
    page = tmp_path / "r.html"
    code, _, err = cli(capsys, "report", h5, "-o", page)
    assert code == 0, err
    html = page.read_text(encoding="utf-8")
    assert "resnet" in html and "62/63" in html and "train loss" in html
    assert "percent" in html and "imported" in html
    assert "cosine" not in html  # no directions: no angle between them is claimed
    # an imported store without directions claims no cosine either
    store = import_li_surface(h5, tmp_path / "resnet.lossmap")
    code, _, err = cli(capsys, "report", store, "-o", tmp_path / "s.html")
    assert code == 0, err
    assert "cosine" not in (tmp_path / "s.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_lossmap_report_and_plot_read_an_h5_line(tmp_path, capsys):
    h5 = write_surface(tmp_path / "line.h5", np.linspace(-1, 1, 21))
    code, _, err = cli(capsys, "report", h5, "-o", tmp_path / "r.html")
    assert code == 0, err
    code, _, err = cli(capsys, "plot", h5, "-o", tmp_path / "line.png")
    assert code == 0, err and (tmp_path / "line.png").stat().st_size > 0
