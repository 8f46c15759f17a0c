"""ε-sharpness: the worst loss increase over sampled directions in a small ball (Keskar et al.).

:func:`sharpness` evaluates the model: each sampled direction is one short
line scanned by :func:`lossmap.scan.api`. :func:`grid_sharpness` only reads a
stored :class:`~lossmap.surface.Surface` (no evaluation): the worst increase
over the grid points within ε of the centre, i.e. within the scanned line or
plane only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from .finding import Evidence, GridSharpness, Sharpness

__all__ = ["grid_sharpness", "sharpness"]


def sharpness(
    model: Any,
    loss_fn: Callable,
    data: Any,
    *,
    epsilon: float,
    n_directions: int = 8,
    n_points: int = 5,
    norm: str = "unit",
    ignore: str | None = None,
    split: str | None = None,
    seed: int = 0,
    **scan_options: Any,
) -> Sharpness:
    """ε-sharpness: the worst loss increase found in a ball of radius ε around the centre.

    Draws ``n_directions`` random directions d_i and scans each as a line
    ``c + α·d_i``, α on ``n_points`` evenly spaced values in [−ε, ε] (both
    ways, so 2·n_directions rays), with :func:`lossmap.scan.api`; the sharpness is
    ``max L(c + α·d_i) − L(c)`` over all those points. Sampling gives a lower
    bound on the true maximum over the ball. Direction i is
    ``random_directions(centre, n_directions, norm=..., ignore=ignore, seed=seed)[i]``;
    with ``norm="unit"`` it is drawn with ``norm="none"`` and scaled to unit
    Euclidean norm, so ε is a radius in parameter units; with ``"filter"``,
    ``"layer"`` or ``"model"`` ε is relative to the centre's norms.

    Parameters
    ----------
    model, loss_fn
        As in :func:`lossmap.scan.api`.
    data : dict of str to split, or one split
        With several splits, ``split`` (default ``"train"``, else the first) is used.
    epsilon : float
        Radius, > 0.
    n_directions : int, default 8
    n_points : int, default 5
        Odd, >= 3 (the centre is one of them).
    norm : {"unit", "filter", "layer", "model"}, default "unit"
    ignore : {None, "biasbn"}, default None
    split : str, optional
    seed : int, default 0
    **scan_options
        Passed to :func:`lossmap.scan.api` (``centre``, ``device``, ``samples``, ``batch_size``…).

    Returns
    -------
    Sharpness
        ``value`` (the sharpness), ``relative`` (value / (1 + |L(c)|), as in
        Keskar et al.), ``centre_value``, ``per_direction`` (each line's worst
        increase), ``worst`` (``{"direction": i, "alpha": α}``), ``epsilon``,
        ``norm``, ``split``, ``n_directions``, ``evaluations`` (points scanned).
    """
    from .. import params as P
    from ..directions.direction import Direction
    from ..directions.random import random_directions
    from ..scan.api import scan

    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise InputError(f"epsilon={epsilon!r} must be a positive number (the ball's radius)")
    for name, v, lo in (("n_directions", n_directions, 1), ("n_points", n_points, 3)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise InputError(f"{name}={v!r} must be an integer >= {lo}")
    if n_points % 2 == 0:
        raise InputError(f"n_points={n_points} must be odd so that the centre is a grid point")
    if norm not in ("unit", "filter", "layer", "model"):
        raise InputError(f"norm={norm!r} must be 'unit', 'filter', 'layer' or 'model'")
    if isinstance(data, Mapping):
        split = split or ("train" if "train" in data else next(iter(data)))
        if split not in data:
            raise InputError(f"split={split!r} is not a split of data ({', '.join(data)})")
        data = data[split]
    split = split or "data"
    centre, _ = P.resolve_centre(model, scan_options.get("centre"))
    dirs = random_directions(centre, n_directions, norm="none" if norm == "unit" else norm,
                             ignore=ignore, seed=seed)
    if norm == "unit":
        dirs = [Direction({k: v / n for k, v in d.items()}, {**d.meta, "norm": "unit"})
                for d, n in ((d, d.norm()) for d in dirs)]
    scan_options.setdefault("progress", False)
    lines = [scan(model, loss_fn, data={split: data}, directions=d, metrics=("loss",),
                  grid=(-epsilon, epsilon, n_points), seed=seed, **scan_options)[f"{split}_loss"]
             for d in dirs]  # each (n_points,)
    L = np.stack(lines)  # (n_directions, n_points)
    c = float(L[0, n_points // 2])
    inc = L - c
    worst = np.unravel_index(int(np.nanargmax(inc)), inc.shape)
    s = float(inc[worst])
    alphas = np.linspace(-epsilon, epsilon, n_points)
    return Sharpness(variable=f"{split}_loss", value=s, relative=s / (1 + abs(c)),
                     centre_value=c, per_direction=tuple(np.nanmax(inc, axis=1).tolist()),
                     worst={"direction": int(worst[0]), "alpha": float(alphas[worst[1]])},
                     epsilon=float(epsilon), norm=norm, split=split, n_directions=n_directions,
                     evaluations=int(L.size), evidence=Evidence(points=int(L.size)))


def grid_sharpness(surface: Any, variable: str, epsilon: float, *, z: float = 2.0
                   ) -> GridSharpness:
    """ε-sharpness read off a scanned line or plane: the worst rise within radius ε of the centre.

    ``max L(p) − L(c)`` over the finite grid points p with ``‖p − c‖ <= ε``,
    the distance taken in grid coordinates (``|α|`` on a line,
    ``sqrt(α² + β²)`` on a plane; the directions' units). No evaluation: it
    sees only the scanned slice, so it is a lower bound of both the sharpness
    over that disc (the true maximum may fall between grid points) and of
    :func:`sharpness` over the full ball. When the centre is not a grid point,
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
