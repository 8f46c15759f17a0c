"""Splits held as their own batches: dicts, several inputs, dynamic padding, streams.

A split whose batches are dicts (``input_ids``, ``attention_mask``, ``labels``,
``pixel_values``…), tuples of several inputs and a target, or ``(X, y)`` pairs
whose shapes differ from batch to batch (dynamic padding) cannot be one tensor.
It is kept as its batches, in their given order (pass a loader that does not
shuffle), read once and fingerprinted; the model is called ``model(**batch)``
for a dict and ``model(*inputs)`` for a tuple. :func:`stream` wraps a loader
too large to hold: it is read again at every pass, and its fingerprint is
checked each time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError, InputTypeError, LossmapError

Batch = dict[str, Any] | tuple


class Stream:
    """A loader read again at every pass instead of held in memory (see :func:`stream`)."""

    def __init__(self, loader: Iterable, n: int | None = None):
        self.loader = loader
        self.n = n


def stream(loader: Iterable, *, n: int | None = None) -> Stream:
    """Mark a split to be streamed: re-read at each pass, never held in memory.

    Use it for a split that does not fit in host memory. The loader must give
    the same batches in the same order on every pass (no shuffling): each pass
    is fingerprinted and compared with the first, and a pass that differs
    stops the scan with an error before its values are stored.

    Parameters
    ----------
    loader : iterable
        Re-iterable batches (a ``DataLoader`` without shuffling), of any
        structure :func:`lossmap.scan.api` accepts.
    n : int, optional
        The number of examples, if known (else counted on the first pass).

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> batches = [{"x": torch.randn(4, 3), "y": torch.randint(0, 2, (4,))} for _ in range(3)]
    >>> s = lm.data.as_split(lm.data.stream(batches), "train")
    >>> s.n, s.streamed
    (12, True)
    """
    if isinstance(loader, (str, bytes, torch.Tensor, Mapping)) or not isinstance(loader, Iterable):
        raise InputTypeError(f"stream() takes a re-iterable loader, not a {type(loader).__name__}")
    if iter(loader) is loader:
        raise InputTypeError("stream() needs a loader it can read again at every pass (a "
                             "DataLoader or a list), not a one-shot iterator or generator")
    return Stream(loader, n)


def _tensors(batch: Batch) -> list[torch.Tensor]:
    values = batch.values() if isinstance(batch, Mapping) else batch
    return [v for v in values if isinstance(v, torch.Tensor)]


def rows_of(batch: Batch) -> int:
    """Examples in a batch: the first dimension of its first tensor."""
    t = _tensors(batch)
    return int(t[0].shape[0]) if t and t[0].dim() else 1


def _checked(batch: Any, name: str, i: int) -> Batch:
    """A batch on the CPU, detached: a dict of tensors (and other values) or a tuple."""
    if isinstance(batch, Mapping):
        out = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        if not _tensors(out):
            raise InputTypeError(f"split {name!r}: batch {i} is a dict without tensors")
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        if not all(isinstance(v, torch.Tensor) for v in batch):
            kinds = ", ".join(type(v).__name__ for v in batch)
            raise InputTypeError(f"split {name!r}: batch {i} holds {kinds}; a tuple batch holds "
                                 "tensors: the inputs, then the target")
        out = tuple(v.detach().cpu() for v in batch)
    else:
        raise InputTypeError(
            f"split {name!r}: batch {i} is a {type(batch).__name__}; a batch is an (X, y) pair, "
            "a tuple of inputs and a target, or a dict such as {'input_ids': ..., 'labels': ...}")
    sizes = {int(t.shape[0]) for t in _tensors(out) if t.dim()}
    if len(sizes) > 1:
        raise InputError(f"split {name!r}: batch {i} holds tensors of {sorted(sizes)} rows; "
                         "every tensor of a batch has one row per example")
    return out


def _hash(h: Any, batch: Batch) -> None:
    items = sorted(batch.items()) if isinstance(batch, Mapping) else enumerate(batch)
    for key, v in items:
        h.update(str(key).encode())
        if isinstance(v, torch.Tensor):
            t = v.contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(v).encode())


def _take(batch: Batch, rows: torch.Tensor) -> Batch:
    """The rows ``rows`` of every per-example tensor of a batch."""
    n = rows_of(batch)

    def pick(v):
        return v[rows] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v

    if isinstance(batch, Mapping):
        return {k: pick(v) for k, v in batch.items()}
    return tuple(pick(v) for v in batch)


@dataclass(frozen=True)
class Batches:
    """One named split held (or streamed) as its batches, in their given order.

    Attributes
    ----------
    name : str
    batches : tuple of batches
        Dicts of tensors, or tuples ``(*inputs, target)``; empty for a stream.
    n : int
        Number of examples.
    kind : {"dict", "tuple"}
    source : Stream or None
        The loader re-read at every pass, for a streamed split.

    Examples
    --------
    >>> import torch
    >>> from lossmap.data import as_split
    >>> batches = [{"input_ids": torch.ones(2, n, dtype=torch.long)} for n in (5, 7)]
    >>> s = as_split(batches, "train")  # dicts of two lengths: kept as given
    >>> type(s).__name__, s.kind, s.n, [b["input_ids"].shape[1] for b in s]
    ('Batches', 'dict', 4, [5, 7])
    """

    name: str
    batches: tuple
    n: int
    kind: str
    source: Stream | None = None
    _fingerprint: str = field(default="", repr=False)
    keep: dict | None = field(default=None, repr=False)  # the samples= subset, per batch

    @property
    def streamed(self) -> bool:
        """Whether the split is re-read at every pass."""
        return self.source is not None

    @property
    def batch_size(self) -> int | None:
        """Batches are used as given."""
        return None

    def fingerprint(self) -> str:
        """Hash of the exact batches evaluated, in order."""
        return self._fingerprint

    def batches_of_source(self) -> Iterator[Batch]:
        """One pass over a stream's loader: checked batches, the ``samples=`` subset taken."""
        for i, b in enumerate(self.source.loader):
            if self.keep is not None and i not in self.keep:
                continue
            b = _checked(b, self.name, i)
            yield b if self.keep is None else _take(b, self.keep[i])

    def __iter__(self) -> Iterator[Batch]:
        """The batches of one pass (a stream is read again, and its fingerprint checked)."""
        if self.source is None:
            yield from self.batches
            return
        h = hashlib.sha256()
        for b in self.batches_of_source():
            _hash(h, b)
            yield b
        if h.hexdigest()[:16] != self._fingerprint:
            raise LossmapError(
                f"split {self.name!r} is streamed and gave other batches on this pass than on "
                "the first (fingerprint differs): its loader must not shuffle or change; the "
                "values of this pass were not stored")

    def head(self, n: int) -> list[Batch]:
        """The first ``n`` examples, as batches (for probes and checks)."""
        out, left = [], n
        for b in self:
            if left <= 0:
                break
            r = rows_of(b)
            out.append(b if r <= left else _take(b, torch.arange(left)))
            left -= r
        return out


def _subset(rows: list[int], samples: int | None, seed: int, name: str) -> dict | None:
    """The ``samples=`` subset: batch index → the rows kept in it (None: every row)."""
    if samples is None:
        return None
    n = sum(rows)
    if samples > n:
        raise InputError(f"samples={samples} but split {name!r} has only {n} examples: "
                         "lower samples or pass samples=None for the whole split")
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(n, generator=gen)[:samples].sort().values
    keep, start = {}, 0
    for i, r in enumerate(rows):
        sel = chosen[(chosen >= start) & (chosen < start + r)] - start
        if len(sel):
            keep[i] = sel
        start += r
    return keep


def _kind(batches: Iterable[Batch], name: str) -> str:
    kinds = {isinstance(b, Mapping) for b in batches}
    if len(kinds) > 1:
        raise InputError(f"split {name!r} mixes dict and tuple batches: use one structure")
    return "dict" if kinds == {True} else "tuple"


def read_batches(obj: Any, name: str, *, samples: int | None = None, seed: int = 0,
                 first: list | None = None) -> Batches:
    """Read a split of structured batches (``first``: batches already taken from ``obj``).

    A :class:`Stream` is read twice here (to count its examples, then to
    fingerprint what is evaluated) and never held.
    """
    if isinstance(obj, Stream):
        rows, kinds = [], []
        for i, b in enumerate(obj.loader):
            b = _checked(b, name, i)
            rows.append(rows_of(b))
            kinds.append(b if i == 0 else {} if isinstance(b, Mapping) else ())
        if not rows:
            raise InputError(f"split {name!r} yielded no batches: it is empty")
        kind = _kind(kinds, name)
        keep = _subset(rows, samples, seed, name)
        probe = Batches(name, (), sum(rows) if keep is None else samples, kind, obj, "", keep)
        h = hashlib.sha256()
        for b in probe.batches_of_source():
            _hash(h, b)
        return Batches(name, (), probe.n, kind, obj, h.hexdigest()[:16], keep)
    batches = list(first or [])
    it = iter(obj)
    if first and iter(obj) is not obj:  # a re-iterable loader: read from its start again
        batches = []
    elif first:
        it = obj  # a one-shot iterator: what was taken is in ``first``
    batches += list(it)
    batches = [_checked(b, name, i) for i, b in enumerate(batches)]
    if not batches:
        raise InputError(f"split {name!r} yielded no batches: it is empty")
    kind = _kind(batches, name)
    keep = _subset([rows_of(b) for b in batches], samples, seed, name)
    if keep is not None:
        batches = [_take(batches[i], r) for i, r in keep.items()]
    h = hashlib.sha256()
    for b in batches:
        _hash(h, b)
    n = sum(rows_of(b) for b in batches)
    return Batches(name, tuple(batches), n, kind, None, h.hexdigest()[:16])
