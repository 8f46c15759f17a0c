"""`lossmap scan --interpolate | --plane | --pca | --hessian` and `lossmap hessian`, end to end.

Checkpoints of the tiny CLI model are written with safetensors into a module
folder; every store goes to the test's own empty folder, so a failing command
can be checked to have written nothing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

import lossmap as lm
from lossmap.cli import main
from lossmap.cli.config import ScanConfig
from lossmap.cli.directions import build_directions, nice_axis

TINY = Path(__file__).parent / "cli_fixtures" / "tinynet.py"
_spec = importlib.util.spec_from_file_location("lossmap_test_cli_directions_tinynet", TINY)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)
GRID = "-0.5:1.5:9"  # step 0.25: 0, 0.5 and 1 are grid points (indices 2, 4, 6)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> dict:
    """A, B (two inits), C (α_c = 0.5, β = 1), a 5-step trajectory, another model's weights."""
    d = tmp_path_factory.mktemp("ckpt")
    sa, sb = tiny.make_model().state_dict(), tiny.make_other_init().state_dict()
    g = torch.Generator().manual_seed(0)
    d1 = {k: sb[k] - sa[k] for k in sa}
    w = {k: torch.randn(v.shape, generator=g) for k, v in sa.items()}
    coef = lm.Direction(w).dot(d1) / lm.Direction(d1).dot(d1)
    sc = {k: sa[k] + 0.5 * d1[k] + (w[k] - coef * d1[k]) for k in sa}  # w ⟂ b − a
    files = {"A": d / "A.safetensors", "B": d / "B.safetensors", "C": d / "C.pt"}
    save_file(sa, str(files["A"]))
    save_file(sb, str(files["B"]))
    torch.save(sc, files["C"])  # a torch state dict works too
    save_file(tiny.make_other_model().state_dict(), str(d / "other.safetensors"))
    (d / "run" / "checkpoints").mkdir(parents=True)
    for t in range(5):
        s = {k: sb[k] + (1 - t / 4) * (sa[k] - sb[k]) + 0.1 * t * (4 - t) * w[k] for k in sa}
        save_file(s, str(d / "run" / "checkpoints" / f"epoch_{t:03d}.safetensors"))
    (d / "short").mkdir()
    for t in range(2):
        save_file(sa, str(d / "short" / f"epoch_{t:03d}.safetensors"))
    return {**files, "other": d / "other.safetensors", "run": d / "run", "short": d / "short",
            "states": {"A": sa, "B": sb, "C": sc}}


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def scan(capsys, out: Path, *extra) -> tuple[int, str, str]:
    return run(capsys, "scan", "--model", f"{TINY}:make_model", "--data", f"{TINY}:make_data",
               "--out", out, "--no-progress", *extra)


def losses(state: dict) -> dict[str, float]:
    """The exact loss of a state on each split, through the model itself."""
    model = tiny.make_model()
    model.load_state_dict(state)
    with torch.no_grad():
        return {f"{s}_loss": nn.functional.cross_entropy(model(X), y).item()
                for s, (X, y) in tiny.make_data().items()}


def test_interpolate_line_ends_are_the_two_models(ckpt, tmp_path, capsys):
    out = tmp_path / "line.lossmap"
    code, _, err = scan(capsys, out, "--interpolate", ckpt["A"], ckpt["B"])
    assert code == 0, err
    surf = lm.load(out)
    assert surf.dims == ("alpha",) and str(surf.spec.grid[0]) == "-0.5:1.5:41"  # the default
    assert surf.spec.directions[0]["kind"] == "interpolation"
    assert surf.meta["models"] == {"a": [0.0], "b": [1.0]}
    assert surf.meta["command"]["interpolate"] == [str(ckpt["A"]), str(ckpt["B"])]
    for i, name in ((10, "A"), (30, "B")):  # α = 0 and α = 1
        for var, want in losses(ckpt["states"][name]).items():
            assert surf[var][i] == pytest.approx(want, rel=1e-5), (name, var)
    r = lm.barrier(surf, "train_loss")
    assert np.isfinite(r.value) and r.value >= 0


def test_plane_puts_the_three_models_at_their_coordinates(ckpt, tmp_path, capsys):
    out = tmp_path / "plane.lossmap"
    code, _, err = scan(capsys, out, "--plane", ckpt["A"], ckpt["B"], ckpt["C"],
                        f"--grid={GRID}", f"--grid={GRID}")
    assert code == 0, err
    surf = lm.load(out)
    models = surf.meta["models"]
    _, _, coords = lm.plane(*(ckpt["states"][n] for n in "ABC"))
    assert models == {k: list(v) for k, v in coords.items()}
    assert models["c"][0] == pytest.approx(0.5, abs=1e-6) and models["c"][1] == 1.0
    for at, name in (((2, 2), "A"), ((6, 2), "B"), ((4, 6), "C")):
        for var, want in losses(ckpt["states"][name]).items():
            assert surf[var][at] == pytest.approx(want, rel=1e-5), (name, var)
    code, _, err = run(capsys, "plot", out, "-o", tmp_path / "plane.png", "--dpi", "40")
    assert code == 0, err


def test_plane_default_grid_covers_the_models_with_zero_and_one_on_it(ckpt):
    cfg = ScanConfig(model="m:f", data="d:f", out="x", plane=[str(ckpt[n]) for n in "ABC"])
    cfg.validate()
    assert cfg.dirs == 2 and cfg.grid == []  # fitted once the coordinates are known
    model = tiny.make_model()
    _, _, meta = build_directions(cfg, model, nn.CrossEntropyLoss(), tiny.make_data())
    xy = np.asarray(list(meta["models"].values()))
    for i, axis in enumerate(cfg.grid):
        v = axis.values()
        span = xy[:, i].max() - xy[:, i].min()
        assert v[0] <= xy[:, i].min() - 0.25 * span + 1e-12
        assert v[-1] >= xy[:, i].max() + 0.25 * span - 1e-12
        for x in (0.0, 1.0):
            assert np.abs(v - x).min() < 1e-12
    assert nice_axis(0.0, 1.0) == (-7 / 27, 34 / 27, 42)


def test_pca_path_in_meta_equals_project(ckpt, tmp_path, capsys):
    out = tmp_path / "pca.lossmap"
    code, _, err = scan(capsys, out, "--pca", ckpt["run"], "--grid=-1:1:3", "--grid=-1:1:3")
    assert code == 0, err
    surf = lm.load(out)
    files = sorted((ckpt["run"] / "checkpoints").glob("*.safetensors"))
    dirs = lm.pca_directions(files, 2, model=tiny.make_model())
    ratio = dirs.explained_variance_ratio
    np.testing.assert_allclose(surf.meta["path"], lm.project(files, dirs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(surf.meta["explained_variance_ratio"], ratio, rtol=1e-12)
    assert surf.meta["trajectory"] == [str(f) for f in files]
    stored = lm.load_directions(out)
    assert [d.fingerprint() for d in stored] == [d.fingerprint() for d in dirs]
    for var, want in losses(ckpt["states"]["B"]).items():  # centre: the final checkpoint (= B)
        assert surf[var][1, 1] == pytest.approx(want, rel=1e-5)


def test_pca_default_grid_is_fitted_to_the_path(ckpt):
    cfg = ScanConfig(model="m:f", data="d:f", out="x", pca=str(ckpt["run"])).validate()
    _, _, meta = build_directions(cfg, tiny.make_model(), nn.CrossEntropyLoss(), {})
    path = np.asarray(meta["path"])
    fitted = lm.fitted_grid(path, margin=0.25, n=41)
    assert [(a.lo, a.hi, a.n) for a in cfg.grid] == [(float(lo), float(hi), 41)
                                                      for lo, hi, _ in fitted]


def test_hessian_directions_and_eigenvalues(ckpt, tmp_path, capsys):
    out = tmp_path / "hessian.lossmap"
    code, _, err = scan(capsys, out, "--hessian-dirs", "3", "--checkpoint", ckpt["B"],
                        "--grid=-1:1:3", "--grid=-1:1:3")
    assert code == 0, err
    surf = lm.load(out)
    model, data = tiny.make_model(), tiny.make_data()
    dirs = lm.curvature_operator(model, nn.CrossEntropyLoss(), {"train": data["train"]},
                                 centre=ckpt["states"]["B"]).eigenpairs(3)
    vals = dirs.eigenvalues
    h = surf.meta["hessian"]
    np.testing.assert_allclose(h["eigenvalues"], vals, rtol=1e-6)
    assert h["split"] == "train" and h["k"] == 3
    stored = lm.load_directions(out)
    assert len(stored) == 2
    for s, d in zip(stored, dirs, strict=False):
        for k in d:
            torch.testing.assert_close(s[k], d[k], rtol=1e-4, atol=1e-5)
    # --hessian-dirs 1 makes a line; --hessian-split picks the split.
    out = tmp_path / "line.lossmap"
    code, _, err = scan(capsys, out, "--hessian-dirs", "1", "--hessian-split", "test",
                        "--grid=-1:1:3")
    assert code == 0, err
    surf = lm.load(out)
    (want,) = lm.curvature_operator(model, nn.CrossEntropyLoss(), data["test"]).eigenpairs(
        1).eigenvalues
    assert surf.dims == ("alpha",) and surf.meta["hessian"]["split"] == "test"
    assert surf.meta["hessian"]["eigenvalues"][0] == pytest.approx(want, rel=1e-6)


def test_yaml_spec_keys(ckpt, tmp_path, capsys):
    spec = tmp_path / "scan.yaml"
    spec.write_text(yaml.safe_dump({"model": f"{TINY}:make_model", "data": f"{TINY}:make_data",
                                    "interpolate": [str(ckpt["A"]), str(ckpt["B"])],
                                    "grid": "0:1:3", "out": str(tmp_path / "y.lossmap")}))
    code, _, err = run(capsys, "scan", "--spec", spec, "--no-progress")
    assert code == 0, err
    surf = lm.load(tmp_path / "y.lossmap")
    assert surf["train_loss"][0] == pytest.approx(losses(ckpt["states"]["A"])["train_loss"],
                                                  rel=1e-5)


def test_hessian_command(tmp_path, capsys):
    js, png = tmp_path / "h.json", tmp_path / "h.png"
    code, out, err = run(capsys, "hessian", "--model", f"{TINY}:make_model", "--data",
                         f"{TINY}:make_data", "--k", "2", "--trace", "--density", "--probes", "4",
                         "--lanczos", "12", "-o", js, "--plot", png)
    assert code == 0, err
    assert "top-2 eigenvalues" in out and "trace" in out and "density" in out
    r = json.loads(js.read_text())
    model, (X, y) = tiny.make_model(), tiny.make_data()["train"]
    op = lm.curvature_operator(model, nn.CrossEntropyLoss(), (X, y))
    vals = op.eigenpairs(2).eigenvalues
    np.testing.assert_allclose(r["eigenvalues"], vals, rtol=1e-6)
    found = op.trace("hutchinson", probes=4)
    assert r["trace"] == {"estimate": pytest.approx(found.value),
                          "standard_error": pytest.approx(found.se), "probes": 4,
                          "method": "hutchinson"}
    d = r["density"]
    assert np.trapezoid(d["density"], d["grid"]) == pytest.approx(1.0, abs=1e-4)
    assert sum(d["weights"]) == pytest.approx(1.0) and d["max"] >= vals[0] * (1 - 1e-3)
    assert set(r["seconds"]) == {"eigenvalues", "trace", "density"}
    assert png.stat().st_size > 0


def test_hessian_command_kinds_bottom_blocks_and_saved_directions(tmp_path, capsys):
    folder = tmp_path / "dirs"
    code, out, err = run(capsys, "hessian", "--model", f"{TINY}:make_model", "--data",
                         f"{TINY}:make_data", "--k", "1", "--kind", "ggn", "--smallest", "1",
                         "--blocks", "--save-directions", folder, "-o", tmp_path / "g.json")
    assert code == 0, err
    assert "GGN of train loss" in out and "bottom-1 eigenvalues" in out and "block" in out
    r = json.loads((tmp_path / "g.json").read_text())
    model, (X, y) = tiny.make_model(), tiny.make_data()["train"]
    op = lm.curvature_operator(model, nn.CrossEntropyLoss(), (X, y), kind="ggn")
    np.testing.assert_allclose(r["eigenvalues"], op.eigenpairs(1).eigenvalues, rtol=1e-6)
    assert r["kind"] == "ggn" and r["smallest"][0] >= -1e-6  # a GGN is positive semi-definite
    assert set(r["blocks"]) == set(op.blocks("layer", k=1))
    top = lm.Direction.load(folder / "top0.safetensors")
    assert top.meta["eigenvalue"] == pytest.approx(r["eigenvalues"][0])


def _one_line_error(result, command: str, *needles: str) -> None:
    code, out, err = result
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lossmap {command}: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


BAD = {
    "two options": (("--interpolate", "A", "B", "--plane", "A", "B", "C"),
                    ("--interpolate and --plane cannot be combined",)),
    "pca and hessian": (("--pca", "run", "--hessian-dirs", "2"), ("--pca and --hessian-dirs",)),
    "one file for a line": (("--interpolate", "A"), ("takes 2 checkpoint files (A B), got 1",)),
    "two files for a plane": (("--plane", "A", "B"), ("takes 3 checkpoint files", "got 2")),
    "missing file": (("--interpolate", "A", "nope.safetensors"), ("nope.safetensors",
                                                                  "does not exist")),
    "another model": (("--interpolate", "A", "other"), ("--interpolate B", "other.safetensors",
                                                        "another model")),
    "another model in a plane": (("--plane", "A", "B", "other"), ("--plane C", "another model")),
    "checkpoint and a line": (("--interpolate", "A", "B", "--checkpoint", "A"),
                              ("--checkpoint cannot be combined with --interpolate",)),
    "dirs for a line": (("--interpolate", "A", "B", "--dirs", "2"), ("--dirs 2 does not fit",)),
    "pca folder missing": (("--pca", "nowhere"), ("nowhere", "does not exist")),
    "pca too short": (("--pca", "short", "--grid=-1:1:3", "--grid=-1:1:3"),
                      ("holds 2 checkpoints", "at least 3")),
    "hessian zero": (("--hessian-dirs", "0"), ("--hessian-dirs 0 must be an integer K >= 1",)),
    "hessian dirs": (("--hessian-dirs", "1", "--dirs", "2"), ("needs --hessian-dirs K >= 2",)),
    "hessian split": (("--hessian-dirs", "1", "--hessian-split", "val", "--grid=-1:1:3"),
                      ("--hessian-split 'val' is not a split", "train, test")),
    "split alone": (("--hessian-split", "test", "--grid=-1:1:3", "--grid=-1:1:3"),
                    ("--hessian-split needs --hessian-dirs",)),
    "k too large": (("--hessian-dirs", "60", "--grid=-1:1:3", "--grid=-1:1:3"),
                    ("n=60 must be < the number of parameters (51)",)),
}


@pytest.mark.parametrize(("argv", "needles"), BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_and_writes_nothing(ckpt, tmp_path, capsys, argv, needles):
    names = {"A": ckpt["A"], "B": ckpt["B"], "C": ckpt["C"], "other": ckpt["other"],
             "run": ckpt["run"], "short": ckpt["short"]}
    argv = [str(names.get(a, a)) for a in argv]
    _one_line_error(scan(capsys, tmp_path / "x.lossmap", *argv), "scan", *needles)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (("--n", "51"), ("n=51 must be < the number of parameters",)),
        (("-o", "h.txt"), ("use -o FILE.json",)),
        (("--plot", "h.gif"), ("must end in .png",)),
        (("--split", "val"), ("--split 'val' is not a split",)),
        (("--checkpoint", "OTHER"), ("--checkpoint", "another model")),
    ],
    ids=["k", "json", "plot", "split", "checkpoint"],
)
def test_hessian_command_bad_input(ckpt, tmp_path, capsys, extra, needles):
    extra = [str(ckpt["other"]) if a == "OTHER" else str(tmp_path / a) if "." in a else a
             for a in extra]
    result = run(capsys, "hessian", "--model", f"{TINY}:make_model", "--data",
                 f"{TINY}:make_data", *extra)
    _one_line_error(result, "hessian", *needles)
    assert list(tmp_path.iterdir()) == []


def test_docstring_examples_run():
    import doctest

    import lossmap.cli.directions as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
