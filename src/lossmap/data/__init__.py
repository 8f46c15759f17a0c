"""Data sets for loss-surface experiments, as ``(X, y)`` tensors.

- :func:`fashion_mnist`, :func:`mnist`: 28x28 grey images from local IDX
  files (see :func:`find_files` for where they are searched);
- :func:`digits`: scikit-learn's 8x8 digits, always available;
- :func:`load`: the three by name;
- :func:`download`: fetch the IDX files (the only function that uses the network);
- :func:`read_idx`: the IDX file reader;
- :func:`as_split`: what a scan makes of one split (tensors, or batches kept as given);
- :func:`stream`: a split re-read at every pass instead of held in memory.
"""

from __future__ import annotations

import os

import torch

from .batches import Batches, stream
from .digits import digits
from .fetch import ChecksumError, download
from .idx import read_idx
from .sources import cache_dir, fashion_mnist, find_files, mnist
from .splits import Split, as_split

__all__ = [
    "DATASETS",
    "Batches",
    "ChecksumError",
    "Split",
    "as_split",
    "cache_dir",
    "digits",
    "download",
    "fashion_mnist",
    "find_files",
    "load",
    "mnist",
    "read_idx",
    "stream",
]

#: Names accepted by :func:`load`.
DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist", "digits")


def load(
    name: str, split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of a data set by name.

    Parameters
    ----------
    name : {"fashion_mnist", "mnist", "digits"}
        The data set; case and ``-`` / ``_`` do not matter.
    split : {"train", "test"}
        Which split.
    root : str or os.PathLike, optional
        Folder searched first for the IDX files; ignored by ``"digits"``,
        which ships with scikit-learn.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Images float32 (N, 1, H, W) in [0, 1] and labels int64 (N,).

    Raises
    ------
    ValueError
        If ``name`` or ``split`` is unknown.
    """
    key = name.lower().replace("-", "_")
    if key == "fashion_mnist":
        return fashion_mnist(split, root)
    if key == "mnist":
        return mnist(split, root)
    if key == "digits":
        return digits(split)
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
