"""Typed findings: each analysis returns a small frozen dataclass, never a sentence.

A :class:`Finding` holds numbers only: ``value`` (the effect: the number its
standard error ``se`` is of and that ``resolved`` judges against ``z · se``),
the standard error, whether it is resolved at this sample size, and its
:class:`Evidence` (grid points read, samples behind each value, the round-off
floor, the coordinate's name). Each kind adds its own fields, one name per
quantity. The sentences that state a finding are made in one place,
:mod:`lossmap.analysis.render`, for the report, ``lossmap info``, the demo's
printout and ``summary.json`` alike.

New measures (curvature estimates, topology, …) subclass :class:`Finding`
with a ``kind`` and their fields, and add one function to the renderer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Barrier",
    "BasinWidth",
    "Convexity",
    "ConvexityAxis",
    "ConvexityMap",
    "Evidence",
    "Finding",
    "Findings",
    "Flatness",
    "Gap",
    "GridSharpness",
    "Minimum",
    "SamplesNeeded",
    "Sharpness",
    "SharpnessMeasure",
    "Slope",
    "plain",
]

_KEEP = 64  # arrays up to this size are kept in to_dict (as lists); larger ones are left out


def plain(x: Any) -> Any:
    """``x`` with only JSON-safe values: non-finite floats → None, arrays → lists or dropped."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return x.to_dict() if hasattr(x, "to_dict") else plain(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items() if not _big(v)}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _big(v: Any) -> bool:
    return isinstance(v, np.ndarray) and (v.ndim > 1 or v.size > _KEEP)


class Fields:
    """``to_dict()`` and read-only subscript access by field name (``r["se"]`` = ``r.se``)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe data (``kind`` first; large arrays left out)."""
        out: dict[str, Any] = {}
        if getattr(self, "kind", None):
            out["kind"] = self.kind  # type: ignore[attr-defined]
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if not _big(v):
                out[f.name] = plain(v)
        if isinstance(self, Finding):
            out["z_score"] = plain(self.z_score)
        return out

    def __getitem__(self, key: str) -> Any:
        names = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        if key in names or key == "z_score":
            return getattr(self, key)
        raise KeyError(
            f"{type(self).__name__} has no field {key!r}; its fields are {', '.join(names)}"
        )

    def __iter__(self) -> Iterator[Any]:
        # Without this, ``for x in r`` would fall back on __getitem__(0) and fail obscurely.
        raise TypeError(
            f"a {type(self).__name__} is not a sequence: read its fields "
            f"(r.value, r.se, r.evidence) or r.to_dict()"
        )


@dataclass(frozen=True, kw_only=True)
class Evidence(Fields):
    """What a finding rests on.

    Attributes
    ----------
    coordinate : str
        The name of the line's coordinate: ``"alpha"``, or ``"t"`` along a path.
    points : int or None
        Grid points (or second differences, for convexity) the finding read.
    skipped : int
        Of those it needed, how many were not finite (missing or diverged).
    n : int or None
        Samples behind each value (None if unknown).
    split : str or None
        The split the variable is of.
    floor : float or None
        The round-off of one value: measured (``Surface.roundoff``) or
        assumed from the dtype's eps (``floor_measured`` False); None where
        the finding does not use it.
    floor_measured : bool
    dtype : str
        The scan's dtype (the assumed round-off's eps).
    se_rule : str or None
        How ``se`` was had: ``"exact"``, ``"paired"``, ``"paired, conservative"``
        or ``"conservative"`` (:mod:`lossmap.analysis.uncertainty`).
    centre : str
        The value at the centre: ``"finite"``, ``"diverged"`` (computed, not
        finite) or ``"missing"`` (not computed yet).
    centre_value : float or None
        The value there (+inf where it diverged).
    stand_in : dict of str to float, or None
        Where the centre is not a grid point: the grid point used instead.
    """

    coordinate: str = "alpha"
    points: int | None = None
    skipped: int = 0
    n: int | None = None
    split: str | None = None
    floor: float | None = None
    floor_measured: bool = False
    dtype: str = "float32"
    se_rule: str | None = None
    centre: str = "finite"
    centre_value: float | None = None
    stand_in: dict[str, float] | None = None


@dataclass(frozen=True, kw_only=True)
class Finding(Fields):
    """One statement about a surface, as numbers.

    Attributes
    ----------
    kind : str
        The finding's kind (class attribute): ``"slope"``, ``"barrier"``, …
    variable : str
        E.g. ``"train_loss"``.
    value : float or None
        The effect: the number ``se`` is the standard error of (None when it
        cannot be formed).
    se : float or None
        Its standard error (None where not measured).
    z : float
        Standard errors an effect must exceed to be resolved.
    resolved : bool or None
        ``|value| > z · se``; None where not measured or not applicable.
    evidence : Evidence
    """

    kind: ClassVar[str] = "finding"
    variable: str
    value: float | None
    se: float | None = None
    z: float = 2.0
    resolved: bool | None = None
    evidence: Evidence = field(default_factory=Evidence)

    @property
    def z_score(self) -> float | None:
        """``|value| / se`` (None without both)."""
        if self.se is None or self.value is None or not math.isfinite(self.value):
            return None
        if self.se > 0:
            return abs(self.value) / self.se
        return math.inf if self.value else 0.0

    def sentence(self) -> str:
        """The finding in words (:func:`lossmap.analysis.render.sentence`)."""
        from .render import sentence

        return sentence(self)


@dataclass(frozen=True, kw_only=True)
class Slope(Finding):
    """The slope of a line at its centre (``value``: dL/dα, measured or the grid's difference).

    ``at`` is the coordinate where it is taken; ``stationary`` True, False, or
    None (undetermined); ``measured`` says whether ``value`` is the scan's
    per-sample derivative (with ``se``) or the grid's ``difference``;
    ``method`` ``"central"``, ``"forward"``, ``"backward"`` or None;
    ``curvature`` and ``vertex`` from a central difference; ``tol``, ``span``
    and ``scale`` of the fixed rule (used where not measured).
    """

    kind: ClassVar[str] = "slope"
    at: float = 0.0
    step: float | None = None
    method: str | None = None
    stationary: bool | None = None
    difference: float | None = None
    measured: bool = False
    curvature: float | None = None
    vertex: float | None = None
    tol: float = 1e-2
    span: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True, kw_only=True)
class ConvexityAxis(Fields):
    """The second differences of a plane's grid lines along one dimension."""

    lines: int
    lines_not_convex: int
    n_negative: int
    checked: int
    skipped: int
    deepest: float | None
    min_curvature: float | None
    step: float


@dataclass(frozen=True, kw_only=True)
class Convexity(Finding):
    """Convexity of a line, or of every grid line of a plane, beyond round-off.

    ``value`` is the deepest (most negative) second difference in loss units;
    ``convex`` True, False or None (nothing to check); ``n_negative`` second
    differences below the bound out of ``evidence.points`` checked
    (``evidence.skipped`` needed a missing point); ``min_curvature`` =
    value / step²; ``bound`` the measured round-off bound (None where
    assumed: it then varies with L); ``ratio`` = −value / floor; a line has
    ``at`` (where the deepest sits) and ``violating`` (where each negative
    one sits), a plane ``axes`` (per dimension). ``se_typical`` and
    ``se_ratio`` compare with one point's standard error (informative only:
    they do not decide).
    """

    kind: ClassVar[str] = "convexity"
    convex: bool | None = None
    n_negative: int = 0
    min_curvature: float | None = None
    step: float | None = None
    bound: float | None = None
    ratio: float | None = None
    at: float | None = None
    violating: tuple[float, ...] = ()
    axes: dict[str, ConvexityAxis] | None = None
    se_typical: float | None = None
    se_ratio: float | None = None


@dataclass(frozen=True, kw_only=True)
class Minimum(Finding):
    """The grid minimum (``value``: its drop below the centre, ``L(c) − lowest``).

    ``lowest`` the minimum's value, ``coords`` and ``index`` where it is,
    ``at_centre`` (ties count as at the centre).
    """

    kind: ClassVar[str] = "minimum"
    lowest: float | None = None
    coords: dict[str, float] | None = None
    index: tuple[int, ...] | None = None
    at_centre: bool = False


@dataclass(frozen=True, kw_only=True)
class Barrier(Finding):
    """The barrier of an interpolation line or a path (``value``: the height above the chord).

    ``at`` where it sits (in ``evidence.coordinate``: α or t); ``loss_a``,
    ``loss_b`` the ends' losses; ``chord`` the chord there;
    ``above_roundoff`` whether the height passes the round-off bound (else
    "no barrier"); ``peak_over_ends``; ``monotone`` (None: undetermined),
    ``start`` (the worse end), ``max_rise`` and ``rise_at`` (the largest
    step up walking from it); ``end_states`` (each end's ``"finite"``,
    ``"diverged"`` or ``"missing"``).
    """

    kind: ClassVar[str] = "barrier"
    at: float | None = None
    loss_a: float | None = None
    loss_b: float | None = None
    chord: float | None = None
    above_roundoff: bool | None = None
    peak_over_ends: float | None = None
    monotone: bool | None = None
    start: float | None = None
    max_rise: float | None = None
    rise_at: float | None = None
    end_states: tuple[str, str] = ("finite", "finite")


@dataclass(frozen=True, kw_only=True)
class BasinWidth(Finding):
    """How far the loss stays within ``L(c) + delta`` each way (``value``: the width).

    ``left``, ``right`` (None: no crossing), ``left_at``, ``right_at`` (the
    crossings), ``left_stop``, ``right_stop`` (``"crossed"``, ``"missing"``
    — a missing point first, at ``left_missing`` / ``right_missing`` — or
    ``"end"`` of the grid); with standard errors ``se_centre`` and the
    ``[narrowest, widest]`` distances the noise allows (``left_range``,
    ``right_range``, ``width_range``); ``resolved``: the widest is on the grid.
    """

    kind: ClassVar[str] = "basin_width"
    delta: float = 0.1
    threshold: float | None = None
    left: float | None = None
    right: float | None = None
    left_at: float | None = None
    right_at: float | None = None
    left_stop: str | None = None
    right_stop: str | None = None
    left_missing: float | None = None
    right_missing: float | None = None
    se_centre: float | None = None
    left_range: tuple[float | None, float | None] | None = None
    right_range: tuple[float | None, float | None] | None = None
    width_range: tuple[float | None, float | None] | None = None


@dataclass(frozen=True, kw_only=True)
class GridSharpness(Finding):
    """ε-sharpness read off a scanned grid (``value``: the worst rise within ε of the centre).

    ``relative`` = value / (1 + |L(c)|), ``worst`` (dim → coordinate),
    ``epsilon``, ``covered`` (the disc lies within the grid), ``missing``
    (non-finite points in the disc); ``evidence.points`` the finite ones.
    """

    kind: ClassVar[str] = "grid_sharpness"
    relative: float | None = None
    worst: dict[str, float] | None = None
    epsilon: float = 0.1
    covered: bool = True
    missing: int = 0


@dataclass(frozen=True, kw_only=True)
class Sharpness(Finding):
    """ε-sharpness sampled by evaluating the model (``value``: the worst rise found).

    ``relative``, ``centre_value``, ``per_direction`` (each direction's worst
    rise), ``worst`` (``{"direction": i, "alpha": α}``), ``epsilon``, ``norm``,
    ``split``, ``n_directions``, ``evaluations``.
    """

    kind: ClassVar[str] = "sharpness"
    relative: float | None = None
    centre_value: float | None = None
    per_direction: tuple[float, ...] = ()
    worst: dict[str, float] | None = None
    epsilon: float = 0.1
    norm: str = "unit"
    split: str = "data"
    n_directions: int = 0
    evaluations: int = 0


@dataclass(frozen=True, kw_only=True)
class SharpnessMeasure(Finding):
    """A sharpness measure of :func:`lossmap.sharpness` (``value``: the rise, or σ for PAC-Bayes).

    ``measure`` ("worst", "average", "pac-bayes", "random"), ``rho``,
    ``norm``, ``adaptive``, ``m``; ``centre_loss`` (L at the centre),
    ``perturbed_loss`` (L at the point found, the mean over the draws for
    "average", at σ for "pac-bayes"), ``direction`` (the perturbation δ
    found, a :class:`~lossmap.directions.Direction`: ``lm.scan`` at α = 1
    reaches the point found; None for "pac-bayes"), ``units`` (the batches
    or draws ``se`` is over), ``gradient_evaluations`` and ``evaluations``
    (forward passes over a unit), ``steps``, ``restarts``, ``draws``,
    ``split``, ``per_unit`` (each unit's rise, first 64).
    """

    kind: ClassVar[str] = "sharpness_measure"
    measure: str = "worst"
    rho: float = 0.0
    norm: str = "l2"
    adaptive: bool = True
    m: int | None = None
    centre_loss: float | None = None
    perturbed_loss: float | None = None
    direction: Any = field(default=None, repr=False)
    units: int = 1
    gradient_evaluations: int = 0
    evaluations: int = 0
    steps: int = 0
    restarts: int = 0
    draws: int = 0
    split: str = "data"
    per_unit: tuple[float, ...] = ()

    @property
    def perturbation(self) -> Any:
        """The perturbation found (= ``direction``)."""
        return self.direction

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe data; the direction as its norm, size and fingerprint."""
        out = super().to_dict()
        d = self.direction
        out["direction"] = None if d is None else {
            "norm": float(d.norm()), "tensors": len(d),
            "values": int(sum(t.numel() for t in d.values())), "fingerprint": d.fingerprint()}
        return out


@dataclass(frozen=True, kw_only=True)
class Gap(Finding):
    """The gap between two splits at the centre (``value``: ``b − a``); ``variable`` the metric.

    ``splits`` (a, b), ``split_values`` their values, ``split_n`` their
    samples, ``split_states`` (``"finite"``, ``"diverged"``, ``"missing"``),
    ``coords`` where. The splits are independent: ``se`` is exact.
    """

    kind: ClassVar[str] = "gap"
    splits: tuple[str, str] = ("train", "test")
    split_values: tuple[float, float] = (math.nan, math.nan)
    split_n: tuple[int | None, int | None] = (None, None)
    split_states: tuple[str, str] = ("finite", "finite")
    coords: dict[str, float] | None = None


@dataclass(frozen=True, kw_only=True)
class ConvexityMap(Finding):
    """The 2×2 discrete Hessian of a plane at every interior point (``value``: convex fraction).

    Arrays of shape (n_alpha, n_beta), NaN on the border and where a stencil
    point is missing: ``lambda_min``, ``lambda_max``, ``ratio`` (|λmin/λmax|),
    ``classes`` (1 convex, 0 saddle, −1 concave), ``hessian`` (…, 2, 2),
    ``valid``; ``alpha``, ``beta`` the coordinates; the fractions of the
    ``interior`` valid points.
    """

    kind: ClassVar[str] = "convexity_map"
    saddle_fraction: float | None = None
    concave_fraction: float | None = None
    interior: int = 0
    alpha: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    beta: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    hessian: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    lambda_min: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    lambda_max: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    ratio: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    classes: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    valid: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def convex_fraction(self) -> float | None:
        """The fraction of interior points that are convex (= ``value``)."""
        return self.value


@dataclass(frozen=True, kw_only=True)
class Flatness(Finding):
    """Whether every value of a slice is equal to round-off (``value``: the spread max − min).

    ``flat`` True when the spread is within ``bound`` (twice the round-off
    of one value, times the safety), None without two finite points;
    ``dims`` 1 (a line) or 2 (a plane); ``level`` the value they share.
    """

    kind: ClassVar[str] = "flatness"
    flat: bool | None = None
    bound: float | None = None
    dims: int = 1
    level: float | None = None


@dataclass(frozen=True, kw_only=True)
class SamplesNeeded(Fields):
    """How many samples would resolve a finding, if its effect stays the size measured.

    ``finding`` the kind asked about, ``effect`` and ``se`` as measured on
    ``n`` samples, ``factor`` = (z · se / |effect|)², ``n_needed`` (None when
    ``n`` is unknown or the effect is zero or missing), ``per_split``;
    ``epsilon``, ``metric`` and ``splits`` say what was measured.
    """

    kind: ClassVar[str] = "samples_needed"
    finding: str
    variable: str | None
    effect: float | None
    se: float
    z: float
    n: int | None
    resolved: bool
    factor: float
    n_needed: int | None
    per_split: dict[str, int | None]
    epsilon: float = 0.1
    metric: str = "loss"
    splits: tuple[str, str] = ("train", "test")

    def sentence(self) -> str:
        """The answer in words (:func:`lossmap.analysis.render.sentence`)."""
        from .render import sentence

        return sentence(self)


@dataclass(frozen=True, kw_only=True)
class Findings(Fields):
    """Every finding about one surface (:func:`lossmap.analysis.findings`).

    ``variables`` maps each loss variable to its findings by kind (``"slope"``,
    ``"convexity"``, ``"flatness"``, ``"minimum"``, ``"barrier"``,
    ``"basin_width"``, ``"convexity_map"``, ``"grid_sharpness"``); ``gap`` the
    train-test gap (None without both splits); ``unresolved`` what more
    samples would resolve each unresolved finding; ``z``, ``samples`` (split
    → n), ``standard_errors`` (some were stored), ``roundoff`` (the measured
    floor per variable, or None).
    """

    z: float
    samples: dict[str, int | None] | None
    standard_errors: bool
    roundoff: dict[str, float] | None
    variables: dict[str, dict[str, Finding]]
    gap: Gap | None = None
    unresolved: tuple[SamplesNeeded, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: each finding's ``to_dict()`` plus its rendered ``"sentence"``."""
        from .render import sentence

        def one(f: Any) -> dict[str, Any]:
            return {**f.to_dict(), "sentence": sentence(f)}

        return {
            "z": self.z,
            "samples": plain(self.samples),
            "standard_errors": self.standard_errors,
            "roundoff": plain(self.roundoff),
            "variables": {v: {k: one(f) for k, f in e.items()} for v, e in self.variables.items()},
            "gap": None if self.gap is None else one(self.gap),
            "unresolved": [one(u) for u in self.unresolved],
        }

    def __iter__(self) -> Iterator[Fields]:
        """Every finding: each variable's (in order), then the gap and what more samples need."""
        for per_variable in self.variables.values():
            yield from per_variable.values()
        if self.gap is not None:
            yield self.gap
        yield from self.unresolved

    def lines(self) -> list[tuple[str, str, str]]:
        """``(level, label, sentence)`` of every statement (see :mod:`.render`)."""
        from .render import lines

        return lines(self)
