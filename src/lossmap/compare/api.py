""":func:`compare`: several models' surfaces side by side on one scale, with their findings."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..draws.compare import has_draws, spread_columns
from ..errors import InputError, InputTypeError
from ..plot import common as C
from ..surface import Surface, load
from .draw import draw_comparison
from .page import comparison_page, png_base64
from .rule import check_same_rule
from .scale import SharedScale, shared_scale
from .table import ComparisonTable, _check_given, findings_table

__all__ = ["Comparison", "compare"]

FILES = {
    "png": "comparison.png",
    "html": "comparison.html",
    "json": "comparison.json",
    "markdown": "comparison.md",
}
"""The files :func:`compare` writes into ``out``."""


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` returns.

    Attributes
    ----------
    names : list of str
        The models, the reference (of the differences) first.
    variable : str
    scale : SharedScale
        The colour scale, levels and ranges every panel shares.
    table : ComparisonTable
        Each model's findings (``.to_dict()``, ``.to_markdown()``).
    figure : matplotlib.figure.Figure
        The comparison figure (made without pyplot).
    paths : dict of str to Path
        The files written (``"png"``, ``"html"``, ``"json"``, ``"markdown"``);
        empty when ``out`` was None.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> r = compare([Surface(spec, {"train_loss": k * a**2}, np.ones(21, bool)) for k in (1, 2)],
    ...             names=["flat", "sharp"])
    >>> r.names, r.paths, sorted(r.to_dict())
    (['flat', 'sharp'], {}, ['names', 'paths', 'scale', 'table', 'variable'])
    """

    names: list[str]
    variable: str
    scale: SharedScale
    table: ComparisonTable
    figure: Any
    paths: dict[str, Path]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the names, variable, scale, table and the files written."""
        return {
            "names": list(self.names),
            "variable": self.variable,
            "scale": self.scale.to_dict(),
            "table": self.table.to_dict(),
            "paths": {k: str(v) for k, v in self.paths.items()},
        }

    def _repr_markdown_(self) -> str:
        return self.table.to_markdown()


def _surfaces(surfaces: Any, names: Any) -> tuple[list[Surface], list[str]]:
    if isinstance(surfaces, Mapping):
        if names is not None:
            raise InputError(
                "names= was given with a dict of surfaces: the dict's keys are the "
                "names; pass one or the other"
            )
        names, surfaces = list(surfaces), list(surfaces.values())
    if isinstance(surfaces, (str, os.PathLike, Surface)) or not isinstance(surfaces, Sequence):
        raise InputTypeError(
            "surfaces must be a list (or a dict name -> surface) of two or more Surfaces or "
            f"store paths, got {type(surfaces).__name__}"
        )
    if len(surfaces) < 2:
        raise InputError(f"compare needs two or more surfaces, got {len(surfaces)}")
    out, default = [], []
    for i, s in enumerate(surfaces):
        if isinstance(s, (str, os.PathLike)):
            out.append(load(s))
            default.append(Path(s).stem)
        elif isinstance(s, Surface):
            out.append(s)
            default.append(Path(s.path).stem if s.path else f"model {i + 1}")
        else:
            raise InputTypeError(
                f"surfaces[{i}] is a {type(s).__name__}: pass a Surface "
                "(lm.scan, lm.load) or a store path"
            )
    if names is None:
        names = default
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InputTypeError(f"names={names!r} must be a list of strings, one per surface")
    names = [str(n) for n in names]
    if len(names) != len(out):
        raise InputError(f"{len(names)} names for {len(out)} surfaces: give one name per surface")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(
            f"the name {dup!r} is given twice: give each model its own name (names=[...])"
        )
    return out, names


def _check_options(levels: Any, delta: Any, epsilon: Any) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 3:
        raise InputError(f"levels={levels!r} must be an int >= 3 (the contour levels)")
    for name, v in (("delta", delta), ("epsilon", epsilon)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
            raise InputError(f"{name}={v!r} must be a positive number")


def _write(
    out: str | os.PathLike, result: Comparison, surfaces: list[Surface], title: str
) -> dict[str, Path]:
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(
            f"out={str(folder)!r} is a file: name a folder; compare writes "
            f"{', '.join(FILES.values())} into it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    paths = {k: folder / v for k, v in FILES.items()}
    result.figure.savefig(paths["png"], dpi=130, bbox_inches="tight", facecolor="white")
    page = comparison_page(
        surfaces, result.names, result.scale, result.table, png_base64(result.figure), title=title
    )
    paths["html"].write_text(page, encoding="utf-8")
    paths["json"].write_text(
        json.dumps(result.to_dict() | {"paths": {k: str(v) for k, v in paths.items()}}, indent=1),
        encoding="utf-8",
    )
    paths["markdown"].write_text(result.table.to_markdown() + "\n", encoding="utf-8")
    return paths


def compare(
    surfaces: Any,
    variable: str = "train_loss",
    *,
    names: Sequence[str] | None = None,
    log: bool = False,
    difference: bool = True,
    findings: Mapping[str, Any] | None = None,
    out: str | os.PathLike | None = None,
    levels: int = 30,
    delta: float = 0.1,
    epsilon: float = 0.1,
    cmap: str = "viridis",
    title: str = "lossmap comparison",
) -> Comparison:
    """Draw several models' surfaces side by side on one colour scale, with their findings.

    Every surface must be scanned by the same rule (grid, direction kind,
    normalization and seed, data, loss, dtype, BatchNorm mode): only the
    model may differ, else :class:`~lossmap.errors.InputError` names what
    differs and how to fix it. Planes are drawn as filled contours with the
    same levels, norm, colour map and axis ranges; lines with the same y
    range. Equal values are drawn in equal colours in every panel.

    Parameters
    ----------
    surfaces : list of (Surface or str or PathLike), or dict of str to them
        Two or more lines or planes (``lm.scan``, ``lm.load``) or store paths;
        a dict's keys are the names. The first is the reference of the
        differences.
        Scanned with ``draws=K`` (dims ``draw, alpha[, beta]``): the median
        draw is drawn, and the table gives each number's mean ± s.d. over the
        draws and whether each model's difference from the reference exceeds
        the draw-to-draw spread (:mod:`lossmap.draws.compare`).
    variable : str, default "train_loss"
        The variable drawn and tabled.
    names : list of str, optional
        One per surface (default: the store's file stem, or ``model i``).
    log : bool, default False
        Draw the loss above the common minimum, ``L − min + floor``, on a
        logarithmic colour scale (a log y axis for lines), so the basin is
        not one colour under the corners' heights.
    difference : bool, default True
        Add each model − the reference on one diverging scale.
    findings : dict of str to finding(s), optional
        Per model name: precomputed findings for the table, e.g.
        ``{"SAM": [lm.sharpness(...), ...]}`` (a finding, a list, or a dict
        of column label to finding; an object with ``.value`` and ``.se`` or
        its ``to_dict()``).
    out : str or PathLike, optional
        A folder: writes ``comparison.png``, ``comparison.html`` (one
        self-contained page), ``comparison.json`` and ``comparison.md``.
    levels : int, default 30
        Number of contour levels.
    delta : float, default 0.1
        δ of the basin widths (loss units).
    epsilon : float, default 0.1
        ε of a plane's grid ε-sharpness ((α, β) units).
    cmap : str, default "viridis"
        Colour map of the panels.
    title : str, default "lossmap comparison"
        Title of the HTML page.

    Returns
    -------
    Comparison
        ``figure``, ``paths``, ``table`` (``.to_dict()``,
        ``.to_markdown()``) and ``scale`` (the shared levels, norm and ranges).

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 11), (-1, 1, 11)), splits=("train",), metrics=("loss",))
    >>> a, b = np.meshgrid(*spec.coords(), indexing="ij")
    >>> done = np.ones((11, 11), bool)
    >>> flat = Surface(spec, {"train_loss": a**2 + b**2}, done)
    >>> sharp = Surface(spec, {"train_loss": 3 * (a**2 + b**2)}, done)
    >>> r = compare({"flat": flat, "sharp": sharp}, levels=7)
    >>> r.scale.vmin, r.scale.vmax, r.scale.levels.tolist()
    (0.0, 6.0, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    >>> r.table.text("flat", "grid minimum"), r.scale.diff_limit
    ('0', 4.0)

    From stores on disk, with a log scale and the files written:

    >>> r = compare(["sgd.lossmap", "sam.lossmap"], names=["SGD", "SAM"],
    ...             log=True, out="compare/")  # doctest: +SKIP
    """
    import matplotlib

    surfs, names = _surfaces(surfaces, names)
    _check_options(levels, delta, epsilon)
    if not isinstance(log, bool) or not isinstance(difference, bool):
        raise InputTypeError("log= and difference= must be True or False")
    if cmap not in matplotlib.colormaps:
        raise InputError(f"cmap={cmap!r} is not a matplotlib colour map, e.g. 'viridis'")
    for s, n in zip(surfs, names, strict=True):
        C.check_variable(s, variable, f"compare ({n})")
    check_same_rule(surfs, names)
    if has_draws(surfs):  # K draws (lm.scan(draws=K)): the median draw drawn, the spread tabled
        surfs, over = spread_columns(surfs, names, variable, delta=delta)
        given = _check_given(findings, names)
        findings = {n: {**given.get(n, {}), **over[n]} for n in names}
    ranges = tuple((a.lo, a.hi) for a in surfs[0].spec.grid)
    scale = shared_scale(
        [s[variable] for s in surfs],
        variable,
        log=log,
        levels=levels,
        ranges=ranges,
        cmap=cmap,
        difference=difference,
    )
    table = findings_table(surfs, names, variable, given=findings, delta=delta, epsilon=epsilon)
    fig = draw_comparison(surfs, names, scale, difference=difference)
    result = Comparison(
        names=names, variable=variable, scale=scale, table=table, figure=fig, paths={}
    )
    if out is not None:
        result.paths.update(_write(out, result, surfs, title))
    return result
