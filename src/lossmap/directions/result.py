"""``Directions``: what every builder of several directions returns, and ``lm.scan`` takes.

One shape for every builder (issue 22): a tuple of :class:`Direction` that
``lm.scan(directions=...)`` takes as it is, with what the builder knows beyond
the tensors as named extras — ``result.coords`` (the models' coordinates on
:func:`~lossmap.directions.between.plane`), ``result.explained_variance_ratio``
(:func:`~lossmap.directions.trajectory.pca_directions`), ``result.eigenvalues``
(:func:`~lossmap.hessian.hessian_eigenpairs`); ``result.meta`` holds them all,
and each Direction's own ``meta`` its share.

The shapes of lossmap 0.1 (``d1, d2, coords = lm.plane(...)``, ``dirs, ratio =
lm.pca_directions(...)``, ``values, dirs = lm.hessian_eigenpairs(...)``) keep
working for one release: unpacking a result into the old number of names gives
the old values, with a :class:`DeprecationWarning`. (Where the old and the new
shapes have the same length, two directions unpacked into two names, the old
reading wins until it is removed; index the result, ``dirs[0]``, ``dirs[1]``,
or pass it to ``lm.scan`` as it is.)
"""

from __future__ import annotations

import dis
import sys
import warnings
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any

from ..errors import InputTypeError
from .direction import Direction

_UNPACK = dis.opmap["UNPACK_SEQUENCE"]


def _unpacked_into(frame: FrameType | None) -> int | None:
    """How many names the caller unpacks into (``a, b, c = x``), else None."""
    if frame is None or sys.implementation.name != "cpython":
        return None  # the bytecode is CPython's: elsewhere every unpacking is the new one
    code, i = frame.f_code.co_code, frame.f_lasti
    if 0 <= i < len(code) - 1 and code[i] == _UNPACK:
        return code[i + 1]
    return None


class Directions(tuple):
    """Directions made together, as a tuple of :class:`Direction`, with the builder's extras.

    ``Directions(directions, meta=None)``: the directions in order, and the
    builder's extras (``coords``, ``explained_variance_ratio``, ``eigenvalues``…),
    also readable as attributes.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> nets = [torch.nn.Linear(3, 2) for _ in range(3)]
    >>> plane = lm.plane(*nets)
    >>> len(plane), plane.coords["b"]
    (2, (1.0, 0.0))
    >>> d1, d2 = plane  # two directions, as lm.scan(directions=plane) takes them
    """

    def __new__(
        cls,
        directions: Iterable[Direction] = (),
        meta: dict | None = None,
        *,
        legacy: tuple[tuple, str] | None = None,
    ) -> Directions:
        items = tuple(directions)
        for i, d in enumerate(items):
            if not isinstance(d, Direction):
                raise InputTypeError(
                    f"Directions holds lm.Direction objects; item {i} is a {type(d).__name__}"
                )
        self = super().__new__(cls, items)
        self._meta = dict(meta or {})
        self._legacy = legacy  # (the 0.1 values, the deprecation note) or None
        return self

    @property
    def meta(self) -> dict:
        """The builder's extras (a copy)."""
        return dict(self._meta)

    def __getattr__(self, name: str) -> Any:
        meta = self.__dict__.get("_meta", {})
        if name in meta:
            return meta[name]
        raise AttributeError(
            f"'Directions' object has no attribute {name!r} (its extras: "
            f"{', '.join(meta) or 'none'})"
        )

    def __iter__(self) -> Iterator[Any]:
        legacy = self.__dict__.get("_legacy")
        if legacy is not None and _unpacked_into(sys._getframe(1)) == len(legacy[0]):
            if len(legacy[0]) == tuple.__len__(self):
                # ``d1, d2 = lm.pca_directions(...)`` (n=2) reads both ways: the new reading
                # wins, and the 0.1 caller is told, visibly, what changed
                warnings.warn(
                    f"unpacked into {len(self)} names: these are the {len(self)} directions "
                    f"(0.1 returned a pair here, now {', '.join(self._meta)} "
                    "is an attribute of the result); index the result (dirs[0]) to silence this",
                    FutureWarning,
                    stacklevel=2,
                )
                return tuple.__iter__(self)
            warnings.warn(legacy[1], DeprecationWarning, stacklevel=2)
            return iter(legacy[0])
        return tuple.__iter__(self)

    def __reduce__(self) -> tuple:
        return (Directions, (tuple(self), self._meta))

    def __repr__(self) -> str:
        kinds = sorted({d.meta.get("kind", "custom") for d in tuple.__iter__(self)})
        extras = f"; {', '.join(self._meta)}" if self._meta else ""
        return f"Directions({len(self)} × {'/'.join(kinds) or 'none'}{extras})"
