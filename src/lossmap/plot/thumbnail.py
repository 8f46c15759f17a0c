"""A small PNG picture of a line or a plane, for ``Surface._repr_html_`` in Jupyter.

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas: pyplot is
never touched, so the notebook's backend and its list of open figures stay as
they were (an inline backend would otherwise show the picture twice). This
module imports nothing from lossmap: it takes plain arrays.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

__all__ = ["thumbnail_png", "thumbnail_src"]


def thumbnail_png(
    coords: Sequence[np.ndarray],
    values: np.ndarray,
    *,
    label: str = "",
    size: tuple[float, float] = (4.0, 3.0),
    dpi: int = 72,
) -> bytes:
    """PNG bytes of a line plot (one axis) or a filled contour map (two axes).

    Parameters
    ----------
    coords : sequence of ndarray
        ``(alpha,)`` for a line, ``(alpha, beta)`` for a plane.
    values : ndarray
        Shape ``(len(alpha),)`` or ``(len(alpha), len(beta))``; non-finite
        points are left out (a gap in the line, a hole in the map). Positive
        values spanning more than a factor of 30 get a logarithmic scale.
    label : str
        The y label of a line, the colorbar label of a plane.
    size : (float, float)
        Width and height in inches (default 4 x 3).
    dpi : int
        Dots per inch (default 72: a 288 x 216 picture).

    Returns
    -------
    bytes
        A PNG image.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.linspace(-1, 1, 11)
    >>> thumbnail_png([a], a**2, label="train loss")[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    log = finite.size > 1 and finite.min() > 0 and finite.max() > 30 * finite.min()
    if len(coords) == 1:
        a = np.asarray(coords[0], dtype=np.float64)
        ok = np.isfinite(v)
        ax.plot(a[ok], v[ok], marker=".", linewidth=1.5)
        ax.set_yscale("log" if log else "linear")
        ax.set_xlim(a[0], a[-1])
        ax.set_xlabel("α")
        ax.set_ylabel(label)
    else:
        a, b = (np.asarray(c, dtype=np.float64) for c in coords)
        Z = np.ma.masked_invalid(v.T)  # (nb, na): rows along β
        if Z.count() >= 4 and np.ptp(Z.compressed()) > 0:
            Z, label = (np.ma.log10(Z), f"log10 {label}") if log else (Z, label)
            fig.colorbar(ax.contourf(a, b, Z, levels=20, cmap="viridis"), ax=ax, label=label)
        elif Z.count():  # a flat or nearly empty map: a heatmap still shows the points
            ax.pcolormesh(a, b, Z, cmap="viridis", shading="nearest")
        ax.set_xlabel("α")
        ax.set_ylabel("β")
    if all(c[0] <= 0 <= c[-1] for c in coords):  # mark the centre
        if len(coords) == 1:
            ax.axvline(0.0, color="0.5", linewidth=0.8, linestyle=":")
        else:
            ax.plot([0.0], [0.0], "+", color="white", markersize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def thumbnail_src(coords: Sequence[np.ndarray], values: np.ndarray, *, label: str = "") -> str:
    """The picture of :func:`thumbnail_png` as a ``data:image/png;base64,...`` URI.

    Parameters
    ----------
    coords : sequence of ndarray
        As for :func:`thumbnail_png`.
    values : ndarray
        As for :func:`thumbnail_png`.
    label : str
        As for :func:`thumbnail_png`.

    Returns
    -------
    str
        For the ``src`` attribute of an ``<img>``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.linspace(-1, 1, 5)
    >>> thumbnail_src([a, a], np.add.outer(a**2, a**2)).startswith("data:image/png;base64,")
    True
    """
    png = thumbnail_png(coords, values, label=label)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
