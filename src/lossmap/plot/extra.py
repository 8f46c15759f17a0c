"""Matplotlib views of curvature: Hessian spectra, convexity maps, gradient fields.

Same contract as every view in :mod:`lossmap.plot`: ``plot_x(..., *, ax=None, **kwargs) -> Axes``
draws on ``ax`` (default a new figure), passes ``kwargs`` to the one
matplotlib call its docstring names after library defaults set with
``setdefault``, and returns the Axes. The numbers come from
:mod:`lossmap.analysis.geometry` and the Hessian functions; nothing here evaluates a
model. Paths, models and barriers are drawn by :mod:`lossmap.plot.paths`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from ..analysis.geometry import convexity_map, gradient_field
from ..errors import InputError
from ..surface import Surface
from . import common as C
from .planes import _mark_centre, plot_contour
from .style import ALPHA, BETA, _new_axes

__all__ = ["plot_convexity_map", "plot_density", "plot_eigenvalues", "plot_gradient"]


def _vector(x: Any, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if not v.size or not np.isfinite(v).all():
        raise InputError(f"{name} must be a non-empty sequence of finite numbers")
    return v


def label_plane(ax: Axes) -> None:
    """Label the axes α and β unless they are labelled already."""
    if not ax.get_xlabel():
        ax.set_xlabel(ALPHA)
    if not ax.get_ylabel():
        ax.set_ylabel(BETA)


def plot_eigenvalues(eigenvalues: Any, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Bars of Hessian eigenvalues, bar i (from 1) for eigenvalue i in the given order.

    Parameters
    ----------
    eigenvalues : array_like, shape (k,)
        E.g. the first output of ``lm.hessian_eigenpairs``.
    ax : Axes, optional
        Default a new figure.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar` (default ``color="C0"``).

    Returns
    -------
    Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> [float(p.get_height()) for p in plot_eigenvalues([3.0, 1.5]).patches]
    [3.0, 1.5]
    """
    vals = _vector(eigenvalues, "eigenvalues")
    ax = _new_axes(ax)
    kwargs.setdefault("color", "C0")
    idx = np.arange(1, vals.size + 1)
    ax.bar(idx, vals, **kwargs)
    ax.axhline(0.0, color="0.5", linewidth=0.8)
    ax.set_xticks(idx)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("eigenvalue λ")
    return ax


def plot_density(
    grid: Any, density: Any, *, ax: Axes | None = None, log: bool = True, **kwargs: Any
) -> Axes:
    """The Hessian's spectral density against λ.

    Parameters
    ----------
    grid, density : array_like, shape (G,)
        E.g. the outputs of ``lm.hessian_density``.
    ax : Axes, optional
        Default a new figure.
    log : bool, default True
        Logarithmic density axis, from 1e-8 of the peak up (the bulk near 0
        and the outliers both show).
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` (default ``color="C0"``).

    Returns
    -------
    Axes
    """
    x, p = _vector(grid, "grid"), _vector(density, "density")
    if x.shape != p.shape:
        raise InputError(f"grid {x.shape} and density {p.shape} must have the same length")
    ax = _new_axes(ax)
    kwargs.setdefault("color", "C0")
    ax.plot(x, p, **kwargs)
    if log:
        if not (p > 0).any():
            raise InputError("plot_density: log=True needs a positive density value")
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(p[p > 0].min(), p.max() * 1e-8))
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    return ax


@C.fill_doc(plane_params=C.PLANE_PARAMS)
def plot_convexity_map(
    surface: Surface,
    variable: str | None = None,
    *,
    ax: Axes | None = None,
    colorbar: bool = True,
    centre: bool = True,
    **kwargs: Any,
) -> Axes:
    """Li et al.'s map: ``|λmin/λmax|`` of the 2×2 discrete Hessian where it is not convex.

    Parameters
    ----------
    {plane_params}
    colorbar : bool, default True
        Add a colorbar of the ratio.
    centre : bool, default True
        Mark the centre (0, 0) with a red star.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.pcolormesh` of the ratio
        (defaults ``cmap="viridis"``, ``vmin=0``, ``vmax=1``: larger ratios saturate).

    Returns
    -------
    Axes
        Convex points (see :func:`lossmap.analysis.geometry.convexity_map`) are grey;
        border and missing points blank.
    """
    variable = C.check_plane(surface, variable, "plot_convexity_map")
    r = convexity_map(surface, variable)
    ax = _new_axes(ax)
    a, b = r["alpha"], r["beta"]
    ea = np.r_[a - (a[1] - a[0]) / 2, a[-1] + (a[1] - a[0]) / 2]
    eb = np.r_[b - (b[1] - b[0]) / 2, b[-1] + (b[1] - b[0]) / 2]
    convex = np.ma.masked_where(r.classes.T != 1, np.ones_like(r["ratio"].T))
    ax.pcolormesh(ea, eb, convex, cmap=ListedColormap(["0.85"]), shading="flat")
    kwargs.setdefault("cmap", "viridis")
    kwargs.setdefault("vmin", 0.0)
    kwargs.setdefault("vmax", 1.0)
    ratio = np.ma.masked_invalid(np.where(r.classes == 1, np.nan, r["ratio"]).T)  # (nb, na)
    mesh = ax.pcolormesh(ea, eb, ratio, shading="flat", **kwargs)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="|λmin / λmax|", extend="max")
    _mark_centre(surface, ax, centre)
    ax.legend(handles=[Patch(color="0.85", label="convex")], loc="upper right", framealpha=0.85)
    ax.set_xlabel(ALPHA)
    ax.set_ylabel(BETA)
    if not ax.get_title():
        ax.set_title(f"convexity of {C.label(surface, variable)}")
    return ax


@C.fill_doc(plane_params=C.PLANE_PARAMS)
def plot_gradient(
    surface: Surface,
    variable: str | None = None,
    *,
    ax: Axes | None = None,
    step: int | None = None,
    normalize: bool = True,
    contour: bool = True,
    **kwargs: Any,
) -> Axes:
    """Arrows of steepest descent, −∇L (:func:`lossmap.analysis.gradient_field`), over contours.

    Parameters
    ----------
    {plane_params}
    step : int, optional
        An arrow at every ``step``-th grid point each way (default: about 15
        arrows along each axis).
    normalize : bool, default True
        Arrows of equal length (direction only); otherwise length ∝ |∇L|.
    contour : bool, default True
        Draw :func:`lossmap.plot.plot_contour` underneath.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.quiver` (defaults
        ``color="black"``, ``angles="xy"``, and with ``normalize`` a scale
        that makes each arrow 0.8 of the arrow spacing).

    Returns
    -------
    Axes
    """
    variable = C.check_plane(surface, variable, "plot_gradient")
    na, nb = surface.spec.shape
    step = step or max(1, max(na, nb) // 15)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise InputError(f"plot_gradient: step={step!r} must be a positive integer")
    ga, gb = gradient_field(surface, variable)
    ax = _new_axes(ax)
    if contour:
        plot_contour(surface, variable, ax=ax, levels=20)
    a, b = surface.coords["alpha"], surface.coords["beta"]
    A, B = np.meshgrid(a, b, indexing="ij")
    sub = (slice(None, None, step), slice(None, None, step))
    X, Y, U, V = A[sub].ravel(), B[sub].ravel(), -ga[sub].ravel(), -gb[sub].ravel()
    keep = np.isfinite(U) & np.isfinite(V)
    X, Y, U, V = X[keep], Y[keep], U[keep], V[keep]
    kwargs.setdefault("color", "black")
    kwargs.setdefault("angles", "xy")
    if normalize:
        n = np.hypot(U, V)
        safe = np.where(n > 0, n, 1.0)  # a flat point keeps a zero arrow
        U, V = U / safe, V / safe
        kwargs.setdefault("scale_units", "xy")
        kwargs.setdefault("scale", 1 / (0.8 * step * min(a[1] - a[0], b[1] - b[0])))
    ax.quiver(X, Y, U, V, **kwargs)
    label_plane(ax)
    return ax
