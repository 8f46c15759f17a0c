"""The bases of :class:`~lossmap.curves.Curve`: Bernstein polynomials and hat functions.

``basis_matrix(kind, t, knots)`` gives the weight of each control point at each
``t`` (rows sum to 1); ``combine`` takes the weighted sum of control points,
differentiably, so that training a curve (:func:`lossmap.curve`) and evaluating
one share the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb
from typing import Any

import numpy as np
import torch

from ..errors import InputError, InputTypeError

KINDS = ("bezier", "polychain")


def check_knots(knots: Sequence[float] | None, m: int) -> np.ndarray:
    """The knots of a polychain with ``m + 1`` points: 0 = t_0 < … < t_m = 1 (checked)."""
    if knots is None:
        return np.linspace(0.0, 1.0, m + 1)
    k = np.asarray(knots, dtype=np.float64).reshape(-1)
    if len(k) != m + 1:
        raise InputError(
            f"knots has {len(k)} values for {m + 1} control points: give one knot per point"
        )
    if k[0] != 0.0 or k[-1] != 1.0 or not np.all(np.diff(k) > 0):
        raise InputError(
            f"knots {k.tolist()} must rise strictly from 0 to 1 (the endpoints sit at t=0, t=1)"
        )
    return k


def basis_matrix(kind: str, t: Any, knots: np.ndarray) -> np.ndarray:
    """The weights of the ``len(knots)`` control points at each ``t``: shape (len(t), m + 1)."""
    try:
        tt = np.atleast_1d(np.asarray(t, dtype=np.float64)).reshape(-1)
    except (TypeError, ValueError):
        raise InputTypeError(f"t={t!r} must be a number or a sequence of numbers") from None
    if not np.isfinite(tt).all():
        raise InputError(f"t={t!r} must be finite: a curve is defined for real t (0 to 1)")
    m = len(knots) - 1
    if kind == "bezier":
        j = np.arange(m + 1)
        coef = np.array([comb(m, i) for i in j], dtype=np.float64)
        # (T, m+1); 0**0 == 1 keeps t=0 and t=1 exact unit vectors
        out = coef * tt[:, None] ** j * (1.0 - tt[:, None]) ** (m - j)
    else:
        out = np.zeros((len(tt), m + 1))
        seg = np.clip(np.searchsorted(knots, tt, side="right") - 1, 0, m - 1)  # (T,)
        lo, hi = knots[seg], knots[seg + 1]
        w_hi = (tt - lo) / (hi - lo)  # linear beyond [0, 1]: the end segments continue
        out[np.arange(len(tt)), seg] = 1.0 - w_hi
        out[np.arange(len(tt)), seg + 1] = w_hi
    for row, x in enumerate(tt):  # the endpoints (and a polychain's knots) exactly
        if x == 0.0 or x == 1.0 or (kind == "polychain" and x in knots):
            out[row] = 0.0
            out[row, int(np.searchsorted(knots, x))] = 1.0
    return out


def combine(points: Sequence[Mapping[str, torch.Tensor]], weights: Any) -> dict[str, torch.Tensor]:
    """``Σ_j weights[j] · points[j]`` per name; differentiable when the points are.

    ``weights`` is a 1-D sequence (NumPy or a tensor) of ``len(points)`` numbers.
    A weight vector that is exactly a unit vector returns that point itself
    (no arithmetic: bit-identical).
    """
    w = [float(x) for x in (weights.tolist() if hasattr(weights, "tolist") else weights)]
    hot = [j for j, x in enumerate(w) if x != 0.0]
    if len(hot) == 1 and w[hot[0]] == 1.0:
        return dict(points[hot[0]])
    out = {}
    for name, ref in points[0].items():
        acc = None
        for j in hot:
            term = points[j][name] * w[j]
            acc = term if acc is None else acc + term
        out[name] = acc if acc is not None else torch.zeros_like(ref)
    return out
