"""The Direction type: a read-only mapping from parameter name to a tensor, saved as safetensors.

Every direction builder (random, between models, trajectory PCA, Hessian
eigenvectors) returns this one type; its ``meta`` carries what the builder
knows beyond the tensors (model coordinates, explained variance, eigenvalues).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import params as P
from ..errors import InputError, InputTypeError, MissingFileError


class Direction(Mapping[str, torch.Tensor]):
    """A read-only mapping from parameter (or buffer) name to a direction tensor.

    Parameters
    ----------
    tensors : Mapping[str, Tensor]
        The direction, keyed like ``model.named_parameters()``. Tensors are
        copied to the CPU, so later changes to the caller's tensors do not leak
        in. Entries are never replaced; use :meth:`tensors` for copies to edit.
    meta : dict, optional
        How the direction was made (``kind``, ``norm``, ``ignore``, ``seed``…);
        stored with scans and saved with the tensors.

    Examples
    --------
    >>> import torch
    >>> d = Direction({"w": torch.ones(3)})
    >>> round(d.norm(), 4)
    1.7321
    >>> d["w"] = torch.zeros(3)
    Traceback (most recent call last):
    ...
    TypeError: 'Direction' object does not support item assignment
    """

    __slots__ = ("_meta", "_tensors")

    def __init__(self, tensors: Mapping[str, torch.Tensor], meta: dict | None = None):
        if isinstance(tensors, Direction):
            meta = {**tensors.meta, **(meta or {})}
            tensors = tensors._tensors
        if not isinstance(tensors, Mapping):
            raise InputTypeError(
                f"a Direction wraps a dict of tensors, got {type(tensors).__name__}"
            )
        out = {}
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor):
                raise InputTypeError(
                    f"direction entry {name!r} is a {type(t).__name__}, not a tensor"
                )
            if not t.is_floating_point():
                raise InputError(
                    f"direction entry {name!r} has dtype {t.dtype}; directions are floating point"
                )
            out[name] = t.detach().to("cpu", copy=True).contiguous()
        self._tensors = out
        self._meta = dict(meta or {})

    # -- Mapping protocol (read-only: no item assignment or deletion) -----
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        kind = self._meta.get("kind", "custom")
        return (
            f"Direction({kind}, {len(self)} tensors, {P.numel(self._tensors):,} values, "
            f"norm={self.norm():.4g})"
        )

    @classmethod
    def _adopt(cls, tensors: dict[str, torch.Tensor], meta: dict) -> Direction:
        """Wrap tensors that nobody else holds, without copying them (internal)."""
        d = cls.__new__(cls)
        d._tensors = {k: v.contiguous() for k, v in tensors.items()}
        d._meta = dict(meta)
        return d

    @property
    def meta(self) -> dict:
        """How the direction was made (a copy)."""
        return dict(self._meta)

    def tensors(self) -> dict[str, torch.Tensor]:
        """A new dict of copies of the tensors, free to modify."""
        return {n: t.clone() for n, t in self._tensors.items()}

    def norm(self) -> float:
        """Euclidean norm of the whole direction."""
        return P.norm(self._tensors)

    def dot(self, other: Mapping[str, torch.Tensor]) -> float:
        """Inner product with another direction or state (common names)."""
        return P.dot(self._tensors, other)

    def cosine(self, other: Mapping[str, torch.Tensor]) -> float:
        """Cosine of the angle to another direction (0 if either is zero)."""
        na, nb = self.norm(), P.norm(other)
        return self.dot(other) / (na * nb) if na and nb else 0.0

    def fingerprint(self) -> str:
        """Hash of names, shapes, dtypes and values."""
        return P.fingerprint(self._tensors)

    def save(self, path: str | os.PathLike) -> None:
        """Save as safetensors; ``meta`` goes into the file's metadata."""
        import json

        from safetensors.torch import save_file

        save_file(self._tensors, str(path), metadata={"lossmap": json.dumps(self._meta)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Direction:
        """Load a direction saved by :meth:`save` (or any safetensors file)."""
        import json

        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"direction file {str(path)!r} does not exist")
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            meta = json.loads((f.metadata() or {}).get("lossmap", "{}"))
        return cls(tensors, meta)


def as_direction(obj: Any, *, name: str = "direction") -> Direction:
    """Return ``obj`` as a Direction (wrapping a dict of tensors), else raise."""
    if isinstance(obj, Direction):
        return obj
    if isinstance(obj, Mapping):
        return Direction(obj)
    raise InputTypeError(
        f"{name} is a {type(obj).__name__}; pass a lm.Direction or a dict of tensors"
    )
