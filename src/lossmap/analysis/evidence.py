"""Every finding of a Surface with its evidence and uncertainty, gathered in one object.

:func:`findings` gathers what :mod:`lossmap.analysis` states about a surface
(slope, convexity, flatness, minimum per loss variable; the train-test gap;
the barrier of an interpolation line or a path, the basin width of a line,
the convexity map and ε-sharpness of a plane) with each finding's numbers,
standard error and whether it is resolved, plus the samples that would
resolve each unresolved finding
(:func:`~lossmap.analysis.samples.samples_needed`), as a
:class:`~lossmap.analysis.finding.Findings`: ``.to_dict()`` is JSON-safe (each
finding with its rendered sentence), ready for ``summary.json`` or ``lossmap
info --json``; ``.lines()`` are the statements the report and ``lossmap
info`` print (:mod:`lossmap.analysis.render`).
"""

from __future__ import annotations

import contextlib

from ..errors import InputError
from ..surface import Surface
from .barriers import as_line, barrier
from .common import _check_surface
from .finding import Finding, Findings, Gap, SamplesNeeded
from .geometry import basin_width, convexity_map
from .samples import samples_needed
from .sharpness import grid_sharpness
from .summary import analyse
from .uncertainty import Z, _check_z, gap

__all__ = ["findings"]


def _between(surface: Surface) -> bool:
    """A line between two models: an interpolation or a curve's line (0 and 1 the models)."""
    return len(surface.dims) == 1 and bool({"interpolation", "curve"} & {
        d.get("kind") for d in surface.spec.directions})


def findings(surface: Surface, *, z: float = Z, delta: float = 0.1,
             epsilon: float = 0.1) -> Findings:
    """Every finding about ``surface`` with its evidence and uncertainty.

    Parameters
    ----------
    surface : Surface
        A line or a plane; standard errors (``surface.errors``,
        ``surface.slopes``) are used where present, and each finding says
        "uncertainty not measured" where not.
    z : float, default 2
        Standard errors an effect must exceed to be resolved.
    delta : float, default 0.1
        δ of a line's basin width.
    epsilon : float, default 0.1
        ε of a plane's ε-sharpness read off the grid.

    Returns
    -------
    Findings
        ``variables``: per loss variable ``slope`` (lines), ``convexity``,
        ``flatness``, ``minimum``, and ``barrier`` (interpolation lines and
        paths), ``basin_width`` (lines), ``convexity_map`` and
        ``grid_sharpness`` (planes) — a path scan (dim ``t``) is read as a line
        with its barrier and without slope or basin width —, each the result
        of the function of that name; ``gap`` (test − train loss at the
        centre, or None without both); ``unresolved``: one
        :func:`~lossmap.analysis.samples.samples_needed` result per unresolved
        finding; ``z``; ``samples`` (split → n); ``standard_errors`` (bool);
        ``roundoff`` (the measured floor per variable, or None).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train", "test"), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> se = np.full(21, 0.01)
    >>> surf = Surface(spec, {"train_loss": 1 + a**2, "test_loss": 1.005 + a**2},
    ...                np.ones(21, bool), errors={"train_loss": se, "test_loss": se},
    ...                samples={"train": 1000, "test": 1000})
    >>> f = findings(surf)
    >>> f.gap.resolved, [u.finding for u in f.unresolved]
    (False, ['gap'])
    >>> f.unresolved[0].n_needed  # 1000 * (2 * 0.01 * sqrt(2) / 0.005)^2
    32000
    """
    _check_surface(surface, what="findings")
    z = _check_z(z)
    path = surface.spec.path is not None  # a path between two models (dim t), read as a line
    line = len(surface.dims) == 1
    flat = as_line(surface)
    names = [v for v in flat.values if v.endswith("_loss")] or list(flat.values)
    per_var: dict[str, dict[str, Finding]] = {}
    for v, entry in analyse(flat, names, z=z).items():
        if path:  # t = 0 is the first model: no slope or basin at a "centre"
            entry.pop("slope", None)
        if line and (path or _between(flat)):
            with contextlib.suppress(InputError):  # 0 or 1 not on the grid: no barrier
                entry["barrier"] = barrier(surface, v, z=z)
        if line and not path:
            entry["basin_width"] = basin_width(flat, v, delta, z=z)
        if not line:
            entry["convexity_map"] = convexity_map(flat, v)
            entry["grid_sharpness"] = grid_sharpness(flat, v, epsilon, z=z)
        per_var[v] = entry
    the_gap = gap(flat, z=z) if {"train_loss", "test_loss"} <= set(flat.values) else None
    samples = dict(flat.samples) if flat.samples else (
        {s: flat.spec.samples for s in flat.spec.splits} if flat.spec.samples else None)
    return Findings(z=z, samples=samples, standard_errors=bool(flat.errors),
                    roundoff=flat.roundoff, variables=per_var, gap=the_gap,
                    unresolved=tuple(_unresolved(flat, per_var, the_gap, z, epsilon)))


def _unresolved(surface: Surface, per_var: dict[str, dict[str, Finding]], the_gap: Gap | None,
                z: float, epsilon: float) -> list[SamplesNeeded]:
    """``samples_needed`` for each finding whose standard error leaves it unresolved."""
    todo = []
    for v, e in per_var.items():
        s = e.get("slope")
        if s is not None and s.measured and s.resolved is False:
            todo.append(("slope", v))
        if e["minimum"].resolved is False:
            todo.append(("minimum", v))
        for kind, name in (("barrier", "barrier"), ("grid_sharpness", "sharpness")):
            f = e.get(kind)
            if (f is not None and f.resolved is False and (f.value or 0) > 0
                    and getattr(f, "above_roundoff", True)):  # no sample size lifts round-off
                todo.append((name, v))
    out = [samples_needed(surface, f, variable=v, z=z, epsilon=epsilon) for f, v in todo]
    if the_gap is not None and the_gap.resolved is False and the_gap.value != 0:
        out.append(samples_needed(surface, "gap", z=z))
    return out
