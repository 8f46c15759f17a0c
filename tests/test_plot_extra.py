"""lossmap.plot.extra: spectra, convexity maps, gradients, paths, models, barriers; CLI overlays."""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection, QuadMesh
from matplotlib.quiver import Quiver

import lossmap as lm
import lossmap.plot as lp
from helpers import line, surface
from lossmap.cli import plot as plot_cli
from lossmap.errors import InputError, InputTypeError
from lossmap.surface import Surface

PATH = [[-0.8, 0.6], [-0.5, 0.3], [-0.2, 0.1], [0.0, 0.0]]
MODELS = {"a": [0.0, 0.0], "b": [1.0, 0.0], "c": [0.37, 1.0]}


pytestmark = pytest.mark.usefixtures("close_figures")


def plane(fn, meta=None, na=21, nb=17) -> Surface:
    """train_loss = fn(A, B) and test_loss 0.1 above it, on [-1, 1.5]²."""
    return surface([(-1, 1.5, na), (-1, 1.5, nb)],
                   {"train_loss": fn, "test_loss": lambda A, B: fn(A, B) + 0.1}, meta=meta)


def bowl(meta=None) -> Surface:
    return plane(lambda A, B: 1 + A**2 + 2 * B**2, meta=meta)


def interpolation_line() -> Surface:
    return line(lambda a: 2 - a + 0.8 * np.sin(np.pi * a), -0.5, 1.5, 41)


def test_eigenvalue_bars_and_file(tmp_path):
    vals = [12.5, 7.0, 3.25, -0.5]
    ax = lp.plot_eigenvalues(vals, color="C2")
    assert ax is plt.gca()
    heights = [p.get_height() for p in ax.patches]
    assert heights == vals
    assert ax.get_xlabel() == "eigenvalue index" and ax.get_ylabel() == "eigenvalue λ"
    assert lp.save(ax, tmp_path / "eig.png").stat().st_size > 0
    with pytest.raises(InputError, match="eigenvalues"):
        lp.plot_eigenvalues([])


def test_density_linear_and_log(tmp_path):
    x, p = lm.broaden(np.array([0.0, 5.0]), np.array([0.9, 0.1]))
    fig, (ax1, ax2) = plt.subplots(1, 2)
    assert lp.plot_density(x, p, ax=ax1, log=False) is ax1
    np.testing.assert_array_equal(ax1.lines[0].get_xydata(), np.c_[x, p])
    assert ax1.get_yscale() == "linear"
    lp.plot_density(x, p, ax=ax2)
    assert ax2.get_yscale() == "log" and ax2.get_ylim()[0] >= p.max() * 1e-8 * 0.99
    assert ax2.get_xlabel() == "eigenvalue λ" and ax2.get_ylabel() == "density"
    lp.save(fig, tmp_path / "density.svg")
    assert (tmp_path / "density.svg").stat().st_size > 0
    with pytest.raises(InputError, match="same length"):
        lp.plot_density(x, p[:-1])


def test_convexity_map_colours_saddles_and_greys_convex_points(tmp_path):
    fig, (ax1, ax2) = plt.subplots(1, 2)
    lp.plot_convexity_map(plane(lambda A, B: A**2 - 0.5 * B**2), ax=ax1)
    grey, ratio = [c for c in ax1.collections if isinstance(c, QuadMesh)]
    assert grey.get_array().mask.all()  # no convex point
    np.testing.assert_allclose(ratio.get_array().compressed(), 0.5)  # |−1 / 2|
    assert ratio.get_array().count() == 19 * 15  # interior points only
    lp.plot_convexity_map(bowl(), ax=ax2, colorbar=False)
    grey, ratio = [c for c in ax2.collections if isinstance(c, QuadMesh)]
    assert grey.get_array().count() == 19 * 15 and ratio.get_array().mask.all()
    assert ax2.get_xlabel() == "α" and ax2.get_ylabel() == "β"
    assert ax2.get_title() == "convexity of train loss"
    lp.save(fig, tmp_path / "convexity.png")
    assert (tmp_path / "convexity.png").stat().st_size > 0


def test_gradient_arrows_point_downhill_on_a_bowl(tmp_path):
    ax = lp.plot_gradient(bowl(), step=2)
    (q,) = [c for c in ax.collections if isinstance(c, Quiver)]
    X, Y = q.X, q.Y
    U, V = np.asarray(q.U), np.asarray(q.V)
    moving = np.hypot(U, V) > 0
    assert moving.sum() >= 0.9 * len(U)
    # −∇L = (−2α, −4β): each arrow points towards the minimum at (0, 0), and exactly along −∇L.
    np.testing.assert_allclose(U[moving], (-2 * X / np.hypot(2 * X, 4 * Y))[moving], atol=1e-9)
    np.testing.assert_allclose(V[moving], (-4 * Y / np.hypot(2 * X, 4 * Y))[moving], atol=1e-9)
    assert (U * X + V * Y)[moving].max() < 0
    assert ax.get_xlabel() == "α" and ax.get_ylabel() == "β"
    assert len(ax.collections) > 1  # the contours underneath
    lp.save(ax, tmp_path / "gradient.pdf")
    assert (tmp_path / "gradient.pdf").stat().st_size > 0
    with pytest.raises(InputError, match="step"):
        lp.plot_gradient(bowl(), step=0.5)


def test_path_drawn_at_exact_coordinates_from_meta_or_array():
    surf = bowl(meta={"path": PATH})
    ax = lp.plot_contour(surf)
    lp.plot_path(surf, ax=ax)
    path = [ln for ln in ax.lines if ln.get_label() == "training path"]
    np.testing.assert_array_equal(path[0].get_xydata(), np.asarray(PATH))
    start = next(ln for ln in ax.lines if ln.get_label() == "start")
    end = next(ln for ln in ax.lines if ln.get_label() == "end")
    assert start.get_xydata().tolist() == [PATH[0]] and end.get_xydata().tolist() == [PATH[-1]]
    _fig, ax2 = plt.subplots()
    lp.plot_path(np.asarray(PATH), ax=ax2, color="blue")
    assert ax2.lines[0].get_color() == "blue" and ax2.get_xlabel() == "α"
    with pytest.raises(InputError, match="no meta\\['path'\\]"):
        lp.plot_path(bowl())
    with pytest.raises(InputError, match="\\(T, 2\\)"):
        lp.plot_path([[1.0, 2.0, 3.0]])


def test_models_labelled_at_their_coordinates():
    ax = lp.plot_models(bowl(meta={"models": MODELS}))
    np.testing.assert_array_equal(ax.lines[0].get_xydata(), np.asarray(list(MODELS.values())))
    texts = {t.get_text(): t.xy for t in ax.texts}
    assert texts == {k: tuple(v) for k, v in MODELS.items()}
    with pytest.raises(InputError, match="no meta\\['models'\\]"):
        lp.plot_models(bowl())
    with pytest.raises(InputTypeError):
        lp.plot_models([1, 2])


def test_barrier_plot_marks_chord_and_barrier(tmp_path):
    surf = interpolation_line()
    ax = lp.plot_barrier(surf)
    chord = next(ln for ln in ax.lines if ln.get_label() == "linear interpolation of the ends")
    np.testing.assert_allclose(chord.get_xydata(), [[0, 2], [1, 1]], atol=1e-12)
    (seg,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    np.testing.assert_allclose(seg.get_segments()[0], [[0.5, 1.5], [0.5, 2.3]], atol=1e-9)
    assert "barrier 0.8" in ax.get_title() and ax.get_xlabel() == "α"
    assert ax.get_ylabel() == "loss"
    lp.save(ax, tmp_path / "barrier.png")
    with pytest.raises(InputError, match="needs a line"):
        lp.plot_barrier(bowl())


def test_plot_command_draws_stored_path_and_models(tmp_path, monkeypatch):
    net = torch.nn.Linear(3, 2)
    X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    dirs = lm.random_directions(net, 2, seed=0)
    store = tmp_path / "plane.lossmap"
    lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=dirs,
            grid=[(-1, 1, 7), (-1, 1, 7)], store=store, progress=False,
            meta={"path": PATH, "models": MODELS})
    drawn = []
    from lossmap import plot as mpl

    def spy(fig, path, **kw):
        drawn.append(fig)
        return orig(fig, path, **kw)

    orig = mpl.save
    monkeypatch.setattr(mpl, "save", spy)
    args = argparse.Namespace(path=str(store), output=str(tmp_path / "p.png"), kind="contour",
                              metric=None, log=False, accuracy=False, title=None, dpi=50)
    assert plot_cli.run(args) == 0
    panel = next(a for a in drawn[0].axes if a.get_label() != "<colorbar>")
    path = next(ln for ln in panel.lines if ln.get_label() == "training path")
    np.testing.assert_array_equal(path.get_xydata(), np.asarray(PATH))
    assert {t.get_text() for t in panel.texts} == set(MODELS)
    html = tmp_path / "p.html"
    args.output, args.kind = str(html), None
    assert plot_cli.run(args) == 0
    assert "training path" in html.read_text()


@pytest.mark.parametrize("module", ["lossmap.plot.extra", "lossmap.plot.paths"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("name", [n for n in lp.__all__ if lp._WHERE[n] in ("extra", "paths")])
def test_docstrings_match_signatures(name, assert_docstring_matches_signature):
    assert_docstring_matches_signature(getattr(lp, name))
