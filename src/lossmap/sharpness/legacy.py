"""The random-lines ε-sharpness of lossmap 0.1 (Keskar et al.): the worst rise over sampled lines.

What ``lm.sharpness(model, loss_fn, data, epsilon=..., n_directions=..., norm=...)``
computes (that call still works, with a FutureWarning showing the new one):
each sampled direction is one short line scanned by :func:`lossmap.scan`.
The measures of :func:`lossmap.sharpness` replace it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..analysis.finding import Evidence, Sharpness
from ..errors import InputError

__all__ = ["random_lines"]


def random_lines(
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
    dirs = random_directions(
        centre, n_directions, norm="none" if norm == "unit" else norm, ignore=ignore, seed=seed
    )
    if norm == "unit":
        dirs = [
            Direction({k: v / n for k, v in d.items()}, {**d.meta, "norm": "unit"})
            for d, n in ((d, d.norm()) for d in dirs)
        ]
    scan_options.setdefault("progress", False)
    lines = [
        scan(
            model,
            loss_fn,
            data={split: data},
            directions=d,
            metrics=("loss",),
            grid=(-epsilon, epsilon, n_points),
            seed=seed,
            **scan_options,
        )[f"{split}_loss"]
        for d in dirs
    ]  # each (n_points,)
    L = np.stack(lines)  # (n_directions, n_points)
    c = float(L[0, n_points // 2])
    inc = L - c
    worst = np.unravel_index(int(np.nanargmax(inc)), inc.shape)
    s = float(inc[worst])
    alphas = np.linspace(-epsilon, epsilon, n_points)
    return Sharpness(
        variable=f"{split}_loss",
        value=s,
        relative=s / (1 + abs(c)),
        centre_value=c,
        per_direction=tuple(np.nanmax(inc, axis=1).tolist()),
        worst={"direction": int(worst[0]), "alpha": float(alphas[worst[1]])},
        epsilon=float(epsilon),
        norm=norm,
        split=split,
        n_directions=n_directions,
        evaluations=int(L.size),
        evidence=Evidence(points=int(L.size)),
    )
