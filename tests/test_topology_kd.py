"""lm.topology on the k-D Surface (issue 25 item 1's Surface): 3-D grids, their slices, designs."""

from __future__ import annotations

import html

import numpy as np
import pytest
from vtkmodules.vtkIOXML import vtkXMLImageDataReader

import lossmap as lm
from helpers import surface
from lossmap.report import write_report
from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

AXES = [(-1, 1, 9), (-1, 1, 7), (-1, 1, 5)]


def cube(a, b, g):
    return (a**2 - 0.5) ** 2 + (b - 0.2 * a) ** 2 + 0.5 * g**2 + 0.05 * a


@pytest.fixture
def surf() -> Surface:
    return surface(AXES, {"train_loss": cube}, errors={"train_loss": 1e-3})


def same(t1, t2) -> bool:
    return [(p.birth, p.death, p.minimum.index) for p in t1.pairs] == [
        (p.birth, p.death, p.minimum.index) for p in t2.pairs
    ] and (t1.smad, t1.smad_se) == (t2.smad, t2.smad_se)


def test_a_3d_surface_its_dataset_and_its_array_agree(surf):
    t = lm.topology(surf, bootstrap=20)
    assert surf.dims == ("alpha", "beta", "gamma") and t.dims == surf.dims
    assert t.n_minima == 2 and t.n_basins == 2
    assert same(t, lm.topology(surf.to_xarray(), bootstrap=20))
    arr = lm.topology(
        surf["train_loss"], coords=surf.coords, se=surf.se("train_loss"), bootstrap=20
    )
    assert same(t, arr)
    assert {m.coords["gamma"] for m in t.minima} == {0.0}


def test_a_slice_is_the_plane_of_the_array(surf):
    plane = surf.sel(gamma=0.0)
    assert plane.dims == ("alpha", "beta")
    t = lm.topology(plane, bootstrap=0)
    ref = lm.topology(surf["train_loss"][:, :, 2], bootstrap=0)
    assert [(p.birth, p.death) for p in t.pairs] == [(p.birth, p.death) for p in ref.pairs]


def test_to_vtk_writes_a_3d_surface_as_image_data(surf, tmp_path):
    path = surf.to_vtk(tmp_path / "cube.vti")
    r = vtkXMLImageDataReader()
    r.SetFileName(str(path))
    r.Update()
    assert r.GetOutput().GetDimensions() == (9, 7, 5)


def test_a_sampled_design_uses_a_knn_graph():
    spec = ScanSpec(
        grid=(Axis(-2, 2, 2), Axis(-2, 2, 2)),
        splits=("train",),
        metrics=("loss",),
        design={"kind": "sobol", "points": 512, "seed": 0},
    )
    pts = spec.points()
    f = (pts[:, 0] ** 2 - 1) ** 2 + pts[:, 1] ** 2 + 0.2 * pts[:, 0]
    design = Surface(
        spec,
        {"train_loss": f},
        np.ones(spec.shape, bool),
        errors={"train_loss": np.full(spec.shape, 0.01)},
    )
    t = lm.topology(design, bootstrap=10)
    assert t.graph == "knn" and t.dims == ("alpha", "beta") and t.shape is None
    big = [b for b in t.basins if b.resolved and b.share > 0.05]
    assert sorted(round(b.minimum.coords["alpha"]) for b in big) == [-1, 1]


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_the_report_of_a_3d_scan_shows_its_topology(tmp_path):
    cube4 = surface(
        [(-1, 1, 7), (-1, 1, 5), (-1, 1, 4)], {"train_loss": cube}, errors={"train_loss": 1e-3}
    )  # γ has no 0: the plane nearest it
    page = write_report([("cube", cube4)], tmp_path / "r.html").read_text()
    g = min(cube4.coords["gamma"], key=abs)
    assert f"plane through the centre (gamma = {g:g})" in page
    assert '"type":"isosurface"' in page and 'alt="slices"' in page
    assert html.escape(lm.topology(cube4, bootstrap=100).sentence()) in page
