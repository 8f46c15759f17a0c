"""MkDocs hooks: the pages and figures that are generated, never written by hand.

- ``cli.md``: the command-line reference, from lossmap's real argparse parsers
  (``gen_cli.py`` beside this file).
- ``img/demo/*.png`` and ``demo/report.html``: the figures and the report of
  ``lossmap demo``, made at build time by the demo's own code on a tiny run
  (scikit-learn's 8×8 digits, which ship with scikit-learn; nothing is
  downloaded), and the run's numbers in place of ``<!-- demo-summary -->`` in
  ``demo.md``.

Registered in ``mkdocs.yml`` under ``hooks:``; MkDocs imports this file with its
folder on ``sys.path``, so ``gen_cli`` is found.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from gen_cli import cli_markdown
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.lossmap")

CLI_PAGE = "cli.md"
DEMO_PAGE = "demo.md"
DEMO_MARK = "<!-- demo-summary -->"
# The tiny run: the demo's own settings but digits, small grids and subsets (about
# 15 s on two CPU cores). The figures are the demo's, not the full run's numbers.
DEMO_SETTINGS = {"epochs": 10, "line_points": 21, "plane_points": 15, "samples": 256}
DEMO_KEEP = {".png": "img/demo/", "report.html": "demo/"}

_summary: dict[str, Any] = {}


def _demo_files(config: Any) -> list[File]:
    """Run the demo on digits in a temporary folder; its PNGs and report as site files."""
    import matplotlib
    import torch

    matplotlib.use("Agg")
    from lossmap.demo import DemoSettings, run_demo

    started = time.perf_counter()
    files = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny CNN: one thread is as fast, and robust on a busy machine
    try:
        with tempfile.TemporaryDirectory(prefix="lossmap-docs-") as tmp:
            summary = run_demo(tmp, settings=DemoSettings(**DEMO_SETTINGS), dataset="digits",
                               progress=False)
            for path in sorted(Path(tmp).iterdir()):
                for suffix, folder in DEMO_KEEP.items():
                    if path.name.endswith(suffix):
                        files.append(File.generated(config, folder + path.name,
                                                    content=path.read_bytes()))
    finally:
        torch.set_num_threads(threads)
    _summary.clear()
    _summary.update(summary)
    log.info("the demo's figures were made in %.1f s", time.perf_counter() - started)
    return files


def on_files(files: Files, config: Any) -> Files:
    """Add the generated CLI page and the demo's figures to the site's files."""
    files.append(File.generated(config, CLI_PAGE, content=cli_markdown()))
    for f in _demo_files(config):
        files.append(f)
    return files


def _summary_markdown(summary: dict[str, Any]) -> str:
    """The tiny run's settings, final losses and line findings as Markdown."""
    s = summary["settings"]
    lines = [
        f"This build trained the demo's CNN on **{summary['dataset']}** for {s['epochs']} "
        f"epochs (SGD, lr {s['lr']:g}, momentum {s['momentum']:g}, batches of "
        f"{s['batch_size']}, seed {s['seed']}), then scanned lines of {s['line_points']} "
        f"points and planes of {s['plane_points']}×{s['plane_points']} points, "
        f"α, β ∈ [−{s['span']:g}, {s['span']:g}], each point on a fixed subset of "
        f"{s['samples']} train and {s['samples']} test samples, in "
        f"{summary['seconds']:.0f} s.",
        "",
        "| run | train loss | test loss | test accuracy |",
        "|---|---|---|---|",
    ]
    for tag, fin in summary["final"].items():
        lines.append(f"| θ̂ ({tag}) | {fin['train_loss']:.4f} | {fin['test_loss']:.4f} | "
                     f"{100 * fin['test_accuracy']:.1f} % |")
    lines += ["", "What `lossmap.analysis` found on the lines:", ""]
    for tag, res in summary["lines"].items():
        for var, r in res.items():
            lines.append(f"- around **{tag}**, {var.replace('_', ' ')}: L(0) = "
                         f"{r['centre']:.4f}; {r['slope'].split(': ', 1)[-1]}; "
                         f"{r['convexity']}")
    lines += ["", "Where these settings depart from the original example:", ""]
    lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Put the tiny run's numbers into the demo page."""
    if page.file.src_uri == DEMO_PAGE and DEMO_MARK in markdown:
        return markdown.replace(DEMO_MARK, _summary_markdown(_summary))
    return markdown
