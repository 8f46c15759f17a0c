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
from .storage import check_storage, parse_stored, stored_form


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

    __slots__ = ("_fp", "_meta", "_recipe", "_storage", "_tensors")

    def __init__(self, tensors: Mapping[str, torch.Tensor], meta: dict | None = None):
        recipe, storage = None, "auto"
        if isinstance(tensors, Direction):
            meta = {**tensors.meta, **(meta or {})}
            recipe, storage = tensors._recipe, tensors._storage  # same tensors: still exact
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
        self._recipe, self._storage, self._fp = recipe, storage, None

    # -- Mapping protocol (read-only: no item assignment or deletion) -----
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        kind = self._meta.get("kind", "custom")
        if self._recipe is not None and not self._tensors:
            return (f"Direction({kind}, recipe of {self._recipe['tensors']} tensors, "
                    f"{self._recipe['values']:,} values, not regenerated)")
        return (
            f"Direction({kind}, {len(self)} tensors, {P.numel(self._tensors):,} values, "
            f"norm={self.norm():.4g})"
        )

    @classmethod
    def _adopt(cls, tensors: dict[str, torch.Tensor], meta: dict, *,
               recipe: dict | None = None, storage: str = "auto") -> Direction:
        """Wrap tensors that nobody else holds, without copying them (internal)."""
        d = cls.__new__(cls)
        d._tensors = {k: v.contiguous() for k, v in tensors.items()}
        d._meta = dict(meta)
        d._recipe, d._storage, d._fp = recipe, storage, None
        return d

    @property
    def recipe(self) -> dict | None:
        """How to draw this direction again (a random direction), else None.

        See :mod:`lossmap.directions.recipe`. A direction loaded from its
        recipe has no tensors until :func:`lossmap.directions.regenerate` draws them.
        """
        return None if self._recipe is None else dict(self._recipe)

    @property
    def storage(self) -> str:
        """How a store or :meth:`save` keeps it: ``"auto"``, ``"recipe"`` or ``"tensors"``."""
        return self._storage

    def stored_as(self, storage: str) -> Direction:
        """The same direction (tensors shared, not copied), kept as ``storage`` when saved.

        ``"recipe"`` needs a random direction (:attr:`recipe`); ``"auto"``
        keeps a recipe above :data:`~lossmap.directions.storage.RECIPE_ELEMENTS` values.

        Examples
        --------
        >>> import torch, lossmap as lm
        >>> d = lm.random_direction(torch.nn.Linear(3, 2), seed=0).stored_as("recipe")
        >>> d.storage
        'recipe'
        """
        if check_storage(storage) == "recipe" and self._recipe is None:
            raise InputError(f"a {self._meta.get('kind', 'custom')} direction has no recipe: "
                             "only random directions can be kept as their recipe")
        return Direction._adopt(self._tensors, self._meta, recipe=self._recipe,
                                storage=storage)

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
        """Hash of names, shapes, dtypes and values (computed once: the tensors never change)."""
        if self._fp is None:
            self._fp = P.fingerprint(self._tensors)
        return self._fp

    def save(self, path: str | os.PathLike, *, storage: str | None = None) -> None:
        """Save as safetensors; ``meta`` goes into the file's metadata.

        ``storage`` (default: :attr:`storage`) ``"recipe"`` saves a random
        direction's recipe instead of its tensors (see
        :mod:`lossmap.directions.recipe`); ``"auto"`` does so above
        ``RECIPE_ELEMENTS`` values.
        """
        from safetensors.torch import save_file

        tensors, metadata = stored_form(self, storage)
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Direction:
        """Load a direction saved by :meth:`save` (or any safetensors file).

        A direction saved as its recipe comes back without tensors:
        :func:`lossmap.directions.regenerate` draws them around the model it
        was made for, checked bit for bit.

        Examples
        --------
        >>> import tempfile, torch, lossmap as lm
        >>> d = lm.random_direction(torch.nn.Linear(3, 2), seed=0)
        >>> path = tempfile.mkdtemp() + "/d.safetensors"
        >>> d.save(path)
        >>> lm.Direction.load(path).fingerprint() == d.fingerprint()
        True
        """
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"direction file {str(path)!r} does not exist")
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            metadata = f.metadata() or {}
        return from_stored(tensors, metadata, where=f"direction file {str(path)!r}")


def from_stored(tensors: dict, metadata: Mapping[str, str], *, where: str) -> Direction:
    """The Direction of a saved file's tensors and safetensors metadata (see :mod:`.storage`).

    A direction saved as its recipe comes back without tensors.
    """
    meta, recipe = parse_stored(metadata, where=where)
    if recipe is None:
        return Direction(tensors, meta)
    return Direction._adopt({}, meta, recipe=recipe, storage="recipe")


def as_direction(obj: Any, *, name: str = "direction") -> Direction:
    """Return ``obj`` as a Direction with tensors (wrapping a dict of tensors), else raise."""
    if isinstance(obj, Direction) and not len(obj) and obj.recipe is not None:
        raise InputError(f"{name} was loaded as its recipe and has no tensors yet: load it "
                         "with lm.load_directions(store, centre=model) or "
                         "lossmap.directions.regenerate(d, model)")
    if isinstance(obj, Direction):
        return obj
    if isinstance(obj, Mapping):
        return Direction(obj)
    raise InputTypeError(
        f"{name} is a {type(obj).__name__}; pass a lm.Direction or a dict of tensors"
    )
