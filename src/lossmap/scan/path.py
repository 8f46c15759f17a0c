"""Scanning along a path: a :class:`~lossmap.curves.Curve` as a centre, directions and coefficients.

A curve is ``state(t) = θ_0 + Σ_{j≥1} basis_j(t)·(θ_j − θ_0)``, which is what
the evaluator computes for the centre θ_0, the directions θ_j − θ_0 and the
coefficients ``basis(t)[1:]`` — first-layer reuse, ``bn="recompute"``, the
store and its resume included. So ``lm.scan(model, loss_fn, data=...,
path=curve, grid=(0, 1, n))`` is a scan with one grid dimension, ``t``, whose
points are mapped to coefficients (:meth:`lossmap.scan.plan.Plan.coefficients`).
The spec records the curve (:mod:`lossmap.scan.pathspec`), so a resume checks
that it is the same one.

A curve has parameters only: its buffers (BatchNorm running statistics) are
the model's own, or with ``bn="recompute"`` re-estimated at every t — the
normalization reset of REPAIR (Jordan et al. 2023) along any path.

:func:`curve_plane` gives the plane through a curve's endpoints and its
middle control point, with the curve's coordinates on it, to scan a plane and
draw the curve on it (:func:`lossmap.plot.curve_on_plane`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import params as P
from ..directions.direction import Direction
from ..errors import InputError, InputTypeError

if TYPE_CHECKING:
    from ..curves.curve import Curve

CURVE_POINTS = 101  # how many points of a curve curve_plane projects onto its plane


def as_curve(path: Any) -> Curve:
    """A :class:`~lossmap.curves.Curve`, or one read from a file written by ``Curve.save``.

    Examples
    --------
    >>> import torch
    >>> from lossmap.curves import Curve
    >>> c = Curve.line({"w": torch.zeros(2)}, {"w": torch.ones(2)})
    >>> as_curve(c) is c
    True
    >>> as_curve(3)
    Traceback (most recent call last):
    ...
    lossmap.errors.InputTypeError: path is a int; pass a lossmap Curve or the .safetensors ...
    """
    from ..curves.curve import Curve

    if isinstance(path, Curve):
        return path
    if isinstance(path, (str, os.PathLike)):
        return Curve.load(path)
    raise InputTypeError(
        f"path is a {type(path).__name__}; pass a lossmap Curve or the .safetensors file "
        "Curve.save wrote (lm.curve, lm.neb or Curve.line make one)"
    )


def resolve_path(path: Any, model: Any, backend: str, *, directions: Any, centre: Any
                 ) -> tuple[Curve | None, Any, Any, dict | None]:
    """The curve of ``lm.scan(path=...)``, its centre θ_0, directions θ_j − θ_0 and record.

    Without a path (None) ``(None, centre, directions, None)`` comes back, the
    directions required.

    Parameters
    ----------
    path : Curve, path or None
        The curve, or its file; None for a line or plane.
    model : object
        The scan's model: the curve's tensors must be its parameters.
    backend : str
        The model's backend name; a path scan needs PyTorch.
    directions, centre : None
        A path scan makes both from the curve: anything else is refused.
        Without a path, ``directions`` must be given.

    Returns
    -------
    (Curve, dict of str to Tensor, list of Direction, dict)
        The last is the spec's record of the curve (:func:`path_record`).
    """
    if path is None:
        if directions is None:
            raise InputTypeError("pass directions= (1 for a line, 2 for a plane) or path= "
                                 "(a Curve)")
        return None, centre, directions, None
    if directions is not None:
        raise InputError("give directions= (a line or plane) or path= (a curve), not both")
    if centre is not None:
        raise InputError("a path scan is centred on the curve's first control point (t = 0): "
                         "drop centre=")
    if backend != "torch":
        raise InputError(f"path= scans PyTorch models; this model runs on the {backend} "
                         "backend: convert it to PyTorch, or scan lm.interpolation directions")
    curve = as_curve(path)
    centre_state, dirs = curve.directions()
    buffers = [name for name, _ in model.named_buffers()]
    P.check_same_layout(P.parameters_of(model), centre_state, what="the curve",
                        allow_extra=buffers)
    return curve, centre_state, dirs, path_record(curve)


def path_record(curve: Curve) -> dict:
    """The spec's record of a curve: kind, number of control points, knots, fingerprints.

    Examples
    --------
    >>> import torch
    >>> from lossmap.curves import Curve
    >>> rec = path_record(Curve.line({"w": torch.zeros(2)}, {"w": torch.ones(2)}))
    >>> rec["kind"], rec["control_points"], rec["knots"], len(rec["fingerprints"])
    ('polychain', 2, [0.0, 1.0], 2)
    """
    record: dict[str, Any] = {"kind": curve.kind, "control_points": len(curve)}
    if curve.kind == "polychain":
        record["knots"] = [float(k) for k in curve.knots]
    record["fingerprints"] = [P.fingerprint(p) for p in curve.control_points]
    return record


def coefficients(curve: Curve, points: np.ndarray) -> np.ndarray:
    """The directions' coefficients at grid points ``points`` (K, 1) in t: ``basis(t)[:, 1:]``.

    Examples
    --------
    >>> import torch
    >>> from lossmap.curves import Curve
    >>> c = Curve([{"w": torch.zeros(1)}, {"w": torch.ones(1)}, {"w": torch.zeros(1)}])
    >>> coefficients(c, np.array([[0.0], [0.5], [1.0]]))
    array([[0.  , 0.  ],
           [0.5 , 0.25],
           [0.  , 1.  ]])
    """
    t = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, 0]
    return curve.coefficients(t)


def curve_plane(curve: Curve, *, points: int = CURVE_POINTS
                ) -> tuple[dict[str, torch.Tensor], list[Direction], dict]:
    """The plane through a curve's endpoints and its middle control point, centred on θ_0.

    The first direction is θ_m − θ_0 (the endpoints sit at (0, 0) and (1, 0)),
    the second the part of the middle control point's offset orthogonal to it
    (:func:`lossmap.plane`). A Bézier curve with one bend lies in this plane
    exactly; other curves are drawn by their least-squares projection.

    Parameters
    ----------
    curve : Curve
        With at least one bend.
    points : int, default 101
        How many points of the curve (t evenly spaced in [0, 1]) to project.

    Returns
    -------
    centre : dict of str to Tensor
        θ_0: scan with ``centre=centre``.
    directions : list of two Direction
    meta : dict
        ``{"models": {"a": [0, 0], "b": [1, 0], "bend": [α, β]}, "curve": [[α, β], ...],
        "curve_t": [...]}`` — pass it as ``lm.scan(meta=...)``: the plots read it.

    Examples
    --------
    >>> import torch
    >>> from lossmap.curves import Curve
    >>> c = Curve([{"w": torch.zeros(2)}, {"w": torch.tensor([0.5, 1.0])},
    ...            {"w": torch.tensor([1.0, 0.0])}])
    >>> centre, dirs, meta = curve_plane(c, points=3)
    >>> meta["models"]["bend"], meta["curve"][1]
    ([0.5, 1.0], [0.5, 0.5])
    """
    from ..directions.between import plane

    if len(curve) < 3:
        raise InputError("the curve has no bend (it is a straight line): a plane needs a "
                         "third point; scan the line itself with path=curve")
    if not isinstance(points, int) or isinstance(points, bool) or points < 2:
        raise InputError(f"points={points!r} must be an integer >= 2")
    cps = curve.control_points
    mid = len(cps) // 2
    d1, d2 = found = plane(cps[0], cps[-1], cps[mid])
    exact = found.coords
    dirs = [Direction(dict(d1.items()), {**d1.meta, "kind": "curve_plane"}),
            Direction(dict(d2.items()), {**d2.meta, "kind": "curve_plane"})]
    xy = _project(cps, dirs)  # (m + 1, 2): every control point on the plane
    xy[[0, -1, mid]] = [exact["a"], exact["b"], exact["c"]]  # these three exactly, not rounded
    t = np.linspace(0.0, 1.0, points)
    path = curve.basis(t) @ xy  # (points, 2): the projection is linear in the state
    meta = {"models": {"a": xy[0].tolist(), "b": xy[-1].tolist(), "bend": xy[mid].tolist()},
            "curve": path.tolist(), "curve_t": t.tolist()}
    return {k: v.clone() for k, v in cps[0].items()}, dirs, meta


def curve_coordinates(curve: Curve, directions: list[Direction], t: Any) -> np.ndarray:
    """Least-squares (α, β) of ``curve.state(t)`` in the plane of ``directions`` around θ_0.

    Returns an array of shape (len(t), len(directions)).

    Examples
    --------
    >>> import torch
    >>> from lossmap.curves import Curve
    >>> c = Curve.line({"w": torch.zeros(2)}, {"w": torch.tensor([2.0, 0.0])})
    >>> d = [Direction({"w": torch.tensor([1.0, 0.0])}), Direction({"w": torch.tensor([0.0, 1.0])})]
    >>> curve_coordinates(c, d, [0.0, 0.5]).tolist()
    [[0.0, 0.0], [1.0, 0.0]]
    """
    xy = _project(curve.control_points, directions)
    return curve.basis(t) @ xy


def _project(points: list[dict[str, torch.Tensor]], directions: list[Direction]) -> np.ndarray:
    """Coordinates of each point around ``points[0]`` in the span of ``directions``."""
    names = [k for k in directions[0] if k in points[0]]
    D = torch.stack([torch.cat([d[k].double().reshape(-1) for k in names]) for d in directions])
    gram = D @ D.T  # exact least squares for directions that are not orthogonal
    c = torch.cat([points[0][k].double().reshape(-1) for k in names])
    out = [torch.linalg.solve(gram, D @ (torch.cat([p[k].double().reshape(-1) for k in names])
                                         - c)).numpy() for p in points]
    return np.asarray(out)
