"""Tests of lossmap.models: exact parameter counts, layouts and output shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lossmap.errors import InputError, InputTypeError
from lossmap.models import count_parameters, digits_cnn, fashion_cnn, mlp, resnet20
from lossmap.models.resnet import BasicBlock, PadShortcut


def _layer_types(model: nn.Sequential) -> list[type]:
    return [type(m) for m in model]


SMALL_CNN_LAYOUT = [
    nn.Conv2d,
    nn.ReLU,
    nn.AvgPool2d,
    nn.Conv2d,
    nn.ReLU,
    nn.AvgPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Linear,
    nn.ReLU,
    nn.Linear,
]


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_fashion_cnn_has_exactly_105866_parameters(dropout):
    model = fashion_cnn(dropout=dropout)
    # 1*16*9+16 + 16*32*9+32 + 1568*64+64 + 64*10+10
    assert count_parameters(model) == 105_866
    assert isinstance(model, nn.Sequential)
    assert _layer_types(model) == SMALL_CNN_LAYOUT
    first = model[0]
    assert (first.in_channels, first.out_channels) == (1, 16)
    assert first.kernel_size == (3, 3) and first.padding == (1, 1)
    assert model[3].in_channels == 16 and model[3].out_channels == 32
    assert model[7].p == dropout
    assert (model[8].in_features, model[8].out_features) == (1568, 64)
    assert (model[10].in_features, model[10].out_features) == (64, 10)


def test_fashion_cnn_forward_shape_and_eval_determinism():
    torch.manual_seed(0)
    model = fashion_cnn(dropout=0.5).eval()
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    assert out.shape == (5, 10)
    assert torch.equal(out, model(x))
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout is active in training mode


def test_digits_cnn_layout_and_shape():
    model = digits_cnn()
    # 1*8*9+8 + 8*16*9+16 + 64*32+32 + 32*10+10
    assert count_parameters(model) == 3_658
    assert count_parameters(digits_cnn(dropout=0.3)) == 3_658
    assert _layer_types(model) == SMALL_CNN_LAYOUT
    assert model(torch.rand(4, 1, 8, 8)).shape == (4, 10)


@pytest.mark.parametrize("builder", [fashion_cnn, digits_cnn])
def test_cnn_rejects_bad_dropout(builder):
    with pytest.raises(ValueError, match="dropout"):
        builder(dropout=1.0)


def test_mlp_default():
    model = mlp()
    assert isinstance(model[0], nn.Flatten)
    assert _layer_types(model) == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    # 784*512+512 + 512*512+512 + 512*10+10
    assert count_parameters(model) == 669_706
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_mlp_custom_sizes_and_errors():
    model = mlp((4, 3))
    assert _layer_types(model) == [nn.Flatten, nn.Linear]
    assert count_parameters(model) == 15
    assert model(torch.rand(2, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="sizes"):
        mlp((10,))
    with pytest.raises(ValueError, match="sizes"):
        mlp((10, 0, 2))


def test_resnet20_parameter_count_and_layout():
    model = resnet20()
    # conv 3*16*9 + bn 32; stage 1: 3 * (2*16*16*9 + 2*32); stage 2: 16*32*9 + 32*32*9
    # + 2*64 + 2 * (2*32*32*9 + 2*64); stage 3 likewise with 64; fc 64*10+10.
    assert count_parameters(model) == 269_722
    assert isinstance(model, nn.Sequential) and isinstance(model[0], nn.Conv2d)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 20  # the "20" of ResNet-20
    assert all(c.kernel_size == (3, 3) for c in convs)  # option A: no 1x1 projection
    assert len([m for m in model.modules() if isinstance(m, BasicBlock)]) == 9
    assert len([m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]) == 19
    assert len([m for m in model.modules() if isinstance(m, PadShortcut)]) == 2


def test_resnet20_forward_backward_and_options():
    torch.manual_seed(0)
    model = resnet20()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())

    grey = resnet20(num_classes=100, in_channels=1)
    # 269,722 - 3*16*9 + 1*16*9 - (64*10+10) + (64*100+100)
    assert count_parameters(grey) == 275_284
    assert grey.eval()(torch.rand(2, 1, 32, 32)).shape == (2, 100)


def test_pad_shortcut_subsamples_and_zero_pads_channels():
    x = torch.randn(2, 16, 32, 32)
    out = PadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, :8]) == 0
    assert torch.count_nonzero(out[:, 24:]) == 0


def test_count_parameters_trainable_only_and_shared():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 16 + 10
    assert count_parameters(model) == 26
    model[0].requires_grad_(False)
    assert count_parameters(model) == 26
    assert count_parameters(model, trainable_only=True) == 10
    shared = nn.Linear(5, 5)
    assert count_parameters(nn.Sequential(shared, shared)) == 30


# --------------------------------------------------------------------------- seeded builders

BUILDERS = [
    pytest.param(fashion_cnn, {"dropout": 0.2}, id="fashion_cnn"),
    pytest.param(digits_cnn, {}, id="digits_cnn"),
    pytest.param(mlp, {"sizes": (8, 6, 3)}, id="mlp"),
    pytest.param(resnet20, {"in_channels": 1}, id="resnet20"),
]


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(("builder", "kwargs"), BUILDERS)
def test_seed_gives_the_same_weights_and_leaves_the_global_rng_alone(builder, kwargs):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = builder(**kwargs, seed=7), builder(**kwargs, seed=7), builder(**kwargs, seed=8)
    assert torch.equal(torch.get_rng_state(), state)  # three builds, not one draw
    assert _same(a, b)
    weights = [k for k, v in a.state_dict().items() if k.endswith("weight") and v.ndim > 1]
    assert weights and all(  # every weight matrix or kernel depends on the seed
        not torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in weights
    )
    # seed=s draws what the global RNG draws after torch.manual_seed(s): θ0 of a
    # seed is the same as before builders took one.
    torch.manual_seed(7)
    assert _same(builder(**kwargs), a)
    # None keeps today's behaviour: the global RNG, which advances.
    torch.manual_seed(7)
    before = torch.get_rng_state()
    assert _same(builder(**kwargs, seed=None), a)
    assert not torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(("builder", "kwargs"), BUILDERS)
def test_builders_document_their_parameters(builder, kwargs, assert_docstring_matches_signature):
    assert_docstring_matches_signature(builder)


@pytest.mark.parametrize(
    ("seed", "error", "match"),
    [
        (-1, InputError, r"`seed`=-1 must be >= 0"),
        (1.5, InputTypeError, r"`seed`=1.5 must be an int"),
        (True, InputTypeError, r"`seed`=True must be an int"),
    ],
)
def test_bad_seed_is_refused_before_the_rng_is_touched(seed, error, match):
    state = torch.get_rng_state()
    with pytest.raises(error, match=match):
        digits_cnn(seed=seed)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("name", ["digits_cnn", "mlp", "entry"])
def test_cli_build_model_is_seeded_without_global_rng(name, tmp_path):
    from lossmap.cli.train import build_model

    if name == "entry":
        (tmp_path / "nets.py").write_text(
            "from torch import nn\n"
            "def make():\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n"
        )
        name = f"{tmp_path / 'nets.py'}:make"
    sample = torch.zeros(1, 1, 8, 8)
    state = torch.get_rng_state()
    a, b, c = (build_model(name, None, sample, seed)[0] for seed in (3, 3, 4))
    assert torch.equal(torch.get_rng_state(), state)
    assert _same(a, b) and not _same(a, c)


@pytest.mark.slow  # trains and scans twice: about 3 s on a quiet machine
@pytest.mark.usefixtures("one_thread")
def test_demo_theta0_is_reproducible_and_leaves_the_global_rng_alone(tmp_path):
    from lossmap import demo
    from lossmap.data import digits

    settings = demo.DemoSettings(epochs=1, line_points=3, plane_points=3, samples=32,
                                 batch_size=256)
    data = digits("train"), digits("test")
    state = torch.get_rng_state()
    runs = [demo._torch_runs(digits_cnn, settings, *data, tmp_path / str(i), False)[2]["after"]
            for i in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    theta0 = [r.theta0 for r in runs]
    assert theta0[0].keys() == theta0[1].keys()
    assert all(torch.equal(theta0[0][k], theta0[1][k]) for k in theta0[0])
    assert settings.init == "flax"  # the demo's θ0 is drawn as the notebook drew it
    assert all(torch.equal(theta0[0][k], v)
               for k, v in digits_cnn(seed=0, init="flax").state_dict().items())
    # Rerunning into its own folder replaces its own training run (overwrite=True).
    again = demo._torch_runs(digits_cnn, settings, *data, tmp_path / "0", False)[2]["after"]
    assert again.history["epoch"] == [0, 1]
