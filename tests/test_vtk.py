"""VTK export (issue 16): planes as .vts, lines as .vtp, read back by VTK itself.

The files are written by pyevtk (the ``vtk`` extra), which has no reader; they
are read back with VTK's own XML readers (the ones ParaView uses, from the
``vtk`` package in the dev extra), so a test passes only if ParaView would see
the same grid. Every expected value is built point by point in a plain loop
from the Surface's arrays, independently of the writer's reshapes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonDataModel import VTK_POLY_LINE, vtkStructuredData
from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLStructuredGridReader

import lossmap as lm
from cli_run import run_cli as cli
from lossmap.errors import InputError
from lossmap.plot import vtk as lvtk
from lossmap.scan.spec import ScanSpec
from lossmap.surface import Surface, from_rows

pytestmark = pytest.mark.usefixtures("one_thread")

PLANE = [(-1, 1, 5), (-0.5, 0.5, 4)]  # not square: a swapped axis cannot pass
LINE = [(-1, 1, 7)]


# -- reading back -------------------------------------------------------------
def read(path: Path) -> dict:
    """What VTK reads: dims, points (N, 3), point data by name, active scalars, lines."""
    reader = vtkXMLPolyDataReader() if path.suffix == ".vtp" else vtkXMLStructuredGridReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert reader.GetErrorCode() == 0, f"VTK could not read {path}"
    out = reader.GetOutput()
    pd = out.GetPointData()
    got = {
        "points": vtk_to_numpy(out.GetPoints().GetData()),
        "data": {pd.GetArrayName(i): vtk_to_numpy(pd.GetArray(i))
                 for i in range(pd.GetNumberOfArrays())},
        "scalars": pd.GetScalars().GetName(),
        "out": out,
    }
    if path.suffix == ".vts":
        dims = [0, 0, 0]
        out.GetDimensions(dims)
        got["dims"] = dims
    else:
        got["lines"] = (vtk_to_numpy(out.GetLines().GetConnectivityArray()),
                        vtk_to_numpy(out.GetLines().GetOffsetsArray()))
        got["cell_types"] = [out.GetCellType(c) for c in range(out.GetNumberOfCells())]
    return got


def floor_of(values: np.ndarray) -> float:
    """The lowest finite value, by a plain loop (0 when there is none)."""
    low = None
    for v in values.reshape(-1).tolist():
        if np.isfinite(v) and (low is None or v < low):
            low = v
    return 0.0 if low is None else low


def height_of(surf: Surface, height: str, idx) -> float:
    """Where point ``idx`` sits, by the documented rule, from plain loops over the values.

    Finite: its value. Not computed: the lowest finite value. Computed +inf or
    NaN (diverged): a tenth of the finite span above the highest; -inf as far
    below the lowest.
    """
    v = float(surf[height][idx])
    if np.isfinite(v):
        return v
    lo = floor_of(surf[height])
    hi = -floor_of(-surf[height])
    gap = 0.1 * (hi - lo) or 0.1 * abs(hi) or 1.0
    if not surf.done[idx]:
        return lo
    return lo - gap if v == -np.inf else hi + gap


def arrays(surf: Surface) -> dict[str, np.ndarray]:
    """Every variable, then each one's standard error (``<name>_se``) where it was measured."""
    return {**surf.values, **{f"{n}_se": e for n, e in (surf.errors or {}).items()}}


def expected_plane(surf: Surface, height: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Points and point data of a plane, VTK's point k = i + n_alpha * j, built by a loop."""
    alpha, beta = surf.coords["alpha"], surf.coords["beta"]
    points, data = [], {name: [] for name in [*arrays(surf), "done", "finite"]}
    for j in range(beta.size):
        for i in range(alpha.size):
            points.append((alpha[i], beta[j], height_of(surf, height, (i, j))))
            for name, v in arrays(surf).items():
                data[name].append(v[i, j])
            data["done"].append(int(surf.done[i, j]))
            data["finite"].append(int(np.isfinite(surf[height][i, j])))
    return np.array(points), {k: np.array(v) for k, v in data.items()}


def expected_line(surf: Surface, height: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    alpha = surf.coords["alpha"]
    points, data = [], {name: [] for name in [*arrays(surf), "done", "finite"]}
    for i in range(alpha.size):
        points.append((alpha[i], height_of(surf, height, (i,)), 0.0))
        for name, v in arrays(surf).items():
            data[name].append(v[i])
        data["done"].append(int(surf.done[i]))
        data["finite"].append(int(np.isfinite(surf[height][i])))
    return np.array(points), {k: np.array(v) for k, v in data.items()}


def assert_file_holds(path: Path, surf: Surface, height: str) -> dict:
    """Every coordinate, height and point-data value of the file equals the Surface's, exactly."""
    got = read(path)
    plane = len(surf.dims) == 2
    points, data = (expected_plane if plane else expected_line)(surf, height)
    if plane:
        assert got["dims"] == [*surf.spec.shape, 1]
    else:
        conn, offsets = got["lines"]
        assert got["cell_types"] == [VTK_POLY_LINE]  # one poly-line through every point in order
        np.testing.assert_array_equal(conn, np.arange(surf.spec.shape[0]))
        np.testing.assert_array_equal(offsets, [0, surf.spec.shape[0]])
    assert got["points"].dtype == np.float64
    np.testing.assert_array_equal(got["points"], points)  # exact: float64 both ways
    names = [height, *(n for n in surf.values if n != height)]
    errors = surf.errors or {}
    assert list(got["data"]) == [
        *names, *(f"{n}_se" for n in names if n in errors), "done", "finite"]
    assert got["scalars"] == height  # ParaView colours by the height on opening
    for name, want in data.items():
        flag = name in ("done", "finite")
        assert got["data"][name].dtype == (np.uint8 if flag else np.float64), name
        np.testing.assert_array_equal(got["data"][name], want, err_msg=name)  # NaN == NaN here
    return got


# -- surfaces -------------------------------------------------------------------
class StopAfter:
    """Cross-entropy that raises KeyboardInterrupt (as Ctrl-C) after ``n`` calls."""

    def __init__(self, n: int | None = None):
        self.n, self.calls = n, 0

    def __call__(self, out, target):
        self.calls += 1
        if self.n is not None and self.calls > self.n:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(out, target)


def scan(grid, path: Path | None = None, loss=None) -> Surface:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3))
    data = {"train": (torch.randn(40, 12), torch.randint(0, 3, (40,))),
            "test": (torch.randn(30, 12), torch.randint(0, 3, (30,)))}
    dirs = lm.random_directions(model, len(grid), seed=0)
    return lm.scan(model, loss or nn.CrossEntropyLoss(), data=data, directions=dirs,
                   grid=grid, store=path, progress=False, batch_size=100)


def partial(tmp_path: Path, grid, name: str) -> Surface:
    """A store whose scan was interrupted part way: NaN at the points not computed."""
    count = StopAfter()
    scan(grid, tmp_path / f"{name}-count.lossmap", loss=count)
    setup = count.calls - 2 * int(np.prod([n for *_, n in grid]))  # two splits per point
    with pytest.raises(KeyboardInterrupt):
        scan(grid, tmp_path / f"{name}.lossmap", loss=StopAfter(setup + 2 * 3))
    surf = lm.load(tmp_path / f"{name}.lossmap")
    assert 0 < surf.done.sum() < surf.done.size and np.isnan(surf["train_loss"]).any()
    return surf


@pytest.fixture(scope="module")
def plane() -> Surface:
    return scan(PLANE)


@pytest.fixture(scope="module")
def line() -> Surface:
    return scan(LINE)


# -- planes and lines from real scans -----------------------------------------------
def test_plane_reads_back_with_every_value(plane, tmp_path):
    assert plane.complete and list(plane.values) == [
        "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    out = plane.to_vtk(tmp_path / "plane.vts")
    assert out == tmp_path / "plane.vts"
    assert_file_holds(out, plane, "train_loss")  # the default height: the first loss


def test_plane_height_is_the_chosen_variable(plane, tmp_path):
    out = plane.to_vtk(tmp_path / "acc.vts", variable="test_accuracy")
    got = assert_file_holds(out, plane, "test_accuracy")
    np.testing.assert_array_equal(got["points"][:, 2], got["data"]["test_accuracy"])


def test_line_reads_back_as_one_poly_line(line, tmp_path):
    out = line.to_vtk(tmp_path / "line.vtp")
    assert_file_holds(out, line, "train_loss")
    got = assert_file_holds(line.to_vtk(tmp_path / "l2.vtp", "test_loss"), line, "test_loss")
    np.testing.assert_array_equal(got["points"][:, 1], line["test_loss"])
    assert (got["points"][:, 2] == 0).all()


def test_the_default_height_is_the_first_loss_variable():
    assert lvtk.height_variable({"train_accuracy": 0, "test_loss": 0, "train_loss": 0}) == (
        "test_loss")
    assert lvtk.height_variable({"train_accuracy": 0, "test_accuracy": 0}) == "train_accuracy"


# -- orientation ---------------------------------------------------------------
def test_value_at_alpha_i_beta_j_is_vtk_point_ijk(tmp_path):
    """Distinct values 10 i + j on a 3 x 5 grid land where VTK's own index says (x fastest)."""
    spec = ScanSpec(grid=((-3, 1, 3), (10, 20, 5)), splits=("train",), metrics=("loss",))
    idx = list(range(15))
    rows = [[10.0 * (k // 5) + k % 5] for k in idx]  # C order flat index k = 5 i + j
    surf = from_rows(spec, idx, rows)
    assert surf["train_loss"][2, 1] == 21.0
    got = read(surf.to_vtk(tmp_path / "orient.vts"))
    alpha, beta = surf.coords["alpha"], surf.coords["beta"]
    dims = got["dims"]
    assert dims == [3, 5, 1]
    for i in range(3):
        for j in range(5):
            k = vtkStructuredData.ComputePointId(dims, [i, j, 0])
            assert tuple(got["out"].GetPoint(k)) == (alpha[i], beta[j], 10.0 * i + j)
            assert got["data"]["train_loss"][k] == 10.0 * i + j


# -- missing and diverged points -------------------------------------------------
@pytest.mark.parametrize("grid", [PLANE, LINE], ids=["plane", "line"])
def test_partial_store_keeps_nan_and_floors_the_height(tmp_path, grid):
    surf = partial(tmp_path, grid, "part")
    out = surf.to_vtk(tmp_path / ("part.vts" if len(grid) == 2 else "part.vtp"))
    got = assert_file_holds(out, surf, "train_loss")
    missing = got["data"]["done"] == 0
    assert missing.any() and (~missing).any()
    for name in surf.values:  # NaN exactly at the points not computed yet
        np.testing.assert_array_equal(np.isnan(got["data"][name]), missing, err_msg=name)
    height = got["points"][:, len(grid)]  # z of a plane, y of a line
    assert np.isfinite(got["points"]).all()  # VTK's bounds and camera stay finite
    assert (height[missing] == np.nanmin(surf["train_loss"])).all()
    bounds = got["out"].GetBounds()
    assert bounds[2 * len(grid)] == np.nanmin(surf["train_loss"])


def test_diverged_points_keep_inf_and_nan_in_point_data(tmp_path):
    """Finished points whose loss is inf or NaN: point data as stored, height off the sheet."""
    spec = ScanSpec(grid=((-1, 1, 3), (-1, 1, 2)), splits=("train",), metrics=("loss", "acc"))
    rows = [[2.0, 0.5], [np.inf, 0.1], [0.25, 0.7], [np.nan, np.nan], [-np.inf, 0.2], [3.0, 1]]
    surf = from_rows(spec, list(range(6)), rows)
    assert surf.complete and surf.diverged() == 3
    got = assert_file_holds(surf.to_vtk(tmp_path / "div.vts"), surf, "train_loss")
    z = got["points"][:, 2]
    k = {(i, j): i + 3 * j for i in range(3) for j in range(2)}
    # finite 0.25 .. 3: inf and NaN a tenth of the span above 3, -inf as far below 0.25
    np.testing.assert_allclose([z[k[0, 1]], z[k[1, 1]], z[k[2, 0]]], [3.275, 3.275, -0.025])
    assert got["data"]["train_loss"][k[0, 1]] == np.inf
    assert got["data"]["train_loss"][k[2, 0]] == -np.inf
    assert got["data"]["train_acc"][k[0, 1]] == 0.1 and (got["data"]["done"] == 1).all()
    assert got["data"]["finite"].tolist() == [1, 1, 0, 0, 0, 1]  # VTK order: k = i + 3 j


@pytest.mark.parametrize("suffix", [".vts", ".vtp"])
def test_blown_up_points_sit_above_every_finite_one_and_missing_ones_below(tmp_path, suffix):
    """A diverged (+inf) region is a plateau on top, never the deepest valley (issue 21 item 7)."""
    grid = ((-1, 1, 4), (-1, 1, 3)) if suffix == ".vts" else ((-1, 1, 12),)
    spec = ScanSpec(grid=grid, splits=("train",), metrics=("loss",))
    values = [5.0, 1.0, np.inf, 0.5, np.inf, 2.0, 7.0, np.inf, 0.1, np.nan, 3.0]
    surf = from_rows(spec, list(range(11)), [[v] for v in values])  # the last point: missing
    got = read(surf.to_vtk(tmp_path / f"blow{suffix}"))
    height = got["points"][:, len(grid)]
    done, finite = got["data"]["done"] == 1, got["data"]["finite"] == 1
    loss = got["data"]["train_loss"]
    assert done.sum() == 11 and finite.sum() == 7 and np.isposinf(loss).sum() == 3
    diverged = done & ~finite
    assert np.isfinite(height).all()
    assert (height[diverged] > height[finite].max()).all()  # inf and NaN above 7
    assert (height[~done] == height[finite].min()).all()  # not computed: on the floor, 0.1
    np.testing.assert_array_equal(height[finite], loss[finite])


def test_a_surface_with_no_point_done_sits_at_zero(tmp_path):
    spec = ScanSpec(grid=((-1, 1, 4),), splits=("train",), metrics=("loss",))
    surf = from_rows(spec, [], [])
    got = assert_file_holds(surf.to_vtk(tmp_path / "empty.vtp"), surf, "train_loss")
    assert (got["points"][:, 1] == 0).all() and np.isnan(got["data"]["train_loss"]).all()


# -- the command line ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("stores")
    scan(PLANE, base / "plane.lossmap")
    scan(LINE, base / "line.lossmap")
    return {"plane": base / "plane.lossmap", "line": base / "line.lossmap"}


@pytest.mark.parametrize(("kind", "suffix", "extra"), [
    ("plane", ".vts", []), ("plane", ".vts", ["--height", "test_loss"]),
    ("line", ".vtp", []), ("line", ".vtp", ["--height", "train_accuracy"])])
def test_cli_export_writes_the_same_file_as_the_api(stores, tmp_path, capsys, kind, suffix, extra):
    out = tmp_path / "sub" / f"x{suffix}"
    code, text, err = cli(capsys, "export", stores[kind], "-o", out, *extra)
    assert (code, err) == (0, "") and text == f"wrote {out}\n"
    surf = lm.load(stores[kind])
    height = extra[1] if extra else "train_loss"
    ref = surf.to_vtk(tmp_path / f"api{suffix}", extra[1] if extra else None)
    assert out.read_bytes() == ref.read_bytes()
    assert_file_holds(out, surf, height)
    code, _, err = cli(capsys, "export", stores[kind], "-o", out)  # exists: refused
    assert code == 2 and "--overwrite" in err


@pytest.mark.parametrize(("kind", "name", "extra", "needle"), [
    ("plane", "p.vtk", [], ".vts (VTK, a plane) or .vtp (VTK, a line)"),
    ("plane", "p.vtp", [], "a plane is written to a .vts file"),
    ("line", "l.vts", [], "a line is written to a .vtp file"),
    ("plane", "p.vts", ["--height", "nope"], "height variable 'nope' is not in this surface"),
    ("plane", "p.nc", ["--height", "test_loss"], "--height is for VTK files"),
])
def test_cli_bad_export_is_one_line_and_exit_2(stores, tmp_path, capsys, kind, name, extra,
                                               needle):
    code, out, err = cli(capsys, "export", stores[kind], "-o", tmp_path / name, *extra)
    assert code == 2 and out == ""
    assert err.startswith("lossmap export: error: ") and err.count("\n") == 1, err
    assert needle in err
    assert list(tmp_path.iterdir()) == []  # nothing written, no partial file


# -- errors of the API -----------------------------------------------------------------
def test_api_errors_name_the_fix(plane, line, tmp_path):
    with pytest.raises(InputError, match=r"a plane is written to a \.vts file .*not \.vtp: "
                                         r"name it p\.vts$"):
        plane.to_vtk(tmp_path / "p.vtp")
    with pytest.raises(InputError, match=r"a line is written to a \.vtp file .*not a name "
                                         r"without suffix: name it l\.vtp$"):
        line.to_vtk(tmp_path / "l")
    with pytest.raises(InputError, match="'train_los' is not in this surface: choose one of "
                                         "train_loss, train_accuracy, test_loss, test_accuracy"):
        plane.to_vtk(tmp_path / "p.vts", variable="train_los")
    assert list(tmp_path.iterdir()) == []


def test_without_pyevtk_the_error_says_how_to_install(plane, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyevtk", None)  # `import pyevtk` raises ImportError
    with pytest.raises(InputError, match=r"needs pyevtk .*pip install 'lossmap\[vtk\]'"):
        plane.to_vtk(tmp_path / "p.vts")


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(plane, tmp_path, monkeypatch):
    out = tmp_path / "p.vts"
    out.write_text("old")

    def broken(stem, surface, first):
        Path(f"{stem}.vts").write_text("half a fi")
        raise OSError("disk full")

    monkeypatch.setattr(lvtk, "_write_plane", broken)
    with pytest.raises(OSError, match="disk full"):
        plane.to_vtk(out)
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize("fn", [lvtk.to_vtk, lvtk.height_variable, lvtk.vtk_heights])
def test_docstrings_match_signatures(fn, assert_docstring_matches_signature):
    assert_docstring_matches_signature(fn)
