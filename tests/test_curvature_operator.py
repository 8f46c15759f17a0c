"""lm.curvature_operator: every kind's matrix against dense float64 references.

References are formed independently with torch.func on the flattened
parameters: the Hessian by ``torch.func.hessian``; the GGN as Jᵀ (∇²ₒℓ) J with
J from ``torch.func.jacrev``; the exact Fisher from the softmax closed form
Jᵀ (diag p − ppᵀ) J; the empirical Fisher from per-example gradients.
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev
from torch.nn.attention import SDPBackend, sdpa_kernel

import lossmap as lm
from lossmap import InputError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest

F64 = torch.float64
KINDS = ("hessian", "ggn", "fisher", "empirical_fisher")


class TinyAttention(nn.Module):
    """Self-attention over 3 tokens, mean-pooled, then a linear head: (N, 3, 4) -> (N, 3)."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h, _ = self.attn(x, x, x, need_weights=False)
        return self.head(torch.tanh(h).mean(1))


def tiny_mlp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    return net, torch.randn(12, 4, dtype=F64), torch.randint(0, 3, (12,))


def tiny_attention():
    torch.manual_seed(1)
    net = TinyAttention().double()
    return net, torch.randn(8, 3, 4, dtype=F64), torch.randint(0, 3, (8,))


MODELS = {"mlp": tiny_mlp, "attention": tiny_attention}


def flat_fn(net):
    """outputs(θ) for the flat parameter vector θ, and θ at the model's weights."""
    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])

    def outputs(t, X):
        parts, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            n = int(np.prod(s))
            parts[k] = t[i : i + n].reshape(s)
            i += n
        return functional_call(net, parts, (X,))

    return outputs, theta


def reference(kind, net, X, y):
    """The dense (p, p) float64 matrix of ``kind`` for the mean cross-entropy."""
    net.eval()
    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU kernel has no forward-mode AD
        return _reference(kind, net, X, y)


def _reference(kind, net, X, y):
    out, theta = flat_fn(net)
    ce = nn.CrossEntropyLoss()
    if kind == "hessian":
        return hessian(lambda t: ce(out(t, X), y))(theta)
    J = jacrev(lambda t: out(t, X))(theta)  # (N, C, p)
    o = out(theta, X).detach()
    if kind == "ggn":
        Ho = hessian(lambda z: ce(z, y))(o)  # (N, C, N, C)
        return torch.einsum("ncp,ncmd,mdq->pq", J, Ho, J)
    if kind == "fisher":
        p = torch.softmax(o, 1)
        M = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, C, C)
        return torch.einsum("ncp,ncd,ndq->pq", J, M, J) / len(y)
    G = jacrev(lambda t: nn.functional.cross_entropy(out(t, X), y, reduction="none"))(theta)
    return G.T @ G / len(y)  # empirical Fisher: (1/N) Σ gᵢgᵢᵀ


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("kind", KINDS)
def test_dense_matrix_equals_float64_reference(model, kind):
    net, X, y = MODELS[model]()
    op = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind=kind, batch_size=5)
    got = op.to_dense()
    want = reference(kind, net, X, y)
    assert op.dim == want.shape[0]
    assert torch.allclose(got, want, rtol=0, atol=1e-8 * max(1.0, float(want.abs().max())))
    assert float(want.abs().max()) > 1e-3  # not a trivially zero comparison


def test_ggn_equals_hessian_for_a_linear_model_with_mse():
    torch.manual_seed(2)
    net = nn.Linear(4, 2).double()
    X, y = torch.randn(15, 4, dtype=F64), torch.randn(15, 2, dtype=F64)
    H = lm.curvature_operator(net, nn.MSELoss(), (X, y)).to_dense()
    G = lm.curvature_operator(net, nn.MSELoss(), (X, y), kind="ggn").to_dense()
    assert torch.allclose(G, H, rtol=0, atol=1e-12)
    Fi = lm.curvature_operator(net, nn.MSELoss(), (X, y), kind="fisher").to_dense()
    assert torch.allclose(Fi, H, rtol=0, atol=1e-12)  # Gaussian likelihood: Fisher = GGN = H


def test_exact_fisher_equals_ggn_for_cross_entropy():
    net, X, y = tiny_mlp()
    G = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind="ggn").to_dense()
    Fi = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind="fisher").to_dense()
    assert torch.allclose(Fi, G, rtol=0, atol=1e-12)


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), nn.MSELoss()], ids=["ce", "mse"])
def test_monte_carlo_fisher_converges_to_the_exact_fisher(loss_fn):
    net, X, y = tiny_mlp()
    if isinstance(loss_fn, nn.MSELoss):
        y = torch.randn(12, 3, dtype=F64)
    exact = lm.curvature_operator(net, loss_fn, (X, y), kind="fisher").to_dense()
    errs = []
    for s in (10, 1000):
        mc = lm.curvature_operator(
            net, loss_fn, (X, y), kind="fisher", fisher_type="mc", mc_samples=s, seed=3
        ).to_dense()
        assert torch.allclose(mc, mc.T, atol=1e-14)
        assert float(torch.linalg.eigvalsh(mc).min()) > -1e-12  # a sum of outer products
        errs.append(float((mc - exact).norm() / exact.norm()))
    assert errs[1] < 0.1 and errs[1] < errs[0] / 3  # error ~ 1/√samples: 10× per 100×


def test_params_subset_is_the_diagonal_block_and_takes_a_regex():
    net, X, y = tiny_mlp()
    full = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y)).to_dense()
    sub = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), params=r"^2\.")
    assert sub.names == ["2.weight", "2.bias"]
    i = 4 * 5 + 5  # the first layer's entries come first
    assert torch.allclose(sub.to_dense(), full[i:, i:], rtol=0, atol=1e-12)


class DictNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))

    def forward(self, features, scale=None):
        return self.body(features) * (1.0 if scale is None else scale[:, None])


@pytest.mark.parametrize("kind", ["hessian", "ggn", "empirical_fisher"])
def test_dict_batches_give_the_matrix_of_the_tuple_batches(kind):
    torch.manual_seed(4)
    net = DictNet().double()
    X, y = torch.randn(12, 4, dtype=F64), torch.randint(0, 3, (12,))
    batches = [{"features": X[i : i + 5], "labels": y[i : i + 5]} for i in (0, 5, 10)]
    ce = nn.CrossEntropyLoss()
    op = lm.curvature_operator(net, lambda o, b: ce(o, b["labels"]), batches, kind=kind)
    want = lm.curvature_operator(net, ce, (X, y), kind=kind).to_dense()
    assert torch.allclose(op.to_dense(), want, rtol=0, atol=1e-12)


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
def test_eigenpairs_are_directions_scan_takes_with_their_eigenvalue(tmp_path):
    net, X, y = tiny_mlp()
    op = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y))
    H = op.to_dense().numpy()
    evals = np.linalg.eigvalsh(H)
    top = op.eigenpairs(2)
    bottom = op.eigenpairs(2, which="smallest")
    np.testing.assert_allclose(top.eigenvalues, evals[::-1][:2], rtol=1e-6)
    np.testing.assert_allclose(bottom.eigenvalues, evals[:2], rtol=1e-6, atol=1e-9)
    assert evals[0] < 0  # a saddle direction exists and is found
    for d in (*top, *bottom):
        assert d.meta["eigenvalue"] in (*top.eigenvalues, *bottom.eigenvalues)
        assert d.norm() == pytest.approx(1.0, abs=1e-12)
        hv = op.matvec(d)  # C·d = λ d
        for k in d:
            assert torch.allclose(hv[k], d.meta["eigenvalue"] * d[k], atol=1e-7)
    # The top and bottom eigenvectors span a plane lm.scan takes; along each axis the
    # loss bends as its eigenvalue says: (L(t) - 2 L(0) + L(-t)) / t² ≈ λ.
    t = 1e-3
    surf = lm.scan(
        net,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=[top[0], bottom[0]],
        grid=[(-t, t, 3)] * 2,
        progress=False,
    )
    L = np.asarray(surf["train_loss"], dtype=np.float64)  # (3, 3)
    assert (L[0, 1] - 2 * L[1, 1] + L[2, 1]) / t**2 == pytest.approx(top.eigenvalues[0], rel=1e-3)
    assert (L[1, 0] - 2 * L[1, 1] + L[1, 2]) / t**2 == pytest.approx(
        bottom.eigenvalues[0], rel=1e-3
    )


def test_blocks_give_each_layers_spectrum_in_one_call():
    net, X, y = tiny_mlp()
    op = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind="ggn")
    full = op.to_dense().numpy()
    blocks = op.blocks("layer", k=2)
    assert list(blocks) == ["0", "2"]
    for label, (a, b) in {"0": (0, 25), "2": (25, 43)}.items():
        want = np.linalg.eigvalsh(full[a:b, a:b])[::-1][:2]
        np.testing.assert_allclose(blocks[label].eigenvalues, want, rtol=1e-6)
        assert blocks[label][0].meta["block"] == label
        other = [k for k in blocks[label][0] if not k.startswith(label + ".")]
        assert all(float(blocks[label][0][k].abs().max()) == 0 for k in other)
    by_regex = op.blocks({"weights": r"weight$"}, k=1)
    w = [0, *range(0, 20)] and list(range(20)) + list(range(25, 40))
    np.testing.assert_allclose(
        by_regex["weights"].eigenvalues[0], np.linalg.eigvalsh(full[np.ix_(w, w)])[-1], rtol=1e-6
    )


def test_trace_and_diagonal_with_standard_errors_match_the_dense_matrix():
    net, X, y = tiny_mlp()
    op = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind="ggn")
    D = op.to_dense()
    true = float(torch.trace(D))
    errors = {}
    for method in ("hutchinson", "hutch++", "xtrace"):
        found = op.trace(method, probes=30, seed=0)
        assert found.se > 0 and found.matvecs <= 30
        errors[method] = abs(found.value - true)
        if method != "xtrace":  # XTrace's s.e. runs small (estimators.py says by how much)
            assert errors[method] < 4 * found.se, (method, found.value, true, found.se)
    assert errors["xtrace"] < errors["hutchinson"]  # a low-rank GGN: the sketch holds most
    diag = op.diagonal(probes=30)
    assert diag.value.shape == (op.dim,)
    z = (diag.value.cpu() - torch.diagonal(D)).abs() / diag.se.cpu().clamp_min(1e-300)
    assert float((z < 4).double().mean()) > 0.9


def test_density_integrates_to_one_and_model_is_restored():
    net, X, y = tiny_mlp()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    op = lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind="empirical_fisher")
    grid, dens = op.density(n_lanczos=10, probes=3)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=1e-6)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_bad_kind_and_loss_name_the_fix():
    net, X, y = tiny_mlp()
    with pytest.raises(InputError, match="kind='gnn' must be one of"):
        lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), kind="gnn")
    with pytest.raises(InputError, match=r"needs the likelihood.*CrossEntropyLoss"):
        lm.curvature_operator(net, lambda o, t: (o**2).mean(), (X, y), kind="fisher")
    with pytest.raises(InputError, match="matches no parameter"):
        lm.curvature_operator(net, nn.CrossEntropyLoss(), (X, y), params="lora_")
    with pytest.raises(InputError, match="needs a loss_fn"):
        lm.curvature_operator(net, None, (X, y), kind="ggn")


@pytest.mark.slow  # over a second: make test runs it, make test-fast does not
@pytest.mark.parametrize("kind", KINDS)
def test_curvlinops_engine_gives_the_same_matrix(kind):
    net, X, y = tiny_attention()
    ce = nn.CrossEntropyLoss()
    ours = lm.curvature_operator(net, ce, (X, y), kind=kind, batch_size=5, params=r"^attn\.")
    theirs = lm.curvature_operator(
        net, ce, (X, y), kind=kind, batch_size=5, params=r"^attn\.", engine="curvlinops"
    )
    assert torch.allclose(theirs.to_dense(), ours.to_dense(), rtol=0, atol=1e-12)
    with pytest.raises(InputError, match="torch loss module"):
        lm.curvature_operator(net, lambda o, t: ce(o, t), (X, y), engine="curvlinops")
