"""Curvature and slopes of attention models (issue 21 item 16).

PyTorch's fused attention kernels have no second derivative and no
forward-mode rule; the Hessian tools and the slopes at the centre run on the
math kernel and the unfused encoder path, and give the global settings back.
Each number is checked against a reference written here: Hessian-vector
products by plain autograd (under the math kernel, float64) with a power
iteration or the dense Hessian, and float64 central differences of the loss.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

import lossmap as lm
from lossmap.backends.torch.attention import differentiable_attention

H = 1e-5  # central differences in float64

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


class Encoder(nn.Module):
    """A tiny transformer: an input projection, one encoder layer, a classifier head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(4, 4)
        self.enc = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.enc(self.inp(x)).mean(1))


def encoder_data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(24, 5, 4, generator=g), torch.randint(0, 3, (24,), generator=g)


def flat_loss(model, loss_fn, X, y):
    """θ ↦ loss as a function of one flat float64 vector (the model's parameter order)."""
    ref = copy.deepcopy(model).double().eval()
    names = [k for k, _ in ref.named_parameters()]
    shapes = [p.shape for _, p in ref.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for _, p in ref.named_parameters()])
    X = X.double() if X.is_floating_point() else X

    def f(v):
        parts, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            parts[k] = v[i : i + s.numel()].reshape(s)
            i += s.numel()
        return loss_fn(functional_call(ref, parts, (X,)), y)

    return f, theta


def autograd_hvp(f, theta, v):
    """H·v by double backward (the math kernel: the fused one cannot do it)."""
    with sdpa_kernel(SDPBackend.MATH):
        x = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v, x)
    return hv.detach()


def power_iteration(f, theta, iters: int, seed: int = 0) -> float:
    """The eigenvalue of largest magnitude by power iteration (a Rayleigh quotient)."""
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v /= v.norm()
    hv = autograd_hvp(f, theta, v)
    for _ in range(iters):
        lam = float(v @ hv)
        if float((hv - lam * v).norm()) < 1e-7 * abs(lam):  # converged: H·v = λ·v
            return lam
        v = hv / hv.norm()
        hv = autograd_hvp(f, theta, v)
    raise AssertionError(f"the power iteration did not converge in {iters} products")


def test_encoder_hessian_eigenvalues_equal_autograd_references():
    model = Encoder()
    X, y = encoder_data()
    loss = nn.CrossEntropyLoss()
    fast = torch.backends.mha.get_fastpath_enabled()
    dirs = lm.hessian_eigenpairs(
        model, loss, (X, y), n=2, which="magnitude", dtype=torch.float64, tol=1e-10
    )
    vals = dirs.eigenvalues
    assert torch.backends.mha.get_fastpath_enabled() == fast  # the global setting is back
    f, theta = flat_loss(model, loss, X, y)
    top = power_iteration(f, theta, iters=2000)
    assert abs(vals[0] - top) <= 1e-7 * abs(top), (vals[0], top)
    # Both eigenvalues against the dense Hessian built column by column from autograd HVPs.
    dense = torch.stack(
        [autograd_hvp(f, theta, e) for e in torch.eye(len(theta), dtype=torch.float64)]
    )
    ev = np.linalg.eigvalsh(((dense + dense.T) / 2).numpy())
    ref = ev[np.argsort(-np.abs(ev))][:2]
    np.testing.assert_allclose(vals, ref, rtol=1e-8)
    # The curvature along the top eigen-direction is its eigenvalue.
    assert lm.curvature(model, loss, (X, y), dirs[0], dtype=torch.float64) == pytest.approx(
        vals[0], rel=1e-8
    )


def test_the_attention_settings_come_back_after_an_error():
    fast = torch.backends.mha.get_fastpath_enabled()
    with pytest.raises(RuntimeError, match="inside"), differentiable_attention():
        assert not torch.backends.mha.get_fastpath_enabled()
        raise RuntimeError("inside")
    assert torch.backends.mha.get_fastpath_enabled() == fast
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()


def scan_line(model, loss, data, d, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        surf = lm.scan(
            model,
            loss,
            data={"train": data},
            directions=d,
            grid=(-1, 1, 3),
            progress=False,
            **options,
        )
    said = [str(w.message) for w in caught if "slopes" in str(w.message)]
    assert not said, said
    return surf


def fd_slope(model, loss, data, d) -> float:
    """d/dα loss(c + α·d) at 0 by float64 central differences."""
    ref = copy.deepcopy(model).double().eval()
    X, y = data
    X = X.double() if X.is_floating_point() else X
    base = {k: v.detach().double() for k, v in ref.named_parameters()}

    def at(a):
        return float(
            loss(
                functional_call(
                    ref, {k: v + a * d[k].double() if k in d else v for k, v in base.items()}, (X,)
                ),
                y,
            )
        )

    with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        return (at(H) - at(-H)) / (2 * H)


def test_encoder_scan_measures_the_slope():
    model = Encoder()
    data = encoder_data()
    d = lm.random_direction(model, seed=3)
    surf = scan_line(model, nn.CrossEntropyLoss(), data, d)
    got = surf.slopes["train_loss"][0]["slope"]
    assert got == pytest.approx(fd_slope(model, nn.CrossEntropyLoss(), data, d), rel=1e-5)


# -- a transformers GPT-2 ------------------------------------------------------------------

VOCAB = 8


def tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=6,
        n_embd=4,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


def gpt2_loss(out, y):
    return nn.functional.cross_entropy(out.logits.reshape(-1, VOCAB), y.reshape(-1))


def gpt2_per_sequence(out, y):
    """One loss per sequence: the per-example terms the slopes need."""
    tokens = nn.functional.cross_entropy(
        out.logits.reshape(-1, VOCAB), y.reshape(-1), reduction="none"
    )
    return tokens.reshape(y.shape).mean(1)


def gpt2_data():
    g = torch.Generator().manual_seed(2)
    X = torch.randint(0, VOCAB, (4, 6), generator=g)
    return X, torch.roll(X, -1, dims=1)


@pytest.mark.hf
def test_gpt2_top_hessian_eigenvalue_equals_a_power_iteration():
    model = tiny_gpt2()
    X, y = gpt2_data()
    vals = lm.hessian_eigenpairs(
        model, gpt2_loss, (X, y), n=1, which="magnitude", dtype=torch.float64, tol=1e-10
    ).eigenvalues
    f, theta = flat_loss(model, gpt2_loss, X, y)
    top = power_iteration(f, theta, iters=2000)
    assert abs(vals[0] - top) <= 1e-6 * abs(top), (vals[0], top)


@pytest.mark.hf
def test_gpt2_scan_measures_the_slope():
    model = tiny_gpt2()
    data = gpt2_data()
    d = lm.random_direction(model, seed=1)
    surf = scan_line(model, gpt2_per_sequence, data, d, metrics=("loss",))
    got = surf.slopes["train_loss"][0]["slope"]
    assert got == pytest.approx(fd_slope(model, gpt2_loss, data, d), rel=1e-5)
