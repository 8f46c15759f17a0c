"""Random directions: distribution, seeding, each normalization, ignore, orthogonality, I/O."""

import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.errors import InputError, InputTypeError


def net() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16),
        nn.Linear(16, 5),
    )


def units(t, norm):
    if norm == "filter" and t.dim() >= 2:
        return t.reshape(t.shape[0], -1).double().norm(dim=1)
    return t.double().norm().reshape(1)


@pytest.mark.parametrize("norm", ["filter", "layer"])
@pytest.mark.parametrize("ignore", ["biasbn", None])
def test_unit_norms_match_centre(norm, ignore):
    model = net()
    d = lm.random_direction(model, norm=norm, ignore=ignore, seed=3)
    for name, p in model.named_parameters():
        if ignore == "biasbn" and p.dim() <= 1:
            assert torch.count_nonzero(d[name]) == 0, name
        else:
            torch.testing.assert_close(
                units(d[name], norm), units(p.detach(), norm), rtol=1e-5, atol=0
            )


def test_filter_is_per_output_slice_not_per_tensor():
    model = net()
    d = lm.random_direction(model, norm="filter", seed=0)
    w = model[0].weight.detach()
    ratios = d["0.weight"].reshape(8, -1).norm(dim=1) / w.reshape(8, -1).norm(dim=1)
    torch.testing.assert_close(ratios, torch.ones(8), rtol=1e-5, atol=0)
    # layer normalization only matches the whole tensor: per-filter ratios then vary
    dl = lm.random_direction(model, norm="layer", seed=0)
    ratios_l = dl["0.weight"].reshape(8, -1).norm(dim=1) / w.reshape(8, -1).norm(dim=1)
    assert ratios_l.std() > 1e-3


def test_model_norm_matches_whole_vector():
    model = net()
    d = lm.random_direction(model, norm="model", ignore="biasbn", seed=0)
    kept = {n: p for n, p in model.named_parameters() if p.dim() > 1}
    assert abs(d.norm() - sum(p.double().norm() ** 2 for p in kept.values()) ** 0.5) < 1e-4
    d_all = lm.random_direction(model, norm="model", ignore=None, seed=0)
    assert abs(d_all.norm() - sum(p.double().norm() ** 2 for p in model.parameters()) ** 0.5) < 1e-4


def test_none_is_standard_gaussian_not_uniform():
    model = nn.Linear(200, 100)
    d = lm.random_direction(model, norm="none", ignore=None, seed=0)
    w = d["weight"]
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02
    assert (w < 0).float().mean() > 0.45  # Gaussian: half negative (a uniform [0,1) has none)
    kurt = ((w - w.mean()) ** 4).mean() / w.var() ** 2
    assert abs(kurt - 3) < 0.2  # Gaussian kurtosis (uniform: 1.8)


def test_buffers_never_get_a_direction():
    model = net()
    d = lm.random_direction(model, seed=0)
    assert set(d) == {n for n, _ in model.named_parameters()}
    # a bare state dict: running statistics are recognized as buffers
    d2 = lm.random_direction(model.state_dict(), seed=0)
    assert set(d2) == set(d)
    for k in d:
        assert torch.equal(d[k], d2[k])


def test_seeded_bit_identical_and_private_rng():
    model = net()
    before = torch.get_rng_state()
    a = lm.random_directions(model, 2, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = lm.random_directions(model, 2, seed=7)
    c = lm.random_directions(model, 2, seed=8)
    for k in a[0]:
        assert torch.equal(a[0][k], b[0][k]) and torch.equal(a[1][k], b[1][k])
    assert not torch.equal(a[0]["4.weight"], c[0]["4.weight"])
    # the first of n equals the single direction with the same seed
    single = lm.random_direction(model, seed=7)
    assert all(torch.equal(single[k], a[0][k]) for k in single)
    assert a[0].meta == {**single.meta}


@pytest.mark.parametrize("norm", ["filter", "layer", "model", "none"])
@pytest.mark.parametrize("ignore", ["biasbn", None])
def test_orthogonal_keeps_normalization_exact(norm, ignore):
    model = net()
    d1, d2 = lm.random_directions(model, 2, norm=norm, ignore=ignore, seed=0, orthogonal=True)
    assert abs(d1.cosine(d2)) < 1e-6
    plain1, plain2 = lm.random_directions(model, 2, norm=norm, ignore=ignore, seed=0)
    assert all(torch.equal(d1[k], plain1[k]) for k in d1)  # the first is untouched
    assert abs(plain1.cosine(plain2)) > 1e-6  # so orthogonality is not an accident
    if norm in ("filter", "layer"):
        for name, p in model.named_parameters():
            if ignore == "biasbn" and p.dim() <= 1:
                continue
            torch.testing.assert_close(
                units(d2[name], norm), units(p.detach(), norm), rtol=1e-5, atol=1e-7
            )
    elif norm == "model":
        assert abs(d2.norm() - d1.norm()) < 1e-4 * d1.norm()
    else:
        assert abs(d2.norm() - plain2.norm()) < 1e-4 * plain2.norm()


def test_orthogonal_three_directions():
    model = nn.Linear(50, 20)
    ds = lm.random_directions(model, 3, norm="filter", seed=0, orthogonal=True)
    for i in range(3):
        for j in range(i):
            assert abs(ds[i].cosine(ds[j])) < 1e-6


def test_zero_unit_gets_zero_direction():
    model = nn.Linear(4, 3)
    with torch.no_grad():
        model.bias.zero_()
        model.weight[1].zero_()
    d = lm.random_direction(model, norm="filter", ignore=None, seed=0)
    assert torch.count_nonzero(d["bias"]) == 0
    assert torch.count_nonzero(d["weight"][1]) == 0
    assert torch.count_nonzero(d["weight"][0]) == 4


def test_direction_is_read_only_mapping_and_copies():
    src = {"w": torch.ones(3)}
    d = lm.Direction(src)
    src["w"] += 1
    assert torch.equal(d["w"], torch.ones(3))
    with pytest.raises(TypeError):
        d["w"] = torch.zeros(3)
    with pytest.raises(TypeError):
        del d["w"]
    assert len(d) == 1 and list(d) == ["w"]
    assert abs(lm.Direction({"w": torch.tensor([3.0, 4.0])}).norm() - 5) < 1e-12


def test_direction_save_load_roundtrip(tmp_path):
    d = lm.random_direction(net(), norm="layer", seed=5)
    path = tmp_path / "d.safetensors"
    d.save(path)
    e = lm.Direction.load(path)
    assert e.meta == d.meta
    assert all(torch.equal(d[k], e[k]) for k in d)
    assert path.read_bytes()[:8] != b"\x80\x02\x8a\x0a"  # not a pickle
    with pytest.raises(FileNotFoundError, match="does not exist"):
        lm.Direction.load(tmp_path / "missing.safetensors")


def test_bad_arguments_name_the_fix():
    model = net()
    with pytest.raises(InputError, match=r"unknown norm 'bogus'.*filter, layer, model, none"):
        lm.random_direction(model, norm="bogus")
    with pytest.raises(InputError, match="unknown ignore"):
        lm.random_direction(model, ignore="bias")
    with pytest.raises(InputError, match="n=0 must be an integer >= 1"):
        lm.random_directions(model, 0)
    with pytest.raises(InputTypeError, match=r"nn\.Module or a dict"):
        lm.random_direction([1, 2, 3])
    with pytest.raises(InputTypeError, match="seed"):
        lm.random_direction(model, seed=1.5)
    with pytest.raises(InputError, match="floating point"):
        lm.Direction({"w": torch.ones(3, dtype=torch.int64)})


def test_a_negative_seed_is_one_clear_error():
    with pytest.raises(lm.InputError, match=r"`seed`=-1 must be >= 0"):
        lm.random_directions(torch.nn.Linear(2, 2), 1, seed=-1)
