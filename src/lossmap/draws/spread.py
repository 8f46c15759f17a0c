"""Findings over direction draws: each direction-dependent number's spread over K draws.

A surface scanned with ``lm.scan(..., draws=K)`` has a leading ``draw``
dimension. :func:`over_draws` reads every draw as an ordinary line or plane,
takes from each the numbers that depend on the directions, and states them
as :class:`DrawSpread` findings: the mean over draws ± the standard deviation
over draws, beside the standard error over samples, and the draw-to-draw
share of the variance.

The numbers (``q`` in each draw; ``a`` one of the scanned directions, the
line through the centre along it):

``slope_a``
    the central difference ``(L(h) − L(−h)) / 2h`` at the centre;
``curvature_a``
    the second difference ``(L(h) − 2L(0) + L(−h)) / h²`` at the centre;
``convexity_a``
    the most negative second difference / step² along the whole line
    (:func:`lossmap.analysis.convexity.convexity`'s ``min_curvature``);
``basin_width_a``
    :func:`lossmap.basin_width` with ``delta``;
``height``
    the mean of ``L(±r·d) − L(c)`` over the scanned directions, at radius
    ``r`` (default: the largest grid value every axis has on both sides);
    for a quadratic its expectation is ``½ r² E[dᵀHd]``;
``peak``
    the highest value of the line or plane minus ``L(c)``.

Standard errors over samples (per draw, from the paired standard errors of
``L(p) − L(c)`` the scan stored): ``slope``: ``√(s₊² + s₋²) / 2h``;
``curvature``: ``√(s₊² + s₋²) / h²``; ``height``: the mean of its points'
paired s.e. (an upper bound: it assumes those differences perfectly
correlated); ``peak``: the paired s.e. at the highest point; ``basin_width``:
half the width interval the noise allows over ``z`` (:func:`lossmap.basin_width`'s
``width_range``); ``convexity``: none. The first two ignore the correlation
of the two differences: a guide to the size, not an exact s.e.

Variance split: the variance of ``q`` over draws, ``sd²``, holds the
sampling noise too; its mean square, ``se_samples²``, is taken out to give
the draw-to-draw variance ``max(sd² − se_samples², 0)``, and ``draw_share`` =
that over ``sd²`` (1: all the spread is the directions'). Every draw reads
the same samples, so part of the sampling error is common to all draws and
does not spread them: the mean square over-states the sampling part of the
spread, and ``draw_share`` is a lower bound. The spread of the
spread — how well K draws know ``sd`` — is ``sd_se = sd / √(2(K − 1))``
(normal draws): K = 10 knows the spread to ±24 %, K = 50 to ±10 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..analysis.convexity import convexity
from ..analysis.finding import Evidence, Finding
from ..analysis.geometry import basin_width
from ..analysis.uncertainty import Z
from ..errors import InputError

__all__ = ["DrawSpread", "over_draws", "per_draw"]


@dataclass(frozen=True, kw_only=True)
class DrawSpread(Finding):
    """One direction-dependent number over K draws (``value``: its mean over the draws).

    ``quantity`` its name (``"height"``, ``"basin_width_alpha"``, …);
    ``sd`` the standard deviation over draws (ddof 1); ``se`` = sd/√K, the
    standard error of the mean over draws; ``se_samples`` the root mean square
    of the per-draw standard errors over samples (None where not measured);
    ``draw_share`` the draw-to-draw share of the variance (None without
    ``se_samples``); ``sd_se`` the standard error of ``sd`` (``sd/√(2(K−1))``);
    ``draws`` the per-draw values; ``count`` K (finite draws); ``radius`` the
    r of a height.

    Examples
    --------
    >>> f = DrawSpread(variable="train_loss", value=2.0, se=0.5, quantity="peak", sd=1.0,
    ...                se_samples=0.1, draw_share=0.99, sd_se=0.35, draws=(1.0, 2.0, 3.0, 2.0),
    ...                count=4)
    >>> print(f.sentence())  # doctest: +NORMALIZE_WHITESPACE
    peak: 2 ± 1 (s.d. over 4 draws, itself ± 0.3; s.e. of the mean 0.5); s.e. over samples
    0.1; the draws make 99% of the variance
    """

    kind: ClassVar[str] = "draw_spread"
    quantity: str = ""
    sd: float | None = None
    se_samples: float | None = None
    draw_share: float | None = None
    sd_se: float | None = None
    draws: tuple[float, ...] = ()
    count: int = 0
    radius: float | None = None


def _paired(line: Any, variable: str) -> np.ndarray | None:
    p = None if line.paired is None else line.paired.get(variable)
    return None if p is None else np.asarray(p, dtype=np.float64)


def _on_grid(c: np.ndarray, x: float) -> int | None:
    hit = np.flatnonzero(np.isclose(c, x, rtol=0, atol=1e-9 * max(np.ptp(c), 1.0)))
    return int(hit[0]) if hit.size else None


def default_radius(surface: Any) -> float:
    """The largest r that every axis has as a grid value on both sides of the centre."""
    common = None
    for dim in surface.dims:
        if dim == "draw":
            continue
        c = surface.coords[dim]
        both = {round(float(x), 12) for x in c if x > 0 and _on_grid(c, -x) is not None}
        common = both if common is None else common & both
    if not common:
        raise InputError(
            "no radius r lies on every axis on both sides of the centre: scan a "
            "grid symmetric about 0 (e.g. -1:1:11), or pass radius="
        )
    return max(common)


def _line_numbers(
    line: Any, variable: str, delta: float, z: float, r: float
) -> dict[str, tuple[float, float | None]]:
    """The numbers of one line through the centre: name → (value, s.e. over samples)."""
    c = line.coords[line.dims[0]]
    L = np.asarray(line[variable], dtype=np.float64)
    p = _paired(line, variable)
    i0 = _on_grid(c, 0.0)
    if i0 is None or i0 == 0 or i0 == len(c) - 1:
        raise InputError(
            "over_draws needs the centre inside every axis's grid (a grid "
            "through 0 with points on both sides)"
        )
    h = float(c[i0 + 1] - c[i0])
    lo, hi = i0 - 1, i0 + 1
    s2 = None if p is None else float(p[lo] ** 2 + p[hi] ** 2)
    out = {
        "slope": ((L[hi] - L[lo]) / (2 * h), None if s2 is None else math.sqrt(s2) / (2 * h)),
        "curvature": (
            (L[hi] - 2 * L[i0] + L[lo]) / h**2,
            None if s2 is None else math.sqrt(s2) / h**2,
        ),
    }
    cv = convexity(line, variable)
    out["convexity"] = (cv.min_curvature if cv.min_curvature is not None else math.nan, None)
    bw = basin_width(line, variable, delta, z=z)
    rng = bw.width_range
    bw_se = None
    if rng is not None and None not in rng and all(math.isfinite(x) for x in rng):
        bw_se = (rng[1] - rng[0]) / (2 * z)
    out["basin_width"] = (bw.value if bw.value is not None else math.nan, bw_se)
    ip, im = _on_grid(c, r), _on_grid(c, -r)
    rise = [L[ip] - L[i0], L[im] - L[i0]]
    out["_rise"] = (float(np.mean(rise)), None if p is None else float(np.mean(p[[ip, im]])))
    return out


def per_draw(
    surface: Any, variable: str, *, delta: float = 0.1, z: float = Z, radius: float | None = None
) -> list[dict[str, tuple[float, float | None]]]:
    """Each draw's direction-dependent numbers: name → (value, s.e. over samples).

    The parameters are :func:`over_draws`'s; the list has one dict per draw.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> line = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                directions=lm.random_direction(net, seed=0), grid=(-1, 1, 5),
    ...                draws=3, progress=False)
    >>> rows = per_draw(line, "train_loss")
    >>> len(rows), sorted(rows[0])  # doctest: +NORMALIZE_WHITESPACE
    (3, ['basin_width_alpha', 'convexity_alpha', 'curvature_alpha', 'height', 'peak',
         'slope_alpha'])
    """
    if "draw" not in surface.dims or len(surface.dims) not in (2, 3):
        raise InputError(
            f"over_draws reads a line or plane scanned with draws=K; this surface "
            f"has dims {surface.dims}: scan it with lm.scan(..., draws=K)"
        )
    surface[variable]  # an unknown variable: a KeyError naming those there are
    r = default_radius(surface) if radius is None else float(radius)
    out = []
    for k in range(surface.spec.draws["count"]):
        one = surface.isel(draw=k)
        axes = list(one.dims)
        lines = (
            [one]
            if len(axes) == 1
            else [one.isel(**{axes[1 - j]: _centre(one, axes[1 - j])}) for j in range(2)]
        )
        nums: dict[str, tuple[float, float | None]] = {}
        rises, rise_se = [], []
        for dim, line in zip(axes, lines, strict=True):
            for name, v in _line_numbers(line, variable, delta, z, r).items():
                if name == "_rise":
                    rises.append(v[0])
                    rise_se.append(v[1])
                else:
                    nums[f"{name}_{dim}"] = v
        nums["height"] = (
            float(np.mean(rises)),
            None if None in rise_se else float(np.mean(rise_se)),
        )
        nums["peak"] = _peak(one, variable)
        out.append(nums)
    return out


def _centre(surface: Any, dim: str) -> int:
    i = _on_grid(surface.coords[dim], 0.0)
    if i is None:
        raise InputError(f"over_draws needs 0 on the {dim} grid (the centre)")
    return i


def _peak(one: Any, variable: str) -> tuple[float, float | None]:
    L = np.asarray(one[variable], dtype=np.float64)
    centre = one.centre_index()
    at = np.unravel_index(int(np.nanargmax(L)), L.shape)
    p = _paired(one, variable)
    return float(L[at] - L[centre]), None if p is None else float(p[at])


def _spread(
    name: str,
    values: list[float],
    ses: list[float | None],
    variable: str,
    z: float,
    radius: float | None,
    n: int | None,
) -> DrawSpread:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    k = int(v.size)
    mean = float(v.mean()) if k else None
    sd = float(v.std(ddof=1)) if k > 1 else None
    se = None if sd is None else sd / math.sqrt(k)
    known = [s for s in ses if s is not None and math.isfinite(s)]
    se_samples = (
        float(math.sqrt(np.mean(np.square(known)))) if known and len(known) == len(ses) else None
    )
    share = None
    if sd is not None and se_samples is not None:
        share = max(sd**2 - se_samples**2, 0.0) / sd**2 if sd > 0 else 0.0
    return DrawSpread(
        variable=variable,
        value=mean,
        se=se,
        z=z,
        resolved=None if se is None or mean is None else abs(mean) > z * se,
        evidence=Evidence(points=k, n=n, coordinate="draw"),
        quantity=name,
        sd=sd,
        se_samples=se_samples,
        draw_share=share,
        sd_se=None if sd is None else sd / math.sqrt(2 * (k - 1)),
        draws=tuple(float(x) for x in values),
        count=k,
        radius=radius if name == "height" else None,
    )


def over_draws(
    surface: Any,
    variable: str = "train_loss",
    *,
    delta: float = 0.1,
    z: float = Z,
    radius: float | None = None,
) -> dict[str, DrawSpread]:
    """Every direction-dependent number of a K-draw line or plane, with its spread over draws.

    Parameters
    ----------
    surface : Surface
        A line or plane scanned with ``lm.scan(..., draws=K)`` (dims
        ``draw, alpha[, beta]``), every axis through 0.
    variable : str, default "train_loss"
    delta : float, default 0.1
        δ of the basin widths (loss units).
    z : float, default 2
        Standard errors a mean must exceed to be resolved.
    radius : float, optional
        r of ``height`` (a grid value on both sides of every axis); default
        the largest such value.

    Returns
    -------
    dict of str to DrawSpread
        ``slope_alpha``, ``curvature_alpha``, ``convexity_alpha``,
        ``basin_width_alpha`` (and the ``_beta`` ones for a plane), ``height``
        and ``peak``; see the module docstring for each definition and s.e.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> surf = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                directions=lm.random_directions(net, 2, seed=0),
    ...                grid=[(-1, 1, 5)] * 2, draws=4, progress=False)
    >>> spread = lm.over_draws(surf)
    >>> h = spread["height"]
    >>> h.count, h.radius, len(h.draws), h.sd > 0
    (4, 1.0, 4, True)
    >>> 0 <= h.draw_share <= 1
    True
    """
    r = default_radius(surface) if radius is None else float(radius)
    rows = per_draw(surface, variable, delta=delta, z=z, radius=r)
    n = None if surface.samples is None else surface.samples.get(variable.split("_")[0])
    return {
        name: _spread(
            name, [row[name][0] for row in rows], [row[name][1] for row in rows], variable, z, r, n
        )
        for name in rows[0]
    }
