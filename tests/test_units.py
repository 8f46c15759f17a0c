"""``norm="filter"`` normalizes each layer's output units, found from its type (issue 21 item 5).

A transformers ``Conv1D`` (GPT-2) stores its weight as (in, out), a transposed
convolution as (in, out/groups, k…): their output units are columns and
(grouped) second-axis slices, not rows. Each test compares the direction's
norm per output unit with the centre's, computed here by slicing the weight
by hand.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.directions import regenerate

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def unit_norms(w: torch.Tensor, kind: str, groups: int = 1) -> torch.Tensor:
    """The norm of each output unit of ``w``, sliced by hand (float64)."""
    w = w.detach().double()
    if kind == "rows":
        return w.reshape(w.shape[0], -1).norm(dim=1)
    if kind == "columns":
        return w.norm(dim=0)
    # a transposed convolution (in, out/groups, k…): output channel j of group g
    cin, og = w.shape[:2]
    per = cin // groups
    return torch.stack(
        [w[g * per : (g + 1) * per, j].norm() for g in range(groups) for j in range(og)]
    )


class Zoo(nn.Module):
    """One of each layer type with its own weight layout."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(7, 4)
        self.lin = nn.Linear(4, 5)
        self.bil = nn.Bilinear(3, 2, 4)
        self.c1 = nn.Conv1d(2, 3, 3)
        self.c2 = nn.Conv2d(2, 4, 3, groups=2)
        self.c3 = nn.Conv3d(1, 2, 2)
        self.t1 = nn.ConvTranspose1d(4, 6, 3)  # (in, out, k)
        self.t2 = nn.ConvTranspose2d(4, 6, 3, groups=2)  # (in, out/2, k, k)
        self.norm = nn.LayerNorm((2, 3))  # a 2-D elementwise scale
        self.att = nn.MultiheadAttention(4, 2)

    def forward(self, x):  # never run: the directions read the modules only
        raise NotImplementedError


EXPECTED = {
    "emb.weight": ("rows", 1),
    "lin.weight": ("rows", 1),
    "bil.weight": ("rows", 1),
    "c1.weight": ("rows", 1),
    "c2.weight": ("rows", 1),
    "c3.weight": ("rows", 1),
    "t1.weight": ("transposed", 1),
    "t2.weight": ("transposed", 2),
    "att.in_proj_weight": ("rows", 1),
    "att.out_proj.weight": ("rows", 1),
}


@pytest.mark.parametrize("orthogonal", [False, True])
def test_every_known_layer_type_is_normalized_per_output_unit(orthogonal):
    net = Zoo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layer here is unknown: no warning
        dirs = lm.random_directions(net, 2, seed=1, orthogonal=orthogonal)
    for d in dirs:
        for name, (kind, groups) in EXPECTED.items():
            w = net.get_parameter(name)
            torch.testing.assert_close(
                unit_norms(d[name], kind, groups),
                unit_norms(w, kind, groups),
                rtol=1e-6,
                atol=1e-7,
                msg=name,
            )
        # The 2-D LayerNorm scale is one unit, like a 1-D one.
        assert float(d["norm.weight"].double().norm()) == pytest.approx(
            float(net.norm.weight.double().norm()), rel=1e-6
        )
        units = d.meta["units"]
        assert units["t1.weight"] == "axis 1" and units["t2.weight"] == "transposed groups=2"
        assert units["lin.weight"] == "axis 0" and units["norm.weight"] == "tensor"
        assert d.meta["units_from"] == "modules"
    if orthogonal:
        assert abs(dirs[0].cosine(dirs[1])) < 1e-6


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(3, 5))
        self.lin = nn.Linear(5, 2)


def test_an_unknown_2d_parameter_warns_by_name_and_gets_axis_0():
    net = Custom()
    with pytest.warns(UserWarning, match=r"'table' \(Custom, shape \(3, 5\)\).*axis 0"):
        d = lm.random_direction(net, seed=0)
    assert d.meta["units"]["table"] == "axis 0"
    torch.testing.assert_close(unit_norms(d["table"], "rows"), unit_norms(net.table, "rows"))
    with warnings.catch_warnings():  # the layer types that norm="layer" ignores: no warning
        warnings.simplefilter("error")
        assert "units" not in lm.random_direction(net, norm="layer", seed=0).meta


def test_a_state_dict_keeps_axis_0_and_says_so():
    net = Zoo()
    d = lm.random_direction(dict(net.named_parameters()), seed=1)
    assert d.meta["units_from"].startswith("a state dict")
    assert d.meta["units"]["t1.weight"] == "axis 0"
    torch.testing.assert_close(
        unit_norms(d["t1.weight"], "rows"), unit_norms(net.t1.weight, "rows")
    )
    # The model itself gives each layer its rule, with the same values as centre=.
    by_model = lm.random_direction(net, seed=1, centre=dict(net.named_parameters()))
    assert by_model.meta["units"]["t1.weight"] == "axis 1"


def test_a_recipe_regenerates_the_per_layer_rules_bit_identically(tmp_path):
    net = Zoo()
    d = lm.random_direction(net, seed=2, ignore=None).stored_as("recipe")
    d.save(tmp_path / "d.safetensors")
    again = regenerate(lm.Direction.load(tmp_path / "d.safetensors"), net)
    assert again.fingerprint() == d.fingerprint()


def tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=16, n_positions=8, n_embd=8, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


@pytest.mark.hf
@pytest.mark.parametrize("orthogonal", [False, True])
def test_gpt2_conv1d_directions_match_the_centre_per_output_column(orthogonal):
    from transformers.pytorch_utils import Conv1D

    model = tiny_gpt2()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # every GPT-2 layer type is known
        dirs = lm.random_directions(model, 2, seed=0, orthogonal=orthogonal)
    convs = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, Conv1D)}
    assert len(convs) == 8
    for d in dirs:
        for name, m in convs.items():
            assert m.weight.shape[1] == m.nf  # (in, out): the columns are the output units
            torch.testing.assert_close(
                unit_norms(d[name], "columns"),
                unit_norms(m.weight, "columns"),
                rtol=1e-6,
                atol=1e-7,
                msg=name,
            )
            assert d.meta["units"][name] == "axis -1"
        for name in ("transformer.wte.weight", "transformer.wpe.weight"):  # a token's row
            torch.testing.assert_close(
                unit_norms(d[name], "rows"),
                unit_norms(model.get_parameter(name), "rows"),
                rtol=1e-6,
                atol=1e-7,
                msg=name,
            )
            assert d.meta["units"][name] == "axis 0"
