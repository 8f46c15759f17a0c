"""Sharpness during training: λmax over steps against the stability edge 2/η.

Draws the file :class:`lossmap.callbacks.sharpness.SharpnessRecorder` writes.
Same contract as every view in :mod:`lossmap.plot` (``ax=None`` → a new
figure, the Axes returned).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from ..callbacks.sharpness import SharpnessRecorder, read_sharpness
from ..errors import InputError, InputTypeError
from .style import _new_axes

__all__ = ["plot_eos"]


def plot_eos(
    source: str | os.PathLike | SharpnessRecorder | dict,
    *,
    ax: Axes | None = None,
    preconditioned: bool = True,
    threshold: bool = True,
    log: bool = False,
    **kwargs: Any,
) -> Axes:
    """λmax at each measured step, with 2/η (dashed): the edge of stability.

    Parameters
    ----------
    source : path, SharpnessRecorder or dict
        The recorder's JSON file (its ``out``), the recorder, or
        :func:`~lossmap.callbacks.sharpness.read_sharpness`'s columns.
    ax : Axes, optional
        Default a new figure.
    preconditioned : bool, default True
        Also draw Adam's preconditioned λmax, where measured.
    threshold : bool, default True
        Also draw the stability edge with momentum (dotted), where it is not 2/η.
    log : bool, default False
        A logarithmic y axis.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` of λmax (defaults
        ``color="C0"``, ``marker="."``, ``label="λmax"``).

    Returns
    -------
    Axes

    Examples
    --------
    >>> from lossmap.plot.eos import plot_eos
    >>> cols = {"steps": [0, 10, 20], "lambda_max": [5.0, 15.0, 19.5], "two_over_lr": [20.0] * 3}
    >>> ax = plot_eos(cols)
    >>> [line.get_label() for line in ax.get_lines()]
    ['λmax', '2/η']
    """
    r = _columns(source)
    steps = np.asarray(r["steps"], dtype=float)
    if not len(steps):
        raise InputError(
            "plot_eos: no step was measured yet (the recorder measures every k-th call)"
        )
    ax = _new_axes(ax)
    kwargs.setdefault("color", "C0")
    kwargs.setdefault("marker", ".")
    kwargs.setdefault("label", "λmax")
    ax.plot(steps, _values(r, "lambda_max", steps), **kwargs)
    ax.plot(steps, _values(r, "two_over_lr", steps), "--", color="k", label="2/η")
    pre = _values(r, "preconditioned_lambda_max", steps)
    if preconditioned and np.isfinite(pre).any():
        ax.plot(steps, pre, marker=".", color="C1", label="λmax(P⁻¹ᐟ²HP⁻¹ᐟ²)")
    edge = _values(r, "threshold", steps)
    if (
        threshold
        and np.isfinite(edge).any()
        and not np.allclose(edge, _values(r, "two_over_lr", steps), equal_nan=True)
    ):
        ax.plot(steps, edge, ":", color="k", label="edge with momentum")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("sharpness")
    ax.legend()
    return ax


def _columns(source: Any) -> dict:
    if isinstance(source, SharpnessRecorder):
        return source.records
    if isinstance(source, dict):
        missing = {"steps", "lambda_max", "two_over_lr"} - set(source)
        if missing:
            raise InputError(
                f"plot_eos: the columns lack {sorted(missing)}; pass read_sharpness(path)"
            )
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_sharpness(source)
    raise InputTypeError(
        f"plot_eos: source is a {type(source).__name__}; pass the recorder's .json path, the "
        "SharpnessRecorder or read_sharpness(path)"
    )


def _values(r: dict, column: str, steps: np.ndarray) -> np.ndarray:
    v = r.get(column)
    if v is None:
        return np.full(len(steps), np.nan)
    return np.array([np.nan if x is None else x for x in v], dtype=float)
