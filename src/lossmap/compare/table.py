"""The table of each model's findings: the numbers :mod:`lossmap.analysis` states, side by side.

Per model: the variable at the centre, the grid minimum, the basin width
(along α for a line; along the α and β lines through the centre for a
plane), the ε-sharpness read off a plane's grid, the train-test gap, and any
sharpness measures given (``lm.sharpness`` findings, or their ``to_dict()``),
each with its standard error where one exists. Nothing is recomputed: the
numbers are those of :func:`lossmap.analysis.findings`,
:func:`~lossmap.analysis.basin_width` and the findings passed in, and the
words are :func:`lossmap.analysis.render.sentence`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.evidence import findings as all_findings
from ..analysis.finding import plain
from ..analysis.geometry import basin_width
from ..analysis.render import sentence
from ..analysis.summary import minimum
from ..errors import InputError, InputTypeError
from ..surface import Surface

__all__ = ["ComparisonTable", "findings_table"]


@dataclass(frozen=True)
class ComparisonTable:
    """Each model's findings as one row of numbers, with the sentences behind them.

    Attributes
    ----------
    columns : list of str
        Column labels after the model's name.
    rows : list of dict
        One per model: ``{"model": name, "cells": {column: {"value", "se"}}}``
        (``se`` None where not measured, ``value`` None where undetermined).
    sentences : dict of str to list of (str, str)
        Per model, ``(column, sentence)`` of every finding in its row.

    Examples
    --------
    >>> t = ComparisonTable(columns=["sharpness"], rows=[
    ...     {"model": "SGD", "cells": {"sharpness": {"value": 0.0123, "se": 0.0004}}},
    ...     {"model": "SAM", "cells": {"sharpness": {"value": 0.0061, "se": None}}}])
    >>> print(t.to_markdown())
    | model | sharpness |
    |---|---:|
    | SGD | 0.0123 ± 0.0004 |
    | SAM | 0.0061 |
    """

    columns: list[str]
    rows: list[dict[str, Any]]
    sentences: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def cell(self, model: str, column: str) -> dict[str, float | None]:
        """``{"value", "se"}`` of one cell."""
        for r in self.rows:
            if r["model"] == model:
                return r["cells"].get(column, {"value": None, "se": None})
        raise KeyError(f"no model {model!r}; the table has {', '.join(self.models)}")

    @property
    def models(self) -> list[str]:
        """The models' names, in order."""
        return [r["model"] for r in self.rows]

    def text(self, model: str, column: str) -> str:
        """One cell as printed: ``"0.0123 ± 0.0004"``, ``"0.0123"`` or ``"—"``."""
        c = self.cell(model, column)
        if c["value"] is None:
            return "—"
        return f"{c['value']:.4g}" + ("" if c["se"] is None else f" ± {c['se']:.2g}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the columns, the rows and the sentences."""
        return {
            "columns": list(self.columns),
            "rows": plain(self.rows),
            "sentences": {m: [list(x) for x in s] for m, s in self.sentences.items()},
        }

    def to_markdown(self) -> str:
        """The table in Markdown (a pipe table), one row per model."""
        head = ["model", *self.columns]
        out = [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(self.columns)) + "|",
        ]
        for m in self.models:
            out.append("| " + " | ".join([m, *(self.text(m, c) for c in self.columns)]) + " |")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_markdown()


def _slice(surface: Surface, dim: int) -> Surface:
    """The line of a plane through its centre (or the grid point closest) along ``dim``."""
    other = 1 - dim
    c = surface.coords[surface.dims[other]]
    k = int(np.argmin(np.abs(c)))
    take = (slice(None), k) if dim == 0 else (k, slice(None))
    sp = surface.spec
    dirs = (sp.directions[dim],) if len(sp.directions) == 2 else ()
    spec = dataclasses.replace(sp, grid=(sp.grid[dim],), directions=dirs)

    def cut(d: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
        return None if d is None else {v: np.asarray(a)[take] for v, a in d.items()}

    return dataclasses.replace(
        surface,
        spec=spec,
        values=cut(surface.values),
        done=np.asarray(surface.done)[take],
        errors=cut(surface.errors),
        paired=cut(surface.paired),
        slopes=None,
    )


def _cell(value: Any, se: Any = None) -> dict[str, float | None]:
    return {
        "value": None if value is None else float(value),
        "se": None if se is None else float(se),
    }


def _given(f: Any, where: str) -> tuple[dict[str, float | None], str | None]:
    """A given finding's cell and sentence: an object with ``.value``, or a dict with "value"."""
    if isinstance(f, Mapping):
        if "value" not in f:
            raise InputError(
                f"{where} is a dict without 'value': pass a finding (e.g. of "
                "lm.sharpness) or its to_dict()"
            )
        return _cell(f["value"], f.get("se")), f.get("sentence")
    if not hasattr(f, "value"):
        raise InputTypeError(
            f"{where} is a {type(f).__name__}: pass a finding with .value "
            "(e.g. of lm.sharpness) or a dict with 'value' and 'se'"
        )
    try:
        said = sentence(f)
    except TypeError:  # a finding kind without a sentence
        said = None
    return _cell(f.value, getattr(f, "se", None)), said


def _label(f: Any, i: int) -> str:
    """A column label for a finding given in a list: its measure, kind and radius."""
    get = f.get if isinstance(f, Mapping) else (lambda k, d=None: getattr(f, k, d))
    what = get("measure") or get("kind") or f"finding {i + 1}"
    rho = get("rho")
    what = f"{what} sharpness" if get("measure") else str(what)
    return f"{what} (ρ = {rho:g})" if isinstance(rho, (int, float)) and rho else what


def _check_given(given: Any, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise InputTypeError(
            f"findings must be a dict of model name to its findings, got {type(given).__name__}"
        )
    unknown = [k for k in given if k not in names]
    if unknown:
        raise InputError(
            f"findings names {unknown[0]!r}, which is not one of the models "
            f"({', '.join(names)}): use the names given in names="
        )
    out: dict[str, dict[str, Any]] = {}
    for model, fs in given.items():
        if isinstance(fs, Mapping) and "value" not in fs:
            out[model] = dict(fs)
        elif isinstance(fs, Sequence) and not isinstance(fs, str):
            out[model] = {_label(f, i): f for i, f in enumerate(fs)}
        else:
            out[model] = {_label(fs, 0): fs}
    return out


def findings_table(
    surfaces: Sequence[Surface],
    names: Sequence[str],
    variable: str,
    *,
    given: Any = None,
    delta: float = 0.1,
    epsilon: float = 0.1,
) -> ComparisonTable:
    """The findings of each model, one row each.

    Parameters
    ----------
    surfaces : sequence of Surface
        Scanned by one rule.
    names : sequence of str
    variable : str
        The variable whose centre, minimum, basin width and sharpness are shown.
    given : dict of str to findings, optional
        Per model name: a finding, a list of findings (columns labelled by
        their measure and ρ) or a dict of column label to finding; a finding
        is an object with ``.value`` (and ``.se``), e.g. of ``lm.sharpness``,
        or its ``to_dict()``.
    delta : float, default 0.1
        δ of the basin widths (loss units).
    epsilon : float, default 0.1
        ε of a plane's grid ε-sharpness.

    Returns
    -------
    ComparisonTable

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> spec = ScanSpec(grid=((-1, 1, 21),), splits=("train",), metrics=("loss",))
    >>> a = spec.coords()[0]
    >>> lines = [Surface(spec, {"train_loss": k * np.abs(a)}, np.ones(21, bool)) for k in (1, 4)]
    >>> given = {"narrow": {"sharpness": {"value": 2.0, "se": 0.1}}}
    >>> t = findings_table(lines, ["wide", "narrow"], "train_loss", given=given)
    >>> t.columns
    ['at the centre', 'grid minimum', 'basin width', 'sharpness']
    >>> t.text("wide", "basin width"), t.text("narrow", "basin width")
    ('0.2', '0.05')
    """
    extra = _check_given(given, names)
    plane = len(surfaces[0].dims) == 2
    rows, said = [], {}
    columns: list[str] = []

    def put(row: dict, notes: list, column: str, cell: dict, text: str | None) -> None:
        if column not in columns:
            columns.append(column)
        row[column] = cell
        if text:
            notes.append((column, text))

    for s, name in zip(surfaces, names, strict=True):
        found = all_findings(s, delta=delta, epsilon=epsilon)
        per = found.variables.get(variable) or {"minimum": minimum(s, variable)}
        cells: dict[str, Any] = {}
        notes: list[tuple[str, str]] = []
        put(cells, notes, "at the centre", _cell(s.summary()[variable]["centre"]), None)
        mn = per["minimum"]
        put(cells, notes, "grid minimum", _cell(mn.lowest), sentence(mn))
        widths = (
            [("basin width along α", _slice(s, 0)), ("basin width along β", _slice(s, 1))]
            if plane
            else [("basin width", s)]
        )
        for column, line in widths:
            bw = per.get("basin_width") if not plane else None
            if bw is None:  # a plane: the line through its centre along α, or along β
                bw = basin_width(line, variable, delta)
                ev = dataclasses.replace(bw.evidence, coordinate=column[-1])
                bw = dataclasses.replace(bw, evidence=ev)
            put(cells, notes, column, _cell(bw.value), sentence(bw))
        gs = per.get("grid_sharpness")
        if gs is not None:
            put(
                cells,
                notes,
                f"grid ε-sharpness (ε = {epsilon:g})",
                _cell(gs.value, gs.se),
                sentence(gs),
            )
        if found.gap is not None:
            g = found.gap
            put(
                cells,
                notes,
                f"{g.splits[1]} − {g.splits[0]} gap",
                _cell(g.value, g.se),
                sentence(g),
            )
        for column, f in extra.get(name, {}).items():
            cell, text = _given(f, f"findings[{name!r}][{column!r}]")
            put(cells, notes, str(column), cell, text)
        rows.append({"model": name, "cells": cells})
        said[name] = notes
    return ComparisonTable(columns=columns, rows=rows, sentences=said)
