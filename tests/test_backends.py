"""One evaluator contract, run against every backend: the same plan, attributes, profile, words.

The PyTorch and JAX backends differ in how they evaluate, not in what the
core may read from them. Each case here runs once per backend; a backend
whose evaluator lacks a field the profile reads (the 0.1 bug:
``lm.scan(jax_model, ..., profile=True)`` raised) fails it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap.backends.base import Backend, profile_of
from lossmap.backends.registry import backend_for, find_backend

N, D_IN, C = 48, 5, 3


def _data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, D_IN, generator=g)
    y = torch.randint(0, C, (N,), generator=g)
    return X, y


def torch_case():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D_IN, 8), torch.nn.Tanh(), torch.nn.Linear(8, C))
    X, y = _data()

    def brute(points, dirs):
        """Loss at c + Σ aᵢ dᵢ by setting each weight on a copy of the model."""
        out = []
        for a in points:
            m = torch.nn.Sequential(torch.nn.Linear(D_IN, 8), torch.nn.Tanh(),
                                    torch.nn.Linear(8, C))
            m.load_state_dict(net.state_dict())
            with torch.no_grad():
                for name, p in m.named_parameters():
                    for ai, d in zip(a, dirs, strict=True):
                        p.add_(d[name].double().mul(ai).to(p.dtype))
                out.append(float(torch.nn.functional.cross_entropy(m(X).double(), y)))
        return np.array(out)

    return net, torch.nn.CrossEntropyLoss(), (X, y), brute


def jax_case():
    import jax  # here, not at collection: the torch cases run without JAX (make test-fast)
    import jax.numpy as jnp
    from flax import linen

    class MLP(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(C)(jnp.tanh(linen.Dense(8)(x)))

    net = MLP()
    variables = net.init(jax.random.key(0), jnp.ones((1, D_IN)))
    X, y = _data()

    def brute(points, dirs):
        flat = lm.jax.flatten_variables(variables)
        out = []
        for a in points:
            moved = {k: np.asarray(v, np.float64) + sum(
                ai * dirs[i][k].double().numpy() for i, ai in enumerate(a) if k in dirs[i])
                for k, v in flat.items()}
            v = lm.jax.unflatten_variables({k: m.astype(np.float32) for k, m in moved.items()})
            logits = np.asarray(net.apply(v, X.numpy()), np.float64)
            logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1,
                                   keepdims=True)) - logits.max(1, keepdims=True)
            out.append(float(-logp[np.arange(N), y.numpy()].mean()))
        return np.array(out)

    return (net, variables), lm.jax.cross_entropy, (X.numpy(), y.numpy()), brute


CASES = {"torch": torch_case, "jax": jax_case}


@pytest.fixture(params=[pytest.param("jax", marks=pytest.mark.jax), "torch"])
def case(request):
    return request.param, *CASES[request.param]()


def test_backend_is_found_at_run_time(case):
    name, model, *_ = case
    backend = backend_for(model)
    assert isinstance(backend, Backend) and backend.name == name
    assert backend.filter_axis == {"torch": 0, "jax": -1}[name]
    assert find_backend({"w": torch.zeros(2)}) is None  # a state dict has no backend
    with pytest.raises(lm.InputTypeError, match=r"pass a torch\.nn\.Module"):
        backend_for(object())


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_same_words_same_values_as_brute_force(case, strategy):
    _name, model, loss, data, brute = case
    dirs = lm.random_directions(model, 2, seed=1)
    surf = lm.scan(model, loss, data={"train": data}, directions=dirs,
                   grid=[(-1, 1, 3), (-0.5, 0.5, 2)], metrics=("loss",), progress=False,
                   strategy=strategy)
    coords = np.stack(np.meshgrid(*surf.coords.values(), indexing="ij"), -1).reshape(-1, 2)
    np.testing.assert_allclose(surf["train_loss"].reshape(-1), brute(coords, dirs),
                               rtol=2e-5)
    assert surf.profile["strategy"] == strategy


def test_evaluator_has_every_contract_field(case):
    name, model, loss, data, _ = case
    plan = lm.plan_scan(model, loss, data={"train": data}, directions=lm.random_direction(
        model, seed=0), grid=(-1, 1, 3))
    assert plan.backend.name == name
    with plan.backend.guard(model):
        ev = plan.evaluator()
        values = ev.evaluate(np.array([[0.0], [0.5]]))
    assert values.shape == (2, len(ev.variables)) and values.dtype == np.float64
    assert ev.variables == ["train_loss", "train_accuracy"]
    assert ev.strategy in ("loop", "vmap") and ev.precision == "full"
    assert isinstance(ev.compiled, bool) and isinstance(ev.reuses_first_layer, bool)
    assert ev.chunk >= 1 and ev.batch_size >= 1 and ev.n == [N]
    assert isinstance(ev.device, torch.device)
    prof = profile_of(ev, 1.0)
    for key in ("strategy", "reuses_first_layer", "chunk", "batch_size", "compiled",
                "precision", "timings", "seconds"):
        assert key in prof, key
    assert prof["timings"]["forward"] > 0


def test_profile_prints_for_every_backend(case, capsys):
    _name, model, loss, data, _ = case
    surf = lm.scan(model, loss, data={"train": data}, directions=lm.random_direction(
        model, seed=0), grid=(-1, 1, 3), progress=False, profile=True)
    err = capsys.readouterr().err
    assert err.startswith("lossmap profile (loop, first-layer reuse")
    assert "forward" in err and "total" in err
    assert surf.profile["seconds"] > 0


def test_probe_is_the_centre_on_a_small_sample(case):
    _name, model, loss, data, brute = case
    d = lm.random_direction(model, seed=0)
    plan = lm.plan_scan(model, loss, data={"train": data}, directions=d, grid=(-1, 1, 3),
                        metrics=("loss",))
    with plan.backend.guard(model):
        probe = plan.backend.probe(plan, plan.evaluator())
    assert set(probe) == {"train_loss"}
    # N < PROBE_SAMPLES here: the probe is the centre's loss on the whole split.
    np.testing.assert_allclose(probe["train_loss"], brute(np.zeros((1, 1)), [d])[0], rtol=1e-5)


def test_options_a_backend_cannot_honour_are_refused_not_dropped(case):
    name, model, loss, data, _ = case
    kw = dict(data={"train": data}, directions=lm.random_direction(model, seed=0),
              grid=(-1, 1, 3), progress=False)
    with pytest.raises(lm.InputError, match="strategy='sideways' must be one of auto, loop"):
        lm.scan(model, loss, strategy="sideways", **kw)
    if name == "jax":
        with pytest.raises(lm.InputError, match="channels_last=True is PyTorch-only"):
            lm.scan(model, loss, channels_last=True, **kw)
        with pytest.raises(lm.InputError, match="autocast is PyTorch-only"):
            lm.scan(model, loss, autocast="bfloat16", **kw)
        with pytest.raises(lm.InputError, match="bn='recompute' is not available"):
            lm.scan(model, loss, bn="recompute", **kw)
        assert lm.scan(model, loss, compile=True, **kw).profile["compiled"]  # always jitted
    else:
        with pytest.raises(lm.InputError, match="compile=True works with the point loop"):
            lm.scan(model, loss, compile=True, strategy="vmap", **kw)


def test_unknown_option_is_named():
    net = torch.nn.Linear(2, 2)
    X, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    with pytest.raises(lm.InputTypeError, match="unknown scan option"):
        lm.plan_scan(net, torch.nn.CrossEntropyLoss(), data={"t": (X, y)},
                     directions=lm.random_direction(net, seed=0), grid=(-1, 1, 3), chunky=2)
