"""Pictures of K direction draws: every line (or their band), and the median plane with the rest.

Both take a surface scanned with ``lm.scan(..., draws=K)`` and return a
:class:`matplotlib.figure.Figure` made without pyplot (nothing is left open
in pyplot's registry); save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError
from .compare import median_draw
from .spread import over_draws

__all__ = ["plot_draw_lines", "plot_draw_planes"]


def _check(surface: Any, variable: str, dims: int, what: str) -> np.ndarray:
    if "draw" not in surface.dims or len(surface.dims) != dims + 1:
        kind = "line" if dims == 1 else "plane"
        raise InputError(
            f"{what} draws a {kind} scanned with draws=K (dims draw, "
            f"{'alpha' if dims == 1 else 'alpha, beta'}); this surface has dims "
            f"{surface.dims}"
        )
    return np.asarray(surface[variable], dtype=np.float64)


def plot_draw_lines(
    surface: Any, variable: str = "train_loss", *, band: bool = False, title: str | None = None
) -> Any:
    """Every draw of a K-draw line in one panel, or their median and band.

    Parameters
    ----------
    surface : Surface
        A line scanned with ``draws=K`` (dims ``draw, alpha``).
    variable : str, default "train_loss"
    band : bool, default False
        Draw the median over draws and the band between the lowest and
        highest draw (and the 25–75 % band) instead of every line.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> from lossmap.draws.figures import plot_draw_lines
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> line = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                directions=lm.random_direction(net, seed=0), grid=(-1, 1, 5),
    ...                draws=3, progress=False)
    >>> fig = plot_draw_lines(line)
    >>> len(fig.axes[0].lines)  # three draws and their mean
    4
    """
    from matplotlib.figure import Figure

    L = _check(surface, variable, 1, "plot_draw_lines")
    a = surface.coords[surface.dims[1]]
    fig = Figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot()
    k = L.shape[0]
    if band:
        ax.fill_between(
            a,
            np.nanmin(L, 0),
            np.nanmax(L, 0),
            alpha=0.2,
            color="C0",
            label=f"lowest – highest of {k} draws",
        )
        ax.fill_between(
            a, *np.nanpercentile(L, [25, 75], axis=0), alpha=0.35, color="C0", label="25–75 %"
        )
        ax.plot(a, np.nanmedian(L, 0), color="C0", lw=2, label="median")
    else:
        for i in range(k):
            ax.plot(
                a,
                L[i],
                color="0.5",
                lw=0.8,
                alpha=0.7,
                label=f"each of {k} draws" if i == 0 else None,
            )
        ax.plot(a, np.nanmean(L, 0), color="C3", lw=2, label="mean over draws")
    ax.set_xlabel("α")
    ax.set_ylabel(variable.replace("_", " "))
    ax.set_title(title or f"{variable.replace('_', ' ')} along {k} direction draws")
    ax.legend(fontsize=8)
    return fig


def plot_draw_planes(
    surface: Any,
    variable: str = "train_loss",
    *,
    levels: int = 20,
    cmap: str = "viridis",
    title: str | None = None,
) -> Any:
    """The median draw of a K-draw plane large, the other draws as small multiples.

    All panels share one colour scale (the range over every draw). The
    median draw is the one whose peak (highest value above the centre) is the
    median of the draws' (:func:`lossmap.draws.compare.median_draw`).

    Parameters
    ----------
    surface : Surface
        A plane scanned with ``draws=K`` (dims ``draw, alpha, beta``).
    variable : str, default "train_loss"
    levels : int, default 20
        Filled contour levels.
    cmap : str, default "viridis"
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> plane = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                 directions=list(lm.random_directions(net, 2, seed=0)),
    ...                 grid=[(-1, 1, 5)] * 2, draws=4, progress=False)
    >>> fig = plot_draw_planes(plane)
    >>> sum(ax.get_title().startswith("draw ") for ax in fig.axes)  # the three others, small
    3
    """
    from matplotlib.figure import Figure

    L = _check(surface, variable, 2, "plot_draw_planes")
    k = L.shape[0]
    mid = median_draw(over_draws(surface, variable))
    a, b = (surface.coords[d] for d in surface.dims[1:])
    finite = L[np.isfinite(L)]
    lv = np.linspace(finite.min(), finite.max(), levels)
    others = [i for i in range(k) if i != mid]
    cols = max(2, math.ceil(math.sqrt(len(others))))
    rows = max(2, math.ceil(len(others) / cols))
    fig = Figure(figsize=(4.2 + 1.6 * cols, max(4.2, 1.6 * rows)))
    grid = fig.add_gridspec(rows, 2 + cols, width_ratios=[1.3, 1.3] + [1] * cols)
    big = fig.add_subplot(grid[:, :2])
    cs = big.contourf(a, b, L[mid].T, levels=lv, cmap=cmap, extend="both")
    big.set_title(f"median draw ({mid} of {k})", fontsize=10)
    big.set_xlabel("α")
    big.set_ylabel("β")
    for n, i in enumerate(others):
        ax = fig.add_subplot(grid[n // cols, 2 + n % cols])
        ax.contourf(a, b, L[i].T, levels=lv, cmap=cmap, extend="both")
        ax.set_title(f"draw {i}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(cs, ax=fig.axes, shrink=0.8, label=variable.replace("_", " "))
    fig.suptitle(title or f"{variable.replace('_', ' ')}: {k} direction draws, one colour scale")
    return fig
