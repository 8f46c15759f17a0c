"""Flat slices: a surface equal to round-off everywhere, and directions that cannot move the loss.

* :func:`flatness` (after a scan) — whether every finite value of a slice is
  equal to round-off: the spread ``max L − min L`` against ``k · 2 · f``, with
  ``f`` the scan's measured round-off floor (``Surface.roundoff``) or, where
  none was measured, the round-off of one value assumed from the dtype's eps
  (``eps · max|L|``, an ulp bound), and ``k`` the safety
  (:data:`lossmap.analysis.ROUNDOFF_SAFETY`).
* :func:`warn_inert_directions` (before a scan) — a direction that moves only
  LoRA ``A`` matrices (peft's ``lora_A``) while the matching ``lora_B`` is all
  zero at the centre (a fresh adapter) cannot change the output: every point
  of the scan would equal the centre. The scan warns before it starts.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..surface import Surface
from .common import ROUNDOFF_SAFETY, _check_surface, _eps, _evidence, _floor, _values
from .finding import Flatness

__all__ = ["LORA_FLAT", "flatness", "inert_lora", "partner", "warn_inert_directions"]

LORA_FLAT = (
    "the {what} is flat: the LoRA B matrices are zero, so moving A changes nothing; "
    "train the adapter first or include B"
)
"""The scan's warning for a direction that moves only LoRA A matrices whose B is zero."""


def flatness(surface: Surface, variable: str, *, floor_safety: float = ROUNDOFF_SAFETY) -> Flatness:
    """Whether every finite value of a line or plane is equal to round-off.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str
        E.g. ``"train_loss"``.
    floor_safety : float, default 2
        The safety ``k`` of the bound ``k · 2 · f``.

    Returns
    -------
    Flatness
        ``value`` (the spread ``max − min`` of the finite values; None with
        fewer than two), ``flat`` (spread <= bound; None with fewer than two),
        ``bound``, ``level`` (the centre's value, else the mean), ``dims``;
        the evidence holds the floor and whether it was measured.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 5), (-1, 1, 5)), splits=("train",), metrics=("loss",))
    >>> r = flatness(Surface(spec, {"train_loss": np.full((5, 5), 2.5)}, np.ones((5, 5), bool)),
    ...              "train_loss")
    >>> r.flat, r.value, r.evidence.floor_measured
    (True, 0.0, False)
    """
    _check_surface(surface, what="flatness")
    L = _values(surface, variable)
    finite = L[np.isfinite(L)]
    fl = _floor(surface, variable)
    top = float(np.abs(finite).max()) if finite.size else 0.0
    floor = fl if fl is not None else _eps(surface.spec.dtype) * top
    bound = float(floor_safety) * 2.0 * floor
    ev = _evidence(
        surface,
        variable,
        points=int(finite.size),
        skipped=int(L.size - finite.size),
        floor=floor,
        floor_measured=fl is not None,
    )
    if finite.size < 2:
        return Flatness(
            variable=variable, value=None, evidence=ev, bound=bound, dims=len(surface.dims)
        )
    spread = float(finite.max() - finite.min())
    centre = surface.centre_index()
    level = (
        float(L[centre]) if centre is not None and np.isfinite(L[centre]) else float(finite.mean())
    )
    return Flatness(
        variable=variable,
        value=spread,
        evidence=ev,
        flat=spread <= bound,
        bound=bound,
        dims=len(surface.dims),
        level=level,
    )


def inert_lora(direction: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The LoRA A tensors a direction moves, if it moves nothing else and every matching B is 0.

    A direction that moves only tensors named ``…lora_A…`` (peft's adapters),
    each of whose ``…lora_B…`` partner is all zero in ``params`` (the
    centre), cannot change the model's output: ``B (A + αD) x = 0``. Returns
    those names, or ``[]`` when the direction can move the output (or is not
    of this kind).

    Parameters
    ----------
    direction : mapping of str to Tensor
        A direction, keyed like ``model.named_parameters()``.
    params : mapping of str to Tensor
        The centre's parameters.

    Returns
    -------
    list of str

    Examples
    --------
    >>> import torch
    >>> params = {"l.lora_A.default.weight": torch.ones(2, 3),
    ...           "l.lora_B.default.weight": torch.zeros(3, 2)}
    >>> inert_lora({"l.lora_A.default.weight": torch.randn(2, 3)}, params)
    ['l.lora_A.default.weight']
    >>> params["l.lora_B.default.weight"][0, 0] = 1.0
    >>> inert_lora({"l.lora_A.default.weight": torch.randn(2, 3)}, params)
    []
    """
    if not any(_LORA_A.search(k) for k in direction):
        return []
    for k, t in direction.items():  # anything else moved: the direction can move the output
        if not _LORA_A.search(k) and bool(t.ne(0).any()):
            return []
    moved = [k for k, t in direction.items() if bool(t.ne(0).any())]
    for k in moved:
        b = params.get(partner(k))
        if b is None or bool(b.ne(0).any()):
            return []
    return moved


#: peft's adapter A matrices (``lora_A``, ``lora_embedding_A``), named as a path component
_LORA_A = re.compile(r"(^|\.)lora_(embedding_)?A(\.|$)")


def partner(name: str) -> str:
    """The LoRA B matrix paired with A matrix ``name`` (the adapter's own name is kept).

    Examples
    --------
    >>> partner("h.0.attn.lora_A.lora_A_run.weight")
    'h.0.attn.lora_B.lora_A_run.weight'
    >>> partner("wte.lora_embedding_A.default")
    'wte.lora_embedding_B.default'
    """
    return _LORA_A.sub(lambda m: f"{m[1]}lora_{m[2] or ''}B{m[3]}", name, count=1)


def warn_inert_directions(
    directions: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> None:
    """Warn, before a scan, when a direction moves only LoRA A matrices whose B is zero.

    Parameters
    ----------
    directions : sequence of Direction
        The scan's directions.
    params : mapping of str to Tensor
        The centre's parameters.

    The warning points at the user's line (the first frame outside lossmap),
    whether it came through ``lm.scan`` or ``lm.plan_scan``.
    """
    inert = {i: found for i, d in enumerate(directions) if (found := inert_lora(d, params))}
    if not inert:
        return
    # another direction that moves a matching B makes A matter off its own axis
    others = {k for i, d in enumerate(directions) if i not in inert
              for k, t in d.items() if bool(t.ne(0).any())}
    if any(partner(k) in others for found in inert.values() for k in found):
        what = ", ".join(f"line along direction {i} (the other coordinates at 0)"
                         for i in inert)
    elif len(inert) == len(directions):
        what = {1: "line", 2: "plane"}.get(len(directions), "slice")
    else:
        what = ", ".join(f"line along direction {i}" for i in inert)
    first = next(iter(inert.values()))
    warnings.warn(
        LORA_FLAT.format(what=what)
        + f" ({sum(map(len, inert.values()))} A tensors, e.g. {first[0]!r})",
        UserWarning,
        stacklevel=_outside_lossmap(),
    )


def _outside_lossmap() -> int:
    """The ``stacklevel`` of the first caller outside the lossmap package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
