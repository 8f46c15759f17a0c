"""Where lossmap's views draw: never onto a figure drawn earlier (issue 21 item 6).

A view called without ``ax=`` makes a new figure; :func:`lossmap.plot.save`
closes what it saved; the interactive line view's ±2 s.e. bands take their
own line's colour.
"""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import lossmap.plot as lp
from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

pytestmark = pytest.mark.usefixtures("close_figures")


def _line(lo: float = -1.0, hi: float = 1.0, n: int = 21, errors: bool = False) -> Surface:
    spec = ScanSpec(grid=(Axis(lo, hi, n),), splits=("train", "test"), metrics=("loss",))
    a = spec.coords()[0]
    values = {"train_loss": 0.3 + a**2, "test_loss": 0.5 + 0.8 * a**2}
    se = {k: np.full(n, 0.02) for k in values} if errors else None
    return Surface(spec, values, np.ones(n, bool), errors=se)


def _plane() -> Surface:
    spec = ScanSpec(
        grid=(Axis(-1, 1.5, 11), Axis(-1, 1.5, 9)), splits=("train",), metrics=("loss",)
    )
    A, B = np.meshgrid(*spec.coords(), indexing="ij")
    meta = {
        "path": [[-0.8, 0.6], [-0.3, 0.2], [0.0, 0.0]],
        "models": {"a": [0.0, 0.0], "b": [1.0, 0.0]},
        "curve": [[0.0, 0.0], [0.5, 0.5], [1.0, 0.0]],
    }
    return Surface(spec, {"train_loss": 1 + A**2 + 2 * B**2}, np.ones(spec.shape, bool), meta=meta)


# every Axes-level view of lossmap.plot, with arguments it draws
VIEWS = {
    "plot_line": lambda ax: lp.plot_line(_line(), ax=ax),
    "plot_history": lambda ax: lp.plot_history(
        {"train_loss": [1.0, 0.5], "train_accuracy": [0.5, 0.8]}, ax=ax
    ),
    "plot_contour": lambda ax: lp.plot_contour(_plane(), ax=ax),
    "plot_contourf": lambda ax: lp.plot_contourf(_plane(), ax=ax),
    "plot_heatmap": lambda ax: lp.plot_heatmap(_plane(), ax=ax),
    "plot_surface3d": lambda ax: lp.plot_surface3d(_plane(), ax=ax),
    "plot_eigenvalues": lambda ax: lp.plot_eigenvalues([3.0, 1.0], ax=ax),
    "plot_density": lambda ax: lp.plot_density([0.0, 1.0, 2.0], [0.2, 1.0, 0.1], ax=ax),
    "plot_convexity_map": lambda ax: lp.plot_convexity_map(_plane(), ax=ax),
    "plot_gradient": lambda ax: lp.plot_gradient(_plane(), ax=ax, step=2),
    "plot_path": lambda ax: lp.plot_path(_plane(), ax=ax),
    "plot_models": lambda ax: lp.plot_models(_plane(), ax=ax),
    "plot_annotations": lambda ax: lp.plot_annotations(_plane(), ax=ax),
    "plot_barrier": lambda ax: lp.plot_barrier(_line(-0.5, 1.5, 21), ax=ax),
    "curve_on_plane": lambda ax: lp.curve_on_plane(_plane(), ax=ax),
    "plot_persistence": lambda ax: lp.plot_persistence(_topology(), ax=ax),
    "plot_barcode": lambda ax: lp.plot_barcode(_topology(), ax=ax),
    "plot_merge_tree": lambda ax: lp.plot_merge_tree(_topology(), ax=ax),
    "plot_profile": lambda ax: lp.plot_profile(_topology(), ax=ax),
    "plot_eos": lambda ax: lp.plot_eos(
        {"steps": [0, 10, 20], "lambda_max": [5.0, 15.0, 19.5], "two_over_lr": [20.0] * 3}, ax=ax
    ),
}


def _topology():
    import lossmap as lm

    return lm.topology(np.array([1.0, 0.0, 2.0, 0.5, 3.0, -0.5, 1.0]), bootstrap=0)


def _contents(fig) -> list[tuple]:
    """Per axes of ``fig``: its artists counted by kind and its legend's entries."""
    out = []
    for ax in fig.axes:
        legend = ax.get_legend()
        out.append(
            (
                ax.name,
                len(ax.lines),
                len(ax.collections),
                len(ax.images),
                len(ax.patches),
                len(ax.texts),
                None if legend is None else [t.get_text() for t in legend.get_texts()],
            )
        )
    return out


def test_every_view_is_in_the_table():
    axes_views = {n for n in lp.__all__ if n.startswith("plot_") or n == "curve_on_plane"}
    # whole figures (fig=), not Axes views
    axes_views -= {"plot_barrier_matrix", "plot_slices"}
    assert axes_views == set(VIEWS)


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_two_views_in_a_row_without_ax_draw_two_separate_figures(name):
    draw = VIEWS[name]
    kind = "3d" if name == "plot_surface3d" else None
    reference = _contents(draw(plt.figure().add_subplot(projection=kind)).figure)
    # an unrelated figure drawn earlier, current when the views are called
    other, other_ax = plt.subplots()
    other_ax.plot([0, 1], [0, 1], label="mine")
    other_ax.legend()
    before = _contents(other)

    first = draw(None).figure
    second = draw(None).figure
    assert len({id(first), id(second), id(other)}) == 3
    assert _contents(other) == before  # nothing drawn onto it, no second legend
    assert _contents(first) == reference  # each holds exactly what the view draws
    assert _contents(second) == reference


def test_the_docs_pattern_twice_writes_two_clean_files(tmp_path):
    paths = []
    for i, draw in enumerate((VIEWS["plot_contourf"], VIEWS["plot_line"], VIEWS["plot_line"])):
        ax = draw(None)
        paths.append(lp.save(ax, tmp_path / f"{i}.png"))
        assert plt.get_fignums() == []  # save closed the figure it wrote
    assert all(p.stat().st_size > 0 for p in paths)


def test_save_closes_only_the_figure_it_saved(tmp_path):
    keep, _ = plt.subplots()
    ax = lp.plot_heatmap(_plane())
    assert ax.figure.number in plt.get_fignums()
    lp.save(ax, tmp_path / "h.svg")
    assert plt.get_fignums() == [keep.number]
    lp.save(ax.figure, tmp_path / "again.png")  # a closed Figure can still be written
    assert (tmp_path / "again.png").stat().st_size > 0


def test_save_of_a_subfigure_writes_and_closes_its_root(tmp_path):
    fig = plt.figure()
    sub = fig.subfigures(1, 2)[0]
    lp.plot_line(_line(), ax=sub.add_subplot())
    lp.save(sub, tmp_path / "s.png")
    assert fig.number not in plt.get_fignums()


def _band_colours(fig) -> list[tuple[str, str, str]]:
    """(line colour, upper band's colour, lower band's fill colour) per variable."""
    out = []
    for trace in fig.data:
        if trace.showlegend is False or trace.name.endswith("s.e."):
            continue
        upper, lower = (t for t in fig.data if t.name == f"{trace.name} ± 2 s.e.")
        assert lower.fill == "tonexty"
        out.append((trace.line.color, upper.line.color, lower.fillcolor))
    return out


def test_interactive_bands_take_their_own_lines_colour():
    fig = lp.line_figure(_line(errors=True))
    colours = _band_colours(fig)
    assert len(colours) == 2
    for line, upper, fill in colours:
        assert line is not None and line == upper == fill
    assert colours[0][0] != colours[1][0]  # two variables, two colours


def test_interactive_band_follows_a_colour_the_user_gives():
    fig = lp.line_figure(_line(errors=True), "test_loss", line_color="crimson")
    assert _band_colours(fig) == [("crimson", "crimson", "crimson")]


def test_interactive_bands_added_to_a_figure_with_lines_take_the_next_colours():
    fig = lp.line_figure(_line(errors=True), "train_loss")
    s = _line(errors=True)
    lp.line_figure(
        dataclasses.replace(s, values={k: v + 1 for k, v in s.values.items()}), "test_loss", fig=fig
    )
    (c1, *_), (c2, *_) = _band_colours(fig)
    assert c1 != c2
