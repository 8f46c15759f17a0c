"""Line views: a line scan against α, and a training history per epoch.

Same contract as every view in :mod:`lossmap.plot`: ``plot_x(..., *, ax=None, **kwargs) -> Axes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C
from .style import ALPHA, _colour, _new_axes, _split_colour

__all__ = ["plot_history", "plot_line"]


def plot_line(
    surface: Surface,
    variables: str | Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    centre: bool = True,
    accuracy: bool = False,
    log: bool = False,
    band: float | None = 2.0,
    **kwargs: Any,
) -> Axes:
    """Draw a line scan: value against α, one curve per variable, with ±2 s.e. bands.

    Where the surface stores the standard error of a variable
    (``surface.errors``: the sampling noise of each point), a shaded band of
    ± ``band`` standard errors is drawn around its curve
    (:meth:`~matplotlib.axes.Axes.fill_between`, labelled ``"<name> ± 2 s.e."``);
    a variable without standard errors is drawn without one.

    Parameters
    ----------
    surface : Surface
        A line (one direction).
    variables : str or sequence of str, optional
        Variables to draw on the left axis; default every ``<split>_loss``.
    ax : Axes, optional
        Where to draw; default a new figure.
    centre : bool, default True
        Mark α = 0: a dotted vertical line and a point on each curve.
    accuracy : bool, default False
        Also draw ``<split>_accuracy`` of the same splits, dashed, on a twin
        y-axis (0 to 1) at the right.
    log : bool, default False
        Logarithmic y-axis for the left axis.
    band : float or None, default 2
        Half-width of the error band in standard errors; None or 0: no band.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot` for every curve
        (defaults: ``linewidth=1.8``, ``marker="."``, one colour per split).

    Returns
    -------
    Axes
        ``ax``; the twin axis, if any, is ``ax.figure.axes[-1]``.

    Examples
    --------
    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": a**2}, np.ones(21, bool))
    >>> plot_line(surf).get_xlabel()
    'α'
    >>> noisy = Surface(spec, surf.values, surf.done, errors={"train_loss": np.full(21, 0.01)})
    >>> ax = plot_line(noisy)
    >>> [c.get_label() for c in ax.collections]
    ['train ± 2 s.e.']
    """
    C.check_surface(surface, "plot_line")
    C.require_line(surface, "plot_line")
    if band is not None and (isinstance(band, bool) or not isinstance(band, (int, float))
                             or not 0 <= band < np.inf):
        raise InputError(f"plot_line: band={band!r} must be a number >= 0 (standard errors) "
                         "or None")
    names = C.check_variables(surface, variables, "plot_line")
    ax = _new_axes(ax)
    alpha = surface.coords[surface.dims[0]]  # α, or t along a path (lm.scan(path=...))
    metrics = {C.split_metric(surface, v)[1] for v in names}
    by_split = len(metrics) == 1

    def draw(on: Axes, var: str, **extra: Any) -> None:
        kw = dict(kwargs)
        kw.setdefault("color", _split_colour(surface, var))
        kw.setdefault("linewidth", 1.8)
        kw.setdefault("marker", ".")
        kw.setdefault("markersize", 4)
        for k, v in extra.items():
            kw.setdefault(k, v)
        y = np.asarray(surface.values[var], dtype=np.float64)
        line = on.plot(alpha, np.where(np.isfinite(y), y, np.nan), **kw)[0]
        se = surface.se(var) if band and surface.errors is not None else None
        if se is not None:
            se = np.asarray(se, dtype=np.float64)
            ok = np.isfinite(y) & np.isfinite(se)
            on.fill_between(alpha, np.where(ok, y - band * se, np.nan),
                            np.where(ok, y + band * se, np.nan), where=ok,
                            color=line.get_color(), alpha=0.2, linewidth=0,
                            zorder=line.get_zorder() - 0.5,
                            label=f"{kw.get('label', C.label(surface, var))} ± {band:g} s.e.")
        c0 = C.centre_value(surface, var) if centre else None
        if c0 is not None:
            on.plot(
                0.0,
                c0,
                "o",
                color=line.get_color(),
                markersize=7,
                markeredgecolor="white",
                zorder=line.get_zorder() + 1,
            )

    for v in names:
        split = C.split_metric(surface, v)[0]
        draw(ax, v, label=split if by_split and not accuracy else C.label(surface, v))
    ax.set_xlabel(ALPHA if surface.dims[0] == "alpha" else surface.dims[0])
    ax.set_ylabel(next(iter(metrics)) if by_split else ", ".join(sorted(metrics)))
    if log:
        ax.set_yscale("log")
    if centre and C.centre_inside(surface):
        ax.axvline(0.0, color="0.55", linestyle=":", linewidth=1.0, zorder=0)
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    top = ax
    if accuracy:
        if "accuracy" not in surface.spec.metrics:
            raise InputError(
                "plot_line: accuracy=True but this surface has no accuracy metric; it has "
                f"{', '.join(surface.values)}"
            )
        splits = [C.split_metric(surface, v)[0] for v in names]
        acc = [f"{s}_accuracy" for s in dict.fromkeys(splits) if f"{s}_accuracy" in surface.values]
        twin = ax.twinx()
        for v in acc:
            draw(twin, v, linestyle="--", label=C.label(surface, v))
        twin.set_ylabel("accuracy")
        twin.set_ylim(0.0, 1.0)
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        top = twin
    if handles:
        top.legend(handles, labels, framealpha=0.85)
    return ax


def plot_history(
    history: Mapping[str, Sequence[float]] | Sequence[Mapping[str, float]],
    *,
    ax: Axes | None = None,
    accuracy: bool = True,
    log: bool = False,
    **kwargs: Any,
) -> Axes:
    """Draw a training history: loss per epoch, accuracy on a twin axis.

    Parameters
    ----------
    history : dict of str to sequence, or sequence of dict
        Per-epoch series such as ``{"train_loss": [...], "test_loss": [...],
        "train_accuracy": [...], "test_accuracy": [...]}``; an optional
        ``"epoch"`` series gives the x values (default 1, 2, …). A list of
        per-epoch records (dicts) works too.
    ax : Axes, optional
        Where to draw; default a new figure.
    accuracy : bool, default True
        Draw ``*_accuracy`` series, dashed, on a twin y-axis when present.
    log : bool, default False
        Logarithmic loss axis.
    **kwargs
        Passed to :meth:`matplotlib.axes.Axes.plot` for every curve.

    Returns
    -------
    Axes
        ``ax``.
    """
    if isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        if not all(isinstance(r, Mapping) for r in history):
            raise InputTypeError("plot_history: a list history must hold one dict per epoch")
        keys = list(dict.fromkeys(k for r in history for k in r))
        history = {k: [r.get(k, np.nan) for r in history] for k in keys}
    if not isinstance(history, Mapping):
        raise InputTypeError(
            f"plot_history takes a dict of per-epoch lists, got {type(history).__name__}"
        )
    series = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in history.items()}
    losses = [k for k in series if k.endswith("_loss") or k == "loss"]
    if not losses:
        raise InputError(
            f"plot_history: no '*_loss' series in the history; it has {', '.join(series) or None}"
        )
    lengths = {len(series[k]) for k in series}
    if len(lengths) != 1:
        raise InputError(
            "plot_history: the series have different lengths "
            + ", ".join(f"{k}={len(v)}" for k, v in series.items())
        )
    n = lengths.pop()
    x = series.pop("epoch", np.arange(1, n + 1, dtype=np.float64))
    ax = _new_axes(ax)
    split_names = [k.removesuffix("_loss") for k in losses]

    def draw(on: Axes, key: str, split: str, **extra: Any) -> None:
        kw = dict(kwargs)
        idx = split_names.index(split) if split in split_names else len(split_names)
        kw.setdefault("color", _colour(idx))
        kw.setdefault("linewidth", 1.8)
        kw.setdefault("marker", "o")
        kw.setdefault("markersize", 3)
        for k, v in extra.items():
            kw.setdefault(k, v)
        on.plot(x, series[key], **kw)

    for k, split in zip(losses, split_names, strict=True):
        draw(ax, k, split, label=f"{split} loss" if split != "loss" else "loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    top = ax
    accs = [k for k in series if k.endswith("_accuracy") or k == "accuracy"]
    if accuracy and accs:
        twin = ax.twinx()
        for k in accs:
            split = k.removesuffix("_accuracy")
            draw(twin, k, split, linestyle="--", label=f"{split} accuracy")
        twin.set_ylabel("accuracy")
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
        top = twin
    top.legend(handles, labels, framealpha=0.85)
    return ax
