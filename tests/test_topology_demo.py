"""benchmarks/topology_demo.py --quick: every JSON field it writes equals lm.topology run directly.

The quick mode (digits CNN, 5³ grids on 64 training images) writes a store, a
report and a .vti per centre and kind of directions; each row's topology
numbers must be what ``lm.topology`` gives on the stored surface, the grid
must span the stated range, and the eigenvector range must follow from the
eigenvalue it names.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

import lossmap as lm

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "lossmap_test_topology_demo", ROOT / "benchmarks" / "topology_demo.py"
)
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

pytestmark = pytest.mark.slow
BOOT = 40


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("topo")
    demo.main(["--quick", "--out", str(out), "--bootstrap", str(BOOT), "--no-progress"])
    return out, json.loads((out / "topology_demo.json").read_text())


def test_rows_match_lm_topology_on_the_stores(run):
    _, res = run
    assert [(r["centre"], r["directions"]) for r in res["rows"]] == [
        ("theta_hat", "eig"),
        ("theta_hat", "random"),
        ("theta0", "eig"),
        ("theta0", "random"),
    ]
    for r in res["rows"]:
        surf = lm.load(r["files"]["store"])
        t = lm.topology(surf, "train_loss", bootstrap=BOOT, seed=res["seed"])
        assert r["n_minima"] == t.n_minima == len(t.minima)
        assert r["n_basins"] == t.n_basins
        assert r["n_basins_se"] == pytest.approx(t.n_basins_se, abs=1e-12)
        assert r["smad"] == pytest.approx(t.smad, abs=1e-12)
        assert r["smad_se"] == pytest.approx(t.smad_se, abs=1e-12)
        finite = sorted((p.depth for p in t.pairs if math.isfinite(p.depth)), reverse=True)
        assert [p["depth"] for p in r["deepest_pairs"]] == pytest.approx(finite[:3], abs=1e-12)
        for p in r["deepest_pairs"]:  # depth = death - birth; resolved iff depth > 2 s.e.
            assert p["depth"] == pytest.approx(p["death"] - p["birth"], abs=1e-12)
            assert p["resolved"] == (p["depth"] > 2 * p["se"])
        # the centre loss is the grid's middle value, and the points/s the grid over the time
        assert surf.spec.shape == (5, 5, 5)
        assert r["centre_loss"] == pytest.approx(float(surf["train_loss"][2, 2, 2]), abs=1e-12)
        assert r["points_per_s"] == pytest.approx(125 / r["seconds"], rel=0.02)


def test_ranges_follow_the_stated_rule(run):
    _, res = run
    for r in res["rows"]:
        coords = lm.load(r["files"]["store"]).spec.coords()
        for c in coords:
            assert np.asarray(c) == pytest.approx(np.linspace(-r["half_width"], r["half_width"], 5))
        if r["directions"] == "random":
            assert r["half_width"] == 1.0
        else:  # ½ λ₁ R² = rise (1 nat), λ₁ the largest of the three, in order
            lam = r["eigenvalues"]
            assert lam == sorted(lam, reverse=True)
            assert 0.5 * lam[0] * r["half_width"] ** 2 == pytest.approx(res["rise"])


def test_report_vti_and_table_written(run):
    out, res = run
    for r in res["rows"]:
        assert "Topology" in Path(r["files"]["report"]).read_text()
        assert Path(r["files"]["vti"]).read_bytes().startswith(b"<?xml")
    table = (out / "topology_demo.md").read_text().splitlines()
    assert sum(line.startswith("| θ") for line in table) == 4
