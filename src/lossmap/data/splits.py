"""Data splits: turn what the user passes into fixed tensors read once.

A split may be a ``DataLoader``, an ``(X, y)`` tuple of tensors, or any
iterable of ``(X, y)`` batches (batches of other structures are kept as given:
:mod:`lossmap.data.batches`). It is read once, concatenated on the CPU
(samples from an iterable are put in a canonical order, so a shuffling loader
gives the same scan every time), and optionally reduced to a fixed seeded
subset of ``samples`` samples; the scan then evaluates exactly these samples
at every grid point. The split must fit in host memory (use ``samples=``
otherwise).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .. import params as P
from ..errors import InputError, InputTypeError
from ..scan.spec import check_name
from .batches import Batches, Stream, read_batches


@dataclass(frozen=True)
class Split:
    """One named split held as two CPU tensors: inputs ``X`` (N, ...) and targets ``y`` (N, ...).

    Examples
    --------
    >>> import torch
    >>> s = Split("train", torch.zeros(6, 3), torch.arange(6))
    >>> s.n, len(s.fingerprint())
    (6, 16)
    """

    name: str
    X: torch.Tensor
    y: torch.Tensor
    batch_size: int | None = None  # the loader's own batch size, if it had one

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    def fingerprint(self) -> str:
        """Hash of the exact samples evaluated."""
        return P.fingerprint({"X": self.X, "y": self.y})


def _pair(batch: Any, name: str, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise InputTypeError(
            f"split {name!r}: batch {i} is a {type(batch).__name__}, not an (X, y) pair"
        )
    X, y = batch[0], batch[1]
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise InputTypeError(
            f"split {name!r}: batch {i} holds {type(X).__name__} and {type(y).__name__}; "
            "X and y must be tensors"
        )
    if X.dim() == 0 or y.dim() == 0 or X.shape[0] != y.shape[0]:
        raise InputError(
            f"split {name!r}: batch {i} has X of shape {tuple(X.shape)} and y of shape "
            f"{tuple(y.shape)}; their first dimensions (samples) must be equal"
        )
    return X.detach().cpu(), y.detach().cpu()


def _canonical(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort samples by a hash of their bytes.

    A shuffling DataLoader yields the same samples in another order on every
    pass; sorting makes the evaluated tensors, their batches (hence round-off)
    and the data fingerprint independent of that order, so a resumed scan
    matches the store.
    """
    xb = X.reshape(X.shape[0], -1).contiguous().view(torch.uint8).numpy() if X.numel() else None
    yb = y.reshape(y.shape[0], -1).contiguous().view(torch.uint8).numpy()
    keys = [
        hashlib.blake2b(
            (xb[i].tobytes() if xb is not None else b"") + yb[i].tobytes(), digest_size=8
        ).digest()
        for i in range(X.shape[0])
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    idx = torch.tensor(order, dtype=torch.long)
    return X[idx], y[idx]


def as_split(obj: Any, name: str, *, samples: int | None = None,
             seed: int = 0) -> Split | Batches:
    """Read one split into memory and take its fixed subset.

    ``(X, y)`` batches of one sample shape become one :class:`Split`. Batches
    that are dicts, tuples of several inputs and a target, or pairs whose
    shapes differ from batch to batch (dynamic padding), and a
    :func:`~lossmap.data.batches.stream`, become a
    :class:`~lossmap.data.batches.Batches`, kept in their given order.

    Parameters
    ----------
    obj : DataLoader, (X, y) tuple of tensors, iterable of batches, or a stream
        The data.
    name : str
        Split name (an identifier: it becomes part of variable names).
    samples : int, optional
        Keep a fixed random subset of this many samples (seeded by ``seed``).
    seed : int
        Seed of the subset; the subset is the same on every call.

    Examples
    --------
    >>> import torch
    >>> X, y = torch.randn(10, 3), torch.arange(10)
    >>> s = as_split((X, y), "train", samples=4, seed=0)  # a fixed seeded subset
    >>> s.n, bool(torch.equal(s.y, as_split((X, y), "train", samples=4, seed=0).y))
    (4, True)
    """
    check_name(name, what="split")
    batch_size = None
    if isinstance(obj, Stream):
        return read_batches(obj, name, samples=samples, seed=seed)
    if isinstance(obj, tuple) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj):
        X, y = _pair(obj, name, 0)
    elif isinstance(obj, (str, bytes, torch.Tensor)) or not isinstance(obj, Iterable):
        raise InputTypeError(
            f"split {name!r} is a {type(obj).__name__}; pass a DataLoader, an (X, y) tuple "
            "of tensors, or an iterable of (X, y) batches"
        )
    else:
        batch_size = getattr(obj, "batch_size", None)
        xs, ys, raw = [], [], []
        for i, batch in enumerate(obj):
            raw.append(batch)
            if isinstance(batch, Mapping) or (isinstance(batch, (tuple, list)) and len(batch) > 2):
                # dicts, several inputs: kept as batches (the model is called model(**batch))
                return read_batches(obj, name, samples=samples, seed=seed, first=raw)
            X, y = _pair(batch, name, i)
            if xs and (X.shape[1:] != xs[0].shape[1:] or y.shape[1:] != ys[0].shape[1:]):
                # dynamic padding: the batches are kept as given, in their order
                return read_batches(obj, name, samples=samples, seed=seed, first=raw)
            xs.append(X)
            ys.append(y)
        if not xs:
            raise InputError(f"split {name!r} yielded no batches: it is empty")
        X, y = _canonical(torch.cat(xs), torch.cat(ys))
    if X.shape[0] == 0:
        raise InputError(f"split {name!r} has no samples")
    if samples is not None:
        if samples > X.shape[0]:
            raise InputError(
                f"samples={samples} but split {name!r} has only {X.shape[0]} samples: "
                "lower samples or pass samples=None for the whole split"
            )
        gen = torch.Generator().manual_seed(seed)
        keep = torch.randperm(X.shape[0], generator=gen)[:samples].sort().values
        X, y = X[keep], y[keep]
    return Split(name, X.contiguous(), y.contiguous(), batch_size)


def check_samples(split: Split, first: int = 2) -> list[int]:
    """The samples a check of ``split`` runs on: the first ones and the extreme targets.

    With integer targets (class labels), the sample holding the smallest and
    the one holding the largest target join the first ``first`` samples, so a
    check on these few samples meets the whole range of labels a loss will see
    (one pass over ``y``, no forward). A label out of the model's range in any
    sample is then caught before any point is computed.

    Parameters
    ----------
    split : Split
        The split.
    first : int, default 2
        How many leading samples to take.

    Returns
    -------
    list of int
        Sorted sample indices, without repeats.

    Examples
    --------
    >>> import torch
    >>> s = Split("train", torch.zeros(6, 2), torch.tensor([1, 0, 2, 9, 1, -1]))
    >>> check_samples(s)
    [0, 1, 3, 5]
    """
    keep = set(range(min(first, split.n)))
    y = split.y
    if not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool) and y.numel():
        per_sample = y.reshape(split.n, -1)  # (N, targets per sample)
        keep |= {int(per_sample.amin(1).argmin()), int(per_sample.amax(1).argmax())}
    return sorted(keep)


def as_splits(data: Any, *, samples: int | None = None,
              seed: int = 0) -> list[Split | Batches]:
    """Validate the ``data`` argument of a scan: a dict of named splits."""
    if not isinstance(data, Mapping):
        raise InputTypeError(
            f"data is a {type(data).__name__}; pass a dict of named splits, "
            "e.g. data={'train': train_loader, 'test': (X_test, y_test)}"
        )
    if not data:
        raise InputError("data is empty: pass at least one split, e.g. {'train': (X, y)}")
    return [as_split(v, k, samples=samples, seed=seed) for k, v in data.items()]
