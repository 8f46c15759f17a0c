"""The landscape along the worst case: the perturbation found, a random direction orthogonal to it.

``lm.scan(model, loss_fn, data=..., directions=r.direction, grid=(-1, 1, 41))``
draws the line through the centre and the point found (α = 1);
:func:`worst_case_directions` gives the two directions of the plane beside
it, the "worst-case" slices recent basin studies draw beside random ones.
"""

from __future__ import annotations

from typing import Any

from ..directions.direction import Direction
from ..directions.random import random_direction
from ..directions.result import Directions
from ..errors import InputError, InputTypeError

__all__ = ["worst_case_directions"]


def worst_case_directions(
    result: Any, model: Any, *, seed: int = 0, norm: str = "filter"
) -> Directions:
    """The perturbation found and a random direction orthogonal to it, of the same length.

    The second direction is drawn by :func:`lossmap.random_direction` (over
    the same tensors as the perturbation, ``norm`` relative to the model's
    weights), made orthogonal to the perturbation (Gram–Schmidt, over all
    tensors together) and scaled to its Euclidean norm, so that α and β are
    in the same units and (α, β) = (1, 0) is the point found.

    Parameters
    ----------
    result : SharpnessMeasure
        What :func:`lossmap.sharpness` returned (any kind but ``"pac-bayes"``).
    model : nn.Module
        The model it was measured on.
    seed : int, default 0
        Seed of the random direction.
    norm : {"filter", "layer", "model", "none"}, default "filter"
        How the random direction is drawn before it is made orthogonal.

    Returns
    -------
    Directions
        ``(perturbation, orthogonal)``, for ``lm.scan(directions=...)``.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> r = lm.sharpness(net, torch.nn.CrossEntropyLoss(), (X, y), rho=0.1)
    >>> d1, d2 = worst_case_directions(r, net)
    >>> abs(d1.cosine(d2)) < 1e-6, round(d2.norm() / d1.norm(), 6)
    (True, 1.0)
    """
    d = getattr(result, "direction", None)
    if not isinstance(d, Direction):
        raise InputTypeError(
            "worst_case_directions takes what lm.sharpness returned for kind='worst', "
            "'average' or 'random' (its .direction); PAC-Bayes σ has no direction"
        )
    n = d.norm()
    if n == 0:
        raise InputError(
            "the perturbation found is zero (no point in the ball raised the "
            "loss): there is no worst-case direction to draw"
        )
    r = random_direction(model, norm=norm, ignore=None, seed=seed, params=list(d))
    r = {k: v.to(d[k].dtype) for k, v in r.items() if k in d}
    c = sum(float((r[k].double() * d[k].double()).sum()) for k in d) / n**2
    o = {k: r[k] - c * d[k] for k in d}
    s = sum(float(v.double().pow(2).sum()) for v in o.values()) ** 0.5
    meta = {k: v for k, v in d.meta.items() if k == "params"}
    ortho = Direction(
        {k: v * (n / s) for k, v in o.items()},
        {"kind": "random", "orthogonal_to": "worst_case", "norm": norm, "seed": seed, **meta},
    )
    return Directions((d, ortho), meta={"kind": "worst_case_plane"})
