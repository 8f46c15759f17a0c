"""ε-sharpness read off a scanned grid.

The sharpness measures that evaluate the model are :func:`lossmap.sharpness`
(:mod:`lossmap.sharpness`). :func:`grid_sharpness` only reads a
stored :class:`~lossmap.surface.Surface` (no evaluation): the worst increase
over the grid points within ε of the centre, i.e. within the scanned line or
plane only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..errors import InputError
from .finding import GridSharpness

__all__ = ["grid_sharpness"]


def grid_sharpness(surface: Any, variable: str, epsilon: float, *, z: float = 2.0
                   ) -> GridSharpness:
    """ε-sharpness read off a scanned line or plane: the worst rise within radius ε of the centre.

    ``max L(p) − L(c)`` over the finite grid points p with ``‖p − c‖ <= ε``,
    the distance taken in grid coordinates (``|α|`` on a line,
    ``sqrt(α² + β²)`` on a plane; the directions' units). No evaluation: it
    sees only the scanned slice, so it is a lower bound of both the sharpness
    over that disc (the true maximum may fall between grid points) and of
    :func:`lossmap.sharpness` over the full ball. When the centre is not a grid point,
    the grid point closest to it stands in for it.

    Where standard errors were stored, the rise at the worst point carries the
    conservative standard error ``sqrt(se_worst² + se_c²)`` (same split,
    :mod:`lossmap.analysis.uncertainty`) and is *resolved* when it exceeds
    ``z`` of them. The worst of many noisy rises is biased upwards, so an
    unresolved sharpness is no evidence of a rise.

    Parameters
    ----------
    surface : Surface
        A line or a plane.
    variable : str
    epsilon : float
        Radius, > 0, in α (and β) units.
    z : float, default 2
        Standard errors the rise must exceed to be resolved.

    Returns
    -------
    GridSharpness
        ``value`` (the worst rise, or None without a finite grid point other
        than the centre within ε, or with the centre not finite),
        ``relative`` (value / (1 + |L(c)|)), ``worst`` (``{dim: coordinate}``
        of the worst point), ``missing`` (points in the disc that are not
        finite), ``covered`` (False when the disc reaches beyond the grid),
        ``epsilon``, ``se`` (of the rise; None where not measured),
        ``resolved`` (None without SEs or without a value); the evidence holds
        ``points`` (finite grid points in the disc, the centre excluded), the
        centre's state and value.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((-1, 1, 21), (-1, 1, 21)), splits=("train",), metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> surf = Surface(spec, {"train_loss": 1 + A**2 + 3 * B**2}, np.ones((21, 21), bool))
    >>> r = grid_sharpness(surf, "train_loss", 0.3)
    >>> round(r.value, 9), r.evidence.points, r.covered
    (0.27, 28, True)
    """
    from .common import _centre_evidence, _centre_or_closest, _check_surface, _values
    from .uncertainty import _check_z, _rise_noise

    _check_surface(surface, what="grid_sharpness")
    z = _check_z(z)
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool)
            and math.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon={epsilon!r} must be a positive number (the disc's radius)")
    L = _values(surface, variable)
    idx, stand_in = _centre_or_closest(surface)
    coords = [surface.coords[d] for d in surface.dims]
    c = [float(x[i]) for x, i in zip(coords, idx, strict=True)]
    mesh = np.meshgrid(*coords, indexing="ij")
    r = np.sqrt(sum((m - ci) ** 2 for m, ci in zip(mesh, c, strict=True)))
    disc = r <= epsilon * (1 + 1e-9)
    disc[idx] = False
    ok = disc & np.isfinite(L)
    missing = int((disc & ~np.isfinite(L)).sum())
    ev = _centre_evidence(surface, variable, L, idx, stand_in, points=int(ok.sum()),
                          skipped=missing)
    common = {"variable": variable, "z": z, "epsilon": float(epsilon), "missing": missing,
              "covered": all(x[0] <= ci - epsilon and x[-1] >= ci + epsilon
                             for x, ci in zip(coords, c, strict=True))}
    if not np.isfinite(L[idx]) or not ok.any():
        return GridSharpness(value=None, evidence=ev, **common)
    rise = np.where(ok, L - L[idx], -np.inf)
    w = np.unravel_index(int(np.argmax(rise)), L.shape)
    s = max(float(rise[w]), 0.0)
    noise, rule = _rise_noise(surface, variable, idx, w, s, z)
    if noise["se"] is not None:
        ev = dataclasses.replace(ev, se_rule=rule)
    noise.pop("z")
    return GridSharpness(value=s, **noise, evidence=ev, relative=s / (1 + abs(float(L[idx]))),
                         worst={d: float(x[i]) for d, x, i in zip(surface.dims, coords, w,
                                                                  strict=True)}, **common)
