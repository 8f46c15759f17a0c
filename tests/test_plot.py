"""lossmap.plot: every kind draws, labels, masks missing points, keeps orientation, writes files."""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from matplotlib.colors import LogNorm
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

import lossmap as lm
import lossmap.plot as lp
from lossmap.cli import plot as plot_cli
from lossmap.errors import InputError
from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

NA, NB = 21, 15
NAN_AT = (16, 3)  # a missing point of the plane fixture: alpha = 0.6, beta = -4/7
PLANE_FUNCS = {
    "contour": lp.plot_contour,
    "contourf": lp.plot_contourf,
    "heatmap": lp.plot_heatmap,
    "surface": lp.plot_surface3d,
}


pytestmark = pytest.mark.usefixtures("close_figures")


def make_line(n: int = 21) -> Surface:
    spec = ScanSpec(grid=(Axis(-1, 1, n),), splits=("train", "test"), metrics=("loss", "accuracy"))
    a = spec.coords()[0]
    values = {
        "train_loss": 0.3 + a**2,
        "test_loss": 0.4 + 0.9 * a**2,
        "train_accuracy": 0.9 - 0.5 * a**2,
        "test_accuracy": 0.85 - 0.5 * a**2,
    }
    return Surface(spec, values, np.ones(spec.shape, bool))


def make_plane(values=None, nan: bool = True) -> Surface:
    spec = ScanSpec(
        grid=(Axis(-1, 1, NA), Axis(-1, 1, NB)), splits=("train", "test"), metrics=("loss",)
    )
    A, B = np.meshgrid(*spec.coords(), indexing="ij")  # (NA, NB): values[i, j] at (a_i, b_j)
    if values is None:
        values = {"train_loss": 0.3 + A**2 + 2 * B**2, "test_loss": 0.4 + A**2 + 1.5 * B**2}
        if nan:
            values["train_loss"][NAN_AT] = np.nan
    return Surface(spec, values, np.ones(spec.shape, bool))


@pytest.fixture
def line_surface() -> Surface:
    return make_line()


@pytest.fixture
def plane_surface() -> Surface:
    return make_plane()


def new_ax(kind: str = "2d"):
    fig = plt.figure(figsize=(4, 3))
    return fig.add_subplot(projection="3d") if kind == "surface" else fig.add_subplot()


# -- the contract ----------------------------------------------------------------
def test_plot_line_returns_the_axes_labelled_with_a_legend(line_surface):
    ax = new_ax()
    out = lp.plot_line(line_surface, ax=ax)
    assert out is ax
    assert ax.get_xlabel() == "α" and ax.get_ylabel() == "loss"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]
    # the centre: a vertical line at alpha = 0 and a point on each curve at L(0)
    xs = [tuple(np.atleast_1d(line.get_xdata())) for line in ax.get_lines()]
    assert xs.count((0.0, 0.0)) == 1  # axvline
    centre_points = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 1]
    assert sorted(float(ln.get_ydata()[0]) for ln in centre_points) == [0.3, 0.4]


def test_plot_line_defaults_to_a_new_figure_not_the_current_axes(line_surface):
    plt.figure()
    ax = plt.gca()
    assert lp.plot_line(line_surface).figure is not ax.figure


def test_plot_line_accuracy_on_a_twin_axis_and_log(line_surface):
    ax = new_ax()
    lp.plot_line(line_surface, ax=ax, accuracy=True, log=True)
    assert ax.get_yscale() == "log"
    twin = ax.figure.axes[-1]
    assert twin is not ax and twin.get_ylabel() == "accuracy"
    labels = [t.get_text() for t in twin.get_legend().get_texts()]
    assert labels == ["train loss", "test loss", "train accuracy", "test accuracy"]
    assert all(ln.get_linestyle() == "--" for ln in twin.get_lines() if len(ln.get_xdata()) > 1)


def test_caller_kwargs_override_defaults(line_surface, plane_surface):
    ax = lp.plot_line(line_surface, ax=new_ax(), color="k", linewidth=4)
    curves = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    assert all(ln.get_color() == "k" and ln.get_linewidth() == 4 for ln in curves)
    ax = lp.plot_contourf(plane_surface, ax=new_ax(), cmap="magma", colorbar=False)
    cs = next(c for c in ax.collections if isinstance(c, ContourSet))
    assert cs.cmap.name == "magma"
    ax = lp.plot_heatmap(plane_surface, ax=new_ax(), cmap="magma", interpolation="bilinear")
    im = ax.get_images()[0]
    assert im.cmap.name == "magma" and im.get_interpolation() == "bilinear"
    ax = lp.plot_contour(plane_surface, ax=new_ax(), levels=[0.5, 1.0, 2.0], linewidths=3)
    cs = next(c for c in ax.collections if isinstance(c, ContourSet))
    assert list(cs.levels) == [0.5, 1.0, 2.0]
    ax = lp.plot_surface3d(plane_surface, ax=new_ax("surface"), cmap="magma")
    assert next(c for c in ax.collections if isinstance(c, Poly3DCollection)).cmap.name == "magma"


@pytest.mark.parametrize("kind", list(PLANE_FUNCS))
def test_plane_kinds_return_the_axes_labelled_with_the_centre(kind, plane_surface):
    ax = new_ax(kind)
    out = PLANE_FUNCS[kind](plane_surface, "test_loss", ax=ax, colorbar=True)
    assert out is ax
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("α", "β")
    assert ax.get_title() == "test loss"
    assert len(ax.figure.axes) == 2  # the colorbar
    if kind == "surface":
        assert ax.get_zlabel() == "test loss"
        assert ax.collections[-1].get_label() == "centre"
    else:
        star = [ln for ln in ax.get_lines() if ln.get_label() == "centre"]
        assert len(star) == 1 and list(star[0].get_xydata()[0]) == [0.0, 0.0]


def test_colorbar_defaults(plane_surface):
    for fn, expected in [(lp.plot_contour, 1), (lp.plot_contourf, 2), (lp.plot_heatmap, 2)]:
        ax = new_ax()
        fn(plane_surface, ax=ax)
        assert len(ax.figure.axes) == expected, fn.__name__


def test_log_levels(plane_surface):
    ax = lp.plot_contourf(plane_surface, ax=new_ax(), log=True, levels=12)
    cs = next(c for c in ax.collections if isinstance(c, ContourSet))
    assert len(cs.levels) == 12
    ratios = cs.levels[1:] / cs.levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0])
    negative = make_plane({"train_loss": -np.ones((NA, NB)), "test_loss": np.ones((NA, NB))})
    with pytest.raises(ValueError, match="log=True needs positive values"):
        lp.plot_contourf(negative, ax=new_ax(), log=True)


# -- missing points --------------------------------------------------------------
def test_nan_points_are_masked_in_the_heatmap(plane_surface):
    ax = lp.plot_heatmap(plane_surface, ax=new_ax())
    arr = ax.get_images()[0].get_array()
    assert isinstance(arr, np.ma.MaskedArray) and arr.shape == (NB, NA)
    assert arr.mask.sum() == 1 and arr.mask[NAN_AT[1], NAN_AT[0]]


@pytest.mark.parametrize("fn", [lp.plot_contour, lp.plot_contourf])
def test_nan_points_are_masked_in_contours(fn, plane_surface):
    ax = fn(plane_surface, ax=new_ax())
    cs = next(c for c in ax.collections if isinstance(c, ContourSet))
    a, b = plane_surface.coords["alpha"], plane_surface.coords["beta"]
    missing = (a[NAN_AT[0]], b[NAN_AT[1]])
    # nothing is drawn through, or next to, the missing point …
    for path in cs.get_paths():
        if fn is lp.plot_contourf:  # (a contour line ring may enclose it: only filled areas count)
            assert not path.contains_point(missing)
        if len(path.vertices):
            d = np.hypot(path.vertices[:, 0] - missing[0], path.vertices[:, 1] - missing[1])
            assert d.min() > 0.5 * min(a[1] - a[0], b[1] - b[0])
    if fn is lp.plot_contourf:
        # … while a finite point elsewhere is covered
        assert any(p.contains_point((-0.45, 0.3)) for p in cs.get_paths())


def test_nan_points_are_masked_in_the_3d_surface(plane_surface):
    ax = lp.plot_surface3d(plane_surface, ax=new_ax("surface"))
    coll = next(c for c in ax.collections if isinstance(c, Poly3DCollection))
    assert coll.get_array().size == (NA - 1) * (NB - 1) - 4  # one value per quad; 4 touch it
    assert np.isfinite(coll.get_array()).all()


def test_nan_points_break_the_line(line_surface):
    line_surface.values["train_loss"][5] = np.nan
    ax = lp.plot_line(line_surface, ax=new_ax())
    y = ax.get_lines()[0].get_ydata()
    assert np.isnan(y[5]) and np.isfinite(np.delete(y, 5)).all()


# -- orientation -------------------------------------------------------------------
def _low_cell_surface(i: int, j: int) -> Surface:
    low = np.ones((NA, NB))
    low[i, j] = 0.0
    return make_plane({"train_loss": low, "test_loss": low.copy()})


def test_heatmap_orientation_low_cell_is_drawn_at_its_coordinates():
    i, j = 17, 3  # alpha = 0.7, beta = -5/7: away from the centre and off the diagonal
    surf = _low_cell_surface(i, j)
    fig = plt.figure(figsize=(6, 5), dpi=100)
    ax = lp.plot_heatmap(surf, ax=fig.add_subplot(), centre=False, colorbar=False)
    assert ax.get_images()[0].get_array()[j, i] == 0.0
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    low_colour = np.array(plt.get_cmap("viridis")(0.0)[:3]) * 255
    high_colour = np.array(plt.get_cmap("viridis")(1.0)[:3]) * 255

    def pixel(alpha: float, beta: float) -> np.ndarray:
        x, y = ax.transData.transform((alpha, beta))
        return rgba[round(rgba.shape[0] - y), round(x), :3].astype(float)

    a, b = surf.coords["alpha"], surf.coords["beta"]
    np.testing.assert_allclose(pixel(a[i], b[j]), low_colour, atol=2)
    np.testing.assert_allclose(pixel(a[j], b[NB - 1 - j]), high_colour, atol=2)  # the mirror cell
    np.testing.assert_allclose(pixel(a[i], b[j + 1]), high_colour, atol=2)
    np.testing.assert_allclose(pixel(a[i - 1], b[j]), high_colour, atol=2)
    # the image spans the grid cells exactly
    x0, x1, y0, y1 = ax.get_images()[0].get_extent()
    assert (x0, x1) == pytest.approx((-1.05, 1.05))
    assert (y0, y1) == pytest.approx((-1 - 1 / 14, 1 + 1 / 14))


def test_contourf_orientation_lowest_band_surrounds_the_low_cell():
    i, j = 17, 3
    surf = _low_cell_surface(i, j)
    ax = lp.plot_contourf(surf, ax=new_ax(), levels=[-0.5, 0.5, 1.5], centre=False)
    cs = next(c for c in ax.collections if isinstance(c, ContourSet))
    a, b = surf.coords["alpha"], surf.coords["beta"]
    assert cs.get_paths()[0].contains_point((a[i], b[j]))
    assert not cs.get_paths()[0].contains_point((a[j], b[NB - 1 - j]))


def test_plotly_orientation_matches():
    i, j = 17, 3
    surf = _low_cell_surface(i, j)
    fig = lp.surface_figure(surf)
    tr = fig.data[0]
    assert np.asarray(tr.z, dtype=float)[j, i] == 0.0
    assert np.asarray(tr.z, dtype=float).shape == (NB, NA)
    np.testing.assert_allclose(tr.x, surf.coords["alpha"])
    np.testing.assert_allclose(tr.y, surf.coords["beta"])


# -- wrong input -----------------------------------------------------------------
@pytest.mark.parametrize("kind", list(PLANE_FUNCS))
def test_plane_functions_refuse_a_line(kind, line_surface):
    name = PLANE_FUNCS[kind].__name__
    with pytest.raises(
        ValueError,
        match=f"{name} needs a plane \\(2 directions\\); this surface is a line: use plot_line",
    ):
        PLANE_FUNCS[kind](line_surface, ax=new_ax(kind))


def test_wrong_input_gives_clear_errors(line_surface, plane_surface):
    with pytest.raises(ValueError, match="plot_line needs a line"):
        lp.plot_line(plane_surface, ax=new_ax())
    with pytest.raises(
        ValueError, match="unknown variable 'val_loss'; this surface has train_loss"
    ):
        lp.plot_contourf(plane_surface, "val_loss", ax=new_ax())
    with pytest.raises(ValueError, match=r"unknown variable 'x'.*train_accuracy, test_accuracy"):
        lp.plot_line(line_surface, ["train_loss", "x"], ax=new_ax())
    with pytest.raises(TypeError, match="takes a lossmap Surface"):
        lp.plot_line({"train_loss": [1, 2, 3]})
    with pytest.raises(TypeError, match="needs a 3D axes"):
        lp.plot_surface3d(plane_surface, ax=new_ax())
    no_acc = make_plane()
    with pytest.raises(ValueError, match="levels"):
        lp.plot_contour(no_acc, ax=new_ax(), levels=1)
    with pytest.raises(ValueError, match="no accuracy metric"):
        spec = ScanSpec(grid=(Axis(-1, 1, 5),), splits=("train",), metrics=("loss",))
        lp.plot_line(Surface(spec, {"train_loss": np.ones(5)}, np.ones(5, bool)), accuracy=True)


def test_surface3d_makes_its_own_3d_axes(plane_surface):
    plt.figure()
    ax = lp.plot_surface3d(plane_surface)
    assert ax.name == "3d"
    # a new figure each time: never drawn over the current 2-D or 3D axes
    fig2d, _ = plt.subplots()
    ax3 = lp.plot_surface3d(plane_surface)
    assert ax3.figure is not fig2d and ax3.name == "3d"
    assert lp.plot_surface3d(plane_surface).figure is not ax3.figure


# -- history -----------------------------------------------------------------------
HISTORY = {
    "train_loss": [1.0, 0.6, 0.4],
    "test_loss": [1.1, 0.7, 0.5],
    "train_accuracy": [0.6, 0.8, 0.9],
    "test_accuracy": [0.55, 0.75, 0.85],
}


def test_plot_history():
    ax = new_ax()
    assert lp.plot_history(HISTORY, ax=ax) is ax
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3])
    twin = ax.figure.axes[-1]
    assert twin.get_ylabel() == "accuracy"
    labels = [t.get_text() for t in twin.get_legend().get_texts()]
    assert labels == ["train loss", "test loss", "train accuracy", "test accuracy"]
    records = [
        dict(zip(HISTORY, vals, strict=True)) for vals in zip(*HISTORY.values(), strict=True)
    ]
    ax2 = lp.plot_history(records, ax=new_ax(), accuracy=False, color="k")
    assert len(ax2.figure.axes) == 1 and ax2.get_lines()[0].get_color() == "k"
    with pytest.raises(ValueError, match="different lengths"):
        lp.plot_history({"train_loss": [1, 2], "test_loss": [1]}, ax=new_ax())
    with pytest.raises(ValueError, match="no '\\*_loss' series"):
        lp.plot_history({"lr": [1, 2]}, ax=new_ax())
    with pytest.raises(TypeError, match="dict of per-epoch lists"):
        lp.plot_history(3.0, ax=new_ax())


# -- figures and files -------------------------------------------------------------
def test_figure_lines(line_surface):
    fig = lp.figure_lines(line_surface, make_line(31))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == [
        "Line projection around the starting point",
        "Line projection around the final point",
    ]
    fig = lp.figure_lines(line_surface, line_surface, titles=("before", "after"))
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]


@pytest.mark.parametrize("kind", ["contour", "contourf", "heatmap", "surface"])
def test_figure_planes_share_one_colour_scale(kind, plane_surface):
    fig = lp.figure_planes(plane_surface, kind=kind, title="After training")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert [ax.get_title() for ax in panels] == ["train loss", "test loss"]
    assert fig.get_suptitle() == "After training"
    mappables = []
    for ax in panels:
        m = [c for c in ax.collections if isinstance(c, (ContourSet, Poly3DCollection))]
        mappables += m or ax.get_images()
    assert len(mappables) == 2
    assert mappables[0].norm.vmin == mappables[1].norm.vmin
    assert mappables[0].norm.vmax == mappables[1].norm.vmax
    if kind.startswith("contour"):
        np.testing.assert_array_equal(mappables[0].levels, mappables[1].levels)


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_every_kind_writes_every_format(suffix, tmp_path, line_surface, plane_surface):
    # one figure holding every kind, written once per format (fast; a kind that cannot be
    # written in some format fails the whole file)
    fig = plt.figure(figsize=(9, 4))
    lp.plot_line(line_surface, ax=fig.add_subplot(2, 3, 1), accuracy=True)
    lp.plot_history(HISTORY, ax=fig.add_subplot(2, 3, 2))
    lp.plot_contour(plane_surface, ax=fig.add_subplot(2, 3, 3), levels=8)
    lp.plot_contourf(plane_surface, ax=fig.add_subplot(2, 3, 4), levels=8)
    lp.plot_heatmap(plane_surface, ax=fig.add_subplot(2, 3, 5))
    lp.plot_surface3d(plane_surface, ax=fig.add_subplot(2, 3, 6, projection="3d"))
    path = lp.save(fig, tmp_path / "sub" / f"all{suffix}", dpi=40, bbox_inches=None)
    assert path.stat().st_size > 1000
    head = path.read_bytes()[:8]
    assert {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}[suffix] in head


def test_save_checks_the_suffix(tmp_path, line_surface):
    ax = lp.plot_line(line_surface, ax=new_ax())
    with pytest.raises(ValueError, match=r"must end in \.png, \.svg, \.pdf"):
        lp.save(ax.figure, tmp_path / "x.jpg")
    assert lp.save(ax, tmp_path / "X.PNG").exists()  # an Axes saves its figure
    with pytest.raises(TypeError, match="Figure or Axes"):
        lp.save("fig", tmp_path / "x.png")


# -- plotly --------------------------------------------------------------------------
def test_surface_figure(plane_surface):
    fig = lp.surface_figure(plane_surface)
    assert isinstance(fig, go.Figure)
    kinds = [t.type for t in fig.data]
    assert kinds == ["surface", "scatter3d", "surface", "scatter3d"]
    assert fig.data[1].x == (0.0,) and fig.data[1].y == (0.0,)
    assert fig.data[0].scene != fig.data[2].scene  # side by side
    z = fig.data[0].z
    assert z[NAN_AT[1]][NAN_AT[0]] is None  # a gap, not a number
    assert fig.data[0].cmin == fig.data[2].cmin and fig.data[0].cmax == fig.data[2].cmax
    assert fig.layout.scene.xaxis.title.text == "α"
    # composing: traces go into a given figure
    mine = go.Figure()
    assert lp.surface_figure(plane_surface, "test_loss", fig=mine) is mine
    assert [t.type for t in mine.data] == ["surface", "scatter3d"]


def test_contour_and_line_figures(plane_surface, line_surface):
    fig = lp.contour_figure(plane_surface)
    assert [t.type for t in fig.data] == ["contour", "scatter", "contour", "scatter"]
    assert fig.data[0].z[NAN_AT[1]][NAN_AT[0]] is None and fig.data[0].connectgaps is False
    fig = lp.contour_figure(plane_surface, "train_loss", style="heatmap")
    assert fig.data[0].type == "heatmap"
    fig = lp.line_figure(line_surface)
    assert [t.name for t in fig.data if t.showlegend is not False] == ["train loss", "test loss"]
    with pytest.raises(ValueError, match="surface_figure needs a plane"):
        lp.surface_figure(line_surface)
    with pytest.raises(ValueError, match="line_figure needs a line"):
        lp.line_figure(plane_surface)


def test_interactive_line_draws_two_standard_error_bands_where_measured(line_surface):
    import dataclasses

    plain = lp.line_figure(line_surface, "train_loss")
    assert not any(t.fill == "tonexty" for t in plain.data)  # no errors, no band
    se = np.full(line_surface.spec.shape, 0.05)
    with_se = dataclasses.replace(line_surface, errors={"train_loss": se})
    fig = lp.line_figure(with_se, "train_loss")
    upper, lower = (t for t in fig.data if t.name == "train loss ± 2 s.e.")
    v = line_surface["train_loss"]
    ok = np.isfinite(v)
    np.testing.assert_allclose(np.array(upper.y, dtype=float)[ok], (v + 0.1)[ok])
    np.testing.assert_allclose(np.array(lower.y, dtype=float)[ok], (v - 0.1)[ok])
    assert lower.fill == "tonexty" and upper.showlegend is False


def test_html_is_self_contained(tmp_path, plane_surface):
    figs = [lp.surface_figure(plane_surface), lp.contour_figure(plane_surface)]
    path = lp.to_html(figs, tmp_path / "p.html", title="plane <1>")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>plane &lt;1&gt;</title>" in text
    assert '<script src="http' not in text and "<script src=" not in text
    assert "cdn.plot.ly" not in text
    assert "<link" not in text
    assert len(text) > 1_000_000  # plotly.js itself is inside
    assert text.count("Plotly.newPlot(") >= 2
    with pytest.raises(ValueError, match=r"must end in \.html"):
        lp.to_html(figs[0], tmp_path / "p.png")
    with pytest.raises(TypeError, match="plotly Figure"):
        lp.to_html([], tmp_path / "q.html")


# -- the command -------------------------------------------------------------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    g = torch.Generator().manual_seed(1)
    data = {
        "train": (torch.randn(32, 4, generator=g), torch.randint(0, 3, (32,), generator=g)),
        "test": (torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)),
    }
    d1, d2 = lm.random_directions(model, 2, seed=0)
    loss = torch.nn.CrossEntropyLoss()
    kw = {"data": data, "progress": False}
    lm.scan(model, loss, directions=[d1, d2], grid=[(-1, 1, 5), (-1, 1, 5)],
            store=root / "plane.lossmap", **kw)  # fmt: skip
    lm.scan(model, loss, directions=[d1], grid=[(-1, 1, 7)], store=root / "line.lossmap", **kw)
    return {"plane": root / "plane.lossmap", "line": root / "line.lossmap"}


def _parse(argv):
    parser = argparse.ArgumentParser(prog="lossmap")
    plot_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["plot", *map(str, argv)])


@pytest.mark.parametrize(
    ("store", "kind", "suffix"),
    [
        ("line", None, ".png"),
        ("line", "line", ".svg"),
        ("line", "html", ".html"),
        ("plane", None, ".png"),
        ("plane", "contour", ".pdf"),
        ("plane", "heatmap", ".svg"),
        ("plane", "surface", ".png"),
        ("plane", "html", ".html"),
        ("plane", "contourf", ".html"),
    ],
)
def test_cli_plot_writes_each_kind(stores, tmp_path, capsys, store, kind, suffix):
    out = tmp_path / f"out{suffix}"
    argv = [stores[store], "-o", out, "--dpi", "40"] + (["--kind", kind] if kind else [])
    assert plot_cli.run(_parse(argv)) == 0
    assert out.stat().st_size > 1000
    assert f"wrote {out}" in capsys.readouterr().out
    if suffix == ".html":
        text = out.read_text(encoding="utf-8")
        assert "cdn.plot.ly" not in text and '<script src="http' not in text


def test_cli_plot_metric_log_and_title(stores, tmp_path):
    out = tmp_path / "acc.png"
    args = _parse(
        [stores["line"], "--metric", "accuracy", "--title", "T", "--dpi", "30", "-o", out]
    )
    assert plot_cli.run(args) == 0 and out.exists()
    args = _parse([stores["plane"], "--metric", "test_loss", "--log", "-o", tmp_path / "t.svg"])
    assert plot_cli.run(args) == 0
    # a bare Namespace with only the required fields works too
    ns = argparse.Namespace(path=str(stores["line"]), output=str(tmp_path / "n.png"))
    assert plot_cli.run(ns) == 0


@pytest.mark.parametrize(
    ("store", "argv", "message"),
    [
        ("line", ["-o", "x.jpg"], r"must end in \.png, \.svg, \.pdf"),
        ("plane", ["--kind", "html", "-o", "x.png"], "--kind html writes an HTML page"),
        ("line", ["--kind", "contour", "-o", "x.png"], "needs a plane.*this store is a line"),
        ("plane", ["--kind", "line", "-o", "x.png"], "needs a line.*this store is a plane"),
        ("plane", ["--metric", "val_loss", "-o", "x.png"], "--metric 'val_loss' is not in"),
    ],
)
def test_cli_plot_bad_input(stores, tmp_path, store, argv, message):
    argv = [a if not a.startswith("x.") else str(tmp_path / a) for a in argv]
    with pytest.raises(InputError, match=message):
        plot_cli.run(_parse([stores[store], *argv]))


def test_cli_module_does_not_import_plotting_libraries_at_import_time():
    # `lossmap --help` must stay fast: matplotlib and plotly load only when a picture is drawn
    import ast
    import inspect

    import lossmap.plot.common

    for module in (plot_cli, lp, lossmap.plot.common):
        tree = ast.parse(inspect.getsource(module))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top for a in n.names] + [
            n.module or "" for n in top if isinstance(n, ast.ImportFrom)
        ]
        assert not [x for x in names if x.split(".")[0] in ("matplotlib", "plotly")], module


def test_cli_draws_a_partial_store_whole(tmp_path, monkeypatch):
    import lossmap as lm
    from lossmap.cli import plot as plot_cli

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    calls = []

    def loss(out, t):
        calls.append(1)
        if len(calls) > 12 + 10:  # set-up (shape check, probe, the round-off floor's 2 x 5
            # points), then some points
            raise KeyboardInterrupt
        return torch.nn.functional.cross_entropy(out, t)

    path = tmp_path / "part.lossmap"
    with pytest.raises(KeyboardInterrupt):
        lm.scan(model, loss, data={"train": (X, y)}, directions=lm.random_directions(model, 2),
                grid=[(-1, 1, 9), (-1, 1, 9)], store=path, progress=False)
    out = tmp_path / "part.png"
    seen = {}
    real = plot_cli._static

    def spy(surface, kind, names, out, title, args):
        seen.update(title=title, finite=bool(np.isfinite(surface["train_loss"]).all()))
        return real(surface, kind, names, out, title, args)

    monkeypatch.setattr(plot_cli, "_static", spy)
    parser = argparse.ArgumentParser()
    plot_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", str(path), "--kind", "contourf", "-o", str(out)])
    assert plot_cli.run(args) == 0 and out.stat().st_size > 0
    done = int(lm.load(path).done.sum())
    assert 1 <= done < 81
    assert f"partial: {done}/81 points" in seen["title"] and seen["finite"]


# -- what the plane views share ----------------------------------------------------
def _colour_norm(ax):
    """The norm of the one colour-mapped artist a plane view drew on ``ax``."""
    artists = [*ax.images, *(c for c in ax.collections if c.get_array() is not None)]
    return next(a for a in artists if a.get_label() != "centre").norm


@pytest.mark.parametrize("kind", PLANE_FUNCS)
def test_log_colour_scale_spans_the_finite_values(kind, plane_surface):
    finite = [v for v in plane_surface.values["train_loss"].ravel().tolist() if np.isfinite(v)]
    ax = PLANE_FUNCS[kind](plane_surface, ax=new_ax(kind), log=True)
    norm = _colour_norm(ax)
    assert isinstance(norm, LogNorm) and (norm.vmin, norm.vmax) == (min(finite), max(finite))
    if kind in ("contour", "contourf"):  # int levels become levels evenly spaced in log
        cs = next(c for c in ax.collections if isinstance(c, ContourSet))
        np.testing.assert_allclose(cs.levels, np.geomspace(min(finite), max(finite), 30))


@pytest.mark.parametrize("kind", PLANE_FUNCS)
def test_a_given_norm_wins_over_log(kind, plane_surface):
    mine = LogNorm(0.01, 100.0)
    contours = kind in ("contour", "contourf")
    kw = {"levels": 5} if contours else {}
    ax = PLANE_FUNCS[kind](plane_surface, ax=new_ax(kind), log=True, norm=mine, **kw)
    assert _colour_norm(ax) is mine
    if contours:  # matplotlib picks the levels, not 5 spaced in log over the values
        finite = plane_surface.values["train_loss"][np.isfinite(plane_surface.values["train_loss"])]
        ours = np.geomspace(finite.min(), finite.max(), 5)
        cs = next(c for c in ax.collections if isinstance(c, ContourSet))
        assert cs.levels.shape != ours.shape or not np.allclose(cs.levels, ours)


@pytest.mark.parametrize(
    "fn",
    [lp.plot_contour, lp.plot_contourf, lp.plot_heatmap, lp.plot_surface3d, lp.plot_line,
     lp.plot_history, lp.surface_figure, lp.contour_figure, lp.line_figure],
)
def test_docstrings_match_signatures(fn, assert_docstring_matches_signature):
    assert "_params}" not in fn.__doc__  # each shared-text placeholder was filled
    assert_docstring_matches_signature(fn)


def test_fill_doc_fills_placeholders_at_their_indentation_and_refuses_a_mismatch():
    from lossmap.plot.common import fill_doc

    def f():
        """Summary.

        Parameters
        ----------
        {shared}
        y : int
        """

    fill_doc(shared="x : int\n    The x.")(f)
    assert "\n        x : int\n            The x.\n        y : int\n" in f.__doc__
    for parts in ({}, {"shared": "x", "other": "z"}):
        def g():
            """{shared}"""

        with pytest.raises(KeyError, match="g: its docstring lines"):
            fill_doc(**parts)(g)
