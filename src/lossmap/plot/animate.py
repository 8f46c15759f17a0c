"""Animations: a training path moving over a plane, a plane changing as its centre moves.

Two plotly figures with one frame per step, play/pause buttons and a slider
(:func:`path_animation`, :func:`centre_animation`), written as self-contained
HTML by :func:`save_animation` (plotly.js embedded, as :func:`~lossmap.plot.to_html`
writes it: the file fetches nothing). The same two animations drawn with
matplotlib (:mod:`lossmap.plot.animate_mpl`) are saved by :func:`save_animation`
as GIF (the Pillow writer, installed with matplotlib) or MP4 (only where
matplotlib finds ffmpeg).

Every frame of :func:`centre_animation` shares one colour range (and one z
range), the smallest and largest finite value over all its planes, so frames
compare; the axes of :func:`path_animation` cover the whole path from the
first frame on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C
from .animation_checks import check_duration, check_labels, check_planes, path_and_labels
from .interactive import _nulls, contour_figure, surface_figure, to_html

__all__ = ["centre_animation", "path_animation", "save_animation"]

_PATH_COLOUR = "crimson"
_SUFFIXES = (".html", ".htm", ".gif", ".mp4")


def _player(fig: go.Figure, labels: list[str], duration: int) -> go.Figure:
    """Play/pause buttons and a slider with one step per frame (frames named by ``labels``).

    Every frame is redrawn: without it, plotly.js drops a contour trace when only the
    other traces change (a plane redrawn per frame is cheap).
    """

    def go_to(ms: int) -> dict[str, Any]:
        return {"mode": "immediate", "fromcurrent": True, "transition": {"duration": 0},
                "frame": {"duration": ms, "redraw": True}}

    fig.update_layout(
        updatemenus=[{
            "type": "buttons", "direction": "left", "showactive": False,
            "x": 0.0, "xanchor": "left", "y": -0.1, "yanchor": "top",
            "buttons": [
                {"label": "▶ play", "method": "animate", "args": [None, go_to(duration)]},
                {"label": "❚❚ pause", "method": "animate", "args": [[None], go_to(0)]},
            ],
        }],
        sliders=[{
            # below the buttons; the title names the frame shown
            "active": 0, "x": 0.0, "len": 1.0, "y": -0.2, "yanchor": "top",
            "currentvalue": {"visible": False},
            "steps": [{"label": s, "method": "animate", "args": [[s], go_to(0)]}
                      for s in labels],
        }],
    )
    fig.update_layout(margin={"b": 160}, height=(fig.layout.height or 520) + 120)
    return fig


def _span(lo: float, hi: float) -> list[float]:
    pad = 0.03 * max(hi - lo, 1e-12)
    return [lo - pad, hi + pad]


def path_animation(
    surface: Surface,
    path: Any = None,
    *,
    variable: str | None = None,
    labels: Sequence[str] | None = None,
    duration: float = 200,
    style: str = "contour",
) -> go.Figure:
    """The training path drawn step by step over a plane (plotly, one frame per step).

    Frame ``t`` shows the path up to step ``t`` (``x``/``y`` are
    ``path[:t + 1]``) and a marker at step ``t``, over the plane's contour
    map, which stays as it is. Write it with :func:`save_animation` (``.html``).

    Parameters
    ----------
    surface : Surface
        A plane, typically over PCA directions of the trajectory.
    path : array_like, shape (T, 2), optional
        The (α, β) of each step, as ``lm.project(trajectory, [d1, d2])``
        returns them; default ``surface.meta["path"]`` (``lossmap scan --pca``
        stores it there).
    variable : str, optional
        Default the first ``<split>_loss``.
    labels : sequence of str, optional
        One name per step, shown on the slider; default the checkpoint names
        of ``surface.meta["trajectory"]`` for the stored path, else
        ``"step 0"``, ``"step 1"``, …
    duration : float, default 200
        Milliseconds per frame when playing.
    style : {"contour", "heatmap"}, default "contour"
        The background, as in :func:`~lossmap.plot.contour_figure`.

    Returns
    -------
    plotly.graph_objects.Figure
        Traces: the plane (and its centre star, if inside), then the path
        (``name="training path"``) and the current step (``name="step"``),
        the two traces each frame replaces.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import Axis, ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=(Axis(-1, 1, 5), Axis(-1, 1, 5)), splits=("train",),
    ...                 metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> plane = Surface(spec, {"train_loss": A**2 + B**2}, np.ones(spec.shape, bool))
    >>> fig = path_animation(plane, [[0.8, 0.6], [0.4, 0.3], [0.0, 0.0]])
    >>> [f.name for f in fig.frames]
    ['step 0', 'step 1', 'step 2']
    >>> fig.frames[-1].data[0].x.tolist()  # the last frame: the whole path
    [0.8, 0.4, 0.0]
    """
    what = "path_animation"
    variable = C.check_plane(surface, variable, what)
    xy, names = path_and_labels(surface, path, labels, what)
    duration = check_duration(duration, "duration", what)
    if style not in ("contour", "heatmap"):
        raise InputError(f"{what}: style={style!r} must be 'contour' or 'heatmap'")
    fig = contour_figure(surface, variable, style=style)
    fig.update_layout(title={"text": f"{C.label(surface, variable)}: {names[0]}"})
    first = len(fig.data)

    def step(t: int) -> list[go.Scatter]:
        return [
            go.Scatter(x=xy[: t + 1, 0], y=xy[: t + 1, 1], mode="lines+markers",
                       line={"color": _PATH_COLOUR, "width": 2}, marker={"size": 5},
                       name="training path", showlegend=False),
            go.Scatter(x=xy[t : t + 1, 0], y=xy[t : t + 1, 1], mode="markers",
                       marker={"size": 13, "color": _PATH_COLOUR,
                               "line": {"color": "white", "width": 2}},
                       name="step", text=[names[t]], showlegend=False,
                       hovertemplate="%{text}<br>α=%{x:.3g}<br>β=%{y:.3g}<extra></extra>"),
        ]

    fig.add_traces(step(0))
    fig.frames = [
        go.Frame(data=step(t), traces=[first, first + 1], name=names[t],
                 layout={"title": {"text": f"{C.label(surface, variable)}: {names[t]}"}})
        for t in range(len(xy))
    ]
    # fixed axes that hold the grid and the whole path: no frame draws outside the view
    a, b = surface.coords["alpha"], surface.coords["beta"]
    fig.update_xaxes(range=_span(min(a[0], xy[:, 0].min()), max(a[-1], xy[:, 0].max())),
                     autorange=False)
    fig.update_yaxes(range=_span(min(b[0], xy[:, 1].min()), max(b[-1], xy[:, 1].max())),
                     autorange=False)
    return _player(fig, names, duration)


def centre_animation(
    surfaces: Sequence[Surface],
    *,
    variable: str | None = None,
    labels: Sequence[str] | None = None,
    style: str = "surface",
    duration: float = 400,
) -> go.Figure:
    """A plane's surface changing as its centre moves along a trajectory (plotly, one frame each).

    Every frame uses one colour range (and, in 3D, one z range): the
    smallest and largest finite value of ``variable`` over all the planes,
    so heights and colours compare between frames.

    Parameters
    ----------
    surfaces : sequence of Surface
        Planes on the same grid, one per step (e.g. a scan around each
        checkpoint with the same directions).
    variable : str, optional
        Default the first ``<split>_loss``.
    labels : sequence of str, optional
        One name per plane, shown on the slider; default ``"centre 0"``, …
    style : {"surface", "heatmap"}, default "surface"
        A 3D surface (as :func:`~lossmap.plot.surface_figure`, the centre a
        red marker at its value) or a heatmap (as
        :func:`~lossmap.plot.contour_figure`, which plays more smoothly on
        large grids).
    duration : float, default 400
        Milliseconds per frame when playing.

    Returns
    -------
    plotly.graph_objects.Figure
        Trace 0 is the plane (``cmin``/``cmax`` or ``zmin``/``zmax`` set in
        every frame); in 3D trace 1 is the centre marker.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import Axis, ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=(Axis(-1, 1, 5), Axis(-1, 1, 5)), splits=("train",),
    ...                 metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> planes = [Surface(spec, {"train_loss": k * (A**2 + B**2)}, np.ones(spec.shape, bool))
    ...           for k in (1.0, 2.0, 3.0)]
    >>> fig = centre_animation(planes)
    >>> len(fig.frames), [(f.data[0].cmin, f.data[0].cmax) for f in fig.frames][-1]
    (3, (0.0, 6.0))
    """
    what = "centre_animation"
    planes, variable = check_planes(surfaces, variable, what)
    names = check_labels(labels, len(planes), "centre", what)
    duration = check_duration(duration, "duration", what)
    if style not in ("surface", "heatmap"):
        raise InputError(f"{what}: style={style!r} must be 'surface' or 'heatmap'")
    lo, hi = C.value_range([s.values[variable] for s in planes], log=False, what=what)
    title = C.label(planes[0], variable)
    lift = 0.03 * (hi - lo)  # the centre marker sits above the surface through it, as in 3D views

    def frame(s: Surface) -> list[Any]:
        z = _nulls(C.grid(s, variable)[2].filled(np.nan))
        if style == "heatmap":
            return [go.Heatmap(z=z, zmin=lo, zmax=hi)]
        c0 = C.centre_value(s, variable)  # None where the centre is no grid point or not finite
        marker = go.Scatter3d(
            x=[0.0], y=[0.0], z=[None if c0 is None else c0 + lift], mode="markers",
            text=["" if c0 is None else f"{c0:.4g}"], name="centre", showlegend=False,
            marker={"size": 8, "color": "red", "line": {"color": "white", "width": 2}},
            hovertemplate=f"centre<br>{title} = %{{text}}<extra></extra>")
        return [go.Surface(z=z, cmin=lo, cmax=hi), marker]

    if style == "heatmap":
        fig = contour_figure(planes[0], variable, style="heatmap", zmin=lo, zmax=hi)
        traces = [0]
    else:
        fig = surface_figure(planes[0], variable, centre=False, cmin=lo, cmax=hi)
        fig.add_trace(frame(planes[0])[1])
        fig.layout.scene.zaxis.update(range=_span(lo, hi + lift), autorange=False)
        traces = [0, 1]
    fig.update_layout(title={"text": f"{title}: {names[0]}"})
    fig.frames = [go.Frame(data=frame(s), traces=traces, name=n,
                           layout={"title": {"text": f"{title}: {n}"}})
                  for s, n in zip(planes, names, strict=True)]
    return _player(fig, names, duration)


def save_animation(
    animation: Any, path: str | os.PathLike, *, fps: float | None = None, dpi: float = 100
) -> Path:
    """Write an animation: plotly as ``.html``, matplotlib as ``.gif`` or ``.mp4``.

    Parameters
    ----------
    animation : plotly Figure or matplotlib.animation.Animation
        From :func:`path_animation` / :func:`centre_animation` (written as
        self-contained HTML: plotly.js embedded, nothing fetched) or from
        :func:`~lossmap.plot.animate_mpl.path_animation_mpl` /
        :func:`~lossmap.plot.animate_mpl.centre_animation_mpl` (GIF through
        the Pillow writer, MP4 through ffmpeg).
    path : str or PathLike
        Ends in ``.html``/``.htm`` (plotly) or ``.gif``/``.mp4`` (matplotlib);
        missing parent folders are made.
    fps : float, optional
        Frames per second of a GIF or MP4; default that of the animation's
        ``interval``. A GIF merges a frame identical to the one before it
        into that one (Pillow does), so it may hold fewer frames.
    dpi : float, default 100
        Resolution of a GIF or MP4: frames are ``figsize × dpi`` pixels.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        For ``.mp4`` where matplotlib finds no ffmpeg (the message names the
        missing writer and the GIF alternative), or a format the animation's
        kind cannot be written as.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import Axis, ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=(Axis(-1, 1, 5), Axis(-1, 1, 5)), splits=("train",),
    ...                 metrics=("loss",))
    >>> A, B = np.meshgrid(*spec.coords(), indexing="ij")
    >>> plane = Surface(spec, {"train_loss": A**2 + B**2}, np.ones(spec.shape, bool))
    >>> save_animation(path_animation(plane, [[0.5, 0.5], [0.0, 0.0]]), "path.html").name
    'path.html'
    """
    from matplotlib.animation import Animation

    suffix = C.check_suffix(path, _SUFFIXES, "save_animation")
    if isinstance(animation, go.Figure):
        if suffix not in (".html", ".htm"):
            raise InputError(
                f"save_animation: a plotly figure is written as .html, not {suffix}; for "
                f"{suffix} draw the animation with matplotlib: path_animation_mpl or "
                "centre_animation_mpl (lossmap.plot)"
            )
        if not animation.frames:
            raise InputError(
                "save_animation: this plotly figure has no frames; make it with "
                "path_animation or centre_animation (or write a still figure with to_html)"
            )
        # it waits for its play button: an autoplay would run at plotly's pace, not `duration`
        return to_html(animation, path, title=animation.layout.title.text or "lossmap")
    if not isinstance(animation, Animation):
        raise InputTypeError(
            "save_animation takes a plotly Figure (path_animation, centre_animation) or a "
            f"matplotlib animation (path_animation_mpl, ...), got {type(animation).__name__}"
        )
    if suffix not in (".gif", ".mp4"):
        raise InputError(
            f"save_animation: a matplotlib animation is written as .gif or .mp4, not {suffix}; "
            "for self-contained HTML use path_animation or centre_animation (plotly)"
        )
    return _write_mpl(animation, Path(path), suffix, fps, dpi)


def _write_mpl(animation: Any, path: Path, suffix: str, fps: float | None, dpi: float) -> Path:
    from matplotlib import animation as manim

    if suffix == ".mp4" and not manim.writers.is_available("ffmpeg"):
        raise InputError(
            f"save_animation: writing {path.name} needs matplotlib's 'ffmpeg' writer, and "
            "no ffmpeg is found on this machine (install ffmpeg, e.g. `apt install ffmpeg` "
            "or `conda install ffmpeg`, or set matplotlib.rcParams['animation.ffmpeg_path']); "
            "or save a .gif, which the Pillow writer installed with matplotlib writes"
        )
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))
                            or not fps > 0):
        raise InputError(f"save_animation: fps={fps!r} must be a positive number")
    path.parent.mkdir(parents=True, exist_ok=True)
    # fps=None: matplotlib takes 1000 / the animation's interval
    animation.save(str(path), writer="pillow" if suffix == ".gif" else "ffmpeg", fps=fps, dpi=dpi)
    return path
