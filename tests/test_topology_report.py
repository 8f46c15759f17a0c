"""The report's topology part (issue 25 item 3): for scans of two or more dimensions."""

from __future__ import annotations

import html

import numpy as np
import pytest

import lossmap as lm
from helpers import line, plane
from lossmap.report import write_report
from lossmap.report.page import _png
from lossmap.report.topology import BOOTSTRAP, topology_section


def wells(a, b):
    return (a**2 - 0.5) ** 2 + b**2 + 0.1 * a


class Grid3:
    """A complete 3-D scan with a Surface's reading API (dims, coords, values, se, done)."""

    def __init__(self) -> None:
        c = np.linspace(-1, 1, 7)
        self.dims = ("alpha", "beta", "gamma")
        self.coords = {d: c for d in self.dims}
        A, B, G = np.meshgrid(c, c, c, indexing="ij")
        self.values = {"train_loss": wells(A, B) + G**2}
        self.errors = {"train_loss": np.full(A.shape, 1e-3)}
        self.done = np.ones(A.shape, bool)
        self.samples = None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def se(self, name: str) -> np.ndarray:
        return self.errors[name]


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
@pytest.mark.usefixtures("one_thread")
def test_a_plane_report_states_its_topology(tmp_path):
    surf = plane(wells, 21, 15, errors={"train_loss": 1e-3})
    page = write_report([("wells", surf)], tmp_path / "r.html").read_text()
    t = lm.topology(surf, bootstrap=BOOTSTRAP)
    assert t.n_minima == 2 and t.n_basins == 2
    assert "<h3>Topology</h3>" in page
    assert html.escape(t.sentence()) in page
    assert 'alt="topology"' in page


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_a_3d_scan_gets_slices_and_isosurfaces():
    g = Grid3()
    text = topology_section(g, ["train_loss"], _png)
    t = lm.topology(g, bootstrap=BOOTSTRAP)
    assert html.escape(t.sentence()) in text
    assert 'alt="slices"' in text and '"type":"isosurface"' in text


def test_a_line_has_no_topology_part():
    assert topology_section(line(lambda a: a**2), ["train_loss"], _png) == ""
