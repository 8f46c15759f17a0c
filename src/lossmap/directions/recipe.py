"""Random directions kept as their recipe, and regenerated bit-identically from it.

A random direction is a function of its centre and a few settings, so instead
of its tensors (4 bytes a parameter: 4 GB per direction of a 1B-parameter
model) a store or a direction file can keep its *recipe*:

* how it was drawn: ``seed``, ``index`` of ``n`` drawn together, ``norm``,
  ``ignore``, ``orthogonal``, ``filter_axis`` and ``units`` (each tensor's
  unit rule, :mod:`.units`);
* over what: the tensor ``names`` in draw order (the ``params`` subset), their
  number (``tensors``) and size (``values``), and the ``centre`` fingerprint
  of those tensors (names, dtypes, shapes and values of the centre);
* a ``checksum`` of the drawn tensors (:meth:`Direction.fingerprint`) and the
  ``torch`` version that drew them.

Loading regenerates the direction around the given centre on the CPU
generator (private to the draw, seeded from ``seed`` and ``index``) and
compares the checksum: a centre other than the recorded one is refused
(:class:`~lossmap.errors.InputError`), and so is a direction that no longer
comes out bit-identical (:class:`~lossmap.errors.StoreError`: an altered
recipe, or a torch whose random number generator or arithmetic changed).

Which form is kept: ``storage="tensors"`` or ``"recipe"`` (an argument of
:func:`~lossmap.directions.random.random_directions` and
:meth:`Direction.save`), or ``"auto"`` (default): a recipe above
:data:`~lossmap.directions.storage.RECIPE_ELEMENTS` values per direction,
tensors below. Only random directions have a recipe; every other direction
is kept as tensors. Load with :func:`regenerate` (a direction file) or
``lm.load_directions(store, centre=model)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, overload

import torch

from .. import params as P
from ..errors import InputError, StoreError
from .direction import Direction
from .random import centre_of, draw
from .units import axis_rules

__all__ = ["regenerate"]


@overload
def regenerate(directions: Direction, centre: Any, *, where: str = ...) -> Direction: ...
@overload
def regenerate(directions: Sequence[Direction], centre: Any, *,
               where: str = ...) -> list[Direction]: ...


def regenerate(directions: Direction | Sequence[Direction], centre: Any, *,
               where: str = "direction {i}") -> Direction | list[Direction]:
    """Directions loaded as their recipe, with their tensors drawn again around ``centre``.

    Directions drawn together (one ``seed`` and ``n``) are drawn once. Each
    result is checked against its recipe's centre fingerprint and checksum.

    Parameters
    ----------
    directions : Direction or sequence of Direction
        Loaded directions (:meth:`Direction.load`, :func:`lossmap.load_directions`);
        those that have their tensors come back as they are.
    centre : nn.Module or dict of str to Tensor
        The model (or its parameters) the directions were drawn around.
    where : str
        How errors name the directions (``"direction {i} of 'x.lossmap'"``);
        ``{i}`` is replaced by the index.

    Returns
    -------
    Direction or list of Direction
        As given: one, or a list.

    Raises
    ------
    InputError
        ``centre`` is not the recorded centre (a tensor is missing or its
        values differ).
    StoreError
        The regenerated tensors differ from the recorded checksum.

    Examples
    --------
    >>> import tempfile, torch, lossmap as lm
    >>> from lossmap.directions import regenerate
    >>> net = torch.nn.Linear(3, 2)
    >>> path = tempfile.mkdtemp() + "/d.safetensors"
    >>> d = lm.random_direction(net, seed=0)
    >>> d.save(path, storage="recipe")  # no tensors in the file
    >>> loaded = lm.Direction.load(path)
    >>> len(loaded), regenerate(loaded, net).fingerprint() == d.fingerprint()
    (0, True)
    """
    if isinstance(directions, Direction):
        return regenerate([directions], centre, where=where.replace(" {i}", ""))[0]
    out = list(directions)
    drawn: dict[str, list[dict]] = {}
    for i, d in enumerate(directions):
        r = d.recipe
        if r is None or len(d):
            continue
        name = where.replace("{i}", str(i))
        key = json.dumps({k: v for k, v in r.items() if k not in ("index", "checksum")},
                         sort_keys=True)
        if key not in drawn:
            state, axis = centre_of(centre, r["filter_axis"])
            missing = [k for k in r["names"] if k not in state]
            if missing:
                raise InputError(f"{name} is kept as its recipe, drawn around a model with a "
                                 f"tensor {missing[0]!r} that the given centre lacks: pass the "
                                 "model the direction was made for")
            state = {k: state[k] for k in r["names"]}
            if P.fingerprint(state) != r["centre"]:
                raise InputError(
                    f"{name} is kept as its recipe, drawn around a centre with fingerprint "
                    f"{r['centre']}, but the given centre's {r['tensors']} tensors have "
                    f"{P.fingerprint(state)}: pass the model (and checkpoint) it was made "
                    "around — a scan's centre, lm.load_directions(store, centre=model)")
            units = r.get("units", axis_rules(state, axis))  # 0.1 recipes: one axis
            drawn[key] = draw(state, r["n"], norm=r["norm"], ignore=r["ignore"], seed=r["seed"],
                              orthogonal=r["orthogonal"], units=units)
        d = Direction._adopt(drawn[key][r["index"]], d.meta, recipe=r, storage="recipe")
        if d.fingerprint() != r["checksum"]:
            now = torch.__version__
            cause = (f"it was written by torch {r['torch']} and this is torch {now}, whose "
                     "random number generator or arithmetic differs: load it with torch=="
                     f"{r['torch']}" if r["torch"] != now else
                     "the recipe was altered after it was written (same torch version): "
                     "restore the original file")
            raise StoreError(
                f"{name} does not regenerate bit-identically from its recipe (checksum "
                f"{d.fingerprint()} now, {r['checksum']} recorded): {cause}, or rescan with "
                "the directions kept as tensors (storage='tensors')")
        out[i] = d
    return out
