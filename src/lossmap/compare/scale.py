"""The one colour scale (and contour levels) that every panel of a comparison shares.

Linear: levels evenly spaced from the smallest to the largest finite value
over all models. Logarithmic: the panels draw the loss above the common
minimum, ``L − min + floor`` (``floor`` a thousandth of the span, so the
minimum itself sits on the scale), with levels evenly spaced in log, so the
basin's shape shows instead of being one colour under the corners' heights.
The difference maps (model − reference) share one diverging scale,
symmetric about zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["FLOOR", "SharedScale", "shared_scale"]

FLOOR = 1e-3
"""With ``log=True``: the floor added to ``L − min``, as a fraction of the span of values."""


@dataclass(frozen=True)
class SharedScale:
    """The colour scale, levels and ranges all panels of a comparison use.

    Attributes
    ----------
    variable : str
        The variable drawn, e.g. ``"train_loss"``.
    vmin, vmax : float
        The smallest and largest finite value over every model.
    log : bool
        Whether the panels draw ``L − vmin + floor`` on a logarithmic scale.
    floor : float
        With ``log``: what is added to ``L − vmin`` (0 without ``log``).
    levels : ndarray
        The contour levels, in drawn units (``L`` itself, or ``L − vmin + floor``).
    cmap : str
        The colour map of the panels.
    diff_limit : float or None
        The largest ``|model − reference|``: the difference maps run from
        ``-diff_limit`` to ``+diff_limit`` (None without difference maps).
    diff_levels : ndarray or None
        Their levels.
    diff_cmap : str
        Their (diverging) colour map.
    ranges : tuple of (float, float)
        The axis ranges (α, and β for a plane), the same in every panel.

    Examples
    --------
    >>> import numpy as np
    >>> s = shared_scale([np.array([0.0, 1.0]), np.array([0.5, 2.0])], "train_loss",
    ...                  log=False, levels=5, ranges=((-1.0, 1.0),))
    >>> s.levels.tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    >>> s.band_colour(0.6) == s.band_colour(0.9), s.band_colour(0.6) == s.band_colour(1.1)
    (True, False)
    """

    variable: str
    vmin: float
    vmax: float
    log: bool
    floor: float
    levels: np.ndarray
    cmap: str
    diff_limit: float | None
    diff_levels: np.ndarray | None
    diff_cmap: str
    ranges: tuple[tuple[float, float], ...]

    def drawn(self, values: Any) -> np.ndarray:
        """``values`` in drawn units: themselves, or ``values − vmin + floor`` with ``log``."""
        v = np.asarray(values, dtype=np.float64)
        return v - self.vmin + self.floor if self.log else v

    def norm(self) -> Any:
        """A matplotlib ``Normalize`` (``LogNorm`` with ``log``) over the levels."""
        from matplotlib.colors import LogNorm, Normalize

        lo, hi = float(self.levels[0]), float(self.levels[-1])
        return LogNorm(lo, hi) if self.log else Normalize(lo, hi)

    def diff_norm(self) -> Any:
        """The symmetric ``Normalize`` of the difference maps (None without them)."""
        from matplotlib.colors import Normalize

        return None if self.diff_limit is None else Normalize(-self.diff_limit, self.diff_limit)

    def band_colour(self, value: float) -> tuple[float, float, float, float]:
        """The RGBA colour filled contours give ``value``: that of its band's middle.

        Matplotlib colours the band between two levels by the colour map at
        the norm of the band's midpoint; this is the colour any panel shows
        where the variable equals ``value``.
        """
        import matplotlib

        v = float(self.drawn(value))
        lv = self.levels
        i = int(np.clip(np.searchsorted(lv, v, side="right") - 1, 0, len(lv) - 2))
        mid = 0.5 * (lv[i] + lv[i + 1])
        return tuple(float(c) for c in matplotlib.colormaps[self.cmap](self.norm()(mid)))

    def label(self, name: str) -> str:
        """The colour bar's label: ``"train loss"`` or ``"train loss − 0.0123 (log scale)"``."""
        return f"{name} − {self.vmin:.4g} (log scale)" if self.log else name

    def to_dict(self) -> dict[str, Any]:
        """The scale as JSON-safe data."""
        return {
            "variable": self.variable,
            "vmin": self.vmin,
            "vmax": self.vmax,
            "log": self.log,
            "floor": self.floor,
            "levels": [float(x) for x in self.levels],
            "cmap": self.cmap,
            "diff_limit": self.diff_limit,
            "diff_levels": None
            if self.diff_levels is None
            else [float(x) for x in self.diff_levels],
            "diff_cmap": self.diff_cmap,
            "ranges": [list(r) for r in self.ranges],
        }


def _finite(arrays: Sequence[np.ndarray]) -> np.ndarray:
    vals = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in arrays])
    return vals[np.isfinite(vals)]


def shared_scale(
    values: Sequence[np.ndarray],
    variable: str,
    *,
    log: bool,
    levels: int,
    ranges: tuple[tuple[float, float], ...],
    cmap: str = "viridis",
    difference: bool = True,
    diff_cmap: str = "RdBu_r",
) -> SharedScale:
    """The scale of ``values`` (one array per model, the reference first).

    Parameters
    ----------
    values : sequence of ndarray
        The variable of each model on the same grid.
    variable : str
    log : bool
        Draw ``L − min + floor`` on a log scale.
    levels : int
        Number of contour levels (>= 2).
    ranges : tuple of (float, float)
        The axis ranges.
    cmap, diff_cmap : str
        Colour maps of the panels and of the difference maps.
    difference : bool
        Whether to make the difference maps' scale.

    Returns
    -------
    SharedScale

    Examples
    --------
    >>> import numpy as np
    >>> s = shared_scale([np.array([1.0, 2.0]), np.array([3.0, 5.0])], "train_loss", log=False,
    ...                  levels=5, ranges=((-1.0, 1.0),))
    >>> s.vmin, s.vmax, s.levels.tolist(), s.diff_limit
    (1.0, 5.0, [1.0, 2.0, 3.0, 4.0, 5.0], 3.0)
    """
    vals = _finite(values)
    if not vals.size:
        raise InputError(
            f"no model has a finite {variable}: nothing to draw (are the scans finished?)"
        )
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 1e-6
    floor = FLOOR * span if log else 0.0
    lv = np.geomspace(floor, span + floor, levels) if log else np.linspace(lo, lo + span, levels)
    limit = dlv = None
    if difference and len(values) > 1:
        ref = np.asarray(values[0], dtype=np.float64)
        diffs = _finite([np.asarray(v, dtype=np.float64) - ref for v in values[1:]])
        top = float(np.abs(diffs).max()) if diffs.size else 0.0
        limit = top if top > 0 else span * 1e-6
        dlv = np.linspace(-limit, limit, levels if levels % 2 else levels + 1)
    return SharedScale(
        variable=variable,
        vmin=lo,
        vmax=hi,
        log=log,
        floor=floor,
        levels=lv,
        cmap=cmap,
        diff_limit=limit,
        diff_levels=dlv,
        diff_cmap=diff_cmap,
        ranges=ranges,
    )
