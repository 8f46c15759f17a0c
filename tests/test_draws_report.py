"""The HTML report of a K-draw store: the median draw's figures, the draws, the spread table."""

import html
import re

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap.analysis.render import sentence
from lossmap.draws.compare import median_draw
from lossmap.report import format_value, write_report

pytestmark = pytest.mark.usefixtures("one_thread", "close_figures")


def _scan(tmp_path, dims: int, k: int = 4):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    X, y = torch.randn(48, 3), torch.randint(0, 2, (48,))
    data = {"train": (X[:32], y[:32]), "test": (X[32:], y[32:])}
    dirs = lm.random_directions(net, 2, seed=0)
    return lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data=data,
        directions=list(dirs) if dims == 2 else dirs[0],
        grid=[(-1, 1, 5)] * dims,
        draws=k,
        progress=False,
        store=tmp_path / f"s{dims}.lossmap",
    )


def _rows(page: str) -> list[list[str]]:
    part = page.split("Spread over", 1)[1].split("</table>", 1)[0]
    return [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        for r in re.findall(r"<tr>(.*?)</tr>", part)
        if "<td" in r
    ]


@pytest.mark.parametrize("dims", [1, 2])
def test_report_of_a_k_draw_store_has_the_median_draw_and_the_spread(tmp_path, dims):
    surf = _scan(tmp_path, dims)
    out = write_report([surf.path], tmp_path / "r.html")
    page = out.read_text()
    # offline: no external resource (the page embeds everything)
    assert "cdn.plot.ly" not in page and not re.search(r'src="https?://', page)
    # the median draw's figures as for any line or plane, then the draws' picture
    section = page.split('<section class="card run" id="run-1">')[1]
    alts = re.findall(r'<img alt="([^"]+)"', section)
    assert alts == (
        ["line plot", "direction draws"]
        if dims == 1
        else ["filled contours", "3D surfaces", "direction draws", "topology"]
    )
    assert "Spread over 4 direction draws" in section
    # the table's numbers are lm.over_draws' own, for every loss
    rows = _rows(section)
    expected = []
    for var in ("train_loss", "test_loss"):
        spread = lm.over_draws(surf, var)
        assert len(spread) == (6 if dims == 1 else 10)  # 4 per axis, height, peak
        for name, f in spread.items():
            share = "—" if f.draw_share is None else f"{f.draw_share:.0%}"
            expected.append(
                [
                    var.replace("_", " "),
                    name,
                    format_value(f.value),
                    format_value(f.sd),
                    format_value(f.se_samples),
                    share,
                ]
            )
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert row[0] == want[0] and row[1].startswith(want[1].replace("_", " "))
        assert row[2:] == want[2:]
        if want[1] in ("height", "peak", "slope_alpha", "curvature_alpha"):
            assert all(x != "—" for x in row[2:])  # s.d., s.e. over samples, share measured
    # one sentence stating the spread: the height's, as analysis.render words it
    said = sentence(lm.over_draws(surf, "train_loss")["height"])
    assert html.escape(said) in section
    # the findings and numbers above are the median draw's
    mid = median_draw(lm.over_draws(surf, "train_loss"))
    one = surf.isel(draw=mid)
    low = format_value(float(np.nanmin(one["train_loss"])))
    assert low in section


def test_report_median_draw_differs_from_another_draw(tmp_path):
    """The spread table's mean is over draws, not draw 0's value (a wrong reduction fails)."""
    surf = _scan(tmp_path, 2)
    spread = lm.over_draws(surf, "train_loss")["peak"]
    assert np.std(spread.draws) > 0
    row = next(
        r
        for r in _rows(write_report([surf.path], tmp_path / "r.html").read_text())
        if r[:2] == ["train loss", "peak"]
    )
    assert row[2] == format_value(np.mean(spread.draws))
    assert row[3] == format_value(np.std(spread.draws, ddof=1))
