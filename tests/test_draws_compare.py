"""lm.compare of K-draw scans (issue 27 item 2): is a difference beyond the draw-to-draw spread?

Two ReLU networks that compute the same function — the second's hidden units
scaled by a_i ∈ [5, 15] on the way in and 1/a_i on the way out — compare as
equal within the draw spread under filter normalization (which follows the
rescaling of the first layer's filters), and as different under unnormalized
directions (norm="none"), which see the rescaled weights as another landscape.
"""

from __future__ import annotations

import copy

import pytest
import torch

import lossmap as lm
from lossmap.draws.compare import median_draw

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def twins():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    X = torch.randn(512, 5)
    y = X[:, :3].argmax(1)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    a = torch.empty(16).uniform_(5, 15, generator=torch.Generator().manual_seed(1))
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[0].weight.mul_(a[:, None])
        twin[0].bias.mul_(a)
        twin[2].weight.div_(a[None, :])
        assert torch.allclose(net(X), twin(X), atol=1e-4)  # the same function
    return net, twin, {"train": (X, y)}


def _compare(twins, norm):
    net, twin, data = twins
    surfs = [
        lm.scan(m, torch.nn.CrossEntropyLoss(), data=data,
                directions=list(lm.random_directions(m, 2, seed=0, norm=norm)),
                grid=[(-0.5, 0.5, 5)] * 2, draws=8, progress=False)
        for m in (net, twin)
    ]  # fmt: skip
    return surfs, lm.compare(surfs, names=["original", "rescaled"])


def test_a_rescaled_twin_is_within_the_draw_spread_under_filter_normalization(twins):
    _, r = _compare(twins, "filter")
    ratios = [c for c in r.table.columns if c.endswith("Δ / draw spread")]
    assert len(ratios) == 4  # height, peak, basin width along α and β
    for c in ratios:
        assert r.table.cell("rescaled", c)["value"] < 2, c
        assert c not in r.table.rows[0]["cells"]  # the reference has no difference
    said = dict(r.table.sentences["rescaled"])
    assert "is within 2× the draw-to-draw spread" in said["height at r = 0.5: Δ / draw spread"]


def test_the_same_twin_differs_beyond_the_spread_without_normalization(twins):
    surfs, r = _compare(twins, "none")
    for c in ("height at r = 0.5: Δ / draw spread", "peak: Δ / draw spread"):
        assert r.table.cell("rescaled", c)["value"] > 2, c
        assert "exceeds 2×" in dict(r.table.sentences["rescaled"])[c]
    # the cells over draws are the mean ± s.d. of lm.over_draws
    h = lm.over_draws(surfs[1])["height"]
    cell = r.table.cell("rescaled", "height at r = 0.5 over 8 draws")
    assert cell == {"value": pytest.approx(h.value), "se": pytest.approx(h.sd)}
    # the ratio is |Δ mean| / √(sd² + sd_ref²)
    h0 = lm.over_draws(surfs[0])["height"]
    want = abs(h.value - h0.value) / (h.sd**2 + h0.sd**2) ** 0.5
    assert r.table.cell("rescaled", "height at r = 0.5: Δ / draw spread")["value"] == (
        pytest.approx(want)
    )


def test_the_median_draw_is_the_middle_peak():
    spread = {"peak": lm.draws.DrawSpread(variable="v", value=0.0, draws=(3.0, 1.0, 2.0, 9.0))}
    assert median_draw(spread) == 2  # sorted 1, 2, 3, 9: the lower middle is 2, draw 2
