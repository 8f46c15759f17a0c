"""The demo's planes over K direction draws: the median draw, the draws' figure, the spread.

``lossmap demo --draws K`` scans each plane over K draws of its directions
(``lm.scan(..., draws=K)``); by default only the plane at θ̂ is repeated
(K = 3), as the planes are most of the demo's time. The demo's figures and
findings of a K-draw plane are its median draw's
(:func:`lossmap.draws.compare.median_draw`, by the train loss's peak, as the
report chooses it); :func:`draw_figures` adds the draws' picture and
:func:`spread_summary` the numbers of :func:`lossmap.over_draws` for
``summary.json``. The report shows the spread itself
(:mod:`lossmap.report.draws`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .draws import over_draws, plot_draw_planes
from .draws.compare import median_draw

__all__ = ["draw_figures", "median_of", "spread_summary"]

VARIABLES = ("train_loss", "test_loss")


def median_of(surface: Any) -> Any:
    """The median draw of a K-draw surface (by the train loss's peak); any other as it is."""
    if getattr(surface.spec, "draws", None) is None:
        return surface
    return surface.isel(draw=median_draw(over_draws(surface, VARIABLES[0])))


def spread_summary(planes: dict[str, Any]) -> dict[str, Any]:
    """``{"plane_<tag>": {variable: {number: DrawSpread.to_dict() + sentence}}}`` per K-draw plane.

    Parameters
    ----------
    planes : dict of str to Surface
        The demo's planes by tag; those of one draw are left out.

    Returns
    -------
    dict
        JSON-safe; each number's ``sentence`` is
        :func:`lossmap.analysis.render.sentence`'s.
    """
    from .analysis.render import sentence

    out: dict[str, Any] = {}
    for tag, surf in planes.items():
        if surf.spec.draws is None:
            continue
        out[f"plane_{tag}"] = {
            "draws": surf.spec.draws["count"],
            **{
                v: {
                    name: {**f.to_dict(), "sentence": sentence(f)}
                    for name, f in over_draws(surf, v).items()
                }
                for v in VARIABLES
            },
        }
    return out


def draw_figures(out: Path, planes: dict[str, Any]) -> list[Path]:
    """``plane_<tag>_draws.png`` (:func:`lossmap.draws.plot_draw_planes`) per K-draw plane."""
    written = []
    for tag, surf in planes.items():
        if surf.spec.draws is None:
            continue
        path = out / f"plane_{tag}_draws.png"
        plot_draw_planes(surf, VARIABLES[0]).savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)
    return written
