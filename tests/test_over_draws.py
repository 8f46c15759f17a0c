"""Findings over direction draws (issue 27 item 2): lm.over_draws on a quadratic of known Hessian.

For a direction d of a normalized Gaussian draw, each unit u (a filter: one
row of a Linear weight; a layer: the whole tensor) of m_u values is
d_u = ‖c_u‖ g_u / ‖g_u‖ with g_u ~ N(0, I): uniform on the sphere of radius
‖c_u‖, so E[d_u d_uᵀ] = ‖c_u‖² / m_u · I, and the units are independent with
mean 0. Hence E[dᵀHd] = Σ_u ‖c_u‖² / m_u · tr(H_uu), and the height at radius r
(the mean of L(c ± r·d) − L(c) over both directions; the ± pair cancels the
gradient term of a quadratic exactly) has expectation ½ r² E[dᵀHd].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossmap as lm

pytestmark = pytest.mark.usefixtures("one_thread")

OUT, IN, R = 3, 4, 0.5


class Quadratic(torch.nn.Module):
    """L(W) = ½ (w − w*)ᵀ H (w − w*) for w = vec(W) of a bias-free Linear (rows: the filters)."""

    def __init__(self, H: torch.Tensor, w_star: torch.Tensor) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(IN, OUT, bias=False)
        self.register_buffer("H", H)
        self.register_buffer("w_star", w_star)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.lin.weight.reshape(-1) - self.w_star
        return (0.5 * e @ self.H @ e).expand(x.shape[0])


def _quadratic():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(OUT * IN, OUT * IN, generator=g)
    # the last row's block is stiffer: filter normalization (per row) weighs it otherwise
    H = A @ A.T / (OUT * IN) + torch.diag(torch.tensor([0.1] * 2 * IN + [5.0] * IN))
    model = Quadratic(H, torch.randn(OUT * IN, generator=g))
    with torch.no_grad():  # rows of unequal norms: filter and layer normalization differ
        model.lin.weight.copy_(
            torch.randn(OUT, IN, generator=g) * torch.tensor([[0.3], [1.0], [3.0]])
        )
    return model


def _expected_dhd(model: Quadratic, norm: str) -> float:
    H = model.H.double()
    C = model.lin.weight.detach().double()
    if norm == "layer":
        return float(C.pow(2).sum() / C.numel() * H.trace())
    blocks = [H[i * IN : (i + 1) * IN, i * IN : (i + 1) * IN] for i in range(OUT)]
    return float(sum(C[i].pow(2).sum() / IN * blocks[i].trace() for i in range(OUT)))


def _scan(model, norm, draws):
    X = torch.zeros(8, 1)
    return lm.scan(
        model,
        lambda out, y: out.mean(),
        data={"train": (X, torch.zeros(8))},
        directions=list(lm.random_directions(model, 2, seed=0, norm=norm)),
        grid=[(-R, R, 3)] * 2,
        metrics=("loss",),
        draws=draws,
        progress=False,
    )


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
@pytest.mark.parametrize("norm", ["filter", "layer"])
def test_the_mean_height_over_draws_is_half_r2_times_the_expected_dhd(norm):
    model = _quadratic()
    K = 256
    surf = _scan(model, norm, K)
    spread = lm.over_draws(surf, "train_loss")
    h = spread["height"]
    assert h.count == K and h.radius == R
    # each draw's height is ½ r² (d1ᵀHd1 + d2ᵀHd2) / 2 of its own directions (float64)
    H = model.H.double()
    for k in (0, 1, K - 1):
        d1, d2 = lm.random_directions(model, 2, seed=surf.spec.draws["seeds"][k][0], norm=norm)
        q = [
            float(d["lin.weight"].double().reshape(-1) @ H @ d["lin.weight"].double().reshape(-1))
            for d in (d1, d2)
        ]
        assert h.draws[k] == pytest.approx(0.5 * R**2 * np.mean(q), rel=1e-4)
    expected = 0.5 * R**2 * _expected_dhd(model, norm)
    assert abs(h.value - expected) < 3 * h.se  # the mean over draws: its expectation
    assert h.se < 0.05 * expected  # …known to a few per cent with 256 draws
    # the spread of the mean shrinks as 1/√K: means of groups of 4 vs of 16 draws
    v = np.asarray(h.draws)
    sd4, sd16 = (v.reshape(-1, n).mean(axis=1).std(ddof=1) for n in (4, 16))
    assert 1.4 < sd4 / sd16 < 2.8  # √(16/4) = 2; 16 groups of 16 know sd16 to about ±18 %
    assert h.sd / np.sqrt(K) == pytest.approx(h.se)


def test_layer_and_filter_expectations_differ_here():
    """The two formulas are not the same number on this centre (so the test above tells them
    apart): rows of unequal norms weigh the diagonal blocks differently."""
    model = _quadratic()
    a, b = _expected_dhd(model, "filter"), _expected_dhd(model, "layer")
    assert abs(a - b) > 0.1 * max(a, b)


def test_spread_fields_and_the_share_of_variance_from_draws():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    X, y = torch.randn(256, 3), torch.randint(0, 2, (256,))
    surf = lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=list(lm.random_directions(net, 2, seed=0)),
        grid=[(-2, 2, 5)] * 2,
        draws=6,
        progress=False,
    )
    spread = lm.over_draws(surf, delta=0.05)
    assert set(spread) == {
        f"{q}_{a}"
        for q in ("slope", "curvature", "convexity", "basin_width")
        for a in ("alpha", "beta")
    } | {"height", "peak"}
    for name, f in spread.items():
        v = np.asarray([x for x in f.draws if np.isfinite(x)])
        if v.size < 2:
            continue
        assert f.value == pytest.approx(v.mean()) and f.sd == pytest.approx(v.std(ddof=1)), name
        assert f.sd_se == pytest.approx(f.sd / np.sqrt(2 * (v.size - 1)))
        if f.se_samples is not None:  # the share: what is left of sd² once sampling is out
            want = max(f.sd**2 - f.se_samples**2, 0) / f.sd**2
            assert f.draw_share == pytest.approx(want) and 0 <= f.draw_share <= 1
    # a draw's peak is its plane's highest value minus the centre's
    one = surf.isel(draw=3)["train_loss"]
    assert spread["peak"].draws[3] == pytest.approx(one.max() - one[2, 2])
    # the height's per-draw numbers: the mean of the four points at r = 2 minus the centre
    assert spread["height"].draws[3] == pytest.approx(
        np.mean([one[0, 2], one[4, 2], one[2, 0], one[2, 4]]) - one[2, 2]
    )
    assert "draw" in spread["height"].sentence()


def test_a_surface_without_draws_is_refused_with_the_call_to_make():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    surf = lm.scan(
        net,
        torch.nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=lm.random_direction(net, seed=0),
        grid=(-1, 1, 3),
        progress=False,
    )
    with pytest.raises(lm.InputError, match=r"draws=K"):
        lm.over_draws(surf)
