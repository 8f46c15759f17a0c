"""Sampled designs: N points in a box of k directions, for scans where a product grid is too big.

A product grid of n points per axis has nᵏ points: 11⁴ = 14,641 is an ordinary
scan, 11⁶ = 1,771,561 is not. A design draws N points inside the box
``[lo₁, hi₁] × … × [loₖ, hiₖ]`` instead, with :mod:`scipy.stats.qmc`:

* ``"sobol"`` — a scrambled Sobol sequence (low discrepancy; its first 2ᵐ
  points are balanced, so a scan stopped early has covered the box evenly).
  N need not be a power of two (scipy warns that the balance is then lost at
  the end; lossmap says so once, in its own words).
* ``"lhs"`` — a Latin hypercube: each axis cut into N equal slices, one point
  in each.

The points are a function of ``(kind, N, seed, box)`` only: the same seed
draws the same points, so a store of a design resumes like a grid. The
surface has one dimension, ``point``, and the coordinates of each point per
direction (``Surface.points()``, ``alpha``… in ``to_xarray()``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import checks as C
from ..errors import InputError, InputTypeError
from .axis import Axis

DESIGNS = ("sobol", "lhs")


def check_design(design: Any) -> dict:
    """A design as ``{"kind", "points", "seed"}``, checked.

    Examples
    --------
    >>> check_design({"kind": "sobol", "points": 256, "seed": 0})
    {'kind': 'sobol', 'points': 256, 'seed': 0}
    """
    if not isinstance(design, dict):
        raise InputTypeError(
            f"design is a {type(design).__name__}: give "
            "{'kind': 'sobol' or 'lhs', 'points': N, 'seed': s}"
        )
    unknown = sorted(set(design) - {"kind", "points", "seed"})
    if unknown:
        raise InputError(f"design has the unknown key {unknown[0]!r}: it takes kind, points, seed")
    kind = design.get("kind")
    if kind not in DESIGNS:
        raise InputError(f"design {kind!r} is not one of {', '.join(DESIGNS)}")
    points = C.check_int(design.get("points"), "points", minimum=2)
    if points > C.MAX_POINTS:
        raise InputError(
            f"points={points:,} is more than the {C.MAX_POINTS:,} a scan may have: use fewer points"
        )
    seed = C.check_int(design.get("seed", 0), "seed", minimum=0)
    return {"kind": kind, "points": points, "seed": seed}


def design_points(design: dict, box: Sequence[Axis]) -> np.ndarray:
    """The design's points in the box, float64, shape (N, k): the same for the same arguments.

    Examples
    --------
    >>> pts = design_points({"kind": "lhs", "points": 4, "seed": 1}, [Axis(-1, 1, 2)] * 2)
    >>> pts.shape, bool((abs(pts) <= 1).all())
    ((4, 2), True)
    """
    from scipy.stats import qmc

    k, n = len(box), design["points"]
    rng = np.random.default_rng(design["seed"])
    if design["kind"] == "sobol":
        engine = qmc.Sobol(d=k, scramble=True, seed=rng)
        with warnings.catch_warnings():  # not a power of 2: said once, by check_points
            warnings.simplefilter("ignore", UserWarning)
            unit = engine.random(n)
    else:
        unit = qmc.LatinHypercube(d=k, seed=rng).random(n)
    lo = np.array([a.lo for a in box], dtype=np.float64)
    hi = np.array([a.hi for a in box], dtype=np.float64)
    return lo + unit * (hi - lo)


def box_axes(grid: Any, k: int) -> tuple[Axis, ...]:
    """The box of a design from ``grid``: one ``(lo, hi)`` (or ``(lo, hi, n)``, n unused) per
    direction, or a single one for every direction."""
    items = list(grid) if isinstance(grid, list | tuple) else [grid]
    if items and not isinstance(items[0], list | tuple | str | Axis):
        items = [tuple(items)]  # a single (lo, hi) for every direction
    if len(items) == 1 and k > 1:
        items = items * k
    if len(items) != k:
        raise InputError(
            f"{len(items)} box axes for {k} directions: give one (lo, hi) per "
            "direction, or one for all"
        )
    out = []
    for i, a in enumerate(items):
        if isinstance(a, str):
            a = a.split(":")[:2]
        if isinstance(a, Axis):
            a = (a.lo, a.hi)
        if not isinstance(a, list | tuple) or len(a) not in (2, 3):
            raise InputError(f"box axis {i}: {a!r} is not (lo, hi) or LO:HI")
        out.append(C.check_axis((float(a[0]), float(a[1]), 2), index=i))
    return tuple(out)


def power_of_two_note(design: dict) -> str | None:
    """A note when a Sobol design's N is not a power of two (its balance is lost at the end)."""
    n = design["points"]
    if design["kind"] == "sobol" and n & (n - 1):
        return (
            f"a Sobol design of {n} points is balanced only at powers of 2: "
            f"{1 << (n.bit_length() - 1)} or {1 << n.bit_length()} points keep its balance"
        )
    return None


class Design:
    """A sampled design to pass as ``grid`` to :func:`lossmap.scan`: N points in a box.

    Parameters
    ----------
    kind : {"sobol", "lhs"}
        Scrambled Sobol sequence, or Latin hypercube.
    points : int
        N, the number of points (a power of 2 keeps a Sobol design balanced).
    box : (lo, hi) or list of (lo, hi)
        The range of each direction's coefficient; one pair for all directions
        or one per direction.
    seed : int, default 0
        The same seed draws the same points (a store resumes).

    Examples
    --------
    >>> import lossmap as lm
    >>> d = lm.design("sobol", points=256, box=(-1, 1), seed=0)
    >>> d
    Design('sobol', points=256, box=(-1, 1), seed=0)
    """

    def __init__(self, kind: str, points: int, box: Any, seed: int = 0) -> None:
        checked = check_design({"kind": kind, "points": points, "seed": seed})
        self.kind, self.points, self.seed = checked["kind"], checked["points"], checked["seed"]
        self.box = box

    def spec_parts(self, k: int) -> tuple[tuple[Axis, ...], dict]:
        """The box as k axes, and the design record of the spec."""
        return box_axes(self.box, k), {"kind": self.kind, "points": self.points, "seed": self.seed}

    def __repr__(self) -> str:
        return f"Design({self.kind!r}, points={self.points}, box={self.box!r}, seed={self.seed})"


def design(kind: str, points: int, box: Any, seed: int = 0) -> Design:
    """A sampled design to pass as ``grid`` to :func:`lossmap.scan` (see :class:`Design`).

    Examples
    --------
    >>> import lossmap as lm
    >>> lm.design("lhs", points=100, box=[(-1, 1), (0, 2), (-0.5, 0.5)], seed=1).points
    100
    """
    return Design(kind, points, box, seed)
