"""How a direction is saved: as its tensors, or as its recipe (the format; no Direction here).

See :mod:`lossmap.directions.recipe` for what a recipe is and how it is
regenerated. This module holds the threshold, the storage choices and the
recipe's on-disk fields; :mod:`.direction` and the store use it to write and
read a direction, :mod:`.recipe` to draw it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from .. import params as P
from ..errors import InputError, StoreError
from .units import is_rule

#: Above this many values a direction is kept as its recipe (``storage="auto"``): 64 Mi,
#: 256 MB of float32 tensors per direction.
RECIPE_ELEMENTS = 64 * 2**20
STORAGES = ("auto", "recipe", "tensors")
#: The safetensors metadata key that holds a recipe (the file then holds no tensors).
KEY = "lossmap_recipe"
FORMAT = 1
_FIELDS = {"format": int, "seed": int, "index": int, "n": int, "norm": str, "orthogonal": bool,
           "filter_axis": int, "names": list, "centre": str, "tensors": int, "values": int,
           "checksum": str, "torch": str}


def check_storage(storage: str) -> str:
    """Return ``storage`` if it is one of ``"auto"``, ``"recipe"``, ``"tensors"``."""
    if storage not in STORAGES:
        raise InputError(f"storage={storage!r} must be 'auto' (a recipe above "
                         f"{RECIPE_ELEMENTS:,} values), 'recipe' or 'tensors'")
    return storage


def make_recipe(centre: Mapping[str, torch.Tensor], *, n: int, norm: str, ignore: str | None,
                seed: int, orthogonal: bool, axis: int, params: dict | None,
                units: Mapping[str, str]) -> dict:
    """The recipe of directions drawn around ``centre`` (its chosen tensors, in draw order).

    ``units`` is each tensor's unit rule for ``norm="filter"``
    (:mod:`lossmap.directions.units`); a recipe without it (lossmap 0.1)
    slices every tensor along ``filter_axis``.
    """
    return {"format": FORMAT, "seed": seed, "n": n, "norm": norm, "ignore": ignore,
            "units": dict(units), "orthogonal": orthogonal, "filter_axis": axis,
            "names": list(centre),
            "params": None if params is None else params["pattern"],
            "centre": P.fingerprint(centre), "tensors": len(centre),
            "values": P.numel(centre)}


def keeps_recipe(d: Any, storage: str | None = None) -> bool:
    """Whether ``d`` is kept as its recipe (``storage`` None: the direction's own choice)."""
    storage = check_storage(storage or d.storage)
    if d.recipe is None or storage == "tensors":
        return False
    return storage == "recipe" or P.numel(d) > RECIPE_ELEMENTS


def stored_form(d: Any, storage: str | None = None) -> tuple[dict, dict[str, str]]:
    """The tensors and safetensors metadata under which ``d`` is saved.

    A direction kept as its recipe saves no tensors, and its recipe (with the
    checksum of its tensors) under :data:`KEY`.
    """
    meta = {"lossmap": json.dumps(d.meta)}
    if d.recipe is not None and not len(d):  # loaded as a recipe, never regenerated
        return {}, {**meta, KEY: json.dumps(d.recipe)}
    if keeps_recipe(d, storage):
        recipe = {**d.recipe, "checksum": d.fingerprint(), "torch": torch.__version__}
        return {}, {**meta, KEY: json.dumps(recipe)}
    return dict(d.items()), meta


def parse_stored(metadata: Mapping[str, str], *, where: str) -> tuple[dict, dict | None]:
    """The ``meta`` and the recipe (None: the file holds the tensors) of a saved direction."""
    meta = json.loads(metadata.get("lossmap", "{}"))
    if KEY not in metadata:
        return meta, None
    return meta, check_recipe(json.loads(metadata[KEY]), where=where)


def check_recipe(recipe: Any, *, where: str) -> dict:
    """``recipe`` if it has every field with the right type, else a StoreError naming one."""
    if not isinstance(recipe, dict):
        raise StoreError(f"{where}: its recipe is a {type(recipe).__name__}, not a mapping")
    for key, kind in _FIELDS.items():
        v = recipe.get(key)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise StoreError(f"{where}: its recipe's {key!r} is {v!r}, not a {kind.__name__}: "
                             "the recipe is damaged; rescan with storage='tensors'")
    if (not all(isinstance(k, str) for k in recipe["names"])
            or not 0 <= recipe["index"] < recipe["n"]
            or recipe["norm"] not in ("filter", "layer", "model", "none")
            or recipe.get("ignore") not in ("biasbn", None)
            or not isinstance(recipe.get("units", {}), dict)
            or not all(is_rule(r) for r in recipe.get("units", {}).values())):
        raise StoreError(f"{where}: its recipe's names, index, norm, ignore or units are damaged; "
                         "rescan with storage='tensors'")
    return recipe

