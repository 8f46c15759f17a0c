"""lm.sharpness: worst-case (Auto-PGD), average-case, PAC-Bayes and random sharpness (issue 23).

References: analytic quadratics ½(w − w*)ᵀH(w − w*) (worst case ½ρ²λmax, the
box's corner, σ = √(2δ / tr H)), a 50-restart plain projected-gradient loop
written here, 1,000 random directions, and rescaled copies of the same
function (Dinh et al.: sharpness that changes under them is not of the
function).
"""

from __future__ import annotations

import copy
import functools
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.analysis.finding import SharpnessMeasure
from lossmap.errors import InputError
from lossmap.models import mlp

D = 8


def quadratic(H: torch.Tensor, wstar: torch.Tensor):
    """A model whose loss is ½(w − w*)ᵀH(w − w*) at any data, centred at its minimum w*."""

    class Quad(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(wstar.clone())

        def forward(self, x):
            return self.w.expand(len(x), len(wstar))

    def loss(out, y):
        r = out - wstar
        return 0.5 * ((r @ H) * r).sum(1).mean()

    return Quad().double(), loss, (torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4))


@pytest.fixture(scope="module")
def quad():
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    ev = torch.tensor([1.0, 1.5, 2, 2.5, 3, 4, 5, 10], dtype=torch.float64)
    wstar = torch.randn(D, generator=g, dtype=torch.float64)
    wstar = wstar + 0.3 * wstar.sign()  # every entry non-zero
    return Q @ torch.diag(ev) @ Q.T, ev, wstar


# -- analytic quadratics --------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worst_l2_on_a_quadratic_is_half_rho2_lambda_max(quad, seed):
    H, ev, wstar = quad
    net, loss, data = quadratic(H, wstar)
    rho = 0.1
    r = lm.sharpness(net, loss, data, rho=rho, adaptive=False, steps=100, seed=seed)
    assert r.value == pytest.approx(0.5 * rho**2 * float(ev.max()), rel=1e-3)
    assert r.centre_loss == pytest.approx(0.0, abs=1e-15)
    assert r.direction.norm() == pytest.approx(rho, rel=1e-9)  # on the sphere
    # the perturbation is the top eigenvector, and lm.scan at α = 1 reaches the point found
    top = torch.linalg.eigh(H)[1][:, -1]
    assert abs(float(r.direction["w"] @ top)) / rho == pytest.approx(1.0, abs=1e-3)
    surf = lm.scan(
        net, loss, data={"train": data}, directions=r.direction, grid=(-1, 1, 3), progress=False
    )
    assert surf["train_loss"][2] == pytest.approx(r.perturbed_loss, rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adaptive_worst_l2_is_half_rho2_lambda_max_of_dhd(quad, seed):
    H, _, wstar = quad
    net, loss, data = quadratic(H, wstar)
    rho = 0.1
    Dw = torch.diag(wstar.abs())
    want = 0.5 * rho**2 * float(torch.linalg.eigvalsh(Dw @ H @ Dw).max())
    r = lm.sharpness(net, loss, data, rho=rho, steps=100, seed=seed)
    assert r.value == pytest.approx(want, rel=1e-3)
    assert (r.direction["w"] / wstar.abs()).norm() == pytest.approx(rho, rel=1e-9)


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_linf_on_a_diagonal_quadratic_is_the_box_corner(quad, adaptive):
    _, ev, wstar = quad
    net, loss, data = quadratic(torch.diag(ev), wstar)
    rho = 0.05
    s = wstar.abs() if adaptive else torch.ones(D, dtype=torch.float64)
    want = 0.5 * rho**2 * float((ev * s**2).sum())  # ½ Σ hᵢ (ρ sᵢ)², every coordinate at ±ρ
    r = lm.sharpness(net, loss, data, rho=rho, norm="linf", adaptive=adaptive, seed=3)
    assert r.value == pytest.approx(want, rel=1e-9)
    assert torch.allclose(r.direction["w"].abs(), rho * s)


def test_pac_bayes_sigma_is_sqrt_2delta_over_trace(quad):
    H, ev, wstar = quad
    net, loss, data = quadratic(H, wstar)
    delta = 0.05
    want = math.sqrt(2 * delta / float(ev.sum()))  # ½σ² tr H = δ
    r = lm.sharpness(net, loss, data, rho=delta, kind="pac-bayes", adaptive=False, draws=256)
    assert r.direction is None and r.measure == "pac-bayes"
    assert abs(r.value - want) < 3 * r.se and r.se < 0.03 * want
    assert r.perturbed_loss == pytest.approx(delta, rel=1e-3)  # the rise at σ is δ


def test_average_case_on_a_quadratic_is_half_rho2_trace(quad):
    H, ev, wstar = quad
    net, loss, data = quadratic(H, wstar)
    rho = 0.02
    r = lm.sharpness(net, loss, data, rho=rho, kind="average", adaptive=False, draws=400)
    want = 0.5 * rho**2 * float(ev.sum())
    assert abs(r.value - want) < 3 * r.se and r.se < 0.1 * want


# -- a small MLP: against random directions and a plain PGD loop ---------------------------
@functools.lru_cache(maxsize=4)
def mlp_problem(seed: int = 0, n: int = 96):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).long()
    net = mlp((5, 16, 16, 2), seed=seed)  # Flatten, Linear, ReLU, Linear, ReLU, Linear
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(150):  # a trained point, so that the ascent has something to find
        opt.zero_grad()
        nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return net, nn.CrossEntropyLoss(), X, y


def plain_pgd(net, X, y, rho, restarts=50, steps=40, seed=0):
    """The reference: projected gradient ascent, fixed step, many restarts.

    All restarts ascend side by side (``torch.func.vmap`` over a leading restart
    dimension of the perturbation); each is its own plain loop: a random start on the
    sphere, ``steps`` normalized-gradient steps of 0.2 ρ, each projected back into the
    ball. The best rise seen at any iterate of any restart counts.
    """
    from torch.func import functional_call, grad_and_value, vmap

    g = torch.Generator().manual_seed(seed)
    names = [name for name, _ in net.named_parameters()]
    w0 = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        base = float(nn.functional.cross_entropy(net(X), y))
    starts = []
    for _ in range(restarts):  # drawn one restart after the other, as a loop would
        d = [torch.randn(p.shape, generator=g) for p in w0]
        n = math.sqrt(sum(float((x * x).sum()) for x in d))
        starts.append([x * rho / n for x in d])
    d = [torch.stack(xs) for xs in zip(*starts, strict=True)]  # (restarts, *shape) each

    def rise(delta):
        params = {k: w + x for k, w, x in zip(names, w0, delta, strict=True)}
        return nn.functional.cross_entropy(functional_call(net, params, (X,)), y) - base

    def norms(ts):  # per restart: the 2-norm over every tensor
        return torch.sqrt(sum((t * t).flatten(1).sum(1) for t in ts))

    def per_restart(v, like):
        return v.view(-1, *([1] * (like.dim() - 1)))

    ascend = vmap(grad_and_value(rise))
    best = 0.0
    with torch.no_grad():
        for _ in range(steps):
            grads, rises = ascend(tuple(d))
            best = max(best, float(rises.max()))
            gn = norms(grads)
            d = [x + 0.2 * rho * gr / per_restart(gn, gr) for x, gr in zip(d, grads, strict=True)]
            scale = torch.clamp(rho / norms(d), max=1.0)
            d = [x * per_restart(scale, x) for x in d]
        best = max(best, float(vmap(rise)(tuple(d)).max()))
    return best


@pytest.mark.slow
def test_worst_beats_1000_random_directions_and_matches_a_50_restart_pgd():
    net, loss, X, y = mlp_problem()
    rho = 0.5
    r = lm.sharpness(net, loss, (X, y), rho=rho, adaptive=False, restarts=3)
    rnd = lm.sharpness(net, loss, (X, y), rho=rho, kind="random", adaptive=False, draws=1000)
    assert rnd.units == 1 and rnd.direction.norm() == pytest.approx(rho, rel=1e-5)
    assert r.value >= rnd.value > 0
    ref = plain_pgd(net, X, y, rho)
    assert r.value == pytest.approx(ref, rel=0.02)
    assert r.gradient_evaluations == 3 * 21


def test_m_sharpness_is_the_mean_of_each_batchs_own_worst_case():
    net, loss, X, y = mlp_problem(n=64)
    r = lm.sharpness(net, loss, (X, y), rho=0.1, m=16, steps=10, seed=4)
    assert r.units == 4 and r.m == 16 and r.gradient_evaluations == 4 * 11
    each = [
        lm.sharpness(net, loss, (X[i : i + 16], y[i : i + 16]), rho=0.1, steps=10, seed=4)
        for i in range(0, 64, 16)
    ]
    # the batches ascend side by side from different starts; each is a worst case found
    np.testing.assert_allclose(r.per_unit, [e.value for e in each], rtol=0.05)
    assert r.value == pytest.approx(np.mean(r.per_unit), rel=1e-12)
    assert r.se == pytest.approx(np.std(r.per_unit, ddof=1) / 2, rel=1e-9)


# -- invariance (Dinh et al. 2017) ---------------------------------------------------------
def rescaled(net: nn.Sequential, a: float) -> nn.Sequential:
    """The same function: a ReLU layer's weight and bias × a, the next layer's weight ÷ a."""
    out = copy.deepcopy(net)
    with torch.no_grad():
        out[1].weight.mul_(a)
        out[1].bias.mul_(a)
        out[3].weight.div_(a)
    return out


MEASURES = {  # name: (options, invariant?)
    "worst l2 adaptive": ({"kind": "worst"}, True),
    "worst linf adaptive": ({"kind": "worst", "norm": "linf", "rho": 0.02}, True),
    "average adaptive": ({"kind": "average", "draws": 16}, True),
    "random adaptive": ({"kind": "random", "draws": 20}, True),
    "pac-bayes magnitude-aware": ({"kind": "pac-bayes", "rho": 0.05, "draws": 8}, True),
    "worst l2 plain": ({"kind": "worst", "adaptive": False}, False),
    "average plain": ({"kind": "average", "adaptive": False, "draws": 16}, False),
    "pac-bayes plain": ({"kind": "pac-bayes", "rho": 0.05, "adaptive": False, "draws": 8}, False),
}


@pytest.mark.parametrize("a", [5.0, 25.0])
@pytest.mark.parametrize("name", list(MEASURES))
def test_relu_rescaling_changes_only_what_is_not_invariant(name, a):
    net, loss, X, y = mlp_problem(n=64)
    twin = rescaled(net, a)
    assert torch.allclose(net(X), twin(X), atol=1e-4)
    opts, invariant = MEASURES[name]
    opts = {"rho": 0.1, **opts}
    r0, r1 = (lm.sharpness(m, loss, (X, y), seed=7, **opts) for m in (net, twin))
    change = abs(r1.value / r0.value - 1)
    assert (change < 0.01) if invariant else (change > 0.01), change


def test_batchnorm_weight_scaling_leaves_adaptive_measures_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 2))
    X = torch.randn(64, 5)
    y = (X[:, 0] > 0).long()
    net.train()
    for _ in range(5):  # running statistics that are not the defaults
        net(X)
    net.eval()
    twin = copy.deepcopy(net)
    with torch.no_grad():  # the same function: BN sees the pre-activations × 0.1
        twin[0].weight.mul_(0.1)
        twin[0].bias.mul_(0.1)
        twin[1].running_mean.mul_(0.1)
        twin[1].running_var.mul_(0.01)
        twin[1].eps *= 0.01
    assert torch.allclose(net(X), twin(X), atol=1e-4)
    loss = nn.CrossEntropyLoss()
    for adaptive, invariant in ((True, True), (False, False)):  # the layer BN follows moves
        v0, v1 = (
            lm.sharpness(m, loss, (X, y), rho=0.1, adaptive=adaptive, params="0.*", seed=1).value
            for m in (net, twin)
        )
        assert bool(abs(v1 / v0 - 1) < 0.01) == invariant, (adaptive, v0, v1)


# -- standard errors -----------------------------------------------------------------------
@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_average_case_se_covers_the_exact_value_in_about_95_percent(quad):
    H, ev, wstar = quad
    net, loss, data = quadratic(H, wstar)
    rho = 0.02
    want = 0.5 * rho**2 * float(ev.sum())
    hits = 0
    for seed in range(200):
        r = lm.sharpness(
            net, loss, data, rho=rho, kind="average", adaptive=False, draws=32, seed=seed
        )
        hits += abs(r.value - want) <= 2 * r.se
    assert 0.90 <= hits / 200 <= 0.99, hits


@pytest.mark.slow
def test_m_sharpness_se_covers_the_whole_data_value_in_about_95_percent():
    net, loss, X, y = mlp_problem(n=1600)
    opts = {"rho": 0.1, "m": 8, "steps": 1}
    whole = lm.sharpness(net, loss, (X, y), **opts).value  # 200 batches
    hits = 0
    for seed in range(200):
        r = lm.sharpness(net, loss, (X, y), samples=256, seed=seed, **opts)  # 32 batches
        hits += abs(r.value - whole) <= 2 * r.se
    assert 0.90 <= hits / 200 <= 0.99, hits


# -- inputs, subsets, dict batches, the 0.1 call --------------------------------------------
def test_params_subset_moves_only_those_tensors_and_the_model_is_unchanged():
    net, loss, X, y = mlp_problem(n=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    r = lm.sharpness(net, loss, (X, y), rho=0.1, params="5.*")
    assert set(r.direction) == {"5.weight", "5.bias"}
    assert r.direction.meta["params"]["pattern"] == "5.*"
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    surf = lm.scan(
        net, loss, data={"train": (X, y)}, directions=r.direction, grid=(0, 1, 2), progress=False
    )
    assert surf["train_loss"][1] == pytest.approx(r.perturbed_loss, rel=1e-5)


def test_dict_batches_give_the_tuple_batches_value():
    net, loss, X, y = mlp_problem(n=32)

    class Keyed(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    keyed = Keyed(net)
    batches = [{"x": X[i : i + 8], "y": y[i : i + 8]} for i in range(0, 32, 8)]
    a = lm.sharpness(keyed, lambda out, b: loss(out, b["y"]), batches, rho=0.1, seed=2)
    b = lm.sharpness(keyed, loss, (X, y), rho=0.1, seed=2, batch_size=8)
    assert a.value == pytest.approx(b.value, rel=1e-5)
    with pytest.raises(InputError, match="m=4 regroups"):
        lm.sharpness(keyed, lambda out, b: loss(out, b["y"]), batches, rho=0.1, m=4)


def test_the_01_call_warns_with_the_new_one_and_gives_the_old_finding():
    net, loss, X, y = mlp_problem(n=32)
    with pytest.warns(FutureWarning, match=r"rho=0.05, kind='worst'"):
        r = lm.sharpness(net, loss, (X, y), epsilon=0.05, n_directions=2, norm="filter")
    assert type(r).__name__ == "Sharpness" and r.norm == "filter"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = lm.sharpness(net, loss, (X, y), rho=0.05)
    assert isinstance(new, SharpnessMeasure) and new.sentence().startswith("worst-case")
    d = new.to_dict()
    assert d["kind"] == "sharpness_measure" and d["direction"]["tensors"] == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rho": 0}, "rho=0 must be a positive"),
        ({"rho": 0.1, "kind": "sam"}, "kind='sam' must be one of"),
        ({"rho": 0.1, "norm": "l1"}, "norm='l1' must be"),
        ({"rho": 0.1, "kind": "average", "norm": "linf"}, "leave norm out"),
        ({"rho": 0.1, "kind": "pac-bayes", "m": 8}, "leave m out"),
        ({"rho": 0.1, "steps": 0}, "steps=0 must be an integer >= 1"),
        ({"rho": 0.1, "params": "nothing.*"}, "matches none"),
        ({}, "rho= is missing"),
    ],
)
def test_bad_input_is_refused_in_one_line(kwargs, match):
    net, loss, X, y = mlp_problem(n=16)
    with pytest.raises(InputError, match=match):
        lm.sharpness(net, loss, (X, y), **kwargs)


# -- the landscape along the worst case -----------------------------------------------------
def test_worst_case_plane_reaches_the_point_found_at_1_0():
    from lossmap.sharpness import worst_case_directions

    net, loss, X, y = mlp_problem(n=32)
    r = lm.sharpness(net, loss, (X, y), rho=0.1, seed=3)
    dirs = worst_case_directions(r, net, seed=1)
    d1, d2 = dirs[0], dirs[1]
    assert abs(d1.dot(d2)) < 1e-6 * d1.norm() ** 2 and d2.norm() == pytest.approx(d1.norm())
    surf = lm.scan(
        net,
        loss,
        data={"train": (X, y)},
        directions=dirs,
        grid=((-1, 1, 3), (-1, 1, 3)),
        progress=False,
    )
    assert surf["train_loss"][2, 1] == pytest.approx(r.perturbed_loss, rel=1e-5)
    assert surf["train_loss"][1, 1] == pytest.approx(r.centre_loss, rel=1e-5)
    pac = lm.sharpness(net, loss, (X, y), rho=0.05, kind="pac-bayes", draws=4)
    with pytest.raises(TypeError, match="PAC-Bayes"):
        worst_case_directions(pac, net)


@pytest.mark.parametrize(
    "module", ["lossmap.sharpness.api", "lossmap.sharpness.ascent", "lossmap.sharpness.landscape"]
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0


def test_docstrings_match_signatures(assert_docstring_matches_signature):
    from lossmap.sharpness import worst_case_directions

    assert_docstring_matches_signature(lm.sharpness)
    assert_docstring_matches_signature(worst_case_directions)
