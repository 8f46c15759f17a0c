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
from .barriers import as_line, barrier
from .common import _check_surface, _n, _split_of, _values
from .finding import SamplesNeeded
from .render import HOW
from .sharpness import grid_sharpness
from .slope import slope_at_centre
from .summary import minimum
from .uncertainty import Z, _check_z, gap

__all__ = ["FINDINGS", "samples_needed"]

FINDINGS = ("slope", "minimum", "gap", "barrier", "sharpness")
"""The findings :func:`samples_needed` knows (see its docstring for what each measures)."""

def _default_variable(surface: Surface) -> str:
    losses = [v for v in surface.values if v.endswith("_loss")]
    return losses[0] if losses else next(iter(surface.values))


def _measure(surface: Surface, finding: str, variable: str, z: float, metric: str,
             splits: tuple[str, str], epsilon: float) -> tuple[Any, dict[str, int | None]]:
    """The finding measured, and the samples behind it per split."""
    if finding == "gap":
        r = gap(surface, metric, splits=splits, z=z)
        return r, dict(zip(splits, r.split_n, strict=True))
    split = _split_of(surface, variable) or variable
    if finding == "slope":
        r = slope_at_centre(surface, variable, z=z)
        if not r.measured:
            raise InputError(
                f"samples_needed('slope') needs the slope at the centre measured with its "
                f"standard error (Surface.slopes), and this surface has none for {variable!r}: "
                + HOW)
        return r, {split: r.evidence.n or _n(surface, variable)}
    if finding == "minimum":
        r = minimum(surface, variable, z=z)
    elif finding == "barrier":
        r = barrier(surface, variable, z=z)
    else:
        r = grid_sharpness(surface, variable, epsilon, z=z)
    return r, {split: r.evidence.n}


def samples_needed(
    surface: Surface,
    finding: str,
    *,
    variable: str | None = None,
    z: float = Z,
    metric: str = "loss",
    splits: tuple[str, str] = ("train", "test"),
    epsilon: float = 0.1,
) -> SamplesNeeded:
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
    SamplesNeeded
        ``finding``, ``variable`` (None for a gap), ``effect``, ``se``, ``z``,
        ``n`` (samples used; the larger split for a gap), ``resolved``,
        ``factor`` (``(z · se / |effect|)²``, inf for a zero effect),
        ``n_needed`` (int, at least 2; None when ``n`` is unknown or the
        effect is zero or missing), ``per_split`` (split → samples needed).

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
    >>> r.resolved, r.n_needed, round(500 * (2 * 0.2 * 2**0.5 / 0.25) ** 2, 1)
    (False, 2560, 2560.0)
    """
    _check_surface(surface, what="samples_needed")
    surface = as_line(surface)  # a path scan (dim t) reads as a line
    z = _check_z(z)
    if finding not in FINDINGS:
        raise InputError(f"finding={finding!r} is not one of {', '.join(map(repr, FINDINGS))}")
    variable = _default_variable(surface) if variable is None else variable
    _values(surface, variable)  # an unknown variable is one clear error
    splits = (str(splits[0]), str(splits[1]))
    r, counts = _measure(surface, finding, variable, z, metric, splits, epsilon)
    effect, se = r.value, r.se
    if se is None:
        what = (f"{f'{splits[0]}_{metric}'!r} and {f'{splits[1]}_{metric}'!r}"
                if finding == "gap" else repr(variable))
        raise InputError(f"samples_needed({finding!r}) needs standard errors, and this surface "
                         f"has none for {what}: " + HOW)
    n = max((c for c in counts.values() if c), default=None)
    said = {"finding": finding, "variable": None if finding == "gap" else variable,
            "effect": effect, "se": se, "z": z, "n": n, "epsilon": float(epsilon),
            "metric": metric, "splits": splits}
    if effect is None or not math.isfinite(effect) or effect == 0:
        return SamplesNeeded(**said, resolved=False, factor=math.inf, n_needed=None,
                             per_split={s: None for s in counts})
    factor = (z * se / abs(effect)) ** 2
    per_split = {s: (max(2, math.ceil(round(c * factor, 6))) if c else None)  # 2560.0000000001
                 for s, c in counts.items()}
    known = [v for v in per_split.values() if v is not None]
    return SamplesNeeded(**said, resolved=bool(abs(effect) > z * se), factor=factor,
                         n_needed=max(known) if known else None, per_split=per_split)
