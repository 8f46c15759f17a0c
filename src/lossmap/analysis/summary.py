"""The grid minimum, the cosine of two directions, and :func:`analyse` (the basic findings).

The rules (missing points, slope, convexity) are stated in :mod:`lossmap.analysis.common`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface
from .common import _centre_evidence, _centre_or_closest, _check_surface, _values
from .convexity import convexity
from .finding import Finding, Minimum
from .flat import flatness
from .slope import slope_at_centre
from .uncertainty import Z, _check_z, _pair_se, _resolve

__all__ = ["analyse", "direction_cosine", "minimum"]


# -- minimum -------------------------------------------------------------------
def minimum(surface: Surface, variable: str, *, z: float = Z) -> Minimum:
    """The grid minimum over the finite points, and its drop below the centre.

    Where standard errors were stored, the drop from the centre to an
    off-centre minimum, ``L(c) − L(min)``, is compared with its standard
    error (paired where the scan measured differences from the centre, else
    the conservative ``sqrt(se_c² + se_min²)``: same split, shared samples,
    :mod:`lossmap.analysis.uncertainty`): the minimum is off the centre
    *resolved* when the drop exceeds ``z`` standard errors.

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
    Minimum
        ``value`` (the drop ``L(c) − lowest`` >= 0; None when the centre's
        value is not finite or no point is), ``lowest`` (None if no point is
        finite), ``coords``, ``index``, ``at_centre`` (the minimum is at the
        centre, or at the grid point closest to it when 0 is not on the grid;
        ties count as at the centre), ``se`` (of the drop; None where not
        measured), ``resolved`` (None at the centre or without SEs); the
        evidence says the centre's state and the rule of ``se``.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": (a - 0.5) ** 2}, np.ones(21, bool))
    >>> r = minimum(surf, "train_loss")
    >>> r.coords, r.at_centre
    ({'alpha': 0.5}, False)
    >>> noisy = Surface(spec, surf.values, surf.done, errors={"train_loss": np.full(21, 0.2)})
    >>> r = minimum(noisy, "train_loss")  # drop 0.25 against a s.e. of sqrt(2) * 0.2
    >>> round(r.value, 6), round(r.se, 4), r.resolved
    (0.25, 0.2828, False)
    """
    _check_surface(surface, what="minimum")
    L = _values(surface, variable)
    z = _check_z(z)
    finite = np.isfinite(L)
    centre, stand_in = _centre_or_closest(surface)
    if not finite.any():
        ev = _centre_evidence(surface, variable, L, centre, stand_in, points=0)
        return Minimum(variable=variable, value=None, z=z, evidence=ev)
    flat = int(np.argmin(np.where(finite, L, np.inf)))
    idx = tuple(int(i) for i in np.unravel_index(flat, L.shape))
    lowest = float(L[idx])
    at_centre = bool(finite[centre] and L[centre] <= lowest)
    if at_centre:
        idx = centre
    drop = float(L[centre]) - lowest if finite[centre] else None
    err, rule = _pair_se(surface, variable, tuple(idx), tuple(centre))
    r = _resolve(drop, err, z)
    if at_centre:
        r["resolved"] = None  # nothing off the centre to resolve
    ev = _centre_evidence(surface, variable, L, centre, stand_in, points=int(finite.sum()),
                          skipped=int((~finite).sum()), se_rule=rule if err is not None else None)
    return Minimum(variable=variable, value=drop, **r, evidence=ev, lowest=lowest,
                   coords={d: float(surface.coords[d][i])
                           for d, i in zip(surface.dims, idx, strict=True)},
                   index=idx, at_centre=at_centre)


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
def analyse(surface: Surface, variables: Any = None, *,
            z: float = Z) -> dict[str, dict[str, Finding]]:
    """Slope (lines only), convexity, flatness and minimum of each variable.

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
    dict of str to dict of str to Finding
        Per variable: ``{"slope": ..., "convexity": ..., "flatness": ...,
        "minimum": ...}`` (``slope`` only for a line), each the result of the
        function of that name.
    """
    _check_surface(surface, what="analyse")
    if variables is None:
        variables = [v for v in surface.values if v.endswith("_loss")] or list(surface.values)
    elif isinstance(variables, str):
        variables = [variables]
    out: dict[str, dict[str, Finding]] = {}
    for v in variables:
        entry: dict[str, Finding] = {}
        if len(surface.dims) == 1:
            entry["slope"] = slope_at_centre(surface, v, z=z)
        entry["convexity"] = convexity(surface, v)
        entry["flatness"] = flatness(surface, v)
        entry["minimum"] = minimum(surface, v, z=z)
        out[v] = entry
    return out
