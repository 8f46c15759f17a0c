"""The Flax CNN, its conversion to and from the PyTorch CNN, and the JAX training loop."""

from __future__ import annotations

import subprocess
import sys

# jax, flax and optax come with the jax extra that `make setup` installs: a
# missing one is a setup error, not a reason to skip.
import jax
import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap import data, models
from lossmap.jax import cnn
from lossmap.jax.convert import (
    direction_to_flax,
    direction_to_torch,
    flatten_variables,
    flax_to_torch,
    torch_to_flax,
    unflatten_variables,
)
from lossmap.jax.train import load_variables, train

pytestmark = pytest.mark.jax

PAIRS = [(models.fashion_cnn, cnn.fashion_cnn, 28), (models.digits_cnn, cnn.digits_cnn, 8)]


def _shapes(module: cnn.CNN) -> dict[str, tuple[int, ...]]:
    x = jax.ShapeDtypeStruct((1, module.side, module.side, 1), np.float32)
    tree = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    return {n: tuple(a.shape) for n, a in flatten_variables(tree).items()}


def _torch_model(make, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return make().eval()


@pytest.mark.parametrize(("make_torch", "make_flax", "count"),
                         [(models.fashion_cnn, cnn.fashion_cnn, 105_866),
                          (models.digits_cnn, cnn.digits_cnn, 3_658)])
def test_parameter_count_and_names(make_torch, make_flax, count):
    shapes = _shapes(make_flax())
    assert sum(int(np.prod(s)) for s in shapes.values()) == count
    assert sum(p.numel() for p in make_torch().parameters()) == count
    assert sorted(shapes) == sorted(
        f"params/{layer}/{leaf}" for layer in ("Conv_0", "Conv_1", "Dense_0", "Dense_1")
        for leaf in ("kernel", "bias"))


def test_init_is_seeded_and_has_the_right_shapes():
    # digits: compiling Flax's initializers is slow on a busy CPU; fashion's shapes via eval_shape
    module = cnn.digits_cnn()
    a, b, c = cnn.init(0, module), cnn.init(0, module), cnn.init(1, module)
    fa, fb, fc = (flatten_variables(v) for v in (a, b, c))
    assert {n: tuple(x.shape) for n, x in fa.items()} == _shapes(module)
    assert all(x.dtype == np.float32 for x in fa.values())
    assert all(np.array_equal(fa[n], fb[n]) for n in fa)
    assert not np.array_equal(fa["params/Conv_0/kernel"], fc["params/Conv_0/kernel"])


@pytest.mark.parametrize(("make_torch", "make_flax", "side"), PAIRS)
def test_round_trips_are_exact(make_torch, make_flax, side):
    state = _torch_model(make_torch).state_dict()
    back = flax_to_torch(torch_to_flax(state))
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    # flax -> torch -> flax, from arbitrary values in the Flax layout
    rng = np.random.default_rng(0)
    flat = {n: rng.standard_normal(s).astype(np.float32) for n, s in _shapes(make_flax()).items()}
    again = flatten_variables(torch_to_flax(flax_to_torch(unflatten_variables(flat))))
    assert all(np.array_equal(np.asarray(again[n]), flat[n]) for n in flat)


@pytest.mark.parametrize(("make_torch", "make_flax", "side"), PAIRS)
def test_converted_models_give_the_same_logits(make_torch, make_flax, side):
    model = _torch_model(make_torch, seed=3)
    variables = torch_to_flax(model.state_dict())
    X = torch.rand(16, 1, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(X).numpy()
    got = np.asarray(make_flax().apply(variables, cnn.to_nhwc(X)))
    assert got.shape == expected.shape == (16, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    # and the other way: arbitrary weights in the Flax layout loaded into torch
    rng = np.random.default_rng(1)
    flax_vars = unflatten_variables({n: (0.3 * rng.standard_normal(s)).astype(np.float32)
                                     for n, s in _shapes(make_flax()).items()})
    model.load_state_dict(flax_to_torch(flax_vars))
    with torch.no_grad():
        expected = model(X).numpy()
    got = np.asarray(make_flax().apply(flax_vars, cnn.to_nhwc(X)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_direction_conversion_keeps_norms_and_filter_norms():
    model = _torch_model(models.fashion_cnn)
    d1, d2 = lm.random_directions(model, 2, norm="filter", ignore=None, seed=0)
    f1, f2 = direction_to_flax(d1), direction_to_flax(d2)
    assert set(f1) == set(_shapes(cnn.fashion_cnn()))
    wrapped = lm.Direction(f1, meta=d1.meta)
    assert wrapped.norm() == pytest.approx(d1.norm(), rel=1e-6)
    assert wrapped.dot(f2) == pytest.approx(d1.dot(d2), rel=1e-5, abs=1e-6)
    layers = {"0": "Conv_0", "3": "Conv_1", "8": "Dense_0", "10": "Dense_1"}
    for index, layer in layers.items():
        key, flax_name = f"{index}.weight", f"params/{layer}/kernel"
        t, f = d1[key], f1[flax_name]
        torch_rows = t.reshape(t.shape[0], -1).norm(dim=1)  # filter i = row i of axis 0
        flax_slices = f.reshape(-1, f.shape[-1]).norm(dim=0)  # filter i = slice i of last axis
        torch.testing.assert_close(flax_slices, torch_rows, rtol=1e-6, atol=0)
        # and filter norm = the centre's filter norm (norm="filter") on both sides
        w = model.state_dict()[key]
        torch.testing.assert_close(torch_rows, w.reshape(w.shape[0], -1).norm(dim=1))
        assert torch.equal(f1[f"params/{layer}/bias"], d1[f"{index}.bias"])
    back = direction_to_torch(wrapped)
    assert set(back) == set(d1) and all(torch.equal(back[k], d1[k]) for k in d1)


def test_perturbed_weights_agree_after_converting_the_direction():
    model = _torch_model(models.digits_cnn, seed=5)
    state = model.state_dict()
    (d,) = lm.random_directions(model, 1, norm="filter", ignore="biasbn", seed=2)
    moved = {k: state[k] + 0.5 * d[k] for k in state}
    flat = flatten_variables(torch_to_flax(state))
    fd = direction_to_flax(d)
    moved_flax = unflatten_variables({n: np.asarray(flat[n]) + 0.5 * fd[n].numpy() for n in flat})
    X = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    model.load_state_dict(moved)
    with torch.no_grad():
        expected = model(X).numpy()
    got = np.asarray(cnn.digits_cnn().apply(moved_flax, cnn.to_nhwc(X)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_training_lowers_the_loss_and_is_reproducible(tmp_path):
    X, y = data.digits("train")
    X, y = cnn.to_nhwc(X[:256]), y[:256].numpy()
    module = cnn.digits_cnn()
    theta0 = cnn.init(0, module)
    kw = dict(epochs=2, lr=0.2, batch_size=32, seed=7, progress=False)
    X_test, y_test = data.digits("test")
    test = (cnn.to_nhwc(X_test[:256]), y_test[:256])  # one shape: one compiled evaluation
    a = train(module, theta0, (X, y), test, out=tmp_path / "run", **kw)
    b = train(module, theta0, (X, y), test, **kw)
    h = a.history
    assert h["epoch"] == [0, 1, 2]
    assert h["train_loss"][0] == pytest.approx(np.log(10), abs=0.15)
    assert h["train_loss"][-1] < h["train_loss"][0] - 0.05
    assert a.history == {**b.history, "seconds": a.history["seconds"]}
    fa, fb = flatten_variables(a.theta_hat), flatten_variables(b.theta_hat)
    assert all(np.array_equal(fa[n], fb[n]) for n in fa)
    # θ0 is untouched, the checkpoints hold the trajectory by flattened names
    f0 = flatten_variables(theta0)
    assert all(np.array_equal(f0[n], flatten_variables(a.theta0)[n]) for n in f0)
    assert [p.name for p in a.checkpoints] == [f"epoch_{i:03d}.safetensors" for i in range(3)]
    last = flatten_variables(load_variables(a.checkpoints[-1]))
    assert set(last) == set(fa) and all(np.array_equal(last[n], fa[n]) for n in fa)
    assert (tmp_path / "run" / "theta_hat.safetensors").exists()
    # another seed shuffles differently
    c = train(module, theta0, (X, y), epochs=1, lr=0.2, batch_size=32, seed=8, progress=False)
    assert c.history["train_loss"][1] != a.history["train_loss"][1]


def test_core_and_demo_do_not_import_jax():
    code = ("import sys, lossmap, lossmap.demo, lossmap.cli; "
            "bad = [m for m in ('jax', 'flax', 'optax') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
