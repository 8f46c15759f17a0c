"""Every sentence lossmap states about a finding, made in one place.

The analyses return typed findings (:mod:`lossmap.analysis.finding`), numbers
only; this module turns them into words for the HTML report, ``lossmap
info``, the demo's printout and ``summary.json`` alike. No code edits a
sentence after it is made: the coordinate's name (``alpha`` on a line, ``t``
along a path) is a field of the finding's evidence that the words use.

* :func:`sentence` — one finding (any kind) as a sentence, without the
  variable's name (the caller labels it).
* :func:`lines` — ``(level, label, sentence)`` for every statement of a
  :class:`~lossmap.analysis.finding.Findings` (level ``"warn"`` for what
  needs attention).
* :func:`finding_sentences` — the same as ``(label, sentence)`` pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["NOT_MEASURED", "NOT_RESOLVED", "finding_sentences", "lines", "sentence"]

NOT_RESOLVED = "not resolved at this sample size"
NOT_MEASURED = "uncertainty not measured"
HOW = (
    "scan with a loss that has a `reduction` attribute (e.g. torch.nn.CrossEntropyLoss) "
    "or a metric that returns per-sample values, so that lossmap stores the standard error "
    "of every point beside its value"
)
FLAT_WHY = (
    "the directions move nothing the loss depends on here (e.g. LoRA A matrices while "
    "the B matrices are zero: train the adapter first or include B)"
)


# -- shared pieces ------------------------------------------------------------------------
GREEK = {"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "zeta": "ζ"}


def _sym(coordinate: str) -> str:
    """The Greek letter of a direction's coordinate (``alpha`` → ``α`` … ``zeta`` → ``ζ``),
    the name itself otherwise (``t``)."""
    return GREEK.get(coordinate, coordinate)


def _number(v: float | None) -> str:
    if v is None:
        return "nan"
    return "+inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:.6g}"


def _state(state: str, value: float | None, what: str = "the loss") -> str:
    """``"diverged (the loss is +inf there)"`` or ``"is not computed yet"``."""
    if state == "diverged":
        return f"diverged ({what} is {_number(value)} there)"
    return "is not computed yet"


def centre_words(ev: Any, what: str = "the loss") -> str:
    """Why the centre's value cannot be used: ``"diverged at the centre (…)"`` or not computed."""
    if ev.centre == "diverged":
        return f"diverged at the centre ({what} is {_number(ev.centre_value)} there)"
    return "the point at the centre is not computed yet"


def _rule(ev: Any, default: str = "") -> str:
    rule = ev.se_rule or default
    return "s.e." + (f", {rule}" if rule else "")


def _samples(n: int | None, kind: str = "s.e.") -> str:
    return f"{kind}, n={n} samples" if n else kind


def _pm(f: Any, value: float | None = None, kind: str | None = None) -> str:
    """``"0.0031 ± 0.0002 (s.e., n=512 samples), 15 s.e. from zero"`` (no s.e.: the value)."""
    v = f.value if value is None else value
    if f.se is None:
        return f"{v:.3g}"
    return (
        f"{v:.3g} ± {f.se:.2g} ({_samples(f.evidence.n, kind or _rule(f.evidence))}), "
        f"{f.z_score:.3g} s.e. from zero"
    )


def _tail(f: Any) -> str:
    if f.resolved is None:
        return f" ({NOT_MEASURED})"
    if f.resolved:
        return ""
    return f": {NOT_RESOLVED} (within {f.z:g} s.e. of zero)"


def _assumed(ev: Any) -> str:
    return f"round-off assumed from {ev.dtype} eps, not measured"


def _stand_in(ev: Any) -> str | None:
    if ev.stand_in is None:
        return None
    at = ", ".join(f"{d} = {x:.4g}" for d, x in ev.stand_in.items())
    return f"0 is not a grid point; the closest grid point ({at}) is used instead"


def _downhill(slope: float) -> str:
    return "positive" if slope < 0 else "negative"


# -- one sentence per kind ---------------------------------------------------------------
def _slope(f: Any) -> str:
    c, ev = f.evidence.coordinate, f.evidence
    notes = [n for n in (_stand_in(ev),) if n]
    if f.method not in (None, "central"):
        notes.append(
            f"a {f.method} difference is used: a neighbour of {c} = {f.at:.4g} is "
            "missing or off the grid"
        )
    if f.value is None or not math.isfinite(f.value):
        if ev.centre != "finite":
            why = centre_words(ev)
        else:
            why = f"the point at {c} = {f.at:.4g} has no finite neighbour on the grid"
        return "the slope at the centre cannot be formed: " + "; ".join([*notes, why])
    if f.measured:
        said = _pm(f, kind="s.e.")
        if f.resolved:
            text = (
                f"on a slope: dL/dα = {said}; the loss decreases towards {_downhill(f.value)} {c}"
            )
        else:
            text = (
                f"at a stationary point along this direction within the sample's noise: "
                f"dL/dα = {said}, {NOT_RESOLVED} (|slope| <= {f.z:g} s.e.)"
            )
    elif f.stationary:
        text = (
            f"slope {f.value:.3g} at {c} = {f.at:.3g}, at a stationary point along this "
            f"direction (|slope| x span = {abs(f.value) * f.span:.2g} < {f.tol:g} x "
            f"{f.scale:.3g}); the slope's uncertainty was not measured"
        )
    else:
        text = (
            f"slope {f.value:.3g} at {c} = {f.at:.3g}, on a slope: the loss decreases "
            f"towards {_downhill(f.value)} {c}; the slope's uncertainty was not measured"
        )
    return text + "".join(f" ({n})" for n in notes)


def _beyond(f: Any) -> str:
    ev, n = f.evidence, f.n_negative
    s = "s" if n != 1 else ""
    if ev.floor_measured:
        return (
            f"{n} second difference{s} below {-f.bound:.1e}, the measured round-off "
            f"bound (deepest {f.value:.1e}, {f.ratio:.3g}× the measured round-off "
            f"{ev.floor:.1e})"
        )
    return (
        f"{n} second difference{s} beyond round-off (deepest {f.value:.1e}, "
        f"{f.ratio:.3g}× the round-off {ev.floor:.1e}); {_assumed(ev)}"
    )


def _convexity(f: Any) -> str:
    ev = f.evidence
    where = "along this slice" if f.axes is None else "along every grid line of this slice"
    if f.convex is False and f.axes is None:
        text = "this slice is not convex, so the surface is not convex: " + _beyond(f)
    elif f.convex is False:
        a, b = (f.axes[d] for d in ("alpha", "beta"))
        text = (
            "this slice is not convex, so the surface is not convex "
            f"({a.lines_not_convex} of {a.lines} grid lines along alpha and "
            f"{b.lines_not_convex} of {b.lines} along beta have negative second "
            f"differences beyond round-off: {_beyond(f)})"
        )
    elif f.convex is None:
        text = "undetermined: no three consecutive finite points along a grid line"
    elif ev.floor_measured:
        text = (
            f"convex {where}: no second difference below {-f.bound:.1e} "
            "(the measured round-off bound)"
        )
    else:
        text = f"convex {where} (within round-off; {_assumed(ev)})"
    on = f"these n={ev.n} samples" if ev.n else "this scan's samples"
    if ev.split:
        on += f" of the {ev.split} split"
    text += (
        f"; the claim is about the empirical {f.variable.replace('_', ' ')} on {on}: a "
        "non-convex slice of the sample's loss proves that loss non-convex"
    )
    if f.se_ratio is not None and f.value is not None and math.isfinite(f.value):
        text += (
            f"; informative only: the deepest second difference {f.value:.2g} is "
            f"{f.se_ratio:.3g}× the typical s.e. of one point ({f.se_typical:.2g}); the "
            "points share their samples, so a second difference varies far less from "
            "sample to sample than one point does"
        )
    return text


def _minimum(f: Any) -> str:
    if f.lowest is None:
        return f"{f.variable} has no finite point on this slice"
    if f.at_centre:
        text = "the minimum along this slice is at the centre"
    else:
        where = ", ".join(f"{d} = {x:.3g}" for d, x in (f.coords or {}).items())
        if f.value is None:
            text = f"the minimum is off the centre (at {where}); {centre_words(f.evidence)}"
        else:
            text = (
                f"the minimum is off the centre (at {where}), below the centre by "
                f"{_pm(f)}{_tail(f)}"
            )
    note = _stand_in(f.evidence)
    return text + (f" ({note})" if note else "")


def _barrier(f: Any) -> str:
    ev, c = f.evidence, f.evidence.coordinate
    if f.value is None:
        ends = [
            (x, s, v)
            for x, s, v in zip((0, 1), f.end_states, (f.loss_a, f.loss_b), strict=True)
            if s != "finite"
        ]
        why = "; ".join(f"the end model at {c} = {x} {_state(s, v)}" for x, s, v in ends)
        return f"undetermined: {why}"
    if not f.above_roundoff:
        text = ("no barrier: the loss stays on the chord between the end losses, or below it, "
                "within round-off")
    else:
        text = f"a barrier of {f.value:.4g} above the chord at {c} = {f.at:.3g}"
        if f.se is None:
            text += f" ({NOT_MEASURED})"
        else:
            text += (
                f" (± {f.se:.2g}: {_samples(ev.n, _rule(ev, 'conservative'))}; "
                f"{f.z_score:.3g} s.e. from zero"
                + ("" if f.resolved else f": {NOT_RESOLVED}")
                + ")"
            )
    if f.monotone:
        mono = f"it decreases monotonically from {c} = {f.start:g} (the worse end)"
    else:
        mono = (
            f"it is not monotone (it rises by {f.max_rise:.3g} at {c} = {f.rise_at:.3g} "
            f"on the way from the worse end, {c} = {f.start:g})"
        )
    return f"{text}; {mono}" + ("" if ev.floor_measured else f" ({_assumed(ev)})")


def _basin_band(f: Any) -> str:
    if f.se_centre is None:
        return NOT_MEASURED
    lo, hi = f.width_range
    if f.value is None:
        if lo is None:
            return f"within ±{f.z:g} s.e. too, the crossing is beyond the grid"
        return (
            f"within ±{f.z:g} s.e. the width is at least {lo:.4g}; its upper end is beyond the grid"
        )
    if hi is None:
        return (
            f"the width is {f.value:.4g}, but the loss − {f.z:g} s.e. stays within L(c) + δ "
            f"to an end of the grid: {NOT_RESOLVED}"
        )
    low = "—" if lo is None else f"{lo:.4g}"
    return f"within ±{f.z:g} s.e. the width is between {low} and {hi:.4g}"


def _basin(f: Any) -> str:
    a = _sym(f.evidence.coordinate)
    text = f"basin width (δ = {f.delta:g}: distance along {a} from the centre until the loss "
    if f.evidence.centre != "finite":
        return text + f"exceeds L(c) + δ): undetermined, {centre_words(f.evidence)}"

    def side(s: str) -> str:
        dist, at, stop = getattr(f, s), getattr(f, f"{s}_at"), getattr(f, f"{s}_stop")
        if dist is not None:
            return f"{dist:.4g} to the {s} ({a} = {at:.4g})"
        if stop == "missing":
            return (
                f"undetermined to the {s} (a missing point at {a} = "
                f"{getattr(f, f'{s}_missing'):.4g})"
            )
        return f"beyond the scanned range to the {s}"

    text += f"exceeds L(c) + δ = {f.threshold:.5g}): {side('left')}, {side('right')}"
    text += "" if f.value is None else f"; width {f.value:.4g}"
    note = _stand_in(f.evidence)
    return text + f"; {_basin_band(f)}" + (f" ({note})" if note else "")


def _grid_sharpness(f: Any) -> str:
    ev = f.evidence
    units = "(α, β) units" if f.worst is None or len(f.worst) == 2 else "α units"
    if f.worst is not None and len(f.worst) == 1:
        units = f"{_sym(next(iter(f.worst)))} units"
    text = (
        f"ε-sharpness from the scanned grid (ε = {f.epsilon:g} in {units}, no extra "
        "evaluation; a lower bound of the ε-sharpness over all directions, which "
        "lm.sharpness samples by evaluating the model): "
    )
    if ev.centre != "finite":
        return text + f"undetermined, {centre_words(ev)}"
    if f.value is None:
        return text + (
            f"undetermined, no finished grid point other than the centre lies within "
            f"{f.epsilon:g}: take a larger epsilon or a finer grid"
        )
    where = ", ".join(
        f"{_sym(d)} = {v:.3g}"
        for d, v in f.worst.items()
    )
    text += (
        f"rises by at most {f.value:.4g} ({f.relative:.2%} of 1 + L(c)) over the "
        f"{ev.points} grid points within {f.epsilon:g} of the centre, worst at {where}"
    )
    if f.se is None:
        text += f" ({NOT_MEASURED})"
    else:
        text += f"; the rise is {_pm(f)}" + ("" if f.resolved else f": {NOT_RESOLVED}")
    if not f.covered:
        text += "; the disc reaches beyond the grid, only its scanned part counts"
    if f.missing:
        text += f"; {f.missing} points in the disc are missing"
    return text


def _sharpness(f: Any) -> str:
    return (
        f"{f.split} loss rises by at most {f.value:.4g} ({f.relative:.2%} of 1 + L) within "
        f"radius {f.epsilon:g} ({f.norm} norm) over {f.n_directions} sampled directions"
    )


_MEASURES = {"worst": "worst-case", "average": "average-case (Gaussian)",
             "random": "random-direction"}


def _sharpness_measure(f: Any) -> str:
    how = ("adaptive (scaled by |w|)" if f.adaptive else "plain") + (
        f", {f.m}-sharpness" if f.m else "")
    if f.measure == "pac-bayes":
        return (f"PAC-Bayes flatness: Gaussian noise of σ = {_pm(f)} "
                f"({'magnitude-aware' if f.adaptive else 'plain'}) raises "
                f"the {f.split} loss by {f.rho:g} on average (from {_number(f.centre_loss)})")
    ball = f"{'ℓ∞ box' if f.norm == 'linf' else 'ℓ2 ball'} of radius ρ = {f.rho:g}"
    if f.measure == "average":
        ball = f"σ = ρ = {f.rho:g} per weight"
    return (f"{_MEASURES[f.measure]} sharpness, {how}, {ball}: the {f.split} loss rises by "
            f"{_pm(f)} (from {_number(f.centre_loss)} to "
            f"{_number(f.perturbed_loss)}; {f.units} unit{'s' if f.units != 1 else ''})")


def _gap(f: Any) -> str:
    (a, b), m = f.splits, f.variable
    where = (
        "at the centre"
        if f.evidence.stand_in is None
        else "at the grid point closest to the centre"
    )
    if f.value is None:
        why = "; ".join(
            f"the {s} {m} {where} {_state(st, v, f'the {m}')}"
            for s, st, v in zip(f.splits, f.split_states, f.split_values, strict=True)
            if st != "finite"
        )
        return f"{b} {m} − {a} {m}: undetermined, {why}"
    rel = "above" if f.value > 0 else "below" if f.value < 0 else "equal to"
    na, nb = f.split_n
    ns = f"independent samples, n={na} and {nb}" if na and nb else "independent samples"
    body = (
        f"{abs(f.value):.3g}"
        if f.se is None
        else f"{abs(f.value):.3g} ± {f.se:.2g} (s.e., exact: {ns}), {f.z_score:.3g} s.e. from zero"
    )
    return f"{b} {m} is {rel} {a} {m} {where} by {body}{_tail(f)}"


def _convexity_map(f: Any) -> str:
    if not f.interior:
        return "undetermined, no interior point with a full stencil"
    text = (
        f"of {f.interior} interior points, {f.value:.0%} convex, {f.saddle_fraction:.0%} "
        f"saddle, {f.concave_fraction:.0%} concave"
    )
    return text + ("" if f.evidence.floor_measured else f" ({_assumed(f.evidence)})")


def _flatness(f: Any) -> str:
    what = "plane" if f.dims == 2 else "line"
    ev = f.evidence
    rule = "measured" if ev.floor_measured else f"assumed from {ev.dtype} eps"
    if f.flat is None:
        return f"flatness undetermined: fewer than two finite points on this {what}"
    if f.flat:
        return (
            f"the {what} is flat: all {ev.points} values equal {f.level:.6g} to round-off "
            f"(spread {f.value:.2g} <= {f.bound:.2g}, the round-off bound, {rule}): " + FLAT_WHY
        )
    return (
        f"the {what} is not flat: spread {f.value:.3g} beyond the round-off bound "
        f"{f.bound:.2g} ({rule})"
    )


def _what(f: Any) -> str:
    if f.finding == "gap":
        return f"{f.splits[1]} − {f.splits[0]} {f.metric} at the centre"
    label = (f.variable or "").replace("_", " ")
    return {
        "slope": f"the {label} slope at the centre",
        "minimum": f"the {label} minimum's drop below the centre",
        "barrier": f"the {label} barrier",
        "sharpness": f"the {label} ε-sharpness (ε = {f.epsilon:g})",
    }[f.finding]


def _samples_needed(f: Any) -> str:
    what = _what(f)
    if f.effect is None or not math.isfinite(f.effect) or f.effect == 0:
        size = "missing" if f.effect is None or not math.isfinite(f.effect) else "0"
        return f"{what}: the measured effect is {size}: no number of samples resolves it"
    known = [v for v in f.per_split.values() if v is not None]
    size = f"{f.effect:.3g} ± {f.se:.2g} (s.e.{f', n={f.n} samples' if f.n else ''})"
    if f.resolved:
        would = f"about {f.n_needed:,} would do" if known else f"{f.factor:.2g}× as many would do"
        return f"{what}: {size} is resolved at {f.z:g} s.e. ({would})"
    much = (
        f"about {f.n_needed:,} samples"
        + (" per split" if len(f.per_split) > 1 else "")
        + f" ({f.factor:.3g}× the samples used)"
        if known
        else f"{f.factor:.3g}× the samples used"
    )
    return (
        f"{what}: {size} is within {f.z:g} s.e. of zero; {much} would resolve it, if the "
        "effect stays the size measured (s.e. ∝ 1/√n)"
    )


def _topology(f: Any) -> str:
    """Basins (resolved of all), the deepest other basin, and SMAD with its bootstrap s.e."""
    where = lambda c: ", ".join(f"{_sym(d)} = {x:.3g}" for d, x in c.coords.items())  # noqa: E731
    if f.n_basins_se is not None:
        lo, hi = f.n_basins_interval
        count = (f"{f.n_basins} basin(s) resolved of {f.n_minima} minima (deeper than {f.z:g} "
                 f"paired s.e.; bootstrap s.e. {f.n_basins_se:.2g}, 95% {lo:g}–{hi:g})")
    else:
        count = f"{f.n_minima} minima ({NOT_MEASURED}: no depth is judged against noise)"
    others = [b for b in f.basins if math.isfinite(b.depth)]
    deepest = ""
    if others:
        b = others[0]
        deepest = (f"; the deepest other basin is {b.depth:.3g} deep at {where(b.minimum)} "
                   f"({b.share:.1%} of the grid)")
    smad = f"SMAD {_pm(f)}" if f.se is not None else f"SMAD {f.value:.3g} ({NOT_MEASURED})"
    walls = f"; {f.diverged} diverged point(s) count as +inf" if f.diverged else ""
    return f"{count}{deepest}; {smad}{walls}"


def _trace_estimate(f: Any) -> str:
    cost = f"{f.method}, {f.matvecs} matrix-vector products"
    if f.se is None:
        return f"trace ≈ {f.value:.4g} ({cost}; s.e. not measured: one probe)"
    return f"trace ≈ {f.value:.4g} ± {f.se:.2g} (s.e. from {f.probes} probes; {cost})"


def _draw_spread(f: Any) -> str:
    """``height at r = 0.5: 0.12 ± 0.04 (s.d. over 10 draws; ±0.01 s.e. of the mean), …``."""
    name = f.quantity.replace("_", " ") + (f" at r = {f.radius:g}" if f.radius is not None else "")
    if f.value is None or f.sd is None:
        return f"{name}: fewer than two draws with a finite value (no spread over draws)"
    samples = (f"s.e. over samples {f.se_samples:.2g}; the draws make {f.draw_share:.0%} of the "
               "variance" if f.se_samples is not None else f"s.e. over samples {NOT_MEASURED}")
    return (f"{name}: {f.value:.3g} ± {f.sd:.2g} (s.d. over {f.count} draws, itself ± "
            f"{f.sd_se:.1g}; s.e. of the mean {f.se:.2g}); {samples}")


_RENDER: dict[str, Callable[[Any], str]] = {
    "draw_spread": _draw_spread,
    "slope": _slope,
    "convexity": _convexity,
    "minimum": _minimum,
    "barrier": _barrier,
    "basin_width": _basin,
    "grid_sharpness": _grid_sharpness,
    "sharpness": _sharpness,
    "sharpness_measure": _sharpness_measure,
    "gap": _gap,
    "convexity_map": _convexity_map,
    "flatness": _flatness,
    "samples_needed": _samples_needed,
    "topology": _topology,
    "trace_estimate": _trace_estimate,
}
"""The words of each kind of finding (:attr:`Finding.kind`); a new measure adds its own."""


def sentence(finding: Any) -> str:
    """A finding in words, with its numbers and uncertainty (without the variable's name).

    Parameters
    ----------
    finding : Finding or SamplesNeeded
        Any typed finding of :mod:`lossmap.analysis`.

    Returns
    -------
    str

    Examples
    --------
    >>> from lossmap.analysis.finding import Barrier, Evidence
    >>> f = Barrier(variable="train_loss", value=0.5, at=0.5, loss_a=1.0, loss_b=1.0, chord=1.0,
    ...             above_roundoff=True, monotone=False, start=0.0, max_rise=0.1, rise_at=0.3,
    ...             evidence=Evidence(coordinate="t", floor=1e-7, floor_measured=True))
    >>> print(sentence(f))  # doctest: +NORMALIZE_WHITESPACE
    a barrier of 0.5 above the chord at t = 0.5 (uncertainty not measured); it is not monotone
    (it rises by 0.1 at t = 0.3 on the way from the worse end, t = 0)
    """
    render = _RENDER.get(getattr(finding, "kind", None))
    if render is None:
        raise TypeError(f"no sentence for a {type(finding).__name__}")
    return render(finding)


_ORDER = (
    "flatness",
    "slope",
    "convexity",
    "minimum",
    "barrier",
    "basin_width",
    "convexity_map",
    "grid_sharpness",
)


def lines(found: Any, label: Callable[[str], str] = str) -> list[tuple[str, str, str]]:
    """``(level, label, sentence)`` for every statement of ``found``.

    Level ``"warn"`` marks what needs attention (a flat slice, samples needed,
    no standard errors), ``""`` the rest. A minimum at the centre and a slice
    that is not flat are not stated (nothing to say).

    Parameters
    ----------
    found : Findings
        What :func:`lossmap.analysis.findings` returns.
    label : callable, default str
        Variable name → the label shown (the report writes ``"train loss"``).

    Returns
    -------
    list of (str, str, str)
    """
    out: list[tuple[str, str, str]] = []
    for v, e in found.variables.items():
        for kind in _ORDER:
            f = e.get(kind)
            if f is None:
                continue
            if (kind == "minimum" and f.at_centre) or (kind == "flatness" and not f.flat):
                continue
            out.append(("warn" if kind == "flatness" else "", label(v), sentence(f)))
    if found.gap is not None:
        out.append(("", f"{found.gap.splits[0]} vs {found.gap.splits[1]}", sentence(found.gap)))
    out += [("warn", "samples needed", sentence(u)) for u in found.unresolved]
    if not found.standard_errors:
        out.append(
            (
                "warn",
                "uncertainty",
                "this scan stored no standard errors, so no finding "
                "states its sampling uncertainty: " + HOW,
            )
        )
    return out


def finding_sentences(found: Any) -> list[tuple[str, str]]:
    """``(label, sentence)`` for every statement of ``found`` (:func:`lines` without the level).

    Parameters
    ----------
    found : Findings
        What :func:`lossmap.analysis.findings` returns.

    Returns
    -------
    list of (str, str)

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.analysis import findings
    >>> from lossmap.scan.spec import ScanSpec
    >>> from lossmap.surface import Surface
    >>> spec = ScanSpec(grid=((-1, 1, 5),), splits=("train",), metrics=("loss",))
    >>> surf = Surface(spec, {"train_loss": np.full(5, 0.5)}, np.ones(5, bool))
    >>> finding_sentences(findings(surf))[0][1][:40]
    'the line is flat: all 5 values equal 0.5'
    """
    return [(label, text) for _, label, text in lines(found)]
