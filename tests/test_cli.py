"""The command line: `lossmap scan | info | export`, YAML specs, entry points, bad input.

Most tests run the CLI in-process through ``lossmap.cli.main`` (it returns the
exit status); the ones about process behaviour run ``python -m lossmap``.
The user's model and data functions live in ``tests/cli_fixtures/tinynet.py``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from cli_run import run_cli as run
from lossmap.cli import main

FIXTURES = Path(__file__).parent / "cli_fixtures"
TINY = FIXTURES / "tinynet.py"
PLANE = ("-1:1:5", "-0.5:0.5:4")
ALPHA, BETA = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 4)
VARIABLES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("lossmap_test_cli_tinynet", TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny = _load_fixture_module()


class Custom:
    """A class torch.save must pickle (a checkpoint that needs pickle to load)."""

    def __init__(self) -> None:
        self.note = "needs pickle"


# -- helpers -----------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest




def scan_argv(
    out: Path,
    *extra,
    model: str = "make_model",
    data: str = "make_data",
    grid: tuple[str, ...] = PLANE,
    dirs: int | None = None,
) -> list[str]:
    argv = ["scan", "--model", f"{TINY}:{model}", "--data", f"{TINY}:{data}"]
    argv += ["--dirs", str(len(grid) if dirs is None else dirs)]
    for g in grid:
        argv.append(f"--grid={g}")
    return [*argv, "--out", str(out), "--no-progress", *map(str, extra)]


def assert_one_line_error(result, command: str, *needles: str) -> str:
    """Exit status 2, one stderr line 'lossmap CMD: error: …' naming every needle."""
    code, out, err = result
    assert code == 2, f"exit status {code}; stdout {out!r}; stderr {err!r}"
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith(f"lossmap {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def api_plane(seed: int = 0, grid=((-1, 1, 5), (-0.5, 0.5, 4)), **kw) -> lm.Surface:
    """The same plane through the Python API."""
    model = tiny.make_model()
    dirs = lm.random_directions(model, len(grid), norm="filter", ignore="biasbn", seed=seed)
    return lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data=tiny.make_data(),
        directions=dirs,
        grid=list(grid),
        progress=False,
        seed=seed,
        **kw,
    )


def assert_same_values(a: lm.Surface, b: lm.Surface, rtol: float = 1e-6) -> None:
    assert set(a.values) == set(b.values)
    for var in a.values:
        np.testing.assert_allclose(a[var], b[var], rtol=rtol, atol=1e-12, err_msg=var)


def points_count(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
    finally:
        conn.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def plane(tmp_path, capsys) -> Path:
    """A finished CLI plane store (grid -1:1:5 x -0.5:0.5:4, seed 0)."""
    path = tmp_path / "plane.lossmap"
    code, _, err = run(capsys, *scan_argv(path))
    assert code == 0, err
    return path


# -- scan, info, export ------------------------------------------------------------


def test_scan_plane_both_grid_spellings_equals_api_scan(tmp_path, capsys):
    path = tmp_path / "runs" / "plane.lossmap"  # a missing folder is created
    argv = ["scan", "--model", f"{TINY}:make_model", "--data", f"{TINY}:make_data"]
    argv += ["--grid", "-1:1:5", "--grid=-0.5:0.5:4", "--dirs", "2", "--out", path]
    code, out, err = run(capsys, *argv, "--no-progress")
    assert code == 0, err
    assert str(path) in out and "complete" in out
    assert err == ""

    surf = lm.load(path)
    assert surf.complete and surf.dims == ("alpha", "beta")
    assert set(surf.values) == set(VARIABLES)
    np.testing.assert_array_equal(surf.coords["alpha"], ALPHA)
    np.testing.assert_array_equal(surf.coords["beta"], BETA)
    assert np.ptp(surf["train_loss"]) > 1e-3  # a real surface, not a constant

    ref = api_plane()
    assert_same_values(surf, ref)
    assert surf.fingerprints == ref.fingerprints
    assert surf.spec == ref.spec

    # The CLI drew the documented directions: random_directions(model, 2, seed=0, ...).
    model = tiny.make_model()
    want = lm.random_directions(model, 2, norm="filter", ignore="biasbn", seed=0)
    for got, exp in zip(lm.load_directions(path), want, strict=True):
        assert set(got) == set(exp)
        for k in exp:
            assert torch.equal(got[k], exp[k]), k

    # One value from first principles: the corner alpha=1, beta=0.5.
    state = {k: v.detach().double() for k, v in model.named_parameters()}
    for k in state:
        state[k] = state[k] + 1.0 * want[0][k].double() + 0.5 * want[1][k].double()
    X, y = tiny.make_data()["test"]
    logits = torch.func.functional_call(model.double(), state, (X.double(),))
    expected = nn.functional.cross_entropy(logits, y).item()
    assert surf["test_loss"][4, 3] == pytest.approx(expected, rel=1e-5)


def test_info_text_and_json(plane, capsys):
    code, out, err = run(capsys, "info", plane)
    assert code == 0, err
    assert str(plane) in out
    assert "-1:1:5 x -0.5:0.5:4" in out
    assert "20/20 done, 0 diverged" in out
    assert "train, test" in out
    for var in VARIABLES:
        assert var in out

    code, out, err = run(capsys, "info", "--json", plane)
    assert code == 0, err
    info = json.loads(out)
    surf = lm.load(plane)
    assert info["spec"]["grid"] == [[-1.0, 1.0, 5], [-0.5, 0.5, 4]]
    assert info["spec"]["splits"] == ["train", "test"]
    assert info["fingerprints"] == surf.fingerprints
    assert info["summary"]["points"] == 20 and info["summary"]["done"] == 20
    assert info["summary"]["train_loss"]["min"] == pytest.approx(float(surf["train_loss"].min()))
    assert info["lossmap_version"] == lm.__version__
    assert info["command"]["grid"] == list(PLANE)
    assert info["command"]["model"] == f"{TINY}:make_model"


def test_export_netcdf_and_csv_equal_the_store(plane, tmp_path, capsys):
    import pandas as pd
    import xarray as xr

    surf = lm.load(plane)
    nc = tmp_path / "out" / "plane.nc"
    code, out, err = run(capsys, "export", plane, "-o", nc)
    assert code == 0, err
    assert "wrote" in out and nc.exists()
    with xr.open_dataset(nc, engine="scipy") as ds:
        ds.load()
    np.testing.assert_array_equal(ds["alpha"].values, ALPHA)
    np.testing.assert_array_equal(ds["beta"].values, BETA)
    for var in VARIABLES:
        assert ds[var].dims == ("alpha", "beta")
        np.testing.assert_array_equal(ds[var].values, surf[var])
    assert ds["done"].values.all()
    assert json.loads(ds.attrs["spec"]) == surf.spec.to_dict()

    csv = tmp_path / "plane.csv"
    code, out, err = run(capsys, "export", "--out", csv, plane)
    assert code == 0, err
    df = pd.read_csv(csv).sort_values(["alpha", "beta"])
    assert len(df) == 20
    assert {"alpha", "beta", "done", *VARIABLES} <= set(df.columns)
    np.testing.assert_allclose(df["alpha"].to_numpy().reshape(5, 4)[:, 0], ALPHA)
    np.testing.assert_allclose(df["beta"].to_numpy().reshape(5, 4)[0], BETA)
    for var in VARIABLES:
        np.testing.assert_allclose(df[var].to_numpy().reshape(5, 4), surf[var], rtol=1e-8)


def test_info_and_export_of_a_partial_store(plane, tmp_path, capsys):
    conn = sqlite3.connect(str(plane))
    conn.execute("DELETE FROM points WHERE idx IN (0, 7, 19)")
    conn.commit()
    conn.close()
    code, out, err = run(capsys, "info", plane)
    assert code == 0, err
    assert "17/20 done" in out
    csv = tmp_path / "partial.csv"
    assert run(capsys, "export", plane, "-o", csv)[0] == 0
    import pandas as pd

    df = pd.read_csv(csv)
    missing = df[df["done"] == 0]
    assert len(missing) == 3
    assert missing[list(VARIABLES)].isna().all().all()
    assert df[df["done"] == 1][list(VARIABLES)].notna().all().all()


def test_rerun_of_a_finished_scan_changes_nothing(plane, capsys):
    before = lm.load(plane)
    code, out, err = run(capsys, *scan_argv(plane))
    assert code == 0, err
    assert "complete" in out
    assert points_count(plane) == 20
    assert_same_values(lm.load(plane), before, rtol=0)


def test_flags_reach_the_scan(tmp_path, capsys):
    path = tmp_path / "flags.lossmap"
    extra = ["--norm", "layer", "--ignore", "none", "--orthogonal", "--seed", "4"]
    extra += ["--metrics", "loss", "--samples", "16", "--batch-size", "5"]
    code, _, err = run(capsys, *scan_argv(path, *extra, grid=("-2:1:4",)))
    assert code == 0, err
    surf = lm.load(path)
    model = tiny.make_model()
    dirs = lm.random_directions(model, 1, norm="layer", ignore=None, seed=4, orthogonal=True)
    ref = lm.scan(
        model, nn.CrossEntropyLoss(), data=tiny.make_data(), directions=dirs,
        grid=(-2, 1, 4), metrics=("loss",), samples=16, seed=4, progress=False,
    )  # fmt: skip
    assert set(surf.values) == {"train_loss", "test_loss"}
    assert surf.spec.samples == 16 and surf.spec.seed == 4
    assert surf.fingerprints == ref.fingerprints
    assert_same_values(surf, ref)


def test_autocast_flag_reaches_the_scan_and_bad_values_are_refused(tmp_path, capsys):
    path = tmp_path / "bf16.lossmap"
    code, _, err = run(capsys, *scan_argv(path, "--autocast", "bfloat16", grid=("-1:1:3",)))
    assert code == 0, err
    surf = lm.load(path)
    model = tiny.make_model()
    ref = lm.scan(
        model, nn.CrossEntropyLoss(), data=tiny.make_data(),
        directions=lm.random_directions(model, 1, seed=0), grid=(-1, 1, 3),
        autocast="bfloat16", progress=False,
    )  # fmt: skip
    assert surf.spec.autocast == "bfloat16" and surf.fingerprints == ref.fingerprints
    assert_same_values(surf, ref)
    code, _, err = run(capsys, *scan_argv(tmp_path / "x.lossmap", "--autocast", "int8"))
    assert code == 2 and "--autocast: invalid choice: 'int8'" in err
    assert not (tmp_path / "x.lossmap").exists()


# -- YAML spec files ------------------------------------------------------------


def write_spec(path: Path, **keys) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(keys))
    return path


def test_spec_file_gives_the_same_store(plane, tmp_path, capsys):
    out = tmp_path / "from-yaml.lossmap"
    spec = write_spec(
        tmp_path / "scan.yaml",
        model=f"{TINY}:make_model",
        data=f"{TINY}:make_data",
        dirs=2,
        norm="filter",
        ignore="biasbn",
        seed=0,
        grid=["-1:1:5", [-0.5, 0.5, 4]],
        out=str(out),
    )
    code, _, err = run(capsys, "scan", "--spec", spec, "--no-progress")
    assert code == 0, err
    a, b = lm.load(out), lm.load(plane)
    assert a.spec == b.spec
    assert a.fingerprints == b.fingerprints
    assert_same_values(a, b, rtol=0)


def test_flag_overrides_the_spec_file(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "scan.yaml",
        model=f"{TINY}:make_model",
        data=f"{TINY}:make_data",
        dirs=1,
        seed=0,
        grid="-1:1:5",
        out=str(tmp_path / "yaml.lossmap"),
    )
    out = tmp_path / "flag.lossmap"
    code, _, err = run(
        capsys, "scan", "--spec", spec, "--seed", "3", "--out", out, "--grid", "-1:1:3",
        "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert out.exists() and not (tmp_path / "yaml.lossmap").exists()
    surf = lm.load(out)
    assert surf.spec.seed == 3
    assert surf.spec.shape == (3,)
    model = tiny.make_model()
    (d3,) = lm.random_directions(model, 1, seed=3)
    (d0,) = lm.random_directions(model, 1, seed=0)
    (stored,) = lm.load_directions(out)
    assert stored.fingerprint() == d3.fingerprint() != d0.fingerprint()


def test_spec_file_unknown_key(tmp_path, capsys):
    out = tmp_path / "x.lossmap"
    spec = write_spec(
        tmp_path / "scan.yaml",
        model=f"{TINY}:make_model",
        data=f"{TINY}:make_data",
        gird=["-1:1:5"],
        out=str(out),
    )
    line = assert_one_line_error(run(capsys, "scan", "--spec", spec), "scan", "'gird'")
    assert "grid" in line.split("'gird'", 1)[1]  # the known keys are listed
    assert not out.exists()


def test_spec_file_bad_autocast(tmp_path, capsys):
    out = tmp_path / "x.lossmap"
    spec = write_spec(tmp_path / "scan.yaml", model=f"{TINY}:make_model",
                      data=f"{TINY}:make_data", grid=["-1:1:5"], dirs=1, autocast="fp8",
                      out=str(out))
    assert_one_line_error(run(capsys, "scan", "--spec", spec), "scan",
                          "--autocast 'fp8' must be bfloat16 or float16")
    assert not out.exists()


def test_spec_file_bad_yaml_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [-1:1:5\nmodel: x\n")
    assert_one_line_error(run(capsys, "scan", "--spec", bad), "scan", "not valid YAML", "line")
    missing = tmp_path / "missing.yaml"
    assert_one_line_error(run(capsys, "scan", "--spec", missing), "scan", "does not exist")


# -- MODULE:FUNCTION ---------------------------------------------------------------


def test_dotted_module_entry_points(plane, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.delitem(sys.modules, "tinynet", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "dotted.lossmap"
    argv = ["scan", "--model", "tinynet:make_model", "--data", "tinynet:make_data"]
    argv += ["--grid", PLANE[0], "--grid", PLANE[1], "--out", out, "--no-progress"]
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert "tinynet" in sys.modules  # imported by name, not by path
    a, b = lm.load(out), lm.load(plane)
    assert a.fingerprints == b.fingerprints
    assert_same_values(a, b, rtol=0)


def test_file_entry_point_imports_its_siblings(tmp_path, capsys):
    pkg = tmp_path / "user"
    pkg.mkdir()
    (pkg / "user_layers_for_lossmap_test.py").write_text(
        "from torch import nn\n\n\ndef body():\n    return nn.Linear(8, 3)\n"
    )
    (pkg / "entry.py").write_text(
        "import torch\n"
        "from user_layers_for_lossmap_test import body\n\n\n"
        "def model():\n    torch.manual_seed(0)\n    return body()\n"
    )
    out = tmp_path / "sib.lossmap"
    code, _, err = run(
        capsys, *scan_argv(out, grid=("-1:1:3",)), "--model", f"{pkg / 'entry.py'}:model"
    )
    assert code == 0, err
    assert lm.load(out).complete


# -- losses ---------------------------------------------------------------------------


def regression_line(tmp_path, capsys, loss: str) -> lm.Surface:
    out = tmp_path / f"{loss.rsplit(':', 1)[-1]}.lossmap"
    argv = scan_argv(
        out, "--loss", loss, model="make_regressor", data="make_regression_data",
        grid=("-1:1:5",),
    )  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    return lm.load(out)


def api_regression_line(loss_fn) -> lm.Surface:
    model = tiny.make_regressor()
    (d,) = lm.random_directions(model, 1, norm="filter", ignore="biasbn", seed=0)
    return lm.scan(
        model, loss_fn, data=tiny.make_regression_data(), directions=d, grid=(-1, 1, 5),
        progress=False,
    )  # fmt: skip


def test_loss_mse_with_float_targets(tmp_path, capsys):
    surf = regression_line(tmp_path, capsys, "mse")
    assert tuple(surf.values) == ("train_loss",)  # accuracy is dropped for float targets
    assert surf.complete
    assert_same_values(surf, api_regression_line(nn.MSELoss()))
    X, y = tiny.make_regression_data()["train"]
    with torch.no_grad():
        centre = ((tiny.make_regressor()(X).double() - y.double()) ** 2).mean().item()
    assert surf["train_loss"][2] == pytest.approx(centre, rel=1e-5)  # alpha = 0


def test_loss_module_name(tmp_path, capsys):
    mse = regression_line(tmp_path, capsys, "mse")
    half = regression_line(tmp_path, capsys, f"{TINY}:half_mse")
    assert half.spec.loss == "half_mse"
    np.testing.assert_allclose(half["train_loss"], 0.5 * mse["train_loss"], rtol=1e-6)


def test_loss_class_is_instantiated(tmp_path, capsys):
    surf = regression_line(tmp_path, capsys, "torch.nn:L1Loss")
    assert surf.spec.loss == "L1Loss"
    assert_same_values(surf, api_regression_line(nn.L1Loss()))


# -- checkpoints -------------------------------------------------------------------


def moved_state() -> dict[str, torch.Tensor]:
    """make_model's weights, moved: a centre other than the model's own."""
    g = torch.Generator().manual_seed(5)
    return {
        k: v.detach() * 1.5 + 0.1 * torch.randn(v.shape, generator=g)
        for k, v in tiny.make_model().state_dict().items()
    }


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_is_the_centre(tmp_path, capsys, suffix):
    state = moved_state()
    ckpt = tmp_path / f"centre{suffix}"
    if suffix == ".pt":
        torch.save({"model_state_dict": state, "epoch": 3}, ckpt)
    else:
        from safetensors.torch import save_file

        save_file(state, str(ckpt))
    out = tmp_path / "ckpt.lossmap"
    code, _, err = run(capsys, *scan_argv(out, "--checkpoint", ckpt, grid=("-1:1:5",)))
    assert code == 0, err
    surf = lm.load(out)

    moved = tiny.make_model()
    moved.load_state_dict(state)
    (d,) = lm.random_directions(moved, 1, norm="filter", ignore="biasbn", seed=0)
    ref = lm.scan(
        tiny.make_model(), nn.CrossEntropyLoss(), data=tiny.make_data(), directions=d,
        grid=(-1, 1, 5), centre=state, progress=False,
    )  # fmt: skip
    assert surf.fingerprints == ref.fingerprints
    assert_same_values(surf, ref)
    X, y = tiny.make_data()["train"]
    with torch.no_grad():
        centre = nn.functional.cross_entropy(moved(X), y).item()
    assert surf["train_loss"][2] == pytest.approx(centre, rel=1e-5)


def test_checkpoint_that_needs_pickle_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "pickled.pt"
    torch.save({**tiny.make_model().state_dict(), "extra": Custom()}, ckpt)
    out = tmp_path / "x.lossmap"
    line = assert_one_line_error(
        run(capsys, *scan_argv(out, "--checkpoint", ckpt, grid=("-1:1:3",))),
        "scan",
        "pickle",
        "weights_only",
    )
    assert str(ckpt) in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("other_shapes", ("another model", "shape")),
        ("other_names", ("another model", "'1.weight'")),
        ("not_a_state", ("state dict",)),
    ],
)
def test_checkpoint_of_another_model_is_refused(tmp_path, capsys, content, needles):
    if content == "other_shapes":
        obj = tiny.make_other_model().state_dict()
    elif content == "other_names":
        obj = {f"net.{k}": v for k, v in tiny.make_model().state_dict().items()}
    else:
        obj = [torch.zeros(3)]
    ckpt = tmp_path / "other.pt"
    torch.save(obj, ckpt)
    out = tmp_path / "x.lossmap"
    assert_one_line_error(
        run(capsys, *scan_argv(out, "--checkpoint", ckpt, grid=("-1:1:3",))), "scan", *needles
    )
    assert not out.exists()


# -- bad input: one line, exit status 2 ---------------------------------------------

T = str(TINY)
BAD_SCANS = {
    "grid n < 2": (dict(grid=("0:1:1",)), ("grid axis 0", "n=1", ">= 2")),
    "grid lo >= hi": (dict(grid=("1:0:5",)), ("grid axis 0", "lo=1", "hi=0")),
    "grid lo == hi": (dict(grid=("-1:1:5", "0.5:0.5:3")), ("grid axis 1", "lo=0.5")),
    "grid not LO:HI:N": (dict(grid=("-1:1",)), ("LO:HI:N",)),
    "grid count below dirs": (dict(grid=("-1:1:5",), dirs=2), ("1 --grid", "--dirs 2")),
    "grid count above dirs": (dict(grid=PLANE, dirs=1), ("2 --grid", "--dirs 1")),
    "dirs 7": (dict(grid=PLANE, dirs=7), ("--dirs 7", "1 (line), 2 (plane) or up to 6")),
    "unknown norm": (dict(extra=("--norm", "bogus")), ("unknown norm 'bogus'", "filter")),
    "unknown ignore": (dict(extra=("--ignore", "bogus")), ("unknown ignore 'bogus'", "biasbn")),
    "model module missing": (
        dict(extra=("--model", "no_such_module_for_lossmap:make")),
        ("--model", "'no_such_module_for_lossmap'", "does not import"),
    ),
    "model attribute missing": (
        dict(model="no_such_function"),
        ("--model", "has no 'no_such_function'"),
    ),
    "model not MODULE:FUNCTION": (
        dict(extra=("--model", "make_model")),
        ("--model 'make_model'", "not MODULE:FUNCTION"),
    ),
    "model file missing": (
        dict(extra=("--model", "nowhere/models.py:make")),
        ("--model", "'nowhere/models.py'", "does not exist"),
    ),
    "data module missing": (
        dict(extra=("--data", "no_such_module_for_lossmap.data:load")),
        ("--data", "does not import"),
    ),
    "loss module missing": (
        dict(extra=("--loss", "no_such_module_for_lossmap:loss")),
        ("--loss", "does not import"),
    ),
    "model returns a non-Module": (
        dict(model="not_a_model"),
        ("returned a dict", "not a torch.nn.Module"),
    ),
    "split X and y lengths differ": (
        dict(data="make_mismatched_data"),
        ("split 'train'", "(64, 8)", "(60,)", "first dimensions"),
    ),
    "sample shape does not fit the model": (
        dict(data="make_wrong_width_data"),
        ("split 'train'", "(5,)", "does not match the model"),
    ),
    "checkpoint missing": (
        dict(extra=("--checkpoint", "no/such/centre.pt")),
        ("checkpoint 'no/such/centre.pt'", "does not exist"),
    ),
    "samples above the split size": (
        dict(extra=("--samples", "100")),
        ("samples=100", "only 64"),
    ),
    "dirs not an integer (argparse)": (
        dict(extra=("--dirs", "two")),
        ("argument --dirs", "invalid int value: 'two'"),
    ),
    "unknown flag (argparse)": (
        dict(extra=("--grdi", "-1:1:5")),
        ("unrecognized arguments",),
    ),
}


@pytest.mark.parametrize(("case", "needles"), BAD_SCANS.values(), ids=BAD_SCANS.keys())
def test_bad_scan_input(tmp_path, capsys, case, needles):
    out = tmp_path / "x.lossmap"
    kw = {k: v for k, v in case.items() if k != "extra"}
    kw.setdefault("grid", ("-1:1:5",))
    argv = scan_argv(out, *case.get("extra", ()), **kw)  # a later flag wins
    assert_one_line_error(run(capsys, *argv), "scan", *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was written


def test_missing_required_flag(tmp_path, capsys):
    argv = ["scan", "--model", f"{T}:make_model", "--data", f"{T}:make_data"]
    assert_one_line_error(run(capsys, *argv, "--grid=-1:1:5", "--grid=-1:1:5"), "scan", "--out")


@pytest.mark.parametrize("kind", ["text", "sqlite"])
def test_out_that_is_not_a_store_is_left_untouched(tmp_path, capsys, kind):
    out = tmp_path / "results.lossmap"
    if kind == "text":
        out.write_bytes(b"my precious results\n" * 50)
    else:
        conn = sqlite3.connect(str(out))
        conn.execute("CREATE TABLE points(idx INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO points VALUES (1, 'keep me')")
        conn.commit()
        conn.close()
    before, listing = out.read_bytes(), sorted(tmp_path.iterdir())
    assert_one_line_error(
        run(capsys, *scan_argv(out)), "scan", str(out), "not a lossmap store", "untouched"
    )
    assert out.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == listing  # no temporary or journal files left


def test_info_and_export_of_a_missing_path(tmp_path, capsys):
    missing = tmp_path / "nothing.lossmap"
    assert_one_line_error(run(capsys, "info", missing), "info", str(missing), "does not exist")
    assert_one_line_error(
        run(capsys, "export", missing, "-o", tmp_path / "x.nc"), "export", "does not exist"
    )
    assert not (tmp_path / "x.nc").exists()


def test_info_of_a_file_that_is_not_a_store(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert_one_line_error(run(capsys, "info", path), "info", "not a lossmap store")
    assert path.read_text() == "hello\n"


def test_export_to_an_unknown_format(plane, tmp_path, capsys):
    target = tmp_path / "plane.txt"
    assert_one_line_error(
        run(capsys, "export", plane, "-o", target), "export", "'" + str(target), ".nc", ".csv"
    )
    assert not target.exists()


MISMATCHES = {
    "grid": (dict(grid=("-1:1:5", "-0.5:0.5:6")), ("grid -1:1:5 x -0.5:0.5:4 stored vs",)),
    "seed": (dict(extra=("--seed", "3")), ("seed 0 stored vs 3 now", "direction 0 differs")),
    "norm": (dict(extra=("--norm", "layer")), ("direction 0 differs",)),
    "samples": (dict(extra=("--samples", "32")), ("samples None stored vs 32 now",)),
    "data": (dict(data="make_data_shuffled_labels"), ("the data of split 'train' differs",)),
    "centre": (dict(model="make_other_init"), ("the centre weights differ",)),
}


@pytest.mark.parametrize(("change", "needles"), MISMATCHES.values(), ids=MISMATCHES.keys())
def test_store_of_another_scan_is_refused_and_unchanged(plane, capsys, change, needles):
    n_before, sha_before = points_count(plane), sha(plane)
    kw = {k: v for k, v in change.items() if k != "extra"}
    argv = scan_argv(plane, *change.get("extra", ()), **kw)
    assert_one_line_error(
        run(capsys, *argv), "scan", str(plane), "holds a different scan", *needles
    )
    assert points_count(plane) == n_before == 20
    assert sha(plane) == sha_before


# -- process behaviour, --debug, Ctrl-C ---------------------------------------------


def test_debug_raises_instead(tmp_path):
    argv = scan_argv(tmp_path / "x.lossmap", grid=("0:1:1",))
    with pytest.raises(lm.InputError, match="n=1 must be >= 2"):
        main([*argv, "--debug"])
    with pytest.raises(lm.InputError, match="n=1 must be >= 2"):
        main(["--debug", *argv])  # before the command, too


@pytest.mark.slow  # a Python process: 2-4 s
def test_bad_input_in_a_real_process(tmp_path):
    argv = scan_argv(tmp_path / "x.lossmap", grid=("-1:1:5", "0:1:1"))
    proc = subprocess.run(
        [sys.executable, "-m", "lossmap", *argv],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "lossmap scan: error: grid axis 1: n=1 must be >= 2 (a line needs two points)"
    ]
    assert not (tmp_path / "x.lossmap").exists()


def test_ctrl_c_keeps_finished_points_and_resumes(tmp_path, capsys):
    out = tmp_path / "line.lossmap"
    grid = ("-1:1:150",)
    code, _, err = run(capsys, *scan_argv(out, model="make_interrupting_model", grid=grid))
    assert code == 130
    assert err.splitlines()[-1] == (
        "lossmap scan: interrupted; finished points are kept in the store"
    )
    assert "Traceback" not in err
    kept = points_count(out)
    assert 1 <= kept < 150  # about 124 points were finished when Ctrl-C came
    code, _, err = run(capsys, *scan_argv(out, grid=grid))  # same weights, no interrupt
    assert code == 0, err
    assert points_count(out) == 150
    ref = tmp_path / "ref.lossmap"
    assert run(capsys, *scan_argv(ref, grid=grid))[0] == 0
    assert_same_values(lm.load(out), lm.load(ref))


def test_top_level_usage_errors_are_one_line(capsys):
    code, _, err = run(capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("lossmap: error: ")


def test_trust_pickle_flag_allows_a_trusted_pickled_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "pickled.pt"
    torch.save({"model": tiny.make_model().state_dict(), "meta": Custom()}, ckpt)
    out = tmp_path / "x.lossmap"
    assert run(capsys, *scan_argv(out, "--checkpoint", ckpt, grid=("-1:1:3",)))[0] == 2
    assert not out.exists()
    code, _, err = run(capsys, *scan_argv(out, "--checkpoint", ckpt, "--trust-pickle",
                                          grid=("-1:1:3",)))
    assert code == 0, err
    assert lm.load(out).complete


def test_profile_flag_prints_where_the_time_went(tmp_path, capsys):
    code, _, err = run(capsys, *scan_argv(tmp_path / "p.lossmap", "--profile", grid=("-1:1:3",)))
    assert code == 0
    assert "lossmap profile" in err and "forward" in err and "store" in err and "total" in err


def test_info_shows_stored_annotations(tmp_path, capsys):
    torch.manual_seed(0)
    net = tiny.make_model()
    X, y = tiny.make_data()["train"]
    path = tmp_path / "a.lossmap"
    lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)},
            directions=lm.random_directions(net, 2), grid=[(-1, 1, 3), (-1, 1, 3)], store=path,
            progress=False, meta={"models": {"a": [0.0, 0.0], "b": [1.0, 0.0]}})
    code, out, _ = run(capsys, "info", path)
    assert code == 0 and '"a": [0.0, 0.0]' in out and "models" in out
    code, out, _ = run(capsys, "info", path, "--json")
    assert json.loads(out)["annotations"]["models"]["b"] == [1.0, 0.0]
