"""Finding and loading the MNIST-format data sets from local files.

Nothing here touches the network: a missing data set raises
:class:`FileNotFoundError` that lists every place searched and how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .idx import read_idx

__all__ = [
    "SPLITS",
    "cache_dir",
    "check_split",
    "fashion_mnist",
    "find_files",
    "mnist",
    "search_dirs",
]

#: Allowed ``split`` values -> the file-name prefix of that split.
SPLITS: dict[str, str] = {"train": "train", "test": "t10k"}

#: Folders that system packages install the files into, per data set.
SYSTEM_DIRS: dict[str, tuple[tuple[Path, str], ...]] = {
    "fashion_mnist": (
        (Path("/usr/share/datasets/fashion-mnist"), "Debian package dataset-fashion-mnist"),
    ),
    "mnist": (),
}

#: Sub-folder names tried below ``root`` and ``$LOSSMAP_DATA``.
SUBDIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "mnist": ("mnist",),
}

_TITLES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}
_IMAGE_SIZE = (28, 28)
_NUM_CLASSES = 10


def check_split(split: str) -> str:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise ``ValueError``."""
    if split not in SPLITS:
        allowed = ", ".join(repr(s) for s in SPLITS)
        raise ValueError(f"split must be one of {allowed}; got {split!r}")
    return split


def cache_dir(name: str) -> Path:
    """Return the user cache folder of data set ``name``.

    ``$XDG_CACHE_HOME/lossmap/<name>`` if that variable is set, else
    ``~/.cache/lossmap/<name>``. The folder is not created.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lossmap" / name


def search_dirs(name: str, root: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """Return the folders searched for data set ``name``, in order, with their origin.

    Parameters
    ----------
    name : {"fashion_mnist", "mnist"}
        The data set.
    root : str or os.PathLike, optional
        An explicit folder, searched first (with its data-set sub-folders).

    Returns
    -------
    list of (pathlib.Path, str)
        Each folder and a short note on where it comes from.
    """
    dirs: list[tuple[Path, str]] = []
    env = os.environ.get("LOSSMAP_DATA") or None
    for base, origin in ((root, "root="), (env, "$LOSSMAP_DATA")):
        if base is not None:
            dirs.append((Path(base), origin))
            dirs.extend((Path(base) / sub, origin) for sub in SUBDIRS[name])
    dirs.extend(SYSTEM_DIRS[name])
    dirs.append((cache_dir(name), "user cache"))
    seen: set[Path] = set()
    unique = []
    for folder, origin in dirs:
        if folder not in seen:
            seen.add(folder)
            unique.append((folder, origin))
    return unique


def _file_names(prefix: str, kind: str) -> list[str]:
    """Accepted names of one file: standard, dotted variant, each plain or gzipped."""
    idx = "idx3" if kind == "images" else "idx1"
    bases = (f"{prefix}-{kind}-{idx}-ubyte", f"{prefix}-{kind}.{idx}-ubyte")
    return [name for base in bases for name in (base, base + ".gz")]


def _first_existing(folder: Path, names: list[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def find_files(
    name: str, split: str, root: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Locate the image and label IDX files of one split of a data set.

    The first folder of :func:`search_dirs` that holds both files wins.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The images file and the labels file.

    Raises
    ------
    FileNotFoundError
        If no folder holds both files; the message lists every folder searched
        and the ways to get the data.
    """
    prefix = SPLITS[check_split(split)]
    image_names = _file_names(prefix, "images")
    label_names = _file_names(prefix, "labels")
    lines = []
    for folder, origin in search_dirs(name, root):
        images = _first_existing(folder, image_names)
        labels = _first_existing(folder, label_names)
        if images is not None and labels is not None:
            return images, labels
        note = ""
        if images is not None or labels is not None:
            note = f"; found only {(images or labels).name}"
        lines.append(f"  - {folder}  ({origin}{note})")
    if not os.environ.get("LOSSMAP_DATA"):
        lines.append("  - $LOSSMAP_DATA  (not set)")
    how = []
    if name == "fashion_mnist":
        how.append("  - Debian/Ubuntu: apt-get install dataset-fashion-mnist")
    how += [
        f"  - with a network: python -c \"import lossmap.data; lossmap.data.download('{name}')\""
        f"  (saves to {cache_dir(name)})",
        "  - or put the four IDX files in a folder and set LOSSMAP_DATA=/that/folder "
        "(or pass root=)",
    ]
    raise FileNotFoundError(
        f"{_TITLES[name]} {split!r} split not found: looked for {image_names[0]}[.gz] and "
        f"{label_names[0]}[.gz] in:\n" + "\n".join(lines) + "\nTo get it:\n" + "\n".join(how)
    )


def _load(
    name: str, split: str, root: str | os.PathLike[str] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    images_path, labels_path = find_files(name, split, root)
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _IMAGE_SIZE:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), "
            f"found {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{labels_path}: expected {images.shape[0]:,} uint8 labels to match "
            f"{images_path.name}, found {labels.dtype} of shape {labels.shape}"
        )
    if labels.size and labels.max() >= _NUM_CLASSES:
        raise ValueError(f"{labels_path}: labels must lie in 0..9, found {int(labels.max())}")
    X = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return X, y


def fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of Fashion-MNIST from local IDX files.

    Parameters
    ----------
    split : {"train", "test"}
        60,000 training or 10,000 test images.
    root : str or os.PathLike, optional
        A folder searched first. Then ``$LOSSMAP_DATA`` (and its
        ``fashion_mnist`` / ``fashion-mnist`` sub-folders), the Debian package's
        ``/usr/share/datasets/fashion-mnist`` and the user cache
        (``$XDG_CACHE_HOME/lossmap/fashion_mnist`` or ``~/.cache/lossmap/fashion_mnist``).

    Returns
    -------
    X : torch.Tensor
        float32, shape (N, 1, 28, 28), values in [0, 1].
    y : torch.Tensor
        int64, shape (N,), class indices 0..9.

    Raises
    ------
    FileNotFoundError
        If the files are in none of the searched folders.
    ValueError
        If ``split`` is not allowed or a file is truncated or malformed.
    """
    return _load("fashion_mnist", split, root)


def mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of MNIST from local IDX files.

    Same as :func:`fashion_mnist`, except that the sub-folder tried below
    ``root`` and ``$LOSSMAP_DATA`` is ``mnist``, there is no system folder, and
    the user cache is ``.../lossmap/mnist``.
    """
    return _load("mnist", split, root)
