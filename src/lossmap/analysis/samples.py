"""How many samples would resolve a finding, from the standard errors a scan measured.

A standard error of a mean falls as ``1/√n``: a finding with effect ``e``
measured with standard error ``se`` on ``n`` samples reaches ``|e| = z · se``
at about ``n · (z · se / |e|)²`` samples, *if the effect stays the size it was
measured* (the estimate is only as good as that: an effect that is zero in
expectation is never resolved, and a larger sample gives a new estimate of
``e``). See :mod:`lossmap.analysis.uncertainty` for each finding's standard
error.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import InputError
from ..surface import Surface
from .barriers import as_line
from .common import _check_surface, _values
from .geometry import barrier
from .sharpness import grid_sharpness
from .slope import slope_at_centre
from .summary import minimum
from .uncertainty import Z, _check_z, _n, _split_of, gap

__all__ = ["FINDINGS", "samples_needed"]

FINDINGS = ("slope", "minimum", "gap", "barrier", "sharpness")
"""The findings :func:`samples_needed` knows (see its docstring for what each measures)."""

HOW = ("scan with a loss that has a `reduction` attribute (e.g. torch.nn.CrossEntropyLoss) "
       "or a metric that returns per-sample values, so that lossmap stores the standard error "
       "of every point beside its value")


def _default_variable(surface: Surface) -> str:
    losses = [v for v in surface.values if v.endswith("_loss")]
    return losses[0] if losses else next(iter(surface.values))


def _measure(surface: Surface, finding: str, variable: str, z: float, metric: str,
             splits: tuple[str, str], epsilon: float) -> dict[str, Any]:
    """The analysis result of ``finding``, with ``effect`` (its size) and ``per_split_n``."""
    if finding == "gap":
        r = gap(surface, metric, splits=splits, z=z)
        return {**r, "effect": r["gap"], "per_split_n": {splits[0]: r["n_a"], splits[1]: r["n_b"]},
                "what": f"{splits[1]} − {splits[0]} {metric} at the centre"}
    label = variable.replace("_", " ")
    split = _split_of(surface, variable) or variable
    if finding == "slope":
        r = slope_at_centre(surface, variable, z=z)
        if not r["measured"]:
            raise InputError(
                f"samples_needed('slope') needs the slope at the centre measured with its "
                f"standard error (Surface.slopes), and this surface has none for {variable!r}: "
                + HOW)
        n = r["n"] or _n(surface, variable)
        return {**r, "effect": r["slope"], "per_split_n": {split: n},
                "what": f"the {label} slope at the centre"}
    if finding == "minimum":
        r = minimum(surface, variable, z=z)
        return {**r, "effect": r["drop"], "per_split_n": {split: r["n"]},
                "what": f"the {label} minimum's drop below the centre"}
    if finding == "barrier":
        r = barrier(surface, variable, z=z)
        return {**r, "effect": r["barrier"], "per_split_n": {split: r["n"]},
                "what": f"the {label} barrier"}
    r = grid_sharpness(surface, variable, epsilon, z=z)
    return {**r, "effect": r["sharpness"], "per_split_n": {split: r["n"]},
            "what": f"the {label} ε-sharpness (ε = {epsilon:g})"}


def samples_needed(
    surface: Surface,
    finding: str,
    *,
    variable: str | None = None,
    z: float = Z,
    metric: str = "loss",
    splits: tuple[str, str] = ("train", "test"),
    epsilon: float = 0.1,
) -> dict[str, Any]:
    """How many samples would resolve a finding, from the surface's measured standard errors.

    ``n_needed ≈ n · (z · se / |effect|)²`` (SE ∝ 1/√n), assuming the effect
    stays the size measured. The findings:

    * ``"slope"`` — the slope at the centre of a line (measured from per-sample
      directional slopes, ``Surface.slopes``): effect the slope.
    * ``"minimum"`` — the grid minimum off the centre: effect ``L(c) − L(min)``.
    * ``"gap"`` — the gap between two splits at the centre (``metric``,
      ``splits``; test − train by default): both splits are scaled by the same
      factor.
    * ``"barrier"`` — the barrier of an interpolation line above the chord.
    * ``"sharpness"`` — the ε-sharpness read off the grid (``epsilon``).

    The standard errors are those of :mod:`lossmap.analysis.uncertainty`:
    exact for the gap, paired where the scan measured differences from the
    centre (``Surface.paired``), else conservative, so the count may be larger
    than needed, not smaller.

    Parameters
    ----------
    surface : Surface
        A scan that stored standard errors (``surface.errors``; the slope needs
        ``surface.slopes``).
    finding : {"slope", "minimum", "gap", "barrier", "sharpness"}
    variable : str, optional
        Default: the first ``*_loss`` variable. Not used by ``"gap"``.
    z : float, default 2
        Standard errors the effect must exceed.
    metric : str, default "loss"
        The gap's metric.
    splits : (str, str), default ("train", "test")
        The gap's splits.
    epsilon : float, default 0.1
        The sharpness' radius.

    Returns
    -------
    dict
        ``finding``, ``variable``, ``effect``, ``se``, ``z``, ``n`` (samples
        used; the larger split for a gap), ``resolved`` (bool), ``factor``
        (``(z · se / |effect|)²``, inf for a zero effect), ``n_needed`` (int,
        at least 2; None when ``n`` is unknown or the effect is zero),
        ``per_split`` (split → samples needed) and ``message`` (a sentence).

    Raises
    ------
    InputError
        When the surface has no standard errors for the finding (a store of
        an older lossmap, or a loss without per-sample values): the message
        says how to get them.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",), samples=500)
    >>> a = spec.coords()[0]
    >>> surf = Surface(spec, {"train_loss": (a - 0.5) ** 2}, np.ones(21, bool),
    ...                errors={"train_loss": np.full(21, 0.2)}, samples={"train": 500})
    >>> r = samples_needed(surf, "minimum")  # drop 0.25, s.e. 0.2 * sqrt(2)
    >>> r["resolved"], r["n_needed"], round(500 * (2 * 0.2 * 2**0.5 / 0.25) ** 2, 1)
    (False, 2560, 2560.0)
    """
    _check_surface(surface, what="samples_needed")
    surface = as_line(surface)  # a path scan (dim t) reads as a line
    z = _check_z(z)
    if finding not in FINDINGS:
        raise InputError(f"finding={finding!r} is not one of {', '.join(map(repr, FINDINGS))}")
    variable = _default_variable(surface) if variable is None else variable
    _values(surface, variable)  # an unknown variable is one clear error
    r = _measure(surface, finding, variable, z, metric, tuple(splits), epsilon)
    effect, se = r["effect"], r["se"]
    if se is None:
        what = (f"{r['variable_a']!r} and {r['variable_b']!r}" if finding == "gap"
                else repr(variable))
        raise InputError(f"samples_needed({finding!r}) needs standard errors, and this surface "
                         f"has none for {what}: " + HOW)
    counts = r["per_split_n"]
    n = max((c for c in counts.values() if c), default=None)
    out: dict[str, Any] = {"finding": finding, "variable": None if finding == "gap" else variable,
                           "effect": effect, "se": se, "z": z, "n": n}
    if effect is None or not math.isfinite(effect) or effect == 0:
        out.update(resolved=False, factor=math.inf, n_needed=None,
                   per_split={s: None for s in counts},
                   message=f"{r['what']}: the measured effect is "
                           f"{'missing' if effect is None or not math.isfinite(effect) else 0}: "
                           "no number of samples resolves it")
        return out
    factor = (z * se / abs(effect)) ** 2
    per_split = {s: (max(2, math.ceil(round(c * factor, 6))) if c else None)  # 2560.0000000001
                 for s, c in counts.items()}
    known = [v for v in per_split.values() if v is not None]
    out.update(resolved=abs(effect) > z * se, factor=factor,
               n_needed=max(known) if known else None, per_split=per_split)
    size = f"{effect:.3g} ± {se:.2g} (s.e.{f', n={n} samples' if n else ''})"
    if out["resolved"]:
        would = (f"about {out['n_needed']:,} would do" if known else
                 f"{factor:.2g}× as many would do")
        out["message"] = f"{r['what']}: {size} is resolved at {z:g} s.e. ({would})"
    else:
        much = (f"about {out['n_needed']:,} samples" + (" per split" if len(counts) > 1 else "")
                + f" ({factor:.3g}× the samples used)" if known else
                f"{factor:.3g}× the samples used")
        out["message"] = (f"{r['what']}: {size} is within {z:g} s.e. of zero; {much} would "
                          "resolve it, if the effect stays the size measured (s.e. ∝ 1/√n)")
    return out
