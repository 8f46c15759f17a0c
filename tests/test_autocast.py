"""autocast: forward passes in bf16/fp16, close to full precision, never mixed in a store."""

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.errors import StoreError
from lossmap.scan.spec import ScanSpec


def setup():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 16),
                      nn.ReLU(), nn.Linear(16, 3))
    X, y = torch.randn(48, 1, 8, 8), torch.randint(0, 3, (48,))
    return m, {"train": (X, y)}, lm.random_directions(m, 2, norm="filter", seed=0)


KW = dict(grid=[(-1, 1, 4), (-1, 1, 3)], progress=False, batch_size=16)


@pytest.mark.parametrize(
    "how",
    [dict(), dict(reuse_first_layer=False), dict(strategy="vmap"),
     pytest.param(dict(compile=True), marks=pytest.mark.slow)],  # torch.compile: 5-12 s
    ids=["reuse", "no-reuse", "vmap", "compile"],
)
def test_bfloat16_is_close_to_full_precision_but_not_equal(how):
    m, data, dirs = setup()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    full = lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, **KW)
    half = lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, autocast="bfloat16",
                   **how, **KW)
    assert half.spec.autocast == "bfloat16" and full.spec.autocast is None
    # bf16 keeps 8 bits of mantissa: losses agree to a few 1e-3 relative, and do
    # differ (which proves the forward ran in bf16).
    np.testing.assert_allclose(half["train_loss"], full["train_loss"], rtol=3e-2)
    assert np.abs(half["train_loss"] - full["train_loss"]).max() > 1e-6
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == torch.float32


def test_aliases_and_bad_values():
    m, data, dirs = setup()
    a = lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, autocast=torch.bfloat16,
                **KW)
    b = lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, autocast="bf16", **KW)
    assert a.spec.autocast == b.spec.autocast == "bfloat16"
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])
    for bad in ("int8", torch.float64, ["bfloat16"]):
        with pytest.raises(lm.InputError, match=r"must be None .*'bfloat16' or 'float16'"):
            lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, autocast=bad, **KW)


def test_a_store_is_never_resumed_in_another_precision(tmp_path):
    m, data, dirs = setup()
    path = tmp_path / "s.lossmap"
    lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, store=path, **KW)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="autocast None stored vs 'bfloat16' now"):
        lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, store=path,
                autocast="bfloat16", **KW)
    assert path.read_bytes() == before


def test_a_spec_stored_before_autocast_existed_reads_as_full_precision():
    m, data, dirs = setup()
    spec = lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, **KW).spec
    old = spec.to_dict()
    del old["autocast"]
    assert ScanSpec.from_dict(old) == spec
    assert not ScanSpec.from_dict(old).differences(spec)


def test_the_reused_first_layer_stays_full_precision_under_vmap(monkeypatch):
    """The combination Y_c + a·Y_1 + b·Y_2 is a matrix product on the vmap path,
    which autocast would run in bf16: it must stay float32, as on the loop path."""
    from lossmap.backends.torch import firstlayer

    seen = []
    original = firstlayer.combine_many

    def spy(Ys, A):
        out = original(Ys, A)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(firstlayer, "combine_many", spy)
    m, data, dirs = setup()
    lm.scan(m, nn.CrossEntropyLoss(), data=data, directions=dirs, autocast="bfloat16",
            strategy="vmap", **KW)
    assert seen and set(seen) == {torch.float32}


@pytest.mark.jax
def test_a_jax_model_refuses_autocast_with_a_clear_error():
    import jax.numpy as jnp

    model = lm.jax.JaxModel(lambda v, x: x @ v["params"]["w"], {"params": {"w": jnp.ones((3, 2))}})
    X, y = np.ones((4, 3), np.float32), np.zeros(4, np.int32)
    d = lm.random_direction(model, seed=0)
    with pytest.raises(lm.InputError, match="autocast is PyTorch-only"):
        lm.scan(model, lm.jax.cross_entropy, data={"t": (X, y)}, directions=d, grid=(-1, 1, 3),
                autocast="bfloat16", progress=False)
