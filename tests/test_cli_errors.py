"""Bad input and unwritable outputs give one line and exit status 2, never a traceback.

Issue 17, items 6, 7 and 10: every case runs ``python -m lossmap`` in a real
process (as a user does), and each failed with a traceback, or silently
overwrote a file, before the fix. The faulty entry points live in
``tests/cli_fixtures/faulty.py``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.scan import spec as S

FIXTURES = Path(__file__).parent / "cli_fixtures"
FAULTY = FIXTURES / "faulty.py"
PLANE = ("--grid=-1:1:3", "--grid=-1:1:3")


# Nearly every case starts a lossmap process (1-2 s each): `make test` runs them all,
# `make test-fast` leaves them out.
pytestmark = pytest.mark.slow


def _load_faulty():
    spec = importlib.util.spec_from_file_location("lossmap_test_cli_faulty", FAULTY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


faulty = _load_faulty()


def lossmap(cwd: Path, *argv, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m lossmap ARGV`` in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "lossmap", *map(str, argv)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, **kw,
    )  # fmt: skip


def in_process(*argv) -> int:
    """``lossmap ARGV`` run in this process: a command's earlier output or a reference,
    made without starting a process (the case under test still runs in one)."""
    from lossmap.cli import main

    return main([str(a) for a in argv])


def one_line_error(proc: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """Exit status 2 and exactly one stderr line 'lossmap CMD: error: …' naming every needle."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, f"status {proc.returncode}; stderr {proc.stderr!r}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert lines[0].startswith(f"lossmap {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def scan_argv(out: str, *extra, model: str = "make_model", data: str = "make_data") -> list:
    return ["scan", "--model", f"{FAULTY}:{model}", "--data", f"{FAULTY}:{data}", *PLANE,
            "--out", out, "--no-progress", *extra]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A finished 3 x 3 plane store, made through the API."""
    path = tmp_path_factory.mktemp("store") / "plane.lossmap"
    model = faulty.make_model()
    lm.scan(model, nn.CrossEntropyLoss(), data=faulty.make_data(),
            directions=lm.random_directions(model, 2, seed=0), grid=[(-1, 1, 3), (-1, 1, 3)],
            store=path, progress=False)  # fmt: skip
    return path


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file: a path under it can be neither made nor written (even by root)."""
    f = tmp_path / "file.txt"
    f.write_text("a file where a folder should be\n")
    return f


# -- item 6: outputs that cannot be written fail at once, with one line ------------------


def _unwritable_cases(store: Path, blocker: Path) -> dict[str, tuple[list, str]]:
    model = ["--model", f"{FAULTY}:make_model", "--data", f"{FAULTY}:make_data", "--k", "1"]
    return {
        "scan": (scan_argv(str(blocker / "plane.lossmap")), "--out"),
        "report": (["report", store, "-o", blocker / "r.html"], "-o"),
        "plot": (["plot", store, "-o", blocker / "sub" / "p.png"], "-o"),
        "hessian -o": (["hessian", *model, "-o", blocker / "h.json"], "-o"),
        "hessian --plot": (["hessian", *model, "--plot", blocker / "h.png"], "--plot"),
        "train": (["train", "--dataset", "digits", "--epochs", "1", "--limit", "32",
                   "--no-progress", "--out", blocker / "run"], "--out"),
    }


@pytest.mark.parametrize(
    "case", ["scan", "report", "plot", "hessian -o", "hessian --plot", "train"]
)
def test_output_under_a_file_is_one_line_before_any_work(case, store, blocker, tmp_path):
    argv, flag = _unwritable_cases(store, blocker)[case]
    proc = lossmap(tmp_path, *argv)
    one_line_error(proc, case.split()[0], flag, "cannot be written", f"{str(blocker)!r} is a file",
                   "choose another")
    assert proc.stdout == ""  # refused before any work: hessian printed nothing, train no epoch
    assert blocker.read_text() == "a file where a folder should be\n"


@pytest.mark.parametrize("case", ["scan", "plot"])
def test_output_where_no_file_can_be_made_is_one_line(case, store, tmp_path):
    target = "/proc/lossmap-no-such-folder/out"  # /proc takes no new files, not even from root
    argv = (scan_argv(target + ".lossmap") if case == "scan"
            else ["plot", store, "-o", target + ".png"])
    proc = lossmap(tmp_path, *argv)
    one_line_error(proc, case, target, "cannot be written", "no file can be made in '/proc'")


def test_missing_output_folders_are_still_made(store, tmp_path):
    out = tmp_path / "new" / "deeper" / "p.png"
    proc = lossmap(tmp_path, "plot", store, "-o", out, "--dpi", "20")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


# -- item 7: bad input through the CLI ---------------------------------------------------


def test_label_out_of_range_in_a_late_sample_is_caught_before_the_store(tmp_path):
    assert faulty.make_late_label_data()["train"][1][:2].max() < 3  # the first samples are fine
    proc = lossmap(tmp_path, *scan_argv("s.lossmap", data="make_late_label_data"))
    one_line_error(proc, "scan", "split 'train'", "Target 3 is out of bounds",
                   "labels run 0..3", "3 class scores", "labels 0..2")
    assert not (tmp_path / "s.lossmap").exists()


def test_check_samples_cover_the_extreme_labels():
    from lossmap.data.splits import Split, check_samples

    X, y = faulty.make_late_label_data()["train"]
    idx = check_samples(Split("train", X, y))
    assert faulty.LATE_SAMPLE in idx and {0, 1} <= set(idx)
    assert y[idx].min() == y.min() and y[idx].max() == y.max()  # brute force: all labels
    assert check_samples(Split("r", X, X[:, :1])) == [0, 1]  # float targets: the first two


def test_loss_returning_shape_1_is_the_scalar_it_stands_for(tmp_path):
    """A batch mean of shape (1,) is accepted: the values equal plain cross-entropy."""
    argv = scan_argv("one.lossmap", "--loss", f"{FAULTY}:mean_of_shape_1", "--metrics", "loss")
    proc = lossmap(tmp_path, *argv)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    surf = lm.load(tmp_path / "one.lossmap")
    # Reference: the centre by hand in float64, and the plane of the plain loss.
    X, y = faulty.make_data()["train"]
    net = faulty.make_model().double()
    with torch.no_grad():
        centre = nn.functional.cross_entropy(net(X.double()), y).item()
    np.testing.assert_allclose(surf["train_loss"][1, 1], centre, rtol=1e-5)
    # the reference plane in-process (the case under test ran in a process above)
    assert in_process(*scan_argv(str(tmp_path / "ce.lossmap"), "--metrics", "loss")) == 0
    np.testing.assert_allclose(
        surf["train_loss"], lm.load(tmp_path / "ce.lossmap")["train_loss"], rtol=1e-6
    )


@pytest.mark.parametrize(
    "flag, entry, needles",
    [
        ("--model", "torch:pi", ("--model 'torch:pi'", "is a float, not a function")),
        ("--model", f"{FAULTY}:NOT_A_FUNCTION", ("NOT_A_FUNCTION'", "not a function")),
        ("--data", "torch:pi", ("--data 'torch:pi'", "is a float, not a function")),
        ("--model", f"{FAULTY}:raising_model",
         ("--model", "raising_model'", "RuntimeError: weights server unreachable", "--debug")),
        ("--data", f"{FAULTY}:raising_data",
         ("--data", "raising_data'", "KeyError", "no split named 'val'", "--debug")),
    ],
)
def test_entry_point_not_callable_or_raising_is_one_line(tmp_path, flag, entry, needles):
    argv = scan_argv("s.lossmap")
    argv[argv.index(flag) + 1] = entry
    one_line_error(lossmap(tmp_path, *argv), "scan", *needles)
    assert not (tmp_path / "s.lossmap").exists()


def test_raising_entry_point_in_hessian_and_train(tmp_path):
    hess = ["hessian", "--model", f"{FAULTY}:raising_model", "--data", f"{FAULTY}:make_data"]
    one_line_error(lossmap(tmp_path, *hess), "hessian", "raising_model'", "RuntimeError")
    train = ["train", "--dataset", "digits", "--model", f"{FAULTY}:raising_model",
             "--epochs", "1", "--limit", "32", "--no-progress", "--out", tmp_path / "run"]
    one_line_error(lossmap(tmp_path, *train), "train", "raising_model'", "RuntimeError")


def test_debug_shows_the_user_traceback(tmp_path):
    argv = scan_argv("s.lossmap", "--debug", model="raising_model")
    proc = lossmap(tmp_path, *argv)
    assert proc.returncode == 1 and "weights server unreachable" in proc.stderr
    assert "in raising_model" in proc.stderr  # the user's own frame is shown


@pytest.mark.parametrize(
    "line, needles",
    [
        ("out: 123", ("out 123 must be text, not int", 'quote it: out: "123"')),
        ("metrics: 5", ("metrics 5 must be names", "metrics: [loss, accuracy]")),
        # was silently taken as true (a non-empty string), so `orthogonal: "no"` was too
        ("orthogonal: maybe", ("orthogonal 'maybe' must be true or false",)),
    ],
)
def test_yaml_value_of_the_wrong_type_is_one_line(tmp_path, line, needles):
    keys = {"model": f"{FAULTY}:make_model", "data": f"{FAULTY}:make_data",
            "out": "s.lossmap", "grid": ["-1:1:3", "-1:1:3"]}
    text = "".join(f"{k}: {v!r}\n".replace("'", '"') for k, v in keys.items()
                   if k != line.split(":")[0])
    (tmp_path / "spec.yaml").write_text(text + line + "\n")
    one_line_error(lossmap(tmp_path, "scan", "--spec", "spec.yaml", "--no-progress"), "scan",
                   *needles)


@pytest.mark.parametrize(
    "grid, points",
    [(("-1:1:100000", "-1:1:100000"), "10,000,000,000"), (("-1:1:10000000",), "10,000,000")],
)
def test_absurd_grid_is_refused_before_anything_is_allocated(tmp_path, grid, points):
    argv = scan_argv("big.lossmap")
    argv = [a for a in argv if not a.startswith("--grid=")]
    argv += ["--dirs", str(len(grid))] + [x for g in grid for x in ("--grid", g)]
    proc = lossmap(tmp_path, *argv, timeout=60)  # the old code ran out of memory or time
    one_line_error(proc, "scan", f"{points} points", f"{S.MAX_POINTS:,}", "MAX_POINTS",
                   "split the range into several scans")
    assert not (tmp_path / "big.lossmap").exists()


def test_grid_limit_applies_to_new_scans_not_to_stored_specs():
    side = int(S.MAX_POINTS**0.5)
    at = [(-1, 1, side), (-1, 1, side)]
    S.check_grid_size([S.check_axis(a) for a in at])  # exactly at the limit: fine
    over = [(-1, 1, side + 1), (-1, 1, side)]
    net = torch.nn.Linear(2, 2)
    X, y = torch.randn(4, 2), torch.randint(0, 2, (4,))
    with pytest.raises(lm.InputError, match="MAX_POINTS"):
        lm.plan_scan(net, torch.nn.CrossEntropyLoss(), data={"t": (X, y)},
                     directions=lm.random_directions(net, 2, seed=0), grid=over)
    # A stored spec of any size still reads (a store made before the limit existed).
    spec = lm.ScanSpec(grid=over, splits=("train",), metrics=("loss",))
    assert np.prod(spec.shape) > S.MAX_POINTS


def test_closed_stdout_pipe_ends_quietly(store, tmp_path):
    """`lossmap info S | head -1`: the reader is gone; no BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first line is written
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lossmap", "info", str(store)],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, what `cat` gives


# -- item 10: an existing file is not silently replaced ----------------------------------


FOREIGN = "print('a Python file, not an output')\n"


def _write_cases(store: Path) -> dict[str, tuple[list, str]]:
    model = ["--model", f"{FAULTY}:make_model", "--data", f"{FAULTY}:make_data", "--k", "1"]
    return {
        "export": (["export", store, "-o"], "x.nc"),
        "plot": (["plot", store, "--dpi", "20", "-o"], "x.png"),
        "report": (["report", store, "-o"], "x.html"),
        "hessian": (["hessian", *model, "-o"], "x.json"),
    }


@pytest.mark.parametrize("command", ["export", "plot", "report", "hessian"])
def test_existing_file_of_another_kind_is_left_untouched(command, store, tmp_path):
    argv, name = _write_cases(store)[command]
    target = tmp_path / name
    target.write_text(FOREIGN)
    proc = lossmap(tmp_path, *argv, target)
    one_line_error(proc, command, f"-o {str(target)!r}", "left untouched", "--overwrite")
    assert target.read_text() == FOREIGN
    assert proc.stdout == ""  # refused before any work


@pytest.mark.parametrize("command", ["export", "plot"])
def test_overwrite_replaces_it(command, store, tmp_path):
    argv, name = _write_cases(store)[command]
    target = tmp_path / name
    target.write_text(FOREIGN)
    proc = lossmap(tmp_path, *argv, target, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    signatures = (b"\x89PNG",) if command == "plot" else (b"CDF", b"\x89HDF")  # NetCDF 3 or 4
    assert target.read_bytes().startswith(signatures)


def test_export_refuses_even_its_own_earlier_export(store, tmp_path):
    target = tmp_path / "x.csv"
    assert in_process("export", store, "-o", target) == 0
    before = target.read_bytes()
    one_line_error(lossmap(tmp_path, "export", store, "-o", target), "export", "exists",
                   "--overwrite")
    assert target.read_bytes() == before


def test_plot_and_report_replace_their_own_output(store, tmp_path):
    """Re-drawing a store (while its scan runs, say) needs no flag."""
    for argv, name in (_write_cases(store)["plot"], _write_cases(store)["report"]):
        target = tmp_path / name
        assert in_process(*argv, target) == 0  # its own output, then a process replaces it
        before = target.read_bytes()
        proc = lossmap(tmp_path, *argv, target)
        assert proc.returncode == 0, proc.stderr
        assert target.read_bytes()[:4] == before[:4] and target.stat().st_size > 0


def test_own_output_is_recognised_by_content(tmp_path):
    from lossmap.cli.outputs import check_out_file, holds_own_output

    cases = {
        "a.png": (b"\x89PNG\r\n\x1a\n...", True), "a.pdf": (b"%PDF-1.4 ...", True),
        "a.svg": (b'<?xml version="1.0"?>\n<svg ...', True),
        "a.html": (b"\n<!DOCTYPE html>\n<html>", True), "b.html": (b"<HTML><body>", True),
        "a.json": (b'{"eigenvalues": [1.0]}', True), "b.json": (b'{"a": 1}', False),
        "c.png": (FOREIGN.encode(), False), "c.html": (FOREIGN.encode(), False),
        "c.json": (b"[1, 2]", False), "d.json": (b"\xff\xfe not text", False),
    }
    for name, (content, ours) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert holds_own_output(tmp_path / name) is ours, name
    (tmp_path / "empty.png").write_bytes(b"")  # mktemp's: nothing to lose
    assert check_out_file(tmp_path / "empty.png") == tmp_path / "empty.png"
    (tmp_path / "empty.nc").write_bytes(b"")
    with pytest.raises(lm.InputError, match=r"exists.*--overwrite"):
        check_out_file(tmp_path / "empty.nc", own=False)  # export: any existing file
    with pytest.raises(lm.InputError, match="is a folder"):
        check_out_file(tmp_path)
