"""Tests of lossmap.data: IDX reader, loaders, download verification, digits.

Nothing here uses the network: download() is exercised against file:// URLs
and fake openers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import lossmap.data as data
from lossmap.data import fetch, sources
from lossmap.data.fetch import ChecksumError, Remote

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Encode ``array`` as IDX, written by hand from the format's description."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_CODES[code]).tobytes()


def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> Path:
    raw = idx_bytes(array, code)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def write_split(
    folder: Path, prefix: str, n: int, seed: int, *, dotted: bool = False, gz: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Write a small synthetic MNIST-format split; return its images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    sep = "." if dotted else "-"
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images{sep}idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels{sep}idx1-ubyte{ext}", labels)
    return images, labels


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No $LOSSMAP_DATA, an empty user cache, no system folder."""
    monkeypatch.delenv("LOSSMAP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(
        sources.SYSTEM_DIRS, "fashion_mnist", ((tmp_path / "system", "system package"),)
    )
    return tmp_path


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("code", sorted(IDX_CODES), ids=[f"0x{c:02X}" for c in sorted(IDX_CODES)])
def test_read_idx_round_trips_every_dtype(tmp_path, code, gz):
    rng = np.random.default_rng(code)
    dtype = IDX_CODES[code]
    if dtype.kind == "f":
        array = rng.standard_normal((2, 3, 4)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=(2, 3, 4), endpoint=True).astype(dtype)
        array.flat[0], array.flat[1] = info.min, info.max
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array, code)
    out = data.read_idx(str(path))
    assert out.shape == (2, 3, 4)
    assert out.dtype == dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 0  # writable


def test_read_idx_decodes_big_endian_bytes(tmp_path):
    # Independent of NumPy's encoder: int16, 1 dimension of size 2, values 258 and -2.
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x00\x00\x0b\x01\x00\x00\x00\x02\x01\x02\xff\xfe")
    np.testing.assert_array_equal(data.read_idx(path), np.array([258, -2], dtype=np.int16))
    path.write_bytes(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x01\x07\xff")
    np.testing.assert_array_equal(data.read_idx(path), np.array([[7], [255]], dtype=np.uint8))


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_read_idx_truncated_data(tmp_path, gz):
    raw = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8), 0x08)[: 16 + 1000]
    path = tmp_path / ("t.idx.gz" if gz else "t.idx")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match="truncated") as info:
        data.read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "expected 2,352 bytes of data for shape (3, 28, 28), found 1,000" in message
    assert "download" in message and "dataset-fashion-mnist" in message


def test_read_idx_truncated_gzip_stream(tmp_path):
    packed = gzip.compress(idx_bytes(np.arange(5000, dtype=np.int32), 0x0C))
    path = tmp_path / "cut.idx.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="truncated") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")  # 3 dims announced, 1 given
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8), 0x08) + b"\x00")
    with pytest.raises(ValueError, match="expected 4 bytes of data for shape"):
        data.read_idx(path)


@pytest.mark.parametrize(
    "magic",
    [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"\x1f\x8b\x08\x00"],
    ids=["nonzero", "bad-type", "zero-dims", "gzip-not-named-gz"],
)
def test_read_idx_bad_magic(tmp_path, magic):
    path = tmp_path / "m.idx"
    path.write_bytes(magic + b"\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="magic") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.read_idx(tmp_path / "nope.idx")


# --------------------------------------------------------------------------- real data


def find_fashion_or_fail(split: str) -> tuple[Path, Path]:
    """Locate the installed Fashion-MNIST files; fail loudly (or skip, if allowed) without."""
    try:
        return data.find_files("fashion_mnist", split)
    except FileNotFoundError as exc:
        if os.environ.get("LOSSMAP_ALLOW_NO_FASHION") == "1":
            pytest.skip("Fashion-MNIST not installed and LOSSMAP_ALLOW_NO_FASHION=1")
        pytest.fail(
            "Fashion-MNIST files are missing: install them with "
            "`apt-get install dataset-fashion-mnist` (or set LOSSMAP_ALLOW_NO_FASHION=1 "
            f"to skip this test).\n{exc}"
        )


@pytest.fixture(scope="module")
def real_fashion():
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOSSMAP_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", "/nonexistent-lossmap-test-cache")
        find_fashion_or_fail("train")
        return {split: data.fashion_mnist(split) for split in ("train", "test")}


@pytest.mark.data
@pytest.mark.parametrize(("split", "n"), [("train", 60_000), ("test", 10_000)])
def test_fashion_mnist_real_files(real_fashion, split, n):
    X, y = real_fashion[split]
    assert X.shape == (n, 1, 28, 28) and X.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert X.min().item() == 0.0 and X.max().item() == 1.0
    assert 0.2 < X.mean().item() < 0.4  # Fashion-MNIST's mean pixel is about 0.29
    # Fashion-MNIST is exactly balanced over its 10 classes.
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), n // 10))


@pytest.mark.data
def test_fashion_mnist_real_files_come_from_the_system_folder(monkeypatch):
    monkeypatch.delenv("LOSSMAP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-lossmap-test-cache")
    images, labels = find_fashion_or_fail("test")
    assert images.parent == labels.parent == FASHION_DIR


# --------------------------------------------------------------------------- synthetic data


def test_loader_reads_synthetic_files_via_root(clean_env):
    root = clean_env / "data"
    images, labels = write_split(root, "train", 5, seed=1)
    test_images, _ = write_split(root, "t10k", 3, seed=2, gz=False)
    X, y = data.fashion_mnist("train", root=root)
    assert X.shape == (5, 1, 28, 28) and X.dtype == torch.float32
    assert y.dtype == torch.int64
    assert torch.equal(X[:, 0], torch.from_numpy(images).float() / 255)
    assert X[0, 0, 0, 0] == 0.0 and X[0, 0, 0, 1] == 1.0
    assert torch.equal(y, torch.from_numpy(labels).long())
    Xt, _ = data.mnist("test", root=str(root))
    assert torch.equal(Xt[:, 0], torch.from_numpy(test_images).float() / 255)


def test_loader_reads_lossmap_data_subfolder_with_dotted_names(clean_env, monkeypatch):
    base = clean_env / "shared"
    images, labels = write_split(base / "mnist", "t10k", 4, seed=3, dotted=True, gz=False)
    monkeypatch.setenv("LOSSMAP_DATA", str(base))
    X, y = data.load("MNIST", "test")
    assert torch.equal(X[:, 0], torch.from_numpy(images).float() / 255)
    assert torch.equal(y, torch.from_numpy(labels).long())
    with pytest.raises(FileNotFoundError):  # the mnist folder is not Fashion-MNIST's
        data.fashion_mnist("test")


def test_loader_search_order(clean_env, monkeypatch):
    root, env, cache = clean_env / "root", clean_env / "env", clean_env / "cache"
    from_root, _ = write_split(root, "train", 2, seed=4)
    from_env, _ = write_split(env / "fashion-mnist", "train", 2, seed=5)
    from_cache, _ = write_split(cache / "lossmap" / "fashion_mnist", "train", 2, seed=6)
    monkeypatch.setenv("LOSSMAP_DATA", str(env))

    def first_pixels(**kwargs):
        return data.load("fashion-mnist", "train", **kwargs)[0][:, 0].mul(255).round().byte()

    assert torch.equal(first_pixels(root=root), torch.from_numpy(from_root))
    assert torch.equal(first_pixels(), torch.from_numpy(from_env))
    monkeypatch.delenv("LOSSMAP_DATA")
    assert torch.equal(first_pixels(), torch.from_numpy(from_cache))
    assert torch.equal(first_pixels(root=clean_env / "empty"), torch.from_numpy(from_cache))


def test_missing_dataset_lists_every_place_searched(clean_env, monkeypatch):
    root, env = clean_env / "root", clean_env / "env"
    monkeypatch.setenv("LOSSMAP_DATA", str(env))
    with pytest.raises(FileNotFoundError) as info:
        data.fashion_mnist("train", root=root)
    message = str(info.value)
    for place in [
        root,
        root / "fashion_mnist",
        env,
        env / "fashion-mnist",
        clean_env / "system",
        clean_env / "cache" / "lossmap" / "fashion_mnist",
    ]:
        assert f"  - {place}  (" in message
    assert "train-images-idx3-ubyte" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download('fashion_mnist')" in message
    assert "LOSSMAP_DATA" in message


def test_missing_mnist_reports_unset_env_and_does_not_download(clean_env, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the loaders must never download")

    monkeypatch.setattr(fetch, "_open", no_network)
    with pytest.raises(FileNotFoundError) as info:
        data.load("mnist", "test")
    message = str(info.value)
    assert "$LOSSMAP_DATA  (not set)" in message
    assert str(clean_env / "cache" / "lossmap" / "mnist") in message
    assert "apt-get" not in message  # no Debian package for MNIST


def test_partial_split_is_reported(clean_env):
    write_idx(clean_env / "train-images-idx3-ubyte", np.zeros((1, 28, 28), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match="found only train-images-idx3-ubyte"):
        data.mnist("train", root=clean_env)


def test_mismatched_files_are_rejected(clean_env):
    write_idx(clean_env / "train-images-idx3-ubyte", np.zeros((3, 28, 28), dtype=np.uint8))
    write_idx(clean_env / "train-labels-idx1-ubyte", np.zeros(2, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 3 uint8 labels"):
        data.mnist("train", root=clean_env)
    write_idx(clean_env / "train-labels-idx1-ubyte", np.array([0, 1, 10], dtype=np.uint8))
    with pytest.raises(ValueError, match=r"0\.\.9"):
        data.mnist("train", root=clean_env)
    write_idx(clean_env / "train-images-idx3-ubyte", np.zeros((3, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        data.mnist("train", root=clean_env)


def test_bad_split_and_unknown_name(clean_env):
    with pytest.raises(ValueError, match=r"'train', 'test'.*'val'"):
        data.fashion_mnist("val", root=clean_env)
    with pytest.raises(ValueError, match="'train', 'test'"):
        data.load("digits", "validation")
    with pytest.raises(ValueError, match=r"unknown data set 'cifar10'.*fashion_mnist, mnist"):
        data.load("cifar10", "train")


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir("mnist") == tmp_path / "xdg" / "lossmap" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.cache_dir("mnist") == tmp_path / "home" / ".cache" / "lossmap" / "mnist"


# --------------------------------------------------------------------------- download


def _md5(raw: bytes) -> str:
    return hashlib.md5(raw, usedforsecurity=False).hexdigest()


def _mnist_files(tmp_path: Path) -> dict[str, bytes]:
    """Gzipped synthetic IDX files under the four standard names."""
    source = tmp_path / "source"
    write_split(source, "train", 3, seed=7)
    write_split(source, "t10k", 2, seed=8)
    return {p.name: p.read_bytes() for p in sorted(source.iterdir())}


class FakeOpener:
    """Serves bytes per URL; raises OSError for unknown URLs; records calls."""

    def __init__(self, pages: dict[str, bytes]):
        self.pages = pages
        self.calls: list[str] = []

    def __call__(self, url: str, timeout: float):
        self.calls.append(url)
        if url not in self.pages:
            raise OSError(f"cannot reach {url}")
        return io.BytesIO(self.pages[url])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_remote_table_is_well_formed():
    for name in ("fashion_mnist", "mnist"):
        remote = fetch.REMOTES[name]
        assert sorted(remote.md5) == sorted(
            f"{p}-{k}-{i}-ubyte.gz"
            for p in ("train", "t10k")
            for k, i in (("images", "idx3"), ("labels", "idx1"))
        )
        assert all(len(h) == 32 and int(h, 16) >= 0 for h in remote.md5.values())
        assert remote.mirrors and all(m.startswith(("http://", "https://")) for m in remote.mirrors)
    assert fetch.REMOTES["fashion_mnist"].md5["train-images-idx3-ubyte.gz"] == (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    )
    assert fetch.REMOTES["mnist"].md5["train-images-idx3-ubyte.gz"] == (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    )


def test_download_from_file_urls_then_load(tmp_path, monkeypatch):
    files = _mnist_files(tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, raw in files.items():
        (mirror / name).write_bytes(raw)
    remote = Remote(mirrors=(mirror.as_uri() + "/",), md5={n: _md5(r) for n, r in files.items()})
    monkeypatch.setitem(fetch.REMOTES, "mnist", remote)
    dest = tmp_path / "dest"
    assert data.download("mnist", root=dest) == dest
    assert _leftovers(dest) == sorted(files)  # no temporary files left
    for name, raw in files.items():
        assert (dest / name).read_bytes() == raw
    X, y = data.mnist("train", root=dest)
    assert X.shape == (3, 1, 28, 28) and y.shape == (3,)


def test_download_defaults_to_the_user_cache(clean_env, monkeypatch):
    files = _mnist_files(clean_env)
    opener = FakeOpener({"https://m.test/" + n: r for n, r in files.items()})
    monkeypatch.setattr(fetch, "_open", opener)
    monkeypatch.setitem(
        fetch.REMOTES,
        "mnist",
        Remote(mirrors=("https://m.test",), md5={n: _md5(r) for n, r in files.items()}),
    )
    target = data.download("MNIST")
    assert target == clean_env / "cache" / "lossmap" / "mnist"
    assert data.load("mnist", "test")[0].shape == (2, 1, 28, 28)
    # A second call finds valid files and opens nothing.
    opener.calls.clear()
    data.download("mnist")
    assert opener.calls == []


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    files = _mnist_files(tmp_path)
    opener = FakeOpener({"https://m.test/" + n: b"not the file" for n in files})
    monkeypatch.setattr(fetch, "_open", opener)
    md5 = {n: _md5(r) for n, r in files.items()}
    monkeypatch.setitem(fetch.REMOTES, "mnist", Remote(mirrors=("https://m.test/",), md5=md5))
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match="does not match the published") as info:
        data.download("mnist", root=dest)
    assert isinstance(info.value, ValueError)
    assert _leftovers(dest) == []

    # An existing (stale) file is not touched by a failed download.
    dest.mkdir(exist_ok=True)
    first = next(iter(files))
    (dest / first).write_bytes(b"old")
    with pytest.raises(ChecksumError):
        data.download("mnist", root=dest)
    assert _leftovers(dest) == [first]
    assert (dest / first).read_bytes() == b"old"


def test_download_falls_back_to_the_next_mirror(tmp_path, monkeypatch):
    files = _mnist_files(tmp_path)
    pages = {"https://bad.test/" + n: b"corrupt" for n in files}
    pages.update({"https://good.test/" + n: r for n, r in files.items()})
    opener = FakeOpener(pages)
    monkeypatch.setattr(fetch, "_open", opener)
    remote = Remote(
        mirrors=("https://down.test/", "https://bad.test/", "https://good.test/"),
        md5={n: _md5(r) for n, r in files.items()},
    )
    monkeypatch.setitem(fetch.REMOTES, "mnist", remote)
    dest = tmp_path / "dest"
    data.download("mnist", root=dest)
    assert len(opener.calls) == 3 * len(files)
    assert _leftovers(dest) == sorted(files)
    assert all((dest / n).read_bytes() == r for n, r in files.items())


def test_download_unreachable_raises_oserror(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_open", FakeOpener({}))
    with pytest.raises(OSError, match="could not download") as info:
        data.download("fashion_mnist", root=tmp_path / "dest")
    assert not isinstance(info.value, ChecksumError)
    assert "cannot reach http://fashion-mnist.s3-website" in str(info.value)
    assert _leftovers(tmp_path / "dest") == []


def test_download_interrupted_stream_removes_the_temporary_file(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection lost")
            return super().read(4)

    monkeypatch.setattr(fetch, "_open", lambda url, timeout: Broken(b"0123456789"))
    monkeypatch.setitem(
        fetch.REMOTES, "mnist", Remote(mirrors=("https://m.test/",), md5={"a.gz": "0" * 32})
    )
    with pytest.raises(OSError, match="connection lost"):
        data.download("mnist", root=tmp_path)
    assert _leftovers(tmp_path) == []


def test_download_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="nothing to download"):
        data.download("digits", root=tmp_path)
    with pytest.raises(ValueError, match="known data sets"):
        data.download("cifar10", root=tmp_path)
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- digits


def _rows(X: torch.Tensor, y: torch.Tensor) -> Counter:
    flat = torch.cat([X.flatten(1), y[:, None].float()], dim=1).numpy()
    return Counter(row.tobytes() for row in flat)


def test_digits_shapes_and_range():
    X, y = data.digits("train")
    Xt, yt = data.load("digits", "test")
    assert X.shape == (1348, 1, 8, 8) and Xt.shape == (449, 1, 8, 8)
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert y.shape == (1348,) and yt.shape == (449,)
    assert X.min().item() == 0.0 and X.max().item() == 1.0
    assert torch.equal(torch.unique(y), torch.arange(10))
    assert torch.equal(torch.unique(yt), torch.arange(10))


def test_digits_split_is_deterministic_disjoint_and_complete():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    full_X = torch.from_numpy((bunch.images / 16).astype(np.float32))[:, None]
    full_y = torch.from_numpy(bunch.target).long()
    train, test = data.digits("train", seed=3), data.digits("test", seed=3)
    assert len(train[0]) + len(test[0]) == len(full_y) == 1797
    # train and test are a partition of the data set (as multisets of samples)
    assert _rows(*train) + _rows(*test) == _rows(full_X, full_y)
    again = data.digits("test", seed=3)
    assert torch.equal(again[0], test[0]) and torch.equal(again[1], test[1])
    other = data.digits("test", seed=4)
    assert not torch.equal(other[0], test[0])
    assert len(data.digits("test", test_fraction=0.1)[1]) == 180


def test_digits_errors(monkeypatch):
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits("train", test_fraction=1.0)
    with pytest.raises(ValueError, match="split"):
        data.digits("all")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        data.digits()
