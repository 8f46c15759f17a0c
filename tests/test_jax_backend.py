"""The JAX backend: exact values, PyTorch agreement, normalization on Flax trees, store, errors."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen, nnx

import lossmap as lm
from lossmap.jax import JaxModel

pytestmark = pytest.mark.jax


class MLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = linen.relu(linen.Dense(16)(x))
        return linen.Dense(3)(x)


class ConvBN(linen.Module):
    @linen.compact
    def __call__(self, x, train=False):
        x = linen.Conv(6, (3, 3))(x)
        x = linen.BatchNorm(use_running_average=not train)(x)
        x = linen.relu(x).reshape(x.shape[0], -1)
        return linen.Dense(4)(x)


def classification(n=70, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, 3, n)


def torch_twin(variables):
    """The PyTorch MLP with the same weights (Dense kernels are (in, out): transpose)."""
    p = variables["params"]
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        for i, name in ((0, "Dense_0"), (2, "Dense_1")):
            net[i].weight.copy_(torch.from_numpy(np.array(p[name]["kernel"]).T))
            net[i].bias.copy_(torch.from_numpy(np.array(p[name]["bias"])))
    return net


def to_torch_names(d):
    out = {}
    for i, name in ((0, "Dense_0"), (2, "Dense_1")):
        out[f"{i}.weight"] = d[f"params/{name}/kernel"].T.contiguous()
        out[f"{i}.bias"] = d[f"params/{name}/bias"]
    return lm.Direction(out)


@pytest.fixture(scope="module")
def mlp():
    net = MLP()
    return net, net.init(jax.random.key(1), jnp.ones((1, 5)))


@pytest.mark.parametrize("grid", [[(-1.0, 1.0, 9)], [(-1.0, 1.0, 5), (-0.5, 1.5, 4)]])
def test_agrees_with_pytorch_on_the_same_weights_directions_and_data(mlp, grid):
    net, variables = mlp
    X, y = classification()
    dirs = lm.random_directions((net, variables), len(grid), norm="filter", ignore=None, seed=3)
    surf = lm.scan((net, variables), lm.jax.cross_entropy, data={"train": (X, y)},
                   directions=dirs, grid=grid, batch_size=16, progress=False)
    ref = lm.scan(torch_twin(variables), torch.nn.CrossEntropyLoss(),
                  data={"train": (torch.from_numpy(X), torch.from_numpy(y))},
                  directions=[to_torch_names(d) for d in dirs], grid=grid, progress=False)
    np.testing.assert_allclose(surf["train_loss"], ref["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(surf["train_accuracy"], ref["train_accuracy"], atol=1e-6)
    assert surf.meta["backend"] == "jax"


def test_float64_matches_closed_form_of_a_linear_regression():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(97, 5)), rng.normal(size=(97, 1))
    w0, b0 = rng.normal(size=(5, 1)), rng.normal(size=(1,))
    with jax.enable_x64(True):
        model = JaxModel(lambda v, x: x @ v["params"]["w"] + v["params"]["b"],
                         {"params": {"w": jnp.asarray(w0), "b": jnp.asarray(b0)}})
        dirs = lm.random_directions(model, 2, norm="none", ignore=None, seed=2)
        surf = lm.scan(model, lm.jax.mse, data={"train": (X, y)}, directions=dirs,
                       grid=[(-1.0, 1.0, 7), (0.25, 2.0, 4)], batch_size=10, progress=False)
    assert surf["train_loss"].dtype == np.float64
    for i, a in enumerate(np.linspace(-1, 1, 7)):
        for j, b in enumerate(np.linspace(0.25, 2.0, 4)):
            w = w0 + a * dirs[0]["params/w"].numpy() + b * dirs[1]["params/w"].numpy()
            bb = b0 + a * dirs[0]["params/b"].numpy() + b * dirs[1]["params/b"].numpy()
            expect = np.mean((X @ w + bb - y) ** 2)
            assert surf["train_loss"][i, j] == pytest.approx(expect, rel=1e-12)


def test_filter_normalization_slices_the_last_axis_of_flax_kernels():
    net = ConvBN()
    variables = net.init(jax.random.key(0), jnp.ones((1, 6, 6, 2)))
    d1, d2 = lm.random_directions((net, variables), 2, norm="filter", seed=0, orthogonal=True)
    p = variables["params"]
    for name in ("Conv_0", "Dense_0"):
        k = np.array(p[name]["kernel"])
        dk = d1[f"params/{name}/kernel"].numpy()
        out = k.shape[-1]
        np.testing.assert_allclose(np.linalg.norm(dk.reshape(-1, out), axis=0),
                                   np.linalg.norm(k.reshape(-1, out), axis=0), rtol=1e-5)
        # per output unit, the two directions are orthogonal
        d2k = d2[f"params/{name}/kernel"].numpy().reshape(-1, out)
        assert np.abs((dk.reshape(-1, out) * d2k).sum(0)).max() < 1e-5
    # biases and BatchNorm scale/shift are 1-D: zero with ignore="biasbn"; stats get none
    for name in ("params/Conv_0/bias", "params/BatchNorm_0/scale", "params/BatchNorm_0/bias"):
        assert float(d1[name].abs().sum()) == 0.0
    assert not any(k.startswith("batch_stats/") for k in d1)
    assert d1.meta["filter_axis"] == -1


def test_layer_norm_and_ignore_none_on_flax_trees():
    net = ConvBN()
    variables = net.init(jax.random.key(0), jnp.ones((1, 6, 6, 2)))
    d = lm.random_direction((net, variables), norm="layer", ignore=None, seed=4)
    for name, t in d.items():
        ref = np.array(variables["params"][name.split("/")[1]][name.split("/")[2]])
        assert float(t.norm()) == pytest.approx(float(np.linalg.norm(ref)), rel=1e-5)


def test_batchnorm_model_scans_with_stored_statistics_and_nnx_equals_linen():
    net = ConvBN()
    variables = net.init(jax.random.key(0), jnp.ones((1, 6, 6, 2)))
    stats = jax.tree_util.tree_map(lambda a: a + 0.5, variables["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": stats}
    model = JaxModel(lambda v, x: net.apply(v, x, train=False), variables)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 6, 6, 2)).astype(np.float32), rng.integers(0, 4, 20)
    d = lm.random_direction(model, seed=1)
    surf = lm.scan(model, lm.jax.cross_entropy, data={"t": (X, y)}, directions=d,
                   grid=(-1, 1, 5), progress=False)
    # brute force: apply at each point by hand
    def moved_by(a):
        def move(path, v):
            name = jax.tree_util.keystr(path, simple=True, separator="/")
            return v + a * jnp.asarray(d[name].numpy()) if name in d else v

        return jax.tree_util.tree_map_with_path(move, variables)

    for i, a in enumerate(np.linspace(-1, 1, 5)):
        moved = moved_by(a)
        logits = net.apply(moved, jnp.asarray(X), train=False)
        assert surf["t_loss"][i] == pytest.approx(float(lm.jax.cross_entropy(logits, y)),
                                                  rel=1e-5)


def test_nnx_module_gives_the_linen_values_and_is_left_unchanged():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1, self.l2 = nnx.Linear(5, 16, rngs=rngs), nnx.Linear(16, 3, rngs=rngs)

        def __call__(self, x):
            return self.l2(nnx.relu(self.l1(x)))

    net = Net(nnx.Rngs(0))
    before = jax.tree_util.tree_map(np.array, nnx.to_pure_dict(nnx.state(net)))
    lin = MLP()
    variables = {"params": {"Dense_0": nnx.to_pure_dict(nnx.state(net.l1)),
                            "Dense_1": nnx.to_pure_dict(nnx.state(net.l2))}}
    X, y = classification()
    d_nnx = lm.random_direction(net, seed=0)
    renamed = {k.replace("l1", "Dense_0").replace("l2", "Dense_1"): v for k, v in d_nnx.items()}
    a = lm.scan(net, lm.jax.cross_entropy, data={"t": (X, y)}, directions=d_nnx,
                grid=(-1, 1, 5), progress=False)
    b = lm.scan((lin, variables), lm.jax.cross_entropy, data={"t": (X, y)},
                directions=lm.Direction(renamed), grid=(-1, 1, 5), progress=False)
    np.testing.assert_allclose(a["t_loss"], b["t_loss"], rtol=1e-6)
    after = nnx.to_pure_dict(nnx.state(net))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, after)


def test_loop_strategy_equals_vmap(mlp):
    net, variables = mlp
    X, y = classification()
    d = lm.random_directions((net, variables), 2, seed=0)
    kw = dict(data={"t": (X, y)}, directions=d, grid=[(-1, 1, 4)] * 2, progress=False)
    a = lm.scan((net, variables), lm.jax.cross_entropy, strategy="vmap", **kw)
    b = lm.scan((net, variables), lm.jax.cross_entropy, strategy="loop", **kw)
    assert (a.profile["strategy"], b.profile["strategy"]) == ("vmap", "loop")
    np.testing.assert_allclose(a["t_loss"], b["t_loss"], rtol=1e-6)
    with pytest.warns(DeprecationWarning, match="strategy='map' is deprecated"):
        c = lm.scan((net, variables), lm.jax.cross_entropy, strategy="map", **kw)
    np.testing.assert_array_equal(b["t_loss"], c["t_loss"])


def test_store_resume_and_refusal(mlp, tmp_path):
    net, variables = mlp
    X, y = classification()
    d = lm.random_directions((net, variables), 2, seed=0)
    path = tmp_path / "s.lossmap"
    kw = dict(data={"t": (X, y)}, grid=[(-1, 1, 5)] * 2, progress=False, store=path)
    first = lm.scan((net, variables), lm.jax.cross_entropy, directions=d, **kw)
    again = lm.scan((net, variables), lm.jax.cross_entropy, directions=d, **kw)
    np.testing.assert_array_equal(first["t_loss"], again["t_loss"])
    assert lm.load(path)["t_loss"].shape == (5, 5)
    other = lm.random_directions((net, variables), 2, seed=1)
    with pytest.raises(lm.LossmapError, match="dir"):
        lm.scan((net, variables), lm.jax.cross_entropy, directions=other, **kw)


def test_interpolation_between_two_jax_models(mlp):
    net, a = mlp
    b = net.init(jax.random.key(7), jnp.ones((1, 5)))
    d = lm.interpolation((net, a), (net, b))
    X, y = classification()
    surf = lm.scan((net, a), lm.jax.cross_entropy, data={"t": (X, y)}, directions=d,
                   grid=(0, 1, 2), progress=False)
    at_b = float(lm.jax.cross_entropy(net.apply(b, jnp.asarray(X)), y))
    assert surf["t_loss"][1] == pytest.approx(at_b, rel=1e-5)


def test_clear_errors(mlp):
    net, variables = mlp
    X, y = classification()
    d = lm.random_direction((net, variables), seed=0)
    torch_dir = lm.random_direction(torch.nn.Linear(5, 3), seed=0)
    with pytest.raises(lm.InputError, match=r"weight|params"):
        lm.scan((net, variables), lm.jax.cross_entropy, data={"t": (X, y)},
                directions=torch_dir, grid=(-1, 1, 3), progress=False)
    with pytest.raises(lm.InputError, match="bn='recompute' is not available"):
        lm.scan((net, variables), lm.jax.cross_entropy, data={"t": (X, y)}, directions=d,
                grid=(-1, 1, 3), bn="recompute", progress=False)
    with pytest.raises(lm.InputError, match="split 't'"):
        lm.scan((net, variables), lm.jax.cross_entropy, data={"t": (X[:, :4], y)},
                directions=d, grid=(-1, 1, 3), progress=False)
    flat = {k: np.asarray(v) for k, v in lm.jax.as_model(variables).flat().items()}
    with pytest.raises(lm.InputError, match="arrays the model does not have"):
        lm.scan((net, variables), lm.jax.cross_entropy, data={"t": (X, y)}, directions=d,
                grid=(-1, 1, 3), centre={**flat, "batch_stats/extra": np.ones(2)},
                progress=False)
    with pytest.raises(lm.InputTypeError, match="bare variables pytree"):
        lm.scan(variables, lm.jax.cross_entropy, data={"t": (X, y)}, directions=d,
                grid=(-1, 1, 3), progress=False)


def test_the_core_never_imports_jax():
    code = ("import sys, torch, lossmap as lm; "
            "d = lm.random_direction(torch.nn.Linear(2, 2)); print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_cli_scans_a_jax_model_like_the_api(tmp_path, capsys):
    from pathlib import Path

    from safetensors.numpy import save_file

    from lossmap.cli import main

    jaxnet = Path(__file__).parent / "cli_fixtures" / "jaxnet.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("lossmap_test_jaxnet", jaxnet)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "j.lossmap"
    code = main(["scan", "--model", f"{jaxnet}:make_model", "--data", f"{jaxnet}:make_data",
                 "--grid", "-1:1:5", "--grid", "-1:1:3", "--dirs", "2", "--out", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    model, data = mod.make_model(), mod.make_data()
    dirs = lm.random_directions(model, 2, seed=0)
    ref = lm.scan(model, lm.jax.cross_entropy, data=data, directions=dirs,
                  grid=[(-1, 1, 5), (-1, 1, 3)], progress=False)
    surf = lm.load(out)
    for v in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(surf[v], ref[v], rtol=1e-6)
    # checkpoints of a JAX model: flat name -> array safetensors files
    files = []
    for i, (_, variables) in enumerate((model, mod.make_other_init())):
        flat = lm.jax.as_model(variables).flat()
        files.append(tmp_path / f"m{i}.safetensors")
        save_file({k: np.asarray(v) for k, v in flat.items()}, str(files[-1]))
    out2 = tmp_path / "i.lossmap"
    code = main(["scan", "--model", f"{jaxnet}:make_model", "--data", f"{jaxnet}:make_data",
                 "--interpolate", str(files[0]), str(files[1]), "--grid", "0:1:3",
                 "--out", str(out2), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    net, other = mod.make_other_init()
    X, y = data["test"]
    at_b = float(lm.jax.cross_entropy(net.apply(other, jnp.asarray(X)), y))
    assert lm.load(out2)["test_loss"][2] == pytest.approx(at_b, rel=1e-5)
    code = main(["scan", "--model", f"{jaxnet}:make_model", "--data", f"{jaxnet}:make_data",
                 "--pca", str(tmp_path), "--out", str(tmp_path / "p.lossmap"), "--no-progress"])
    assert code == 2 and "PyTorch models" in capsys.readouterr().err


def test_example_cnn_agrees_with_pytorch_on_a_line_and_a_plane():
    from lossmap.jax import cnn as jcnn
    from lossmap.jax import convert
    from lossmap.models import fashion_cnn

    torch.manual_seed(0)
    net = fashion_cnn().eval()
    g = torch.Generator().manual_seed(2)
    X, y = torch.rand(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g)
    flax_model = (jcnn.fashion_cnn(), convert.torch_to_flax(net.state_dict()))
    data_j = {"t": (X.permute(0, 2, 3, 1).numpy(), y.numpy())}
    for grid in ([(-1.0, 1.0, 5)], [(-1.0, 1.0, 3), (-0.5, 0.5, 3)]):
        dirs = lm.random_directions(net, len(grid), norm="filter", seed=1)
        ref = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"t": (X, y)}, directions=dirs,
                      grid=grid, progress=False)
        got = lm.scan(flax_model, lm.jax.cross_entropy, data=data_j,
                      directions=[lm.Direction(convert.direction_to_flax(d)) for d in dirs],
                      grid=grid, batch_size=20, progress=False)
        np.testing.assert_allclose(got["t_loss"], ref["t_loss"], rtol=1e-4)
        assert np.ptp(ref["t_loss"]) > 1e-3  # a real surface, not a constant


def test_one_metric_contract_the_length_one_rule_and_accuracy_as_in_pytorch():
    """Issue 22 item 2: JAX reads a metric's result and scores accuracy by PyTorch's rules."""
    from lossmap.backends.jax import metrics as M
    from lossmap.backends.torch.metrics import accuracy as torch_accuracy
    from lossmap.stats import MEAN, PAIR, TOTAL, VALUES

    def mine(o, y):
        return o

    assert M.metric_kind("m", mine, jnp.zeros(1), 1) == VALUES  # one example: its value
    assert M.metric_kind("m", mine, jnp.zeros(1), 8) == MEAN  # one element on 8: the mean
    assert M.metric_kind("m", mine, (jnp.ones(1), jnp.ones(1)), 1) == PAIR
    assert M.metric_kind("m", mine, (jnp.ones(1), jnp.ones(1)), 8) == TOTAL
    with pytest.raises(lm.InputError, match=r"metric 'm' returned shape \(8, 2\)"):
        M.metric_kind("m", mine, jnp.zeros((8, 2)), 8)
    g = np.random.default_rng(0)
    cases = [(g.normal(size=(9, 4)), g.integers(0, 4, 9)),  # class indices
             (g.normal(size=(3, 5, 4, 6)), g.integers(0, 5, (3, 4, 6))),  # segmentation
             (g.normal(size=(9, 1)), g.integers(0, 2, 9))]  # one logit per example
    for out, y in cases:
        want = [t.numpy() for t in torch_accuracy(torch.from_numpy(out), torch.from_numpy(y))]
        correct, counts = M.per_example(M.accuracy)(jnp.asarray(out), jnp.asarray(y))
        np.testing.assert_array_equal(correct, want[0])
        np.testing.assert_array_equal(counts, want[1])
        assert float(M.accuracy(jnp.asarray(out), jnp.asarray(y))) == pytest.approx(
            want[0].sum() / want[1].sum())


def test_negative_counts_are_refused_by_the_jax_evaluator(mlp):
    net, variables = mlp
    X, y = classification()

    def neg(o, t):
        return (o ** 2).sum(1), -jnp.ones(o.shape[:1], o.dtype)

    d = lm.random_direction((net, variables), seed=0)
    with pytest.raises(lm.InputError, match=r"metric 'neg' returned negative counts "
                                            r"\(-70.0 in all on split 'train'\)"):
        lm.scan((net, variables), lm.jax.cross_entropy, data={"train": (X, y)}, directions=d,
                grid=(-1, 1, 3), metrics=("loss", ("neg", neg)), progress=False)
