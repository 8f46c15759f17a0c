"""Per-example slopes at the centre (PyTorch and JAX) and the JAX evaluator's standard errors.

Every number is checked against an independent float64 reference: central
finite differences of brute-force per-sample losses (a plain loop over the
model in float64), autograd of the mean loss, and, for standard errors, the
sample standard deviation of brute-force per-sample values over √n.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import lossmap as lm
from lossmap.backends.torch import roundoff
from lossmap.backends.torch.metrics import accuracy
from lossmap.backends.torch.persample import per_example_terms, per_sample_losses
from lossmap.backends.torch.slopes import centre_slopes
from lossmap.data.splits import Split

CPU = torch.device("cpu")
H = 1e-5  # central differences in float64: error ~H² · third derivative, far below 1e-4


def se_of(g: np.ndarray) -> float:
    return float(np.std(g, ddof=1) / np.sqrt(len(g)))


def conv_bn_net() -> nn.Module:
    """A small conv net with BatchNorm whose running statistics are not the defaults."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(),
                        nn.Linear(64, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.3, 0.3)
        net[1].running_var.uniform_(0.5, 2.0)
    return net


def state_of(net: nn.Module) -> tuple[dict, dict]:
    return ({k: v.detach().clone() for k, v in net.named_parameters()},
            {k: v.detach().clone() for k, v in net.named_buffers()})


def fd_per_example(net, params, buffers, d, X, y, per_example) -> np.ndarray:
    """Central differences, in float64, of ``per_example(outputs, y)`` along ``d``."""
    ref = copy.deepcopy(net).double().eval()
    base = {k: (v.double() if v.is_floating_point() else v) for k, v in {**params,
                                                                        **buffers}.items()}

    def at(alpha):
        st = dict(base)
        for k, v in d.items():
            st[k] = st[k] + alpha * v.double()
        return per_example(functional_call(ref, st, (X.double(),)), y)

    return ((at(H) - at(-H)) / (2 * H)).detach().numpy()


def test_torch_slopes_equal_float64_finite_differences_of_per_sample_losses():
    net = conv_bn_net()
    net.train()  # the slopes use eval mode (fixed statistics) and give the mode back
    params, buffers = state_of(net)
    X, y = torch.randn(40, 1, 6, 6), torch.randint(0, 3, (40,))
    gen = torch.Generator().manual_seed(1)
    dirs = [{k: torch.randn(v.shape, generator=gen) for k, v in params.items()}
            for _ in range(2)]
    # batches of 16: 16 + 16 + 8, the last one short
    out = centre_slopes(net, {"loss": nn.CrossEntropyLoss()}, params, buffers, dirs,
                        [Split("train", X, y)], CPU, 16)
    assert net.training and torch.equal(net[0].weight, params["0.weight"])
    assert list(out) == ["train_loss"] and len(out["train_loss"]) == 2
    for d, got in zip(dirs, out["train_loss"], strict=True):
        g = fd_per_example(net, params, buffers, d, X, y,
                           lambda o, t: F.cross_entropy(o, t, reduction="none"))
        assert got["n"] == 40
        assert got["slope"] == pytest.approx(g.mean(), rel=1e-4)
        assert got["se"] == pytest.approx(se_of(g), rel=1e-4)
        # the mean slope is the derivative of the mean loss: autograd, float64
        ref = copy.deepcopy(net).double().eval()
        st = {k: (v.double() if v.is_floating_point() else v)
              for k, v in {**params, **buffers}.items()}
        p = {k: st[k].clone().requires_grad_(True) for k in params}
        loss = F.cross_entropy(functional_call(ref, {**st, **p}, (X.double(),)), y)
        grads = torch.autograd.grad(loss, list(p.values()))
        auto = sum(float((gr * d[k].double()).sum()) for gr, k in zip(grads, p, strict=True))
        assert got["slope"] == pytest.approx(auto, rel=1e-4)


def test_metrics_without_per_example_values_get_no_slope_and_per_example_values_do():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    params, buffers = state_of(net)
    X, Y = torch.randn(30, 4), torch.randn(30, 3)
    d = {k: torch.randn_like(v) for k, v in params.items()}
    metrics = {
        "loss": nn.MSELoss(),
        "own": lambda o, t: ((o - t) ** 2).mean(1),  # one value per example
        "mean_only": lambda o, t: ((o - t) ** 2).mean(),  # a batch mean: no terms
        "accuracy": accuracy,  # zero derivative almost everywhere
    }
    out = centre_slopes(net, metrics, params, buffers, [d], [Split("test", X, Y)], CPU, 8)
    assert sorted(out) == ["test_loss", "test_own"]
    g = fd_per_example(net, params, buffers, d, X, Y, lambda o, t: ((o - t) ** 2).mean(1))
    for name in ("test_loss", "test_own"):
        assert out[name][0]["slope"] == pytest.approx(g.mean(), rel=1e-4)
        assert out[name][0]["se"] == pytest.approx(se_of(g), rel=1e-4)


def test_weighted_cross_entropy_with_ignored_targets_is_exact():
    """Class weights and ignore_index: the value is Σwᵢℓᵢ/Σwᵢ, so the slope is Σwᵢgᵢ/Σwᵢ
    and its standard error the ratio estimator's (not a plain std/√n)."""
    net = conv_bn_net()
    params, buffers = state_of(net)
    X, y = torch.randn(36, 1, 6, 6), torch.randint(0, 3, (36,))
    y[::7] = -100  # ignored
    w = torch.tensor([0.5, 1.0, 3.0])
    loss = nn.CrossEntropyLoss(weight=w)
    d = {k: torch.randn_like(v) for k, v in params.items()}
    out = centre_slopes(net, {"loss": loss}, params, buffers, [d], [Split("train", X, y)],
                        CPU, 10)
    got = out["train_loss"][0]
    # the module's own mean, differentiated by central differences in float64
    value = fd_per_example(net, params, buffers, d, X, y,
                           lambda o, t: F.cross_entropy(o, t, weight=w.double()).reshape(1))
    assert got["slope"] == pytest.approx(float(value[0]), rel=1e-4)
    # the ratio estimator from brute-force per-example terms tᵢ = wᵢℓᵢ, cᵢ = wᵢ (0 if ignored)
    g = fd_per_example(net, params, buffers, d, X, y,
                       lambda o, t: F.cross_entropy(o, t, weight=w.double(), reduction="none"))
    c = np.where(y.numpy() == -100, 0.0, w.double().numpy()[y.clamp(min=0).numpy()])
    n = len(g)
    r = g.sum() / c.sum()
    se = np.sqrt(np.sum((g - r * c) ** 2) / (n * (n - 1))) / (c.sum() / n)
    assert got["n"] == n and got["se"] == pytest.approx(se, rel=1e-4)
    assert abs(got["se"] - se_of(g / np.where(c > 0, c, 1))) > 1e-3 * got["se"]  # not std/√n


def test_per_example_terms_and_per_sample_losses():
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    per = per_sample_losses(nn.CrossEntropyLoss(), logits, y)
    ref = torch.stack([F.cross_entropy(logits[i : i + 1], y[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(per, ref)
    w = torch.tensor([1.0, 2.0, 3.0])  # the mean weighs examples unequally: no per-sample mean
    assert per_sample_losses(nn.CrossEntropyLoss(weight=w), logits, y) is None
    equal = per_sample_losses(nn.CrossEntropyLoss(weight=torch.full((3,), 2.0)), logits, y)
    torch.testing.assert_close(equal, ref)  # equal weights: every example counts the same
    assert per_sample_losses(nn.CrossEntropyLoss(reduction="sum"), logits, y) is None
    assert per_example_terms(lambda o, t: o.sum(), logits, y) is None
    t, c = per_example_terms(lambda o, t: (o.sum(1), torch.full((6,), 2.0)), logits, y)
    assert torch.equal(c, torch.full((6,), 2.0)) and torch.equal(t, logits.sum(1))


@pytest.mark.slow
def test_the_backend_hook_gives_the_same_slopes_and_respects_the_size_limit(monkeypatch):
    net = conv_bn_net()
    X, y = torch.randn(24, 1, 6, 6), torch.randint(0, 3, (24,))
    d = lm.random_direction(net, seed=0)
    plan = lm.plan_scan(net, nn.CrossEntropyLoss(), data={"train": (X, y), "test": (X, y)},
                        directions=d, grid=(-1, 1, 3), batch_size=8)
    got = plan.backend.centre_slopes(plan)
    params, buffers = state_of(net)
    ref = centre_slopes(net, plan.metrics, params, buffers, plan.directions, plan.splits, CPU, 8)
    assert sorted(got) == ["test_loss", "train_loss"]  # accuracy: none
    assert got["train_loss"][0]["slope"] == pytest.approx(ref["train_loss"][0]["slope"],
                                                          rel=1e-6)
    monkeypatch.setattr(roundoff, "BUDGET", 1)
    assert plan.backend.centre_slopes(plan) is None


# -- JAX ------------------------------------------------------------------------------------


def jax_mlp():
    """A tanh MLP as a JaxModel, its variables and a float64 NumPy twin of its forward."""
    import jax.numpy as jnp

    from lossmap.jax import JaxModel

    rng = np.random.default_rng(0)
    v = {"w1": rng.normal(size=(5, 8)) / 2, "b1": rng.normal(size=8) / 4,
         "w2": rng.normal(size=(8, 3)) / 2, "b2": rng.normal(size=3) / 4}
    v = {k: a.astype(np.float32) for k, a in v.items()}

    def apply_fn(p, x):
        return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def numpy_fn(p, x):
        return np.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    model = JaxModel(lambda var, x: apply_fn(var["params"], x),
                     {"params": {k: jnp.asarray(a) for k, a in v.items()}})
    return model, v, numpy_fn


def np_cross_entropy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    return -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1)))


def classification(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.jax
def test_jax_slopes_equal_float64_finite_differences():
    from lossmap import jax as lmj
    from lossmap.backends.jax.slopes import centre_slopes as jax_slopes

    model, v, numpy_fn = jax_mlp()
    X, y = classification()
    rng = np.random.default_rng(3)
    dirs = [{k: rng.normal(size=a.shape).astype(np.float32) for k, a in v.items()}
            for _ in range(2)]
    centre = {f"params/{k}": torch.from_numpy(a) for k, a in v.items()}
    tdirs = [{f"params/{k}": torch.from_numpy(a) for k, a in d.items()} for d in dirs]
    split = Split("train", torch.from_numpy(X), torch.from_numpy(y))
    out = jax_slopes(model, {"loss": lmj.cross_entropy, "accuracy": lmj.accuracy,
                             "mean_only": lambda o, t: (o ** 2).mean()},
                     centre, tdirs, [split], 16)
    assert list(out) == ["train_loss"]
    v64 = {k: a.astype(np.float64) for k, a in v.items()}
    for d, got in zip(dirs, out["train_loss"], strict=True):
        def at(alpha, d=d):
            return np_cross_entropy(numpy_fn({k: v64[k] + alpha * d[k] for k in v64},
                                             X.astype(np.float64)), y)

        g = (at(H) - at(-H)) / (2 * H)
        assert got["n"] == 40
        assert got["slope"] == pytest.approx(g.mean(), rel=1e-4)
        assert got["se"] == pytest.approx(se_of(g), rel=1e-4)


@pytest.mark.jax
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_jax_evaluator_standard_errors_equal_brute_force_at_every_point_of_a_line(strategy):
    import jax.numpy as jnp

    from lossmap import jax as lmj
    from lossmap.backends.jax.evaluate import JaxEvaluator

    model, v, numpy_fn = jax_mlp()
    X, y = classification(n=45)
    rng = np.random.default_rng(4)
    d = {k: rng.normal(size=a.shape).astype(np.float32) for k, a in v.items()}
    metrics = {
        "loss": lmj.cross_entropy,
        "accuracy": lmj.accuracy,
        "sq": lambda o, t: (o ** 2).mean(1),  # one value per example
        "pair": lambda o, t: ((o ** 2).sum(1), jnp.full(o.shape[:1], 3.0, o.dtype)),
        "mean_only": lambda o, t: (o ** 2).mean(),
    }
    centre = {f"params/{k}": torch.from_numpy(a) for k, a in v.items()}
    ev = JaxEvaluator(model, metrics, centre, [{f"params/{k}": torch.from_numpy(a)
                                                for k, a in d.items()}],
                      [Split("train", torch.from_numpy(X), torch.from_numpy(y))],
                      batch_size=16, strategy=strategy)  # 16 + 16 + 13
    assert ev.errors and ev.kinds == ["values", "pair", "values", "pair", "mean"]
    points = np.linspace(-1, 1, 5)[:, None]
    values, se = ev.evaluate(points, errors=True)
    assert np.array_equal(values, ev.evaluate(points))  # the same values either way
    for k, (a,) in enumerate(points):
        at = {n: v[n].astype(np.float64) + a * d[n] for n in v}
        out = numpy_fn(at, X.astype(np.float64))
        ce = np_cross_entropy(out, y)
        hit = (out.argmax(1) == y).astype(np.float64)
        sq = (out ** 2).mean(1)
        np.testing.assert_allclose(values[k, :3], [ce.mean(), hit.mean(), sq.mean()],
                                   rtol=2e-6)
        np.testing.assert_allclose(se[k, :3], [se_of(ce), se_of(hit), se_of(sq)], rtol=1e-4)
        # (totals, counts): Σt/Σc, with the ratio estimator's SE (counts 3: std(t/3)/√n)
        assert values[k, 3] == pytest.approx((out ** 2).sum() / (3 * len(y)), rel=2e-6)
        assert se[k, 3] == pytest.approx(se_of((out ** 2).sum(1) / 3), rel=1e-4)
        assert values[k, 4] == pytest.approx((out ** 2).mean(), rel=2e-6)
        assert np.isnan(se[k, 4])
    only_means = JaxEvaluator(model, {"m": metrics["mean_only"]}, centre, [centre],
                              [Split("train", torch.from_numpy(X), torch.from_numpy(y))])
    assert not only_means.errors
    assert np.isnan(only_means.evaluate(points[:2], errors=True)[1]).all()


@pytest.mark.jax
def test_jax_values_are_the_batch_means_weighted_as_before():
    """Built-in metrics keep their value: Σ (batch mean · batch size) / n, in float64."""
    import jax
    import jax.numpy as jnp

    from lossmap import jax as lmj
    from lossmap.backends.jax.evaluate import JaxEvaluator

    model, v, _ = jax_mlp()
    X, y = classification(n=45)
    centre = {f"params/{k}": torch.from_numpy(a) for k, a in v.items()}
    d = {k: torch.ones_like(t) * 0.1 for k, t in centre.items()}
    ev = JaxEvaluator(model, {"loss": lmj.cross_entropy, "accuracy": lmj.accuracy}, centre,
                      [d], [Split("train", torch.from_numpy(X), torch.from_numpy(y))],
                      batch_size=16)
    got = ev.evaluate(np.array([[0.5]]))[0]
    params = {k: jnp.asarray(v[k] + 0.5 * np.float32(0.1)) for k in v}
    before = np.zeros(2)
    for i in range(0, 45, 16):
        out = jax.jit(model)({"params": params}, jnp.asarray(X[i : i + 16]))
        yb = jnp.asarray(y[i : i + 16])
        before += [float(lmj.cross_entropy(out, yb)) * len(yb),
                   float(lmj.accuracy(out, yb)) * len(yb)]
    np.testing.assert_allclose(got, before / 45, rtol=1e-6)


@pytest.mark.jax
def test_jax_backend_hook_and_torch_twin_agree():
    """The JAX backend's slopes through a plan equal the PyTorch slopes of the same weights."""
    from lossmap import jax as lmj

    model, v, _ = jax_mlp()
    X, y = classification()
    rng = np.random.default_rng(5)
    d = lm.Direction({f"params/{k}": torch.from_numpy(rng.normal(size=a.shape)
                                                      .astype(np.float32))
                      for k, a in v.items()})
    plan = lm.plan_scan(model, lmj.cross_entropy, data={"train": (X, y)}, directions=d,
                        grid=(-1, 1, 3), batch_size=16)
    got = plan.backend.centre_slopes(plan)
    assert list(got) == ["train_loss"]  # accuracy: none

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            for k, a in v.items():
                setattr(self, k, nn.Parameter(torch.from_numpy(a.copy())))

        def forward(self, x):
            return torch.tanh(x @ self.w1 + self.b1) @ self.w2 + self.b2

    twin = Twin()
    params, _ = state_of(twin)
    ref = centre_slopes(twin, {"loss": nn.CrossEntropyLoss()}, params, {},
                        [{k.split("/")[1]: t for k, t in d.items()}],
                        [Split("train", torch.from_numpy(X), torch.from_numpy(y))], CPU, 16)
    assert got["train_loss"][0]["slope"] == pytest.approx(ref["train_loss"][0]["slope"],
                                                          rel=1e-4)
    assert got["train_loss"][0]["se"] == pytest.approx(ref["train_loss"][0]["se"], rel=1e-4)


class NoForwardAD(torch.autograd.Function):
    """tanh with a backward but no forward-mode rule (no jvp)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (1 - torch.tanh(x) ** 2)


def test_a_model_forward_mode_cannot_run_gives_no_slopes_and_says_so():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return NoForwardAD.apply(self.fc(x))

    net = Net()
    X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    plan = lm.plan_scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)},
                        directions=lm.random_direction(net, seed=0), grid=(-1, 1, 3))
    with pytest.warns(RuntimeWarning, match="slopes at the centre were not measured"):
        assert plan.backend.centre_slopes(plan) is None


@pytest.mark.jax
def test_a_jax_model_jvp_cannot_run_gives_no_slopes_and_says_so():
    import jax
    import jax.numpy as jnp

    from lossmap import jax as lmj

    @jax.custom_vjp
    def act(x):
        return jnp.tanh(x)

    act.defvjp(lambda x: (jnp.tanh(x), x), lambda x, g: (g * (1 - jnp.tanh(x) ** 2),))
    model = lmj.JaxModel(lambda v, x: act(x @ v["params"]["w"]),
                         {"params": {"w": jnp.ones((5, 3))}})
    X, y = classification(n=20)
    plan = lm.plan_scan(model, lmj.cross_entropy, data={"train": (X, y)},
                        directions=lm.random_direction(model, seed=0), grid=(-1, 1, 3))
    with pytest.warns(RuntimeWarning, match="slopes at the centre were not measured"):
        assert plan.backend.centre_slopes(plan) is None

