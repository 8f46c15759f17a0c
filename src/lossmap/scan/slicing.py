"""Slices of a k-D Surface: fix some coordinates, keep the rest (``Surface.sel`` / ``isel``).

A scan of k directions (dims ``alpha``, ``beta``, ``gamma``, ``delta``,
``epsilon``, ``zeta``) is a k-D array per variable. Fixing ``gamma`` at one of
its grid values gives the (k−1)-D Surface through that value — the same
numbers a scan of the remaining directions would give around the centre
moved by γ·d₃, and exactly the plane scanned directly when γ = 0. Every plot
and analysis takes a line or a plane: a surface of more dimensions is
refused there with the slice call to make (:func:`require_view`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError

# ``Surface`` below is a lossmap.surface.Surface; it is not imported here (surface.py
# imports this module: the scan package stays below the surface in the import graph).
Surface = Any


def require_view(surface: Surface, what: str, *, most: int = 2) -> None:
    """Refuse a surface of more than ``most`` dimensions (or a sampled design), naming the slice.

    Examples
    --------
    A 3-D surface given to a plot says which call makes it a plane::

        plot_contour needs a line or a plane; this surface is 3-D (alpha, beta, gamma):
        slice it first, e.g. surf.sel(gamma=0.0)
    """
    spec = surface.spec
    if spec.draws is not None:
        raise InputError(
            f"{what} needs a line or a plane; this surface holds {spec.draws['count']} direction "
            "draws (dim 'draw'): take one, e.g. surf.sel(draw=0), or their spread with "
            "lm.over_draws(surf) (pictures: lossmap.draws.plot_draw_lines / plot_draw_planes)"
        )
    if spec.design is not None:
        raise InputError(
            f"{what} needs a line or a plane; this surface is a {spec.design['kind']} design of "
            f"{spec.design['points']} points in {len(spec.grid)}-D: plots and analyses read a "
            "grid, so scan a product grid (or use lm.topology, which takes designs)"
        )
    k = len(surface.dims)
    if k <= most:
        return
    extra = surface.dims[most:]
    call = ", ".join(f"{d}={_zero_or_mid(surface, d):g}" for d in extra)
    raise InputError(
        f"{what} needs a line or a plane; this surface is {k}-D ({', '.join(surface.dims)}): "
        f"slice it first, e.g. surf.sel({call})"
    )


def _zero_or_mid(surface: Surface, dim: str) -> float:
    """0 where it is a grid value of ``dim``, else the middle grid value."""
    c = surface.coords[dim]
    hit = np.flatnonzero(np.isclose(c, 0.0, atol=1e-12))
    return 0.0 if hit.size else float(c[len(c) // 2])


def indices_of(surface: Surface, coords: dict[str, Any], method: str | None) -> dict[str, int]:
    """The grid index of each coordinate value: exact (to 1e-9 of the axis span) or nearest."""
    if method not in (None, "nearest"):
        raise InputError(f"method={method!r}: use None (exact grid values) or 'nearest'")
    out = {}
    for dim, value in coords.items():
        grid = _axis(surface, dim)
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InputTypeError(f"{dim}={value!r} must be a number (one grid value)")
        i = int(np.argmin(np.abs(grid - float(value))))
        span = float(grid[-1] - grid[0]) or 1.0
        if method is None and abs(grid[i] - float(value)) > 1e-9 * abs(span):
            raise InputError(
                f"{dim}={value!r} is not a grid value of {dim} ({grid[0]:g} … {grid[-1]:g}, "
                f"{grid.size} points); the nearest is {grid[i]:.6g}: pass it, or "
                "method='nearest'"
            )
        out[dim] = i
    return out


def _axis(surface: Surface, dim: str) -> np.ndarray:
    if surface.spec.design is not None:
        raise InputError(
            "a sampled design has no grid to slice: select points with "
            "surf.points() and the values instead"
        )
    if dim not in surface.dims:
        raise InputError(f"{dim!r} is not a dimension of this surface ({', '.join(surface.dims)})")
    return surface.coords[dim]


def _directions_kept(spec: Any, indices: dict[str, int], keep: list[int]
                     ) -> tuple[list[int], dict | None]:
    """The stored directions a slice keeps (their indices), and its record of draws.

    Without draws, one direction per kept axis. With draws (K draws of D
    directions, axis 0 the draw), direction ``k·D + j − 1`` is axis j of draw k:
    fixing the draw keeps that draw's directions (an ordinary surface), keeping
    it keeps the kept axes' directions of every draw.
    """
    if spec.draws is None:
        return keep, None
    per = len(spec.grid) - 1
    axes = [j - 1 for j in keep if j > 0]
    if not axes:
        raise InputError("a slice of draws must keep a direction: fix the draw, or fewer axes")
    if 0 not in keep:  # one draw: an ordinary surface
        k = int(indices["draw"]) % spec.draws["count"]
        return [k * per + a for a in axes], None
    count, seeds = spec.draws["count"], spec.draws["seeds"]
    return ([k * per + a for k in range(count) for a in axes],
            {"count": count, "seeds": [[seeds[k][a] for a in axes] for k in range(count)]})


def take(surface: Surface, indices: dict[str, int]) -> Surface:
    """The surface with each dimension of ``indices`` fixed at that grid index."""
    spec = surface.spec
    if spec.path is not None:
        raise InputError("a scan along a path has one dimension (t): there is nothing to slice")
    for dim, i in indices.items():
        n = _axis(surface, dim).size
        if isinstance(i, bool) or not isinstance(i, int | np.integer) or not -n <= i < n:
            raise InputError(f"{dim}={i!r} is not an index of {dim} (0 … {n - 1})")
    if len(indices) >= len(surface.dims):
        raise InputError("a slice must keep at least one dimension: fix fewer coordinates")
    keep = [j for j, d in enumerate(surface.dims) if d not in indices]
    where = tuple(int(indices[d]) if d in indices else slice(None) for d in surface.dims)

    def cut(arrays: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if arrays is None else {k: np.array(v[where]) for k, v in arrays.items()}

    at = {d: float(surface.coords[d][int(i)]) for d, i in indices.items()}
    # the draw number moves no weights: every draw is a slice through the centre
    through_centre = all(v == 0.0 for d, v in at.items() if d != "draw")
    dir_of, draws = _directions_kept(spec, indices, keep)
    new_spec = dataclasses.replace(
        spec,
        grid=tuple(spec.grid[j] for j in keep),
        directions=tuple(spec.directions[j] for j in dir_of) if spec.directions else (),
        draws=draws,
    )
    fps = {k: v for k, v in surface.fingerprints.items() if not k.startswith("dir_")}
    fps.update(
        {
            f"dir_{n}": surface.fingerprints[f"dir_{j}"]
            for n, j in enumerate(dir_of)
            if f"dir_{j}" in surface.fingerprints
        }
    )
    slopes = None
    if surface.slopes is not None and through_centre:  # slopes at the centre: still its own
        slopes = {v: [s[j] for j in keep] for v, s in surface.slopes.items() if len(s) > max(keep)}
    meta = {**surface.meta, "slice": {**at, "of": list(surface.dims), "store": surface.path}}
    return type(surface)(  # a Surface (not imported: surface.py imports this module)
        new_spec,
        cut(surface.values),
        np.array(surface.done[where]),
        fps,
        None,
        meta,
        roundoff=surface.roundoff,
        errors=cut(surface.errors),
        paired=cut(surface.paired) if through_centre else None,  # paired with the centre's value
        slopes=slopes,
        samples=surface.samples,
    )
