"""The report's statements of uncertainty: the gap, samples needed, what a verdict is about.

Each helper returns the sentences the report adds beside its figures, read
from :mod:`lossmap.analysis` (nothing here computes a finding of its own).
"""

from __future__ import annotations

from typing import Any

from ..analysis.evidence import findings
from ..surface import Surface

__all__ = ["band_note", "convexity_text", "sample_findings"]


def convexity_text(r: dict[str, Any]) -> str:
    """A convexity verdict, what it is about (the sample's loss), and its noise comparison."""
    return "; ".join(x for x in (r["verdict"], r.get("scope"), r.get("noise")) if x)


def sample_findings(surface: Surface, delta: float, epsilon: float) -> list[tuple[str, str, str]]:
    """(css class, label, sentence): the train-test gap, and the samples that would resolve
    each unresolved finding (:func:`lossmap.analysis.samples_needed`)."""
    found = findings(surface, delta=delta, epsilon=epsilon)
    out = []
    if found["gap"]:
        out.append(("", "train vs test", found["gap"]["verdict"]))
    out += [("warn", "samples needed", u["message"]) for u in found["unresolved"]]
    if not found["standard_errors"]:
        out.append(("warn", "uncertainty", (
            "this scan stored no standard errors, so no finding states its sampling "
            "uncertainty: scan with a loss that has a `reduction` attribute (e.g. "
            "torch.nn.CrossEntropyLoss) or a metric returning per-sample values")))
    return out


def band_note(surface: Surface, names: list[str]) -> str:
    """The figure caption's words on the error bands ("" when no variable drawn has them)."""
    if surface.errors is None or not any(v in surface.errors for v in names):
        return ""
    return (" Shaded: ±2 standard errors of each point (the sampling noise of its mean over "
            "the scan's samples).")
