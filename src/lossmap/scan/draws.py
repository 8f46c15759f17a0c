"""Repeated direction draws as one scan: ``lm.scan(..., draws=K)``.

A random plane is one draw: its picture and every number read off it depend on
the directions as much as on the model. ``draws=K`` repeats the line or plane
over K draws of the directions — the same rule (norm, ignore, orthogonal,
filter axis, parameter subset) and the same grid — in one scan, one store and
one :class:`~lossmap.surface.Surface` with a leading dimension ``draw``.

How it is computed (the cheapest honest way): the K·D directions are the
scan's directions, and a grid point ``(k, α, β)`` is the coefficient vector
that puts α on direction ``k·D`` and β on ``k·D + 1`` and 0 on the others
(:func:`draw_plan_class`). So the same evaluator (first-layer reuse,
chunks, the store's rounds and resume) runs the draws as it runs a path's
control points; the cost is K times one scan's points, and the K·D directions
are held in memory together.

Seeds: draw 0 is the directions given, exactly; draw k ≥ 1 redraws each group
of directions drawn together (one ``seed``) with :func:`draw_seed` ``(seed, k)``.
The seeds are recorded in ``spec.draws["seeds"]`` (and each direction's
``meta["seed"]``), so a store is resumed only by the same draws. Before the
scan, draw 0 is redrawn from its recipe and must come out bit-identical:
directions whose rule cannot be repeated are refused by name.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..directions.direction import Direction
from ..errors import InputError
from .axis import Axis
from .spec import MAX_DIMS


@dataclasses.dataclass(frozen=True)
class DrawLayout:
    """K draws of D directions: grid points ``(k, a1 … aD)`` → K·D coefficients."""

    count: int
    per_draw: int

    def coefficients(self, points: Any) -> np.ndarray:
        """The K·D coefficients of grid points of shape (n, 1 + D)."""
        pts = np.asarray(points, dtype=np.float64).reshape(len(points), 1 + self.per_draw)
        out = np.zeros((len(pts), self.count * self.per_draw))
        k = np.rint(pts[:, 0]).astype(np.int64)
        for j in range(self.per_draw):
            out[np.arange(len(pts)), k * self.per_draw + j] = pts[:, 1 + j]
        return out


def _layout_coefficients(self: Any, points: Any) -> Any:
    """The K·D coefficients of grid points ``(k, a1 … aD)`` (``self.path``: the DrawLayout)."""
    return self.path.coefficients(points)


@functools.cache
def draw_plan_class(cls: type) -> type:
    """``cls`` (a :class:`~lossmap.scan.plan.Plan`) whose grid's first axis is the draw number.

    Its ``path`` holds the :class:`DrawLayout` (so the driver maps grid points to
    coefficients, as along a path); the slopes at the centre are not measured.
    Made from the plan's class, so this module needs no import of the plan's.
    """
    return type(
        f"Draw{cls.__name__}",
        (cls,),
        {
            "coefficients": _layout_coefficients,
            "__doc__": draw_plan_class.__doc__,
            "__module__": __name__,
        },
    )


def draw_seed(seed: int, k: int) -> int:
    """The seed of draw ``k`` of directions drawn with ``seed`` (draw 0: ``seed`` itself).

    Examples
    --------
    >>> draw_seed(7, 0), draw_seed(7, 1) == draw_seed(7, 1), draw_seed(7, 1) != draw_seed(7, 2)
    (7, True, True)
    """
    if k == 0:
        return int(seed)
    # 0x64726177 is "draw": keeps these apart from the generator seeds SeedSequence([seed, i])
    return int(np.random.SeedSequence([int(seed), int(k), 0x64726177]).generate_state(1)[0] >> 1)


def check_draws(draws: Any) -> int | None:
    """``draws`` as an int K ≥ 2, or None."""
    if draws is None:
        return None
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 2:
        raise InputError(
            f"draws={draws!r} must be an integer >= 2 (the number of direction "
            "draws; leave it out for one)"
        )
    return int(draws)


def _groups(dirs: Sequence[Direction]) -> dict[int, list[int]]:
    """Directions drawn together (same seed and rule), by seed: their positions in ``dirs``."""
    out: dict[int, list[int]] = {}
    for j, d in enumerate(dirs):
        m = d.meta
        if m.get("kind") != "random" or "seed" not in m:
            raise InputError(
                f"draws= repeats random directions, and direction {j} is "
                f"{m.get('kind', 'not random')!r}: draw the directions with "
                "lm.random_directions (or lm.random_direction)"
            )
        out.setdefault(int(m["seed"]), []).append(j)
    return out


def _subset(model: Any, d: Direction, rule: dict) -> Any:
    """The ``params=`` that gives ``d``'s tensors: its recorded pattern where that still selects
    them (so each draw records it as given), else their names."""
    from ..directions.random import random_directions

    if "params" not in d.meta:
        return None
    pattern = d.meta["params"].get("pattern")
    if isinstance(pattern, str | list):
        try:
            if set(random_directions(model, 1, params=pattern, **rule)[0]) == set(d):
                return pattern
        except InputError:  # a callable's text, say: not a pattern any more
            pass
    return sorted(d)


def redraw(
    model: Any, centre: dict, dirs: Sequence[Direction], k: int
) -> tuple[list[Direction], list[int]]:
    """Draw ``k`` of ``dirs``: the same rule, the seeds :func:`draw_seed` ``(seed, k)``."""
    from ..directions.random import random_directions

    out: list[Direction | None] = [None] * len(dirs)
    seeds = [0] * len(dirs)
    for seed, members in _groups(dirs).items():
        m = dirs[members[0]].meta
        keys = ("norm", "ignore", "orthogonal", "filter_axis")
        if any(
            {kk: dirs[j].meta.get(kk) for kk in keys} != {kk: m.get(kk) for kk in keys}
            for j in members
        ):
            raise InputError(
                f"directions {members} share seed {seed} but not their rule: "
                "draw them in one lm.random_directions call, or with other seeds"
            )
        n = 1 + max(int(dirs[j].meta.get("index", 0)) for j in members)
        rule = dict(
            norm=m["norm"],
            ignore=m["ignore"],
            seed=draw_seed(seed, k),
            orthogonal=m["orthogonal"],
            filter_axis=m.get("filter_axis"),
            storage=dirs[members[0]].storage,
            centre=centre,
        )
        new = random_directions(model, n, params=_subset(model, dirs[members[0]], rule), **rule)
        for j in members:
            out[j] = new[int(dirs[j].meta.get("index", 0))]
            seeds[j] = draw_seed(seed, k)
    return [d for d in out if d is not None], seeds


def with_draws(plan: Any, count: int) -> Any:
    """``plan`` (a line, plane or k-D grid of random directions) repeated over ``count`` draws."""
    if plan.path is not None or plan.spec.design is not None:
        raise InputError(
            "draws= repeats a line, plane or grid of random directions; a path "
            "or a sampled design has no draws: leave draws out"
        )
    if plan.backend.name != "torch":
        raise InputError(
            f"draws= runs on the PyTorch backend; this model runs on "
            f"{plan.backend.name}: scan each draw's directions instead"
        )
    dims = len(plan.directions)
    if dims + 1 > MAX_DIMS:
        raise InputError(f"draws= adds a dimension: scan at most {MAX_DIMS - 1} directions with it")
    again, _ = redraw(plan.model, plan.params, plan.directions, 0)
    for j, (a, b) in enumerate(zip(again, plan.directions, strict=True)):
        if a.fingerprint() != b.fingerprint():
            raise InputError(
                f"direction {j} does not come out again from its seed and rule "
                "(drawn around another centre, or edited): draw the directions "
                "around the scan's centre with lm.random_directions"
            )
    dirs, seeds = list(plan.directions), [[int(d.meta["seed"]) for d in plan.directions]]
    for k in range(1, count):
        new, s = redraw(plan.model, plan.params, plan.directions, k)
        dirs += new
        seeds.append(s)
    spec = dataclasses.replace(
        plan.spec,
        grid=(Axis(0.0, float(count - 1), count), *plan.spec.grid),
        directions=tuple(d.meta for d in dirs),
        draws={"count": count, "seeds": seeds},
    )
    fps = {k: v for k, v in plan.fingerprints.items() if not k.startswith("dir_")}
    fps.update({f"dir_{i}": d.fingerprint() for i, d in enumerate(dirs)})
    fields = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    fields.update(spec=spec, fingerprints=fps, directions=dirs, path=DrawLayout(count, dims))
    return draw_plan_class(type(plan))(**fields)
