"""Checks of the inputs every animation shares: a training path, frame labels, planes on one grid.

No plotting imports: :mod:`lossmap.plot.animate` (plotly) and
:mod:`lossmap.plot.animate_mpl` (matplotlib) both read their inputs here, so
both give the same errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..surface import Surface
from . import common as C


def check_path(path: Any, what: str) -> np.ndarray:
    """A training path as a float64 array of shape (T, 2), T >= 1, every value finite."""
    try:
        xy = np.asarray(path, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"{what}: the path must be (T, 2) numbers (α, β), e.g. lm.project(...); "
            f"got {type(path).__name__}"
        ) from None
    if xy.ndim != 2 or xy.shape[1] != 2 or not len(xy):
        raise InputError(
            f"{what}: the path has shape {xy.shape}; it must be (T, 2) with T >= 1: the (α, β) "
            "of each step, as lm.project(trajectory, [d1, d2]) returns for two directions"
        )
    if not np.isfinite(xy).all():
        bad = int((~np.isfinite(xy)).any(axis=1).argmax())
        raise InputError(f"{what}: step {bad} of the path is not finite: {xy[bad].tolist()}")
    return xy


def path_and_labels(
    surface: Surface, path: Any, labels: Sequence[str] | None, what: str
) -> tuple[np.ndarray, list[str]]:
    """The checked path (``path``, else ``surface.meta["path"]``) and one label per step.

    Default labels: the checkpoint names of ``meta["trajectory"]`` (as
    ``lossmap scan --pca`` stores them) when the path is the stored one, else
    ``"step 0"``, ``"step 1"``, …
    """
    if path is None:
        if "path" not in surface.meta:
            raise InputError(
                f"{what}: give the path, or scan with meta={{'path': lm.project(...).tolist()}} "
                "(`lossmap scan --pca` stores it): this surface has no meta['path']"
            )
        path = surface.meta["path"]
        files = surface.meta.get("trajectory")
        if labels is None and isinstance(files, list) and len(files) == len(path):
            labels = [Path(str(f)).stem for f in files]
    xy = check_path(path, what)
    return xy, check_labels(labels, len(xy), "step", what)


def check_labels(labels: Sequence[str] | None, n: int, word: str, what: str) -> list[str]:
    """``n`` distinct frame labels: ``labels`` as strings, or ``f"{word} {i}"``."""
    if labels is None:
        return [f"{word} {i}" for i in range(n)]
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise InputTypeError(f"{what}: labels must be a list of {n} strings, one per frame")
    out = [str(x) for x in labels]
    if len(out) != n or len(set(out)) != n:
        raise InputError(
            f"{what}: labels must be {n} distinct names, one per frame; got {len(out)}"
            + ("" if len(set(out)) == len(out) else " with repeats")
        )
    return out


def check_duration(ms: Any, name: str, what: str) -> int:
    """Milliseconds per frame (``name`` is the parameter), a positive number, as an int >= 1."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms > 0:
        raise InputError(f"{what}: {name}={ms!r} must be a positive number of ms per frame")
    return max(1, round(ms))


def check_planes(surfaces: Any, variable: str | None, what: str) -> tuple[list[Surface], str]:
    """A non-empty list of planes on one grid, each holding ``variable`` (checked)."""
    if isinstance(surfaces, Surface) or not isinstance(surfaces, Sequence) or not surfaces:
        raise InputTypeError(
            f"{what} takes a non-empty list of plane Surfaces, one per step of the trajectory"
        )
    planes = list(surfaces)
    for i, s in enumerate(planes):
        C.check_surface(s, f"{what} (surface {i})")
        C.require_plane(s, f"{what} (surface {i})")
    variable = C.first_loss(planes[0], variable, what)
    grid = planes[0].spec.grid
    for i, s in enumerate(planes):
        if s.spec.grid != grid:
            raise InputError(
                f"{what}: surface {i} has the grid {', '.join(map(str, s.spec.grid))} and "
                f"surface 0 {', '.join(map(str, grid))}: every frame needs the same grid "
                "(scan each centre with the same --grid)"
            )
        C.check_variable(s, variable, f"{what} (surface {i})")
    return planes, variable


