"""Pictures of lm.topology (issue 25 item 3): diagram, barcode, merge tree, profile, slices,
isosurfaces, and the .vti file read back by VTK's own reader (the one ParaView uses)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOXML import vtkXMLImageDataReader

import lossmap as lm
from lossmap.errors import InputError
from lossmap.plot import topology as lpt
from lossmap.plot import topology3d as lp3
from lossmap.plot.interactive import to_html
from lossmap.plot.vti import to_vti

A, B, C = np.linspace(-1, 1, 9), np.linspace(-0.5, 0.5, 6), np.linspace(0, 2, 5)


def grid3() -> np.ndarray:
    X, Y, Z = np.meshgrid(A, B, C, indexing="ij")
    f = (X**2 - 0.5) ** 2 + Y**2 + 0.3 * (Z - 1) ** 2 + 0.05 * X
    return f


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture
def topo():
    f = grid3()
    return lm.topology(
        f, coords={"alpha": A, "beta": B, "gamma": C}, se=np.full(f.shape, 1e-3), bootstrap=10
    )


def test_persistence_diagram_places_each_pair(topo):
    ax = lpt.plot_persistence(topo)
    pts = ax.collections[0].get_offsets()
    finite = [(p.birth, p.death) for p in topo.pairs if math.isfinite(p.death)]
    assert len(pts) == len(topo.pairs) == 2
    assert any(np.allclose(q, finite[0]) for q in pts)
    roof = max(q[1] for q in pts)  # the global minimum's +inf sits on the roof
    assert roof > max(d for _, d in finite)


def test_barcode_and_merge_tree_draw_every_pair(topo):
    ax = lpt.plot_barcode(topo)
    assert len(ax.collections) == len(topo.pairs)
    ax = lpt.plot_merge_tree(topo)
    leaves = ax.collections[0].get_offsets()
    assert sorted(leaves[:, 1]) == sorted(m.value for m in topo.minima)


def test_profile_width_is_the_sublevel_volume(topo):
    ax = lpt.plot_profile(topo)
    f = grid3()
    # the rightmost outline at each level is the number of cells at or below it
    xs, ys = ax.lines[-1].get_data()
    for x, y in zip(xs[::7], ys[::7], strict=True):
        assert x == np.sum(f <= y)


def test_slices_and_isosurfaces_of_a_3d_dataset(topo, tmp_path):
    ds = xr.Dataset(
        {"train_loss": (("alpha", "beta", "gamma"), grid3())},
        coords={"alpha": A, "beta": B, "gamma": C},
    )
    fig = lp3.plot_slices(ds, t=topo)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("gamma")]
    assert [ax.get_title() for ax in panels] == [f"gamma = {c:.3g}" for c in C]
    starred = sum(len(ax.lines) for ax in panels)
    assert starred == len(topo.minima)  # each minimum on its own slice
    view = lp3.isosurface_figure(ds, t=topo)
    iso, marks = view.data
    assert np.array_equal(np.asarray(iso.value), grid3().ravel())
    assert len(marks.x) == len(topo.minima)
    out = to_html(view, tmp_path / "iso.html")
    assert "<script src=" not in out.read_text()[:2000] and out.stat().st_size > 1e6
    with pytest.raises(InputError, match="3-D grid"):
        lp3.plot_slices(np.zeros((3, 3)))


def test_vti_reads_back_in_vtk(topo, tmp_path):
    f = grid3()
    f[0, 0, 0] = np.nan  # diverged: kept as NaN in the point data
    surf = SimpleNamespace(
        dims=("alpha", "beta", "gamma"),
        coords={"alpha": A, "beta": B, "gamma": C},
        values={"train_loss": f, "train_accuracy": 1 - f},
        done=np.ones(f.shape, bool),
        errors={"train_loss": np.full(f.shape, 0.1)},
    )
    t = lm.topology(f, coords=surf.coords, bootstrap=0)
    path = to_vti(surf, tmp_path / "grid.vti", topology=t)
    r = vtkXMLImageDataReader()
    r.SetFileName(str(path))
    r.Update()
    img = r.GetOutput()
    assert img.GetDimensions() == f.shape
    assert np.allclose(img.GetOrigin(), (A[0], B[0], C[0]))
    assert np.allclose(img.GetSpacing(), (A[1] - A[0], B[1] - B[0], C[1] - C[0]))
    pd = img.GetPointData()
    assert pd.GetScalars().GetName() == "train_loss"
    got = {pd.GetArrayName(i): vtk_to_numpy(pd.GetArray(i)) for i in range(pd.GetNumberOfArrays())}
    n0, n1, _ = f.shape
    for (i, j, k), v in np.ndenumerate(f):
        p = i + n0 * (j + n1 * k)
        assert (math.isnan(v) and math.isnan(got["train_loss"][p])) or got["train_loss"][p] == v
        assert got["basin"][p] == t.tree.label[np.ravel_multi_index((i, j, k), f.shape)]
        assert got["finite"][p] == (0 if math.isnan(v) else 1)
    assert np.all(got["train_loss_se"] == 0.1)
    bad = SimpleNamespace(**{**vars(surf), "coords": {**surf.coords, "gamma": C**2}})
    with pytest.raises(InputError, match="evenly spaced"):
        to_vti(bad, tmp_path / "bad.vti")
    with pytest.raises(InputError, match=r"name it grid\.vti"):
        to_vti(surf, tmp_path / "grid.vts")
