"""The grid minimum, the cosine of two directions, and :func:`analyse` (every finding at once).

The rules (missing points, slope, convexity) are stated in :mod:`lossmap.analysis.common`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface
from .common import _centre_or_closest, _check_surface, _values
from .convexity import convexity
from .slope import slope_at_centre
from .uncertainty import Z, _check_z, _n, _pair_se, _pm, _resolve, _tail

__all__ = ["analyse", "direction_cosine", "minimum"]


# -- minimum -------------------------------------------------------------------
def minimum(surface: Surface, variable: str, *, z: float = Z) -> dict[str, Any]:
    """Value and coordinates of the grid minimum over the finite points, and its drop below L(c).

    Where standard errors were stored, the drop from the centre to an
    off-centre minimum, ``L(c) − L(min)``, is compared with its conservative
    standard error ``sqrt(se_c² + se_min²)`` (same split: shared samples,
    :mod:`lossmap.analysis.uncertainty`): the minimum is off the centre
    *resolved* when the drop exceeds ``z`` standard errors, else "not resolved
    at this sample size".

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str
        A stored variable, e.g. ``"test_loss"``.
    z : float, default 2
        The drop is resolved when it exceeds ``z`` standard errors.

    Returns
    -------
    dict
        ``value`` (NaN if no point is finite), ``coords`` (dim → coordinate,
        or None), ``index`` (grid index tuple, or None), ``at_centre`` (bool:
        the minimum is at the centre, or at the grid point closest to it when
        0 is not on the grid; ties count as at the centre) and ``warning``
        (a sentence, or None). Added: ``centre_value``, ``drop`` (``L(c) −
        value`` >= 0, NaN when the centre is missing), ``se`` (of the drop,
        conservative; None where not measured), ``z``, ``z_score``,
        ``resolved`` (None at the centre or without SEs), ``n`` (samples) and
        ``evidence`` (a sentence with the numbers).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": (a - 0.5) ** 2}, np.ones(21, bool))
    >>> r = minimum(surf, "train_loss")
    >>> r["coords"], r["warning"]
    ({'alpha': 0.5}, 'the minimum along this slice is not at the centre')
    >>> noisy = Surface(spec, surf.values, surf.done, errors={"train_loss": np.full(21, 0.2)})
    >>> r = minimum(noisy, "train_loss")  # drop 0.25 against a s.e. of sqrt(2) * 0.2
    >>> round(r["drop"], 6), round(r["se"], 4), r["resolved"]
    (0.25, 0.2828, False)
    """
    _check_surface(surface, what="minimum")
    L = _values(surface, variable)
    z = _check_z(z)
    finite = np.isfinite(L)
    out: dict[str, Any] = {"variable": variable}
    if not finite.any():
        out.update(
            value=math.nan,
            coords=None,
            index=None,
            at_centre=False,
            warning=f"{variable} has no finite point on this slice",
            centre_value=math.nan,
            drop=math.nan,
            **_resolve(math.nan, None, z),
            n=_n(surface, variable),
            evidence=f"{variable} has no finite point on this slice",
        )
        return out
    flat = int(np.argmin(np.where(finite, L, np.inf)))
    idx = tuple(int(i) for i in np.unravel_index(flat, L.shape))
    value = float(L[idx])
    centre, note = _centre_or_closest(surface)
    at_centre = bool(finite[centre] and L[centre] <= value)
    if at_centre:
        idx = centre
    out.update(
        value=value,
        coords={d: float(surface.coords[d][i]) for d, i in zip(surface.dims, idx, strict=True)},
        index=idx,
        at_centre=at_centre,
        warning=None if at_centre else "the minimum along this slice is not at the centre",
    )
    if note:
        out["note"] = note
    out.update(_off_centre(surface, variable, L, idx, centre, at_centre, z))
    return out


def _off_centre(surface: Surface, variable: str, L: np.ndarray, idx: tuple, centre: tuple,
                at_centre: bool, z: float) -> dict[str, Any]:
    """``centre_value``, ``drop``, its SE and resolution, ``n`` and ``evidence`` of a minimum."""
    c, n = float(L[centre]), _n(surface, variable)
    drop = c - float(L[idx])
    err, kind = _pair_se(surface, variable, tuple(idx), tuple(centre))
    r = _resolve(drop, err, z)
    out = {"centre_value": c, "drop": drop, **r, "n": n}
    if at_centre:
        out["resolved"] = None  # nothing off the centre to resolve
        out["evidence"] = "the minimum along this slice is at the centre"
    elif not math.isfinite(c):
        out["evidence"] = "the minimum is off the centre; the value at the centre is missing"
    else:
        where = ", ".join(f"{d} = {surface.coords[d][i]:.3g}"
                          for d, i in zip(surface.dims, idx, strict=True))
        out["evidence"] = (f"the minimum is off the centre (at {where}), below the centre "
                           f"by {_pm(drop, r, n, kind)}{_tail(r)}")
    return out


# -- directions ----------------------------------------------------------------
def direction_cosine(d1: Mapping[str, Any], d2: Mapping[str, Any]) -> float:
    """Cosine of the angle between two directions (0 if either is zero).

    Parameters
    ----------
    d1, d2 : Direction or dict of str to Tensor
        Directions keyed like ``model.named_parameters()``; the inner product
        runs over the names they share.

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> round(direction_cosine({"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])}), 4)
    0.7071
    """
    from ..directions.direction import Direction

    for name, d in (("d1", d1), ("d2", d2)):
        if not isinstance(d, Mapping):
            raise InputTypeError(
                f"{name} must be a Direction or a dict of tensors, got {type(d).__name__}"
            )
    first = d1 if isinstance(d1, Direction) else Direction(d1)
    second = d2 if isinstance(d2, Direction) else Direction(d2)
    if not set(first) & set(second):
        raise InputError(
            "the two directions share no parameter name: they belong to different models"
        )
    return float(first.cosine(second))


# -- everything at once --------------------------------------------------------
def analyse(surface: Surface, variables: Any = None, *, z: float = Z) -> dict[str, dict[str, Any]]:
    """Slope (lines only), convexity and minimum of each variable.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variables : str or sequence of str, optional
        Default: every ``*_loss`` variable (every variable if there is none).
    z : float, default 2
        Standard errors an effect must exceed to count as resolved.

    Returns
    -------
    dict of str to dict
        Per variable: ``{"slope": ..., "convexity": ..., "minimum": ...}``
        (``slope`` only for a line), each the result of the function of that
        name.
    """
    _check_surface(surface, what="analyse")
    if variables is None:
        variables = [v for v in surface.values if v.endswith("_loss")] or list(surface.values)
    elif isinstance(variables, str):
        variables = [variables]
    out: dict[str, dict[str, Any]] = {}
    for v in variables:
        entry: dict[str, Any] = {}
        if len(surface.dims) == 1:
            entry["slope"] = slope_at_centre(surface, v, z=z)
        entry["convexity"] = convexity(surface, v)
        entry["minimum"] = minimum(surface, v, z=z)
        out[v] = entry
    return out
