"""Hostile files and outputs (issue 21 items 9, 10 and 11).

- A Li et al. ``.h5`` file whose member is an external link, a soft link, a
  virtual dataset or a dataset with HDF5 external storage would make lossmap
  read another file (a "secret"): each is refused by name, and the secret's
  bytes appear nowhere (not in the values, the store, the message, stdout).
- A small ``.h5`` declaring a huge dataset is refused from its declared shape,
  before anything is read or allocated.
- An output that is a named pipe (FIFO) is refused before it is opened (a
  writer opening a FIFO blocks until a reader comes: ``lossmap scan --out
  FIFO`` hung). A watchdog opens the pipe's other end if a command ever does
  open it, so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.cli.outputs import check_not_special
from lossmap.errors import InputError
from lossmap.interop import import_li_surface, load_li_directions, load_li_surface

sys.path.insert(0, str(Path(__file__).parent))
from cli_run import run_cli

FAULTY = Path(__file__).parent / "cli_fixtures" / "faulty.py"
NX = 5
# 8 bytes per float64 value: read as loss values they come back verbatim
SECRET = b"TOPSECRT" * NX


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def secret_h5(tmp_path) -> Path:
    """Another HDF5 file holding the secret as a dataset ``data`` of NX float64."""
    path = tmp_path / "secret.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.frombuffer(SECRET, dtype=np.float64)
    return path


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The name of every dataset whose values are read (``Dataset.__getitem__``)."""
    names: list[str] = []
    original = h5py.Dataset.__getitem__

    def recording(self, *args, **kwargs):
        names.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    return names


def surface_file(path: Path, loss=None) -> Path:
    """A line surface file of Li et al.'s layout; ``loss(f)`` makes ``train_loss`` instead."""
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, NX)
        if loss is None:
            f["train_loss"] = np.linspace(1, 2, NX)
        else:
            loss(f)
    return path


def external_storage(secret: Path):
    def make(f):
        f.create_dataset(
            "train_loss", shape=(NX,), dtype="<f8", external=[(str(secret), 0, len(SECRET))]
        )

    return make


def external_link(secret_h5: Path):
    def make(f):
        f["train_loss"] = h5py.ExternalLink(str(secret_h5), "/data")

    return make


def virtual(secret_h5: Path):
    def make(f):
        layout = h5py.VirtualLayout(shape=(NX,), dtype="<f8")
        layout[:] = h5py.VirtualSource(str(secret_h5), "data", shape=(NX,))
        f.create_virtual_dataset("train_loss", layout, fillvalue=-1.0)

    return make


def soft_link(f):
    f["hidden"] = np.linspace(1, 2, NX)
    f["train_loss"] = h5py.SoftLink("/hidden")


HOSTILE = {
    "external storage": (lambda secret, secret_h5: external_storage(secret), "external storage"),
    "external link": (lambda secret, secret_h5: external_link(secret_h5), "external link"),
    "virtual dataset": (lambda secret, secret_h5: virtual(secret_h5), "virtual dataset"),
    "soft link": (lambda secret, secret_h5: soft_link, "soft link"),
}


def no_secret_anywhere(*texts: str, folder: Path) -> None:
    """The secret's bytes are in none of ``texts`` and in no file under ``folder`` but itself."""
    for text in texts:
        assert "TOPSECRT" not in text
    for p in folder.rglob("*"):
        if p.is_file() and p.name not in ("secret.bin", "secret.h5"):
            assert SECRET[:8] not in p.read_bytes(), p


def test_the_hostile_files_do_reach_the_secret_without_lossmap(tmp_path, secret, secret_h5):
    """The fixtures are what they claim: plain h5py reads the secret through each of them."""
    for name in ("external storage", "external link", "virtual dataset"):
        path = surface_file(tmp_path / f"{name}.h5", HOSTILE[name][0](secret, secret_h5))
        with h5py.File(path, "r") as f:
            assert f["train_loss"][()].tobytes() == SECRET, name


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_member_stored_elsewhere_is_refused_by_name_before_any_read(
    case, tmp_path, secret, secret_h5, reads
):
    make, words = HOSTILE[case]
    path = surface_file(tmp_path / "surface.h5", make(secret, secret_h5))
    for read in (load_li_surface, lm.load):
        reads.clear()
        with pytest.raises(InputError) as err:
            read(path)
        message = str(err.value)
        assert "'train_loss'" in message and words in message and "\n" not in message
        assert reads == []  # refused before any value was read, the coordinates included
        no_secret_anywhere(message, folder=tmp_path)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_lossmap_import_refuses_it_and_writes_no_store(case, tmp_path, secret, secret_h5, capsys):
    make, words = HOSTILE[case]
    path = surface_file(tmp_path / "surface.h5", make(secret, secret_h5))
    out = tmp_path / "imported.lossmap"
    code, stdout, stderr = run_cli(capsys, "import", path, "-o", out)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "'train_loss'" in stderr and words in stderr
    assert not out.exists()
    no_secret_anywhere(stdout, stderr, folder=tmp_path)
    with pytest.raises(InputError, match="train_loss"):
        import_li_surface(path, out)
    assert not out.exists()


def test_a_coordinate_or_dir_file_stored_elsewhere_is_refused(tmp_path, secret, reads):
    def coords(f):
        f.create_dataset(
            "xcoordinates", shape=(NX,), dtype="<f8", external=[(str(secret), 0, len(SECRET))]
        )
        f["train_loss"] = np.ones(NX)

    path = tmp_path / "coords.h5"
    with h5py.File(path, "w") as f:
        coords(f)
    with pytest.raises(InputError, match="'xcoordinates' keeps its values in another file"):
        load_li_surface(path)
    # dir_file (a string the store's metadata would keep) from another file
    path = surface_file(tmp_path / "dirfile.h5")
    with h5py.File(path, "a") as f:
        f.create_dataset("dir_file", shape=(1,), dtype="S40", external=[(str(secret), 0, 40)])
    reads.clear()
    with pytest.raises(InputError, match="'dir_file' keeps its values in another file"):
        load_li_surface(path)
    assert reads == []


@pytest.mark.parametrize("case", ["external link", "external storage", "virtual dataset"])
def test_a_direction_file_reaching_elsewhere_is_refused(case, tmp_path, secret, secret_h5, reads):
    net = nn.Linear(NX, 1, bias=False)  # weight (1, NX): one tensor of NX values
    path = tmp_path / "directions.h5"
    with h5py.File(path, "w") as f:
        grp = f.create_group("xdirection")
        if case == "external link":
            grp["0"] = h5py.ExternalLink(str(secret_h5), "/data")
        elif case == "external storage":
            grp.create_dataset(
                "0", shape=(1, NX), dtype="<f8", external=[(str(secret), 0, len(SECRET))]
            )
        else:
            layout = h5py.VirtualLayout(shape=(NX,), dtype="<f8")
            layout[:] = h5py.VirtualSource(str(secret_h5), "data", shape=(NX,))
            grp.create_virtual_dataset("0", layout)
    with pytest.raises(InputError) as err:
        load_li_directions(path, model=net)
    assert "'xdirection/0'" in str(err.value)
    assert reads == []
    no_secret_anywhere(str(err.value), folder=tmp_path)


def test_a_direction_group_that_is_an_external_link_is_refused(tmp_path, secret_h5):
    path = tmp_path / "directions.h5"
    with h5py.File(path, "w") as f:
        f["xdirection"] = h5py.ExternalLink(str(secret_h5), "/")
    with pytest.raises(InputError, match="'xdirection' is an external link"):
        load_li_directions(path)


def test_the_files_of_the_reference_layout_still_read(tmp_path):
    path = surface_file(tmp_path / "ok.h5")
    with h5py.File(path, "a") as f:
        f["dir_file"] = "runs/net_weights_xignore=biasbn_xnorm=filter.h5"
    surf = load_li_surface(path)
    np.testing.assert_array_equal(surf["train_loss"], np.linspace(1, 2, NX))
    assert surf.spec.directions[0]["norm"] == "filter"


# -- item 10: huge declared shapes -------------------------------------------------------


def huge(path: Path, *, values=(20000, 20000), x=NX, y=NX) -> Path:
    """A small file declaring a huge chunked dataset (no chunk written: filled on reading)."""
    with h5py.File(path, "w") as f:
        f["xcoordinates"] = np.linspace(-1, 1, x)
        if y:
            f["ycoordinates"] = np.linspace(-1, 1, y)
        f.create_dataset(
            "train_loss", shape=values, dtype="<f8", chunks=(100, 100)[: len(values)], fillvalue=1.0
        )
    return path


def refused_cheaply(reads: list[str], read, *args) -> str:
    """The error of ``read(*args)``, which allocated under 16 MiB and read no values."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as err:
            read(*args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated"
    assert "/train_loss" not in reads and "/xdirection/0" not in reads
    return str(err.value)


def test_a_huge_values_dataset_is_refused_from_its_declared_shape(tmp_path, reads):
    path = huge(tmp_path / "huge.h5")
    assert path.stat().st_size < 64 * 1024  # 3 GiB declared
    message = refused_cheaply(reads, load_li_surface, path)
    assert "'train_loss' has shape (20000, 20000)" in message and "(5, 5)" in message


def test_a_grid_beyond_the_cap_is_refused_before_its_values_are_read(tmp_path, reads):
    path = huge(tmp_path / "grid.h5", x=20000, y=20000)
    message = refused_cheaply(reads, load_li_surface, path)
    assert "20000 x 20000" in message and "400,000,000" in message


def test_huge_coordinates_are_refused_before_they_are_read(tmp_path, reads):
    path = tmp_path / "coords.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("xcoordinates", shape=(2**32,), dtype="<f8", chunks=(4096,), fillvalue=0.0)
        f["train_loss"] = np.ones(3)
    reads.clear()
    message = refused_cheaply(reads, load_li_surface, path)
    assert "'xcoordinates' holds 4,294,967,296 coordinates" in message
    assert "/xcoordinates" not in reads


def test_a_huge_direction_tensor_is_refused_against_the_model_before_reading(tmp_path, reads):
    path = tmp_path / "directions.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "xdirection/0", shape=(20000, 20000), dtype="<f4", chunks=(100, 100), fillvalue=0.5
        )
    message = refused_cheaply(reads, load_li_directions, path, nn.Linear(3, 1, bias=False))
    assert "xdirection/0 has shape (20000, 20000)" in message and "(1, 3)" in message


# -- item 11: outputs that are named pipes ----------------------------------------------


@contextlib.contextmanager
def unblocked(fifo: Path, after: float = 5.0):
    """Should the command open ``fifo`` (the bug), feed its other end so it cannot hang.

    After ``after`` seconds, and every 0.2 s then, the pipe is opened
    (read-write, non-blocking: this never blocks on Linux), a little junk is
    written and it is closed: a writer or reader blocked in ``open`` or
    ``read`` goes on, and the test fails on its assertions instead of hanging.
    """
    stop = threading.Event()

    def feed():
        if stop.wait(after):
            return
        while not stop.is_set():
            with contextlib.suppress(OSError):
                fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
                with contextlib.suppress(OSError):
                    os.write(fd, b"not a store, not an image\n" * 8)
                os.close(fd)
            stop.wait(0.2)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("store") / "plane.lossmap"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    data = {"train": (torch.randn(16, 4), torch.randint(0, 3, (16,)))}
    lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data=data,
        grid=[(-1, 1, 3), (-1, 1, 3)],
        directions=lm.random_directions(model, 2, seed=0),
        store=path,
        progress=False,
    )
    return path


def _fifo_cases(store: Path, h5: Path) -> dict[str, tuple[list, str, str]]:
    """Each command writing an output: (argv with {OUT}, the flag, the FIFO's file name)."""
    model = ["--model", f"{FAULTY}:make_model", "--data", f"{FAULTY}:make_data"]
    return {
        "scan": (
            ["scan", *model, "--grid=-1:1:3", "--grid=-1:1:3", "--out", "{OUT}", "--no-progress"],
            "--out",
            "plane.lossmap",
        ),
        "export": (["export", store, "-o", "{OUT}"], "-o", "plane.nc"),
        "plot": (["plot", store, "-o", "{OUT}"], "-o", "plane.png"),
        "report": (["report", store, "-o", "{OUT}"], "-o", "report.html"),
        "hessian -o": (["hessian", *model, "--k", "1", "-o", "{OUT}"], "-o", "h.json"),
        "hessian --plot": (["hessian", *model, "--k", "1", "--plot", "{OUT}"], "--plot", "h.png"),
        "align": (
            [
                "align",
                "a.safetensors",
                "b.safetensors",
                "--model",
                f"{FAULTY}:make_model",
                "-o",
                "{OUT}",
            ],
            "-o",
            "b_aligned.safetensors",
        ),
        "curve": (
            ["curve", "a.safetensors", "b.safetensors", *model, "-o", "{OUT}"],
            "-o",
            "curve.safetensors",
        ),
        "import": (["import", h5, "-o", "{OUT}"], "-o", "imported.lossmap"),
        "train": (
            [
                "train",
                "--dataset",
                "digits",
                "--epochs",
                "1",
                "--limit",
                "32",
                "--no-progress",
                "--out",
                "{OUT}",
            ],
            "--out",
            "run",
        ),
    }


CASES = [
    "scan",
    "export",
    "plot",
    "report",
    "hessian -o",
    "hessian --plot",
    "align",
    "curve",
    "import",
    "train",
]


@pytest.mark.parametrize("via", ["fifo", "link to a fifo"])
@pytest.mark.parametrize("case", CASES)
def test_an_output_that_is_a_fifo_is_refused_before_it_is_opened(
    case, via, store, tmp_path, capsys
):
    argv, flag, name = _fifo_cases(store, surface_file(tmp_path / "s.h5"))[case]
    fifo = tmp_path / ("pipe" if via == "link to a fifo" else name)
    os.mkfifo(fifo)
    out = fifo
    if via == "link to a fifo":
        out = tmp_path / name
        out.symlink_to(fifo)
    with unblocked(fifo):
        code, stdout, stderr = run_cli(capsys, *(str(a).replace("{OUT}", str(out)) for a in argv))
    assert code == 2 and stdout == "", (code, stdout, stderr)  # refused before any work
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert f"{flag} {str(out)!r} is a named pipe (FIFO)" in lines[0]
    assert "choose another path" in lines[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # left as it was


def test_sockets_and_devices_are_refused_too(tmp_path):
    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        with pytest.raises(InputError, match="is a socket, not a regular file or a folder"):
            check_not_special(path, "--out")
    finally:
        s.close()
    with pytest.raises(InputError, match="'/dev/null' is a character device"):
        check_not_special("/dev/null")
    check_not_special(tmp_path)  # a folder
    check_not_special(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    check_not_special(tmp_path / "file")
