"""The ``lossmap plot`` command: draw a store as PNG, SVG, PDF or self-contained HTML.

``lossmap plot STORE [--kind KIND] [--metric NAME] -o FILE``

* ``--kind`` ``line`` (a line store), ``contour``, ``contourf``, ``heatmap``,
  ``surface`` (a plane store) or ``html`` (the interactive page: 3D surfaces
  and contour maps of a plane, or the line). Default: ``line`` for a line,
  ``contourf`` for a plane (``html`` when FILE ends in ``.html``).
* ``--metric`` a variable (``train_loss``) or a metric (``loss``: one curve or
  panel per split). Default ``loss``.
* ``-o FILE`` the format follows the suffix: ``.png``, ``.svg``, ``.pdf`` draw
  with matplotlib; ``.html`` writes the plotly version of the kind.

This module imports neither matplotlib nor plotly until :func:`run` draws.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..plot import common as C
from ..surface import Surface
from .options import add_out
from .outputs import add_overwrite, check_out_file

KINDS = ("line", "contour", "contourf", "heatmap", "surface", "html")
PLANE_KINDS = ("contour", "contourf", "heatmap", "surface")
HTML = (".html", ".htm")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``plot`` subcommand to ``subparsers`` (from ``add_subparsers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``plot`` parser; :func:`run` takes the namespace it parses.

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="lossmap")
    >>> _ = add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["plot", "s.lossmap", "--kind", "heatmap", "-o", "s.png"])
    >>> args.kind, args.output
    ('heatmap', 's.png')
    """
    p = subparsers.add_parser(
        "plot",
        help="draw a store: line, contour, contourf, heatmap, surface or html",
        description="Draw a store as PNG, SVG, PDF (matplotlib) or self-contained HTML "
        "(plotly); the format follows the suffix of -o.",
    )
    p.add_argument("path", metavar="STORE", help="a store written by `lossmap scan`")
    p.add_argument(
        "--kind",
        choices=KINDS,
        help="line (a line store); contour, contourf, heatmap, surface (a plane store); html "
        "(interactive page). Default: line for a line, contourf for a plane",
    )
    p.add_argument(
        "--metric",
        help="a variable such as train_loss, or a metric such as loss (one curve or panel "
        "per split; the default)",
    )
    add_out(p, dest="output", required=True, old=True, help="FILE.png, .svg, .pdf or .html")
    p.add_argument("--log", action="store_true", help="log scale (loss axis or colours)")
    p.add_argument("--accuracy", action="store_true", help="line: accuracy on a twin axis as well")
    p.add_argument("--title", help="figure title (default: the store's file name)")
    p.add_argument("--dpi", type=int, default=150, help="resolution of PNG output (default 150)")
    add_overwrite(p)
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def _variables(surface: Surface, metric: str | None) -> list[str]:
    if metric is None:
        return C.loss_variables(surface)
    if metric in surface.values:
        return [metric]
    if metric in surface.spec.metrics:
        return [f"{s}_{metric}" for s in surface.spec.splits]
    raise InputError(
        f"--metric {metric!r} is not in this store: use a variable "
        f"({', '.join(surface.values)}) or a metric ({', '.join(surface.spec.metrics)})"
    )


def _check_kind(surface: Surface, kind: str | None, suffix: str) -> str:
    line = C.kind_of(surface) == "line"
    if kind is None:
        return "html" if suffix in HTML else "line" if line else "contourf"
    if kind not in KINDS:
        raise InputError(f"--kind {kind!r} must be one of {', '.join(KINDS)}")
    if kind in PLANE_KINDS and line:
        raise InputError(
            f"--kind {kind} needs a plane (2 directions); this store is a line: "
            "use --kind line (or html)"
        )
    if kind == "line" and not line:
        raise InputError(
            "--kind line needs a line (1 direction); this store is a plane: use --kind "
            "contour, contourf, heatmap, surface or html"
        )
    return kind


def _html(surface: Surface, kind: str, names: list[str], out: Path, title: str) -> None:
    from ..plot import interactive as web

    if kind in ("line", "html") and C.kind_of(surface) == "line":
        figs = [web.line_figure(surface, names)]
    elif kind == "html":
        figs = [web.surface_figure(surface, names), web.contour_figure(surface, names)]
    elif kind == "surface":
        figs = [web.surface_figure(surface, names)]
    else:
        style = "heatmap" if kind == "heatmap" else "contour"
        figs = [web.contour_figure(surface, names, style=style)]
    if kind != "surface" and C.kind_of(surface) == "plane":  # a path and models stored with it
        from ..plot.paths import annotate_plotly

        annotate_plotly(figs[-1], surface, len(names))
    for f in figs:
        f.update_layout(title={"text": title})
    web.to_html(figs, out, title=title)


def _static(
    surface: Surface, kind: str, names: list[str], out: Path, title: str, args: Any
) -> None:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # a command draws to files only: no window, no display needed
    import matplotlib.pyplot as plt

    from .. import plot as views

    if kind == "line":
        fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
        views.plot_line(
            surface,
            names,
            ax=ax,
            log=bool(getattr(args, "log", False)),
            accuracy=bool(getattr(args, "accuracy", False)),
        )
        ax.set_title(title)
    else:
        fig = views.figure_planes(
            surface, variables=names, kind=kind, log=bool(getattr(args, "log", False)), title=title
        )
        if kind != "surface":  # a path and models stored with the plane
            from ..plot.paths import plot_annotations

            for ax in fig.axes:
                if ax.get_label() != "<colorbar>":
                    plot_annotations(surface, ax=ax)
    dpi = getattr(args, "dpi", None) or 150
    if not isinstance(dpi, int) or dpi < 10:
        raise InputError(f"--dpi {dpi!r} must be an integer >= 10")
    try:
        views.save(fig, out, dpi=dpi)
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Draw the store ``args.path`` into ``args.output``; returns the exit status (0).

    Parameters
    ----------
    args : argparse.Namespace
        As parsed by the parser of :func:`add_parser`: ``path``, ``kind``,
        ``metric``, ``output``, ``log``, ``accuracy``, ``title``, ``dpi`` (all
        but ``path`` and ``output`` optional).

    Returns
    -------
    int
        0 on success; bad input raises :class:`lossmap.errors.InputError`.
    """
    from ..surface import load

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in (*C.SUFFIXES, *HTML):
        raise InputError(
            f"-o {args.output!r}: the file must end in .png, .svg, .pdf (a picture) "
            "or .html (interactive)"
        )
    if getattr(args, "kind", None) == "html" and suffix not in HTML:
        raise InputError(f"--kind html writes an HTML page: use -o FILE.html, not {out.name!r}")
    check_out_file(out, overwrite=bool(getattr(args, "overwrite", False)))
    # A store still being written, or stopped early, is drawn whole from the
    # coarse-to-fine points finished so far, and the title says so.
    surface = load(args.path).filled()
    kind = _check_kind(surface, getattr(args, "kind", None), suffix)
    names = _variables(surface, getattr(args, "metric", None))
    title = getattr(args, "title", None) or Path(args.path).name
    part = surface.meta.get("partial")
    if part:
        title += f" (partial: {part['done']}/{part['points']} points, interpolated)"
    if suffix in HTML:
        _html(surface, kind, names, out, title)
    else:
        _static(surface, kind, names, out, title, args)
    print(f"wrote {out}")
    return 0
