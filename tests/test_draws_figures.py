"""Pictures of K direction draws (issue 27 item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap.draws.compare import median_draw
from lossmap.draws.figures import plot_draw_lines, plot_draw_planes

pytestmark = pytest.mark.usefixtures("one_thread")


def _scan(dims, draws):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    return lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=list(lm.random_directions(net, dims, seed=0)),
        grid=[(-1, 1, 5)] * dims,
        draws=draws,
        progress=False,
    )


def test_the_line_figure_draws_every_draw_and_their_mean_or_band(tmp_path):
    line = _scan(1, 4)
    fig = plot_draw_lines(line)
    drawn = fig.axes[0].lines
    assert len(drawn) == 5
    for k in range(4):
        np.testing.assert_array_equal(drawn[k].get_ydata(), line["train_loss"][k])
    np.testing.assert_allclose(drawn[4].get_ydata(), line["train_loss"].mean(axis=0))
    band = plot_draw_lines(line, band=True)
    assert len(band.axes[0].lines) == 1 and len(band.axes[0].collections) == 2
    np.testing.assert_allclose(
        band.axes[0].lines[0].get_ydata(), np.median(line["train_loss"], axis=0)
    )
    band.savefig(tmp_path / "band.png")
    assert (tmp_path / "band.png").stat().st_size > 1000


def test_the_plane_figure_shows_the_median_draw_large_and_the_others_small(tmp_path):
    plane = _scan(2, 5)
    fig = plot_draw_planes(plane)
    mid = median_draw(lm.over_draws(plane))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == f"median draw ({mid} of 5)"
    assert sorted(t for t in titles if t.startswith("draw ")) == sorted(
        f"draw {i}" for i in range(5) if i != mid
    )
    fig.savefig(tmp_path / "planes.png")
    with pytest.raises(lm.InputError, match="plane scanned with draws=K"):
        plot_draw_planes(plane.isel(draw=0))
