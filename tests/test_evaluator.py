"""Fast paths are exact: first-layer reuse and vmap against the plain point loop."""

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.backends.torch import firstlayer


class Doubling(nn.Module):
    """Changes the input before its first layer: reuse must not apply."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(x * 2)


class Tied(nn.Module):
    """Uses its first layer twice: reuse must not apply."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(6, 5), nn.Tanh()))
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(self.body(x))


def state(m):
    return {**dict(m.named_parameters()), **dict(m.named_buffers())}


@pytest.mark.parametrize(
    ("model", "shape", "path"),
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(6, 3)), (1, 6), "1"),
        (nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)), (1, 6), "0"),
        (Nested(), (1, 6), "body.1.0"),
        (nn.Linear(6, 3), (6,), ""),
        (Doubling(), (6,), None),
        (Tied(), (6,), None),
        (nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 3)), (6,), None),
    ],
)
def test_detect(model, shape, path):
    first = firstlayer.detect(model.eval(), state(model), torch.randn(4, *shape))
    assert (first.path if first else None) == path


def models():
    torch.manual_seed(0)
    return {
        "mlp": (
            nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)),
            torch.randn(37, 1, 4, 4),
        ),
        "cnn": (
            nn.Sequential(
                nn.Conv2d(1, 3, 3, padding=1),
                nn.BatchNorm2d(3),
                nn.ReLU(),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(12, 4),
            ),
            torch.randn(37, 1, 4, 4),
        ),
        "nested": (Nested(), torch.randn(37, 1, 6)),
    }


@pytest.mark.parametrize("name", ["mlp", "cnn", "nested"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_paths_equal_plain_loop(name, dtype):
    model, X = models()[name]
    model, X = model.to(dtype), X.to(dtype)
    y = torch.randint(0, 4 if name != "nested" else 3, (37,))
    dirs = lm.random_directions(model, 2, norm="filter", ignore=None, seed=1)
    kw = dict(
        data={"train": (X, y), "test": (X[:9], y[:9])},
        directions=dirs,
        grid=[(-1, 1, 4), (-0.5, 1.5, 3)],
        batch_size=8,
        progress=False,
    )
    ref = lm.scan(model, nn.CrossEntropyLoss(), strategy="loop", reuse_first_layer=False, **kw)
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    for strategy in ("loop", "vmap"):
        for reuse in (True, False):
            got = lm.scan(
                model, nn.CrossEntropyLoss(), strategy=strategy, reuse_first_layer=reuse, **kw
            )
            for v in ref.values:
                np.testing.assert_allclose(
                    got[v], ref[v], rtol=rtol, atol=0, err_msg=f"{strategy} reuse={reuse} {v}"
                )


def test_reuse_is_active_and_profile_prints(capsys):
    model, X = models()["mlp"]
    y = torch.randint(0, 4, (37,))
    d = lm.random_direction(model, seed=0)
    lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data={"t": (X, y)},
        directions=d,
        grid=(-1, 1, 3),
        progress=False,
        profile=True,
    )
    err = capsys.readouterr().err
    assert "first-layer reuse on" in err and "forward" in err and "total" in err
    assert "batch 37, compile off, full precision" in err
    lm.scan(
        Doubling(),
        nn.CrossEntropyLoss(),
        data={"t": (torch.randn(5, 6), y[:5] % 3)},
        directions=lm.random_direction(Doubling(), seed=0),
        grid=(-1, 1, 3),
        progress=False,
        profile=True,
        autocast="bfloat16",
    )
    err = capsys.readouterr().err
    assert "first-layer reuse off" in err and "bfloat16 autocast precision" in err


def test_unknown_strategy():
    model, X = models()["mlp"]
    with pytest.raises(ValueError, match="strategy='fast' must be one of auto, loop, vmap"):
        lm.scan(
            model,
            nn.CrossEntropyLoss(),
            data={"t": (X, torch.zeros(37, dtype=torch.long))},
            directions=lm.random_direction(model),
            grid=(-1, 1, 3),
            strategy="fast",
            progress=False,
        )


@pytest.mark.slow  # torch.compile: 3-6 s each
@pytest.mark.parametrize("reuse", [True, False])
def test_compiled_points_equal_the_eager_loop_and_leave_the_model_alone(reuse):
    model, X = models()["cnn"]
    y = torch.randint(0, 4, (37,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = lm.random_directions(model, 2, norm="filter", seed=1)
    kw = dict(data={"train": (X, y)}, directions=dirs, grid=[(-1, 1, 3), (-1, 1, 2)],
              batch_size=16, progress=False, reuse_first_layer=reuse)
    ref = lm.scan(model, nn.CrossEntropyLoss(), **kw)
    got = lm.scan(model, nn.CrossEntropyLoss(), compile=True, **kw)
    for v in ref.values:
        np.testing.assert_allclose(got[v], ref[v], rtol=2e-5, atol=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(lm.InputError, match="compile=True works with the point loop"):
        lm.scan(model, nn.CrossEntropyLoss(), compile=True, strategy="vmap", **kw)


@pytest.mark.slow  # torch.compile: about 4 s
def test_batch_rule_counts_only_written_activations_when_compiled():
    """Eager: the largest layer output bounds the batch; compiled: only outputs of
    layers with weights are written, and the fused first layer not even those."""
    from lossmap.backends.torch import sizing
    from lossmap.models import fashion_cnn

    model = fashion_cnn().eval()
    state, X, cpu = dict(model.state_dict()), torch.zeros(2, 1, 28, 28), torch.device("cpu")

    def rule(target, per_sample_bytes):
        return 2 ** int(np.log2(target // per_sample_bytes))

    conv1_out, conv2_out = 16 * 28 * 28 * 4, 32 * 14 * 14 * 4  # float32 bytes per sample
    eager = sizing.auto_batch_size(model, state, X, cpu)
    compiled = sizing.auto_batch_size(model, state, X, cpu, compiled=True, fused=model[0])
    unfused = sizing.auto_batch_size(model, state, X, cpu, compiled=True)
    assert eager == rule(sizing.ACTIVATION_TARGET, conv1_out) == 128
    assert compiled == rule(sizing.COMPILED_ACTIVATION_TARGET, conv2_out) == 512
    assert unfused == rule(sizing.COMPILED_ACTIVATION_TARGET, conv1_out) == 256
    # Through lm.scan: the Evaluator picks the compiled rule only with compile=True
    # and first-layer reuse.
    y = torch.zeros(2, dtype=torch.long)
    dirs = lm.random_directions(model, 2, seed=0)
    kw = dict(data={"t": (X, y)}, directions=dirs, grid=[(-1, 1, 2)] * 2)
    seen = []
    for options in ({"compile": True}, {"compile": True, "reuse_first_layer": False}, {}):
        plan = lm.plan_scan(model, nn.CrossEntropyLoss(), **kw, **options)
        with plan.backend.guard(model):
            seen.append(plan.evaluator().batch_size)
    assert seen == [512, 256, 128]


@pytest.mark.slow  # torch.compile's start-up: about 3 s
def test_compile_without_a_cxx_compiler_falls_back_to_eager_with_a_warning(monkeypatch):
    """torch.compile needs a C++ compiler on the CPU: without one the scan warns and
    goes on eagerly, with the same values."""
    import torch._dynamo
    import torch._inductor.config as inductor

    model, X = models()["mlp"]
    y = torch.randint(0, 4, (37,))
    kw = dict(data={"t": (X, y)}, directions=lm.random_directions(model, 2, seed=3),
              grid=[(-1, 1, 3)] * 2, progress=False, metrics=("loss",))
    ref = lm.scan(model, nn.CrossEntropyLoss(), **kw)
    monkeypatch.setattr(inductor.cpp, "cxx", (None, "/nonexistent/g++"))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # no compiled artifact to reuse
    torch._dynamo.reset()
    try:
        with pytest.warns(RuntimeWarning, match="torch.compile failed .*No working C.. compiler"):
            got = lm.scan(model, nn.CrossEntropyLoss(), compile=True, **kw)
    finally:
        torch._dynamo.reset()
    np.testing.assert_array_equal(got["t_loss"], ref["t_loss"])
