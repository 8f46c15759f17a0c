"""Tests of lossmap.models: exact parameter counts, layouts and output shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
