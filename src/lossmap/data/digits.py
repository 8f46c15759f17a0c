"""scikit-learn's 8x8 handwritten digits: a small data set that needs no download."""

from __future__ import annotations

import numpy as np
import torch

from .sources import check_split

__all__ = ["digits"]


def digits(
    split: str = "train", test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of scikit-learn's 8x8 digits (1,797 images, 10 classes).

    The split is a seeded random permutation: for a given ``test_fraction`` and
    ``seed``, ``"train"`` and ``"test"`` are disjoint, together cover the whole
    data set, and are the same on every call. Within a split the samples keep
    the data set's original order.

    Parameters
    ----------
    split : {"train", "test"}
        Which part to return.
    test_fraction : float
        Share of the samples in the test split, strictly between 0 and 1.
    seed : int
        Seed of the permutation.

    Returns
    -------
    X : torch.Tensor
        float32, shape (N, 1, 8, 8), values in [0, 1] (the 0..16 pixels / 16).
    y : torch.Tensor
        int64, shape (N,), class indices 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    ValueError
        If ``split`` or ``test_fraction`` is not allowed.
    """
    check_split(split)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "lossmap.data.digits needs scikit-learn: pip install scikit-learn"
        ) from exc
    bunch = load_digits()
    n = len(bunch.target)
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    index = np.sort(order[:n_test] if split == "test" else order[n_test:])
    X = torch.from_numpy((bunch.images[index] / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(bunch.target[index].astype(np.int64))
    return X, y
