"""Shared matplotlib styling: axis names, per-split colours, log colorbar ticks."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..surface import Surface
from . import common as C

ALPHA, BETA = "α", "β"


def _new_axes(ax: Any, *, three_d: bool = False) -> Any:
    """``ax`` itself, or the axes of a new figure when ``ax`` is None.

    Never matplotlib's current axes: a view drawn without ``ax=`` must not
    land on (or add a legend to) a figure drawn earlier.
    """
    if ax is not None:
        return ax
    _, new = plt.subplots(subplot_kw={"projection": "3d"} if three_d else None)
    return new


def _colour(i: int) -> str:
    """The i-th colour of the current property cycle (one colour per split)."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return cycle[i % len(cycle)]


def _split_colour(surface: Surface, variable: str) -> str:
    split, _ = C.split_metric(surface, variable)
    splits = list(surface.spec.splits)
    return _colour(splits.index(split) if split in splits else 0)


def _log_ticks(cb: Any) -> None:
    """Readable ticks (1, 2, 5 per decade, ``%.3g``) on a colorbar with a log scale."""
    if isinstance(cb.norm, LogNorm):
        cb.ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())


def _colour_kwargs(
    kwargs: dict[str, Any], values: np.ndarray, log: bool, what: str
) -> dict[str, Any]:
    """A copy of ``kwargs`` with the colour defaults of the plane views.

    ``cmap="viridis"``, and with ``log`` (unless a ``norm`` is given) a
    ``LogNorm`` from the smallest to the largest finite value of ``values``.
    """
    kw = dict(kwargs)
    if log and "norm" not in kw:
        kw["norm"] = LogNorm(*C.value_range([values], log=True, what=what))
    kw.setdefault("cmap", "viridis")
    return kw
