"""The barrier of a line or of a path Surface (dim ``t``), where t = 0 and 1 are the ends.

:func:`barrier` is :func:`lossmap.analysis.geometry.barrier` for any line-like
Surface — an interpolation line (dim ``alpha``) or a scan along a path (dim
``t``, ``lm.scan(path=curve)``). Barriers between N models are
:mod:`lossmap.analysis.minima`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .geometry import barrier as line_barrier


def barrier(surface: Any, variable: str, **kwargs: Any) -> dict[str, Any]:
    """The loss barrier of a line or a path and where it sits (see :func:`~.geometry.barrier`).

    The largest rise of the loss above the straight interpolation of the
    endpoint losses, over the grid points of [0, 1]. A path Surface (dim ``t``,
    from ``lm.scan(path=curve)``) is read like an interpolation line with its
    endpoints at t = 0 and 1; the result then also has ``"t"`` (the same value as
    ``"alpha"``: where the barrier sits) and its verdict speaks of t.

    Parameters
    ----------
    surface : Surface
        A line holding α = 0 and 1, or a path scan holding t = 0 and 1.
    variable : str
        E.g. ``"train_loss"``.
    **kwargs
        Passed to :func:`lossmap.analysis.geometry.barrier` (``safety``, …).

    Returns
    -------
    dict
        As :func:`lossmap.analysis.geometry.barrier`; along a path also ``t``.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((0, 1, 21),), splits=("train",), metrics=("loss",),
    ...                 path={"kind": "bezier", "control_points": 3})
    >>> t = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": 1 + 4 * t * (1 - t)}, np.ones(21, bool))
    >>> r = barrier(surf, "train_loss")
    >>> surf.dims, round(r["barrier"], 6), r["t"]
    (('t',), 1.0, 0.5)
    """
    if getattr(getattr(surface, "spec", None), "path", None) is None:
        return line_barrier(surface, variable, **kwargs)
    out = line_barrier(as_line(surface), variable, **kwargs)
    out["t"] = out.get("alpha")
    if isinstance(out.get("verdict"), str):
        out["verdict"] = out["verdict"].replace("alpha =", "t =")
    return out


def as_line(surface: Any) -> Any:
    """A path Surface seen as a line (dim ``alpha`` = t), for functions written for lines.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((0, 1, 3),), splits=("s",), metrics=("loss",),
    ...                 path={"kind": "polychain", "control_points": 2})
    >>> as_line(Surface(spec, {"s_loss": np.zeros(3)}, np.ones(3, bool))).dims
    ('alpha',)
    """
    if surface.spec.path is None:
        return surface
    spec = dataclasses.replace(surface.spec, path=None)
    return dataclasses.replace(surface, spec=spec)
