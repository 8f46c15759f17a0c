"""ε-sharpness: the worst loss increase over sampled directions in a small ball (Keskar et al.).

Unlike :mod:`lossmap.geometry`, this evaluates the model: each sampled
direction is one short line scanned by :func:`lossmap.scan`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["sharpness"]


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
) -> dict[str, Any]:
    """ε-sharpness: the worst loss increase found in a ball of radius ε around the centre.

    Draws ``n_directions`` random directions d_i and scans each as a line
    ``c + α·d_i``, α on ``n_points`` evenly spaced values in [−ε, ε] (both
    ways, so 2·n_directions rays), with :func:`lossmap.scan`; the sharpness is
    ``max L(c + α·d_i) − L(c)`` over all those points. Sampling gives a lower
    bound on the true maximum over the ball. Direction i is
    ``random_directions(centre, n_directions, norm=..., ignore=ignore, seed=seed)[i]``;
    with ``norm="unit"`` it is drawn with ``norm="none"`` and scaled to unit
    Euclidean norm, so ε is a radius in parameter units; with ``"filter"``,
    ``"layer"`` or ``"model"`` ε is relative to the centre's norms.

    Parameters
    ----------
    model, loss_fn
        As in :func:`lossmap.scan`.
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
        Passed to :func:`lossmap.scan` (``centre``, ``device``, ``samples``, ``batch_size``…).

    Returns
    -------
    dict
        ``sharpness`` (float), ``relative`` (sharpness / (1 + |L(c)|), as in
        Keskar et al.), ``centre_value``, ``per_direction`` (list of each
        line's worst increase), ``worst`` (``{"direction": i, "alpha": α}``),
        ``epsilon``, ``norm``, ``split``, ``evaluations`` (points scanned), ``verdict``.
    """
    from . import params as P
    from .directions import Direction, random_directions
    from .scan import scan

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
    return {"sharpness": s, "relative": s / (1 + abs(c)), "centre_value": c,
            "per_direction": np.nanmax(inc, axis=1).tolist(),
            "worst": {"direction": int(worst[0]), "alpha": float(alphas[worst[1]])},
            "epsilon": float(epsilon), "norm": norm, "split": split,
            "evaluations": int(L.size),
            "verdict": f"{split} loss rises by at most {s:.4g} ({s / (1 + abs(c)):.2%} of "
                       f"1 + L) within radius {epsilon:g} ({norm} norm) over "
                       f"{n_directions} sampled directions"}
