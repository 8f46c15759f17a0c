"""Every finding of a Surface with its evidence and uncertainty, as plain data and sentences.

:func:`findings` gathers what :mod:`lossmap.analysis` states about a surface
(slope, convexity, minimum per loss variable; the train-test gap; the barrier
of an interpolation line, the basin width of a line, the ε-sharpness of a
plane) with each finding's numbers, standard error and whether it is resolved,
plus the samples that would resolve each unresolved finding
(:func:`~lossmap.analysis.samples.samples_needed`). The result holds only
JSON-safe values (NaN and inf become None; large arrays are left out), ready
for ``summary.json`` or ``lossmap info --json``. :func:`finding_sentences`
turns it into the (label, sentence) pairs that ``lossmap info`` prints.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from ..errors import InputError
from ..surface import Surface
from .barriers import as_line
from .common import _check_surface
from .geometry import barrier, basin_width, convexity_map
from .samples import samples_needed
from .sharpness import grid_sharpness
from .summary import analyse
from .uncertainty import Z, _check_z, gap

__all__ = ["finding_sentences", "findings"]

_KEEP = 64  # arrays up to this size are kept (as lists); larger ones are left out


def _plain(x: Any) -> Any:
    """``x`` with only JSON-safe values: non-finite floats → None, arrays → lists or dropped."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()
                if not str(k).startswith("_") and not _big(v)}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _big(v: Any) -> bool:
    return isinstance(v, np.ndarray) and (v.ndim > 1 or v.size > _KEEP)


def _interpolation(surface: Surface) -> bool:
    return len(surface.dims) == 1 and "interpolation" in {
        d.get("kind") for d in surface.spec.directions}


def findings(surface: Surface, *, z: float = Z, delta: float = 0.1,
             epsilon: float = 0.1) -> dict[str, Any]:
    """Every finding about ``surface`` with its evidence and uncertainty, JSON-safe.

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
    dict
        ``z``; ``samples`` (split → n, None if unknown); ``standard_errors``
        (bool: some variable has them); ``roundoff`` (the measured floor per
        variable, or None); ``variables``: per loss variable ``slope`` (lines),
        ``convexity``, ``minimum``, and ``barrier`` (interpolation lines),
        ``basin_width`` (lines), ``convexity_map`` and ``sharpness`` (planes);
        a path scan (dim ``t``) is read as a line with its barrier and without
        slope or basin width,
        each the result of the function of that name; ``gap`` (the
        test − train loss gap at the centre, or None without both); and
        ``unresolved``: one :func:`~lossmap.analysis.samples.samples_needed`
        result per unresolved finding, saying how many samples would resolve it.

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
    >>> f["gap"]["resolved"], [u["finding"] for u in f["unresolved"]]
    (False, ['gap'])
    >>> f["unresolved"][0]["n_needed"]  # 1000 * (2 * 0.01 * sqrt(2) / 0.005)^2
    32000
    """
    _check_surface(surface, what="findings")
    z = _check_z(z)
    path = surface.spec.path is not None  # a path between two models (dim t), read as a line
    surface = as_line(surface)
    names = [v for v in surface.values if v.endswith("_loss")] or list(surface.values)
    line = len(surface.dims) == 1
    per_var: dict[str, Any] = {}
    for v, entry in analyse(surface, names, z=z).items():
        if path:  # t = 0 is the first model: no slope or basin at a "centre"
            entry.pop("slope", None)
        if line and (path or _interpolation(surface)):
            with contextlib.suppress(InputError, ValueError, TypeError):
                entry["barrier"] = barrier(surface, v, z=z)
        if line and not path:
            entry["basin_width"] = basin_width(surface, v, delta, z=z)
        if not line:
            cmap = convexity_map(surface, v)
            entry["convexity_map"] = {k: cmap[k] for k in cmap if k.endswith("_fraction")
                                      or k in ("verdict", "floor")}
            entry["sharpness"] = grid_sharpness(surface, v, epsilon, z=z)
        per_var[v] = entry
    the_gap = None
    if {"train_loss", "test_loss"} <= set(surface.values):
        the_gap = gap(surface, z=z)
    samples = dict(surface.samples) if surface.samples else (
        {s: surface.spec.samples for s in surface.spec.splits} if surface.spec.samples else None)
    out = {"z": z, "samples": samples, "standard_errors": bool(surface.errors),
           "roundoff": surface.roundoff, "variables": per_var, "gap": the_gap,
           "unresolved": _unresolved(surface, per_var, the_gap, z, epsilon)}
    return _plain(out)


def _unresolved(surface: Surface, per_var: dict[str, Any], the_gap: dict[str, Any] | None,
                z: float, epsilon: float) -> list[dict[str, Any]]:
    """``samples_needed`` for each finding whose standard error leaves it unresolved."""
    todo = []
    for v, e in per_var.items():
        if "slope" in e and e["slope"].get("measured") and e["slope"]["resolved"] is False:
            todo.append(("slope", v))
        if e["minimum"].get("resolved") is False:
            todo.append(("minimum", v))
        b = e.get("barrier")
        if b and b.get("resolved") is False and (b.get("barrier") or 0) > 0:
            todo.append(("barrier", v))
        s = e.get("sharpness")
        if s and s.get("resolved") is False and (s.get("sharpness") or 0) > 0:
            todo.append(("sharpness", v))
    out = [samples_needed(surface, f, variable=v, z=z, epsilon=epsilon) for f, v in todo]
    if the_gap is not None and the_gap["resolved"] is False and the_gap["gap"] != 0:
        out.append(samples_needed(surface, "gap", z=z))
    return out


def finding_sentences(found: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, sentence)`` for every finding of a :func:`findings` result.

    Parameters
    ----------
    found : dict
        What :func:`findings` returns.

    Returns
    -------
    list of (str, str)
        The label is the variable (or ``"gap"``, ``"samples needed"``); the
        sentence states the finding with its numbers and uncertainty.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": 1 + 0.0031 * a + a**2}, np.ones(21, bool),
    ...                slopes={"train_loss": [{"slope": 0.0031, "se": 0.0002, "n": 512}]})
    >>> for label, text in finding_sentences(findings(surf))[:1]:
    ...     print(label, "·", text)  # doctest: +NORMALIZE_WHITESPACE
    train_loss · on a slope: dL/dα = 0.0031 ± 0.0002 (s.e., n=512 samples), 15.5 s.e. from
    zero; the loss decreases towards negative alpha
    """
    out: list[tuple[str, str]] = []
    for v, e in found["variables"].items():
        if "slope" in e:
            out.append((v, e["slope"]["message"].removeprefix(f"{v}: ")))
        c = e["convexity"]
        out.append((v, "; ".join(x for x in (c["verdict"], c.get("scope"), c.get("noise")) if x)))
        m = e["minimum"]
        if not m["at_centre"]:
            out.append((v, m["evidence"]))
        for key in ("barrier", "basin_width", "convexity_map", "sharpness"):
            if e.get(key):
                out.append((v, e[key]["verdict"].removeprefix(f"{v}: ")))
    if found.get("gap"):
        out.append(("gap", found["gap"]["verdict"]))
    out += [("samples needed", u["message"]) for u in found.get("unresolved", [])]
    return out
