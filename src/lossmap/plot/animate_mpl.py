"""The animations of :mod:`lossmap.plot.animate` drawn with matplotlib, for GIF and MP4.

Each returns a :class:`matplotlib.animation.FuncAnimation` whose frames are
drawn by the library's own views (:func:`~lossmap.plot.plot_contourf`,
:func:`~lossmap.plot.plot_heatmap`, :func:`~lossmap.plot.plot_surface3d`);
:func:`~lossmap.plot.save_animation` writes it as ``.gif`` (the Pillow writer,
installed with matplotlib) or ``.mp4`` (where matplotlib finds ffmpeg). In a
notebook, ``IPython.display.HTML(anim.to_jshtml())`` shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C
from .animation_checks import check_duration, check_labels, check_planes, path_and_labels
from .planes import plot_contourf, plot_heatmap
from .surface3d import plot_surface3d

__all__ = ["centre_animation_mpl", "path_animation_mpl"]


def _axes(ax: Axes | None, figsize: tuple[float, float], three_d: bool, what: str) -> Axes:
    """``ax`` checked (3D where needed), or the axes of a new figure of ``figsize`` inches."""
    if ax is None:
        fig = plt.figure(figsize=figsize)
        return fig.add_subplot(projection="3d" if three_d else None)
    if not isinstance(ax, Axes):
        raise InputTypeError(f"{what}: ax must be a matplotlib Axes, got {type(ax).__name__}")
    if three_d != (ax.name == "3d"):
        need = "a 3D axes (projection='3d')" if three_d else "a 2-D axes"
        raise InputTypeError(f"{what}: this style needs {need}, got a {ax.name!r} axes")
    return ax


def _span(lo: float, hi: float) -> tuple[float, float]:
    pad = 0.03 * max(hi - lo, 1e-12)
    return lo - pad, hi + pad


def path_animation_mpl(
    surface: Surface,
    path: Any = None,
    *,
    variable: str | None = None,
    labels: Sequence[str] | None = None,
    interval: float = 200,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (6.0, 4.8),
) -> FuncAnimation:
    """The training path drawn step by step over a plane's filled contours (matplotlib).

    Frame ``t`` shows the path up to step ``t`` and a marker at step ``t``
    over :func:`~lossmap.plot.plot_contourf` of the plane, which is drawn
    once; the title names the step. The axes hold the grid and the whole path.

    Parameters
    ----------
    surface : Surface
        A plane, typically over PCA directions of the trajectory.
    path : array_like, shape (T, 2), optional
        The (α, β) of each step (``lm.project``); default ``surface.meta["path"]``.
    variable : str, optional
        Default the first ``<split>_loss``.
    labels : sequence of str, optional
        One name per step, shown in the title; default the checkpoint names
        of ``surface.meta["trajectory"]`` for the stored path, else ``"step 0"``, …
    interval : float, default 200
        Milliseconds per frame (a saved file's frame rate is 1000 / interval).
    ax : Axes, optional
        Where to draw; default a new figure of ``figsize``.
    figsize : (float, float), default (6.0, 4.8)
        Inches of the new figure (a saved frame is ``figsize × dpi`` pixels).

    Returns
    -------
    matplotlib.animation.FuncAnimation
        One frame per step; write it with :func:`~lossmap.plot.save_animation`.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import Axis, ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=(Axis(-1, 1, 5), Axis(-1, 1, 5)), splits=("train",),
    ...                 metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> plane = Surface(spec, {"train_loss": A**2 + B**2}, np.ones(spec.shape, bool))
    >>> anim = path_animation_mpl(plane, [[0.8, 0.6], [0.4, 0.3], [0.0, 0.0]], figsize=(3, 2))
    >>> from lossmap.plot import save_animation
    >>> from PIL import Image
    >>> Image.open(save_animation(anim, "path.gif", dpi=50)).n_frames
    3
    """
    what = "path_animation_mpl"
    variable = C.check_plane(surface, variable, what)
    xy, names = path_and_labels(surface, path, labels, what)
    interval = check_duration(interval, "interval", what)
    ax = _axes(ax, figsize, False, what)
    plot_contourf(surface, variable, ax=ax)
    line = ax.plot([], [], color="C3", marker=".", linewidth=1.5, label="training path",
                   zorder=6)[0]
    point = ax.plot([], [], "o", color="C3", markeredgecolor="white", markersize=9,
                    label="step", zorder=7)[0]
    a, b = surface.coords["alpha"], surface.coords["beta"]
    ax.set_xlim(*_span(min(a[0], xy[:, 0].min()), max(a[-1], xy[:, 0].max())))
    ax.set_ylim(*_span(min(b[0], xy[:, 1].min()), max(b[-1], xy[:, 1].max())))
    title = C.label(surface, variable)

    def draw(t: int) -> list[Any]:
        line.set_data(xy[: t + 1, 0], xy[: t + 1, 1])
        point.set_data(xy[t : t + 1, 0], xy[t : t + 1, 1])
        ax.set_title(f"{title}: {names[t]}")
        return [line, point]

    return FuncAnimation(ax.figure, draw, frames=len(xy), interval=interval)


def centre_animation_mpl(
    surfaces: Sequence[Surface],
    *,
    variable: str | None = None,
    labels: Sequence[str] | None = None,
    style: str = "heatmap",
    interval: float = 400,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (6.0, 4.8),
) -> FuncAnimation:
    """A plane changing as its centre moves along a trajectory (matplotlib, one frame each).

    Every frame shares one colour range (``vmin``/``vmax``) and, in 3D, one
    z range: the smallest and largest finite value over all the planes.

    Parameters
    ----------
    surfaces : sequence of Surface
        Planes on the same grid, one per step.
    variable : str, optional
        Default the first ``<split>_loss``.
    labels : sequence of str, optional
        One name per plane, shown in the title; default ``"centre 0"``, …
    style : {"heatmap", "surface"}, default "heatmap"
        :func:`~lossmap.plot.plot_heatmap` (one image whose cells change:
        quick to draw) or :func:`~lossmap.plot.plot_surface3d` (redrawn in
        each frame).
    interval : float, default 400
        Milliseconds per frame.
    ax : Axes, optional
        Where to draw (3D for ``style="surface"``); default a new figure.
    figsize : (float, float), default (6.0, 4.8)
        Inches of the new figure.

    Returns
    -------
    matplotlib.animation.FuncAnimation

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import Axis, ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=(Axis(-1, 1, 5), Axis(-1, 1, 5)), splits=("train",),
    ...                 metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> planes = [Surface(spec, {"train_loss": k * (A**2 + B**2)}, np.ones(spec.shape, bool))
    ...           for k in (1.0, 2.0)]
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> anim = centre_animation_mpl(planes, ax=ax)
    >>> ax.images[0].get_clim()  # the range of both planes, in every frame
    (0.0, 4.0)
    >>> from lossmap.plot import save_animation
    >>> save_animation(anim, "centre.gif", dpi=30).stat().st_size > 0
    True
    """
    what = "centre_animation_mpl"
    planes, variable = check_planes(surfaces, variable, what)
    names = check_labels(labels, len(planes), "centre", what)
    interval = check_duration(interval, "interval", what)
    if style not in ("heatmap", "surface"):
        raise InputError(f"{what}: style={style!r} must be 'heatmap' or 'surface'")
    lo, hi = C.value_range([s.values[variable] for s in planes], log=False, what=what)
    title = C.label(planes[0], variable)
    ax = _axes(ax, figsize, style == "surface", what)

    if style == "heatmap":
        image = plot_heatmap(planes[0], variable, ax=ax, vmin=lo, vmax=hi).images[-1]

        def draw(i: int) -> list[Any]:
            image.set_data(C.grid(planes[i], variable)[2])
            ax.set_title(f"{title}: {names[i]}")
            return [image]
    else:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        norm = Normalize(lo, hi)  # one colour scale for every frame
        ax.figure.colorbar(ScalarMappable(norm, "viridis"), ax=ax, shrink=0.6, pad=0.1)
        top = hi if hi > lo else lo + 1.0

        def draw(i: int) -> list[Any]:
            for artist in list(ax.collections):
                artist.remove()
            plot_surface3d(planes[i], variable, ax=ax, norm=norm)
            ax.set_zlim(lo, top)
            ax.set_title(f"{title}: {names[i]}")
            return list(ax.collections)

        draw(0)
    return FuncAnimation(ax.figure, draw, frames=len(planes), interval=interval)

