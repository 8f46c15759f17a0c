"""Hessian-vector products, eigenpairs, trace, spectral density and curvature, checked exactly.

Two references: a quadratic model whose Hessian is a chosen matrix A (so every
quantity has a closed form), and a small float64 network whose Hessian is
formed densely with ``torch.func.hessian``.
"""

import contextlib
import doctest
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import lossmap.hessian.eigen as hessian_mod
import lossmap.hessian.spectral as spectral_mod
from lossmap import Direction, InputError, InputTypeError
from lossmap.hessian import curvature, hessian_eigenpairs, hvp
from lossmap.hessian.spectral import broaden, hessian_density, hessian_trace, slq_nodes_weights

DIM = 30
F64 = torch.float64

# The six 0.1 functions are thin calls on lm.curvature_operator and warn (FutureWarning)
# for one release; the warning itself is checked in test_old_functions_warn_naming_the_new_call.
pytestmark = pytest.mark.filterwarnings("ignore:lm\\..*is deprecated:FutureWarning")


# -- the quadratic model: L(w) = ½ wᵀAw + bᵀw, so H = A everywhere -------------


class Quadratic(nn.Module):
    """Outputs its parameter vector once per sample; the loss makes it quadratic."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, X):
        return self.w.expand(X.shape[0], -1)  # (B, DIM)


def quadratic_loss(A: torch.Tensor, b: torch.Tensor):
    def loss(out, y):  # out (B, DIM): each row is w
        return (0.5 * ((out @ A) * out).sum(-1) + out @ b).mean()

    return loss


@pytest.fixture(scope="module")
def quad():
    rng = np.random.default_rng(7)
    # Indefinite, distinct eigenvalues, a few clear outliers at both ends (as in networks).
    lam = np.sort(np.concatenate([rng.uniform(-1, 2, DIM - 4), [-3.0, -2.2, 6.0, 9.0]]))
    Qm, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    A = (Qm * lam) @ Qm.T
    A = (A + A.T) / 2
    model = Quadratic(torch.from_numpy(rng.standard_normal(DIM)))
    loss = quadratic_loss(torch.from_numpy(A), torch.from_numpy(rng.standard_normal(DIM)))
    data = (torch.zeros(12, 1, dtype=F64), torch.zeros(12, dtype=F64))
    evals, evecs = np.linalg.eigh(A)
    return model, loss, data, A, evals, evecs


# -- the small network and its dense Hessian ------------------------------------------


def small_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    X = torch.randn(30, 4, dtype=F64)
    y = torch.randint(0, 3, (30,))
    return net, nn.CrossEntropyLoss(), X, y


def dense_hessian(net, loss_fn, X, y, names=None):
    """H (p, p) of the mean loss, by torch.func.hessian on the flattened parameters."""
    net.eval()
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}
    names = names or list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]

    def f(flat):
        parts = {k: t.reshape(s) for k, t, s in zip(names, flat.split(sizes), shapes, strict=True)}
        out = functional_call(net, {**params, **buffers, **parts}, (X,))
        return loss_fn(out, y)

    flat = torch.cat([params[k].reshape(-1) for k in names])
    with warnings.catch_warnings():  # torch's forward-AD decompositions use torch.jit.script
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.func.hessian(f)(flat).numpy()


def flat(d, names):
    return np.concatenate([d[k].double().reshape(-1).numpy() for k in names])


def rel(a, b):
    return abs(a - b) / abs(b)


# -- quadratic: eigenpairs, trace, SLQ, curvature -----------------------------------


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_quadratic_eigenpairs_match_numpy(quad, which):
    model, loss, data, _, evals, evecs = quad
    dirs = hessian_eigenpairs(model, loss, data, n=3, which=which)
    vals = dirs.eigenvalues
    order = {
        "largest": np.argsort(-evals),
        "smallest": np.argsort(evals),
        "magnitude": np.argsort(-np.abs(evals)),
    }[which][:3]
    for i, j in enumerate(order):
        assert rel(vals[i], evals[j]) < 1e-4, (which, vals[i], evals[j])
        u = dirs[i]["w"].numpy()
        assert abs(u @ evecs[:, j]) > 0.999
        assert dirs[i].norm() == pytest.approx(1.0, abs=1e-12)
        assert dirs[i].meta == {
            "kind": "hessian",
            "index": i,
            "eigenvalue": float(vals[i]),
            "which": which,
            "params": None,
            "seed": 0,
            "samples": None,
            "products": dirs[0].meta["products"],
        }
        assert dirs[i].meta["products"] > 3
        big = np.argmax(np.abs(u))
        assert u[big] > 0  # the sign convention


def test_quadratic_trace_within_three_standard_errors(quad):
    model, loss, data, A, *_ = quad
    true = float(np.trace(A))
    est, se = hessian_trace(model, loss, data, probes=100, seed=0)
    assert se > 0
    assert abs(est - true) < 3 * se, (est, true, se)
    # The standard error shrinks like 1/√S: 16× the samples → about 1/4.
    _, se_small = hessian_trace(model, loss, data, probes=16, seed=1)
    _, se_big = hessian_trace(model, loss, data, probes=256, seed=1)
    assert 0.15 < se_big / se_small < 0.4
    # The variance of Rademacher Hutchinson is 2 Σ_{i≠j} A_ij²: se ≈ √(that / S).
    var = 2 * (np.sum(A**2) - np.sum(np.diag(A) ** 2))
    assert se_big == pytest.approx(np.sqrt(var / 256), rel=0.25)


def test_trace_probes_do_not_depend_on_block_size(quad, monkeypatch):
    model, loss, data, *_ = quad
    a = hessian_trace(model, loss, data, probes=10, seed=3)
    monkeypatch.setattr(spectral_mod, "MAX_BLOCK", 3)
    b = hessian_trace(model, loss, data, probes=10, seed=3)
    assert a == pytest.approx(b, rel=1e-12, abs=1e-12)
    assert hessian_trace(model, loss, data, probes=10, seed=4) != a


def test_slq_density_integrates_to_one_with_mass_at_eigenvalues(quad):
    model, loss, data, _, evals, _ = quad
    grid, density = hessian_density(model, loss, data, n_lanczos=DIM, probes=4, sigma=0.01)
    assert grid.shape == density.shape == (1000,)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    # Every true eigenvalue carries a peak; far from all of them the density vanishes.
    at = np.interp(evals, grid, density)
    assert (at > 0.1).all()
    far = np.min(np.abs(grid[:, None] - evals[None, :]), axis=1) > 0.1
    assert density[far].max() < 1e-6
    # Default sigma and grid too, with fewer steps than the dimension.
    grid, density = hessian_density(model, loss, data, n_lanczos=10, probes=3)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)


def test_slq_full_length_nodes_are_the_eigenvalues(quad):
    model, loss, data, _, evals, evecs = quad
    nodes, weights = slq_nodes_weights(model, loss, data, n_lanczos=DIM, probes=2, seed=5)
    assert nodes.shape == weights.shape == (2 * DIM,)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    # Same probes as Hutchinson's with the same seed: r / √n, r Rademacher.
    gen = torch.Generator().manual_seed(5)
    R = [spectral_mod._rademacher(gen, DIM).numpy() for _ in range(2)]
    for p in range(2):
        theta, tau = nodes[p * DIM : (p + 1) * DIM], weights[p * DIM : (p + 1) * DIM]
        np.testing.assert_allclose(np.sort(theta), evals, atol=1e-9)
        # Exact Gauss weights: τⱼ = (uⱼᵀv)² for the unit probe v, here divided by 2 probes.
        v = R[p] / np.sqrt(DIM)
        expect = (evecs.T @ v) ** 2 / 2
        np.testing.assert_allclose(tau[np.argsort(theta)], expect, atol=1e-10)


def test_slq_moments_are_exact_quadrature(quad):
    model, loss, data, A, *_ = quad
    P, m = 6, 8
    nodes, weights = slq_nodes_weights(model, loss, data, n_lanczos=m, probes=P, seed=2)
    gen = torch.Generator().manual_seed(2)
    V = np.stack([spectral_mod._rademacher(gen, DIM).numpy() for _ in range(P)]) / np.sqrt(DIM)
    # Gauss quadrature with m nodes is exact up to degree 2m − 1: mean of vᵀAᵖv.
    for p in range(0, 2 * m):
        Ap = np.linalg.matrix_power(A, p)
        expect = np.mean(np.einsum("bi,ij,bj->b", V, Ap, V))
        assert np.sum(weights * nodes**p) == pytest.approx(expect, rel=1e-8, abs=1e-10), p
    # The first moment is Hutchinson's estimate on the same probes (tr/n in expectation).
    est, se = hessian_trace(model, loss, data, probes=P, seed=2)
    assert np.sum(weights * nodes) == pytest.approx(est / DIM, rel=1e-10)
    assert abs(np.sum(weights * nodes) - np.trace(A) / DIM) < 3 * se / DIM


def test_quadratic_curvature_is_exact(quad):
    model, loss, data, A, *_ = quad
    d = torch.from_numpy(np.random.default_rng(3).standard_normal(DIM))
    expect = float(d @ torch.from_numpy(A) @ d / (d @ d))
    got = curvature(model, loss, data, {"w": d})
    assert rel(got, expect) < 1e-12
    # Scale-free.
    assert curvature(model, loss, data, Direction({"w": 5 * d})) == pytest.approx(got, rel=1e-12)


def test_eigen_directions_scan_as_parabolas(quad, tmp_path):
    """Along a unit eigenvector the quadratic's loss is a parabola of curvature λ."""
    import lossmap as lm

    model, loss, data, *_ = quad
    dirs = hessian_eigenpairs(model, loss, data, n=1)
    vals = dirs.eigenvalues
    surf = lm.scan(
        model,
        loss,
        data={"train": data},
        directions=dirs[0],
        grid=(-1, 1, 5),
        metrics=["loss"],
        progress=False,
    )
    f = np.asarray(surf["train_loss"])
    second = f[4] - 2 * f[2] + f[0]  # f(1) − 2 f(0) + f(−1) = λ for a parabola
    assert second == pytest.approx(vals[0], rel=1e-8)
    # Saved and loaded like any direction, meta included.
    dirs[0].save(tmp_path / "top.safetensors")
    back = Direction.load(tmp_path / "top.safetensors")
    assert back.meta == dirs[0].meta and torch.equal(back["w"], dirs[0]["w"])


# -- the small network against its dense Hessian -----------------------------------


def test_network_hvp_matches_dense_hessian():
    net, loss_fn, X, y = small_net()
    names = [k for k, _ in net.named_parameters()]
    H = dense_hessian(net, loss_fn, X, y)
    v = {k: torch.randn_like(p) for k, p in net.named_parameters()}
    got = flat(hvp(net, loss_fn, (X, y), v), names)
    expect = H @ flat(v, names)
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-12)


def test_network_eigenpairs_match_dense_hessian():
    net, loss_fn, X, y = small_net()
    names = [k for k, _ in net.named_parameters()]
    evals, evecs = np.linalg.eigh(dense_hessian(net, loss_fn, X, y))
    dirs = hessian_eigenpairs(net, loss_fn, (X, y), n=3, which="largest", tol=1e-10)
    vals = dirs.eigenvalues
    for i in range(3):
        assert rel(vals[i], evals[-1 - i]) < 1e-8
        assert abs(flat(dirs[i], names) @ evecs[:, -1 - i]) > 0.999
        assert set(dirs[i]) == set(names)
    dirs = hessian_eigenpairs(net, loss_fn, (X, y), n=2, which="smallest", tol=1e-10)
    vals = dirs.eigenvalues
    for i in range(2):
        assert rel(vals[i], evals[i]) < 1e-6  # small-magnitude end: relative to a small value
        assert abs(flat(dirs[i], names) @ evecs[:, i]) > 0.999


def test_network_params_subset_is_the_diagonal_block():
    net, loss_fn, X, y = small_net()
    block = ["2.weight", "2.bias"]
    H = dense_hessian(net, loss_fn, X, y, names=block)
    v = {k: torch.randn_like(p) for k, p in net.named_parameters()}
    got = hvp(net, loss_fn, (X, y), v, params=block)
    assert list(got) == block
    np.testing.assert_allclose(flat(got, block), H @ flat(v, block), rtol=1e-10, atol=1e-12)
    dirs = hessian_eigenpairs(net, loss_fn, (X, y), n=1, params=["2.bias", "2.weight"])
    vals = dirs.eigenvalues
    assert rel(vals[0], np.linalg.eigvalsh(H)[-1]) < 1e-6
    assert float(dirs[0]["0.weight"].abs().sum()) == 0.0  # zero outside the block
    assert dirs[0].meta["params"] == block  # model order
    est, _ = hessian_trace(net, loss_fn, (X, y), probes=3, params=["2.bias"])
    bias_block = dense_hessian(net, loss_fn, X, y, names=["2.bias"])
    assert np.isfinite(est) and est == pytest.approx(np.trace(bias_block), rel=1.0)


def test_batching_gives_the_exact_mean():
    net, loss_fn, X, y = small_net()
    v = {k: torch.randn_like(p) for k, p in net.named_parameters()}
    full = hvp(net, loss_fn, (X, y), v)
    for kwargs, data in [
        ({"batch_size": 7}, (X, y)),  # batches of 7, 7, 7, 7, 2
        ({}, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=7)),
        ({}, [(X[:7], y[:7]), (X[7:], y[7:])]),
    ]:
        got = hvp(net, loss_fn, data, v, **kwargs)
        for k in full:
            torch.testing.assert_close(got[k], full[k], rtol=1e-12, atol=1e-14)
    c_small = curvature(net, loss_fn, (X, y), v, batch_size=7)
    assert c_small == pytest.approx(curvature(net, loss_fn, (X, y), v), rel=1e-12)


def test_float32_model_in_float64_finds_small_eigenvalues():
    net, loss_fn, X, y = small_net()
    evals = np.linalg.eigvalsh(dense_hessian(net, loss_fn, X, y))
    net32 = net.float()
    dirs = hessian_eigenpairs(
        net32, loss_fn, (X.float(), y), n=2, which="smallest", dtype=torch.float64, tol=1e-10
    )
    vals = dirs.eigenvalues
    # The float32 weights are the float64 ones rounded: close, not equal.
    np.testing.assert_allclose(vals, evals[:2], rtol=1e-4, atol=1e-6)
    assert dirs[0]["0.weight"].dtype == torch.float32  # directions in the model's dtype
    assert next(net32.parameters()).dtype == torch.float32


def test_centre_other_than_the_model_weights():
    net, loss_fn, X, y = small_net()
    other = {k: v.detach() + 0.1 for k, v in net.state_dict().items()}
    net2, *_ = small_net()
    net2.load_state_dict(other)
    v = {k: torch.randn_like(p) for k, p in net.named_parameters()}
    a = hvp(net, loss_fn, (X, y), v, centre=other)
    b = hvp(net2, loss_fn, (X, y), v)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-14)


# -- the user's model comes back bit-identical ----------------------------------------


def bn_model():
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Dropout(0.5), nn.Linear(4, 2)
    )
    m.double().train()
    m[2].eval()
    m[0].bias.requires_grad_(False)
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
        m[1].running_var.uniform_(0.5, 2)
    X, y = torch.randn(16, 3, dtype=F64), torch.randint(0, 2, (16,))
    return m, X, y


def snapshot(m):
    return (
        {k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()},
        {k: id(v) for k, v in m.state_dict(keep_vars=True).items()},
        [mod.training for mod in m.modules()],
        {k: (p.requires_grad, p.grad) for k, p in m.named_parameters()},
    )


def same_bits(a, b):
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


@pytest.mark.parametrize(
    "call",
    [
        lambda m, lf, d, v: hvp(m, lf, d, v),
        lambda m, lf, d, v: curvature(m, lf, d, v),
        lambda m, lf, d, v: hessian_eigenpairs(m, lf, d, n=2),
        lambda m, lf, d, v: hessian_trace(m, lf, d, probes=4),
        lambda m, lf, d, v: slq_nodes_weights(m, lf, d, n_lanczos=5, probes=2),
        lambda m, lf, d, v: hessian_density(m, lf, d, n_lanczos=5, probes=2),
        lambda m, lf, d, v: hessian_eigenpairs(m, lf, d, n=200),  # an error inside
    ],
    ids=["hvp", "curvature", "eigenpairs", "trace", "slq", "density", "error"],
)
def test_model_restored_bit_identically(call):
    m, X, y = bn_model()
    before = snapshot(m)
    v = {k: torch.randn_like(p) for k, p in m.named_parameters()}
    with contextlib.suppress(InputError):
        call(m, nn.CrossEntropyLoss(), (X, y), v)
    after = snapshot(m)
    assert after[1:] == before[1:]
    assert all(same_bits(after[0][k], t) for k, t in before[0].items())


def test_eval_mode_uses_running_statistics():
    """BatchNorm with running statistics and no dropout: the dense eval-mode Hessian."""
    m, X, y = bn_model()
    loss_fn = nn.CrossEntropyLoss()
    names = [k for k, _ in m.named_parameters()]
    v = {k: torch.randn_like(p) for k, p in m.named_parameters()}
    got = flat(hvp(m, loss_fn, (X, y), v), names)
    training = [mod.training for mod in m.modules()]
    H = dense_hessian(m, loss_fn, X, y)  # sets eval mode
    for mod, t in zip(m.modules(), training, strict=True):
        mod.train(t)
    np.testing.assert_allclose(got, H @ flat(v, names), rtol=1e-10, atol=1e-12)


# -- bad input ---------------------------------------------------------------------------


def test_bad_input_names_the_fix(quad):
    model, loss, data, *_ = quad
    with pytest.raises(InputError, match=r"which='top'.*'largest'"):
        hessian_eigenpairs(model, loss, data, which="top")
    with pytest.raises(InputError, match=f"n={DIM} must be < the number of parameters \\({DIM}\\)"):
        hessian_eigenpairs(model, loss, data, n=DIM)
    with pytest.raises(InputError, match="n=0 must be >= 1"):
        hessian_eigenpairs(model, loss, data, n=0)
    with pytest.raises(InputError, match="tol"):
        hessian_eigenpairs(model, loss, data, tol=-1)
    with pytest.raises(InputError, match="reduction='mean'"):
        hvp(model, lambda o, t: (o**2).sum(-1), data, {"w": torch.ones(DIM)})
    with pytest.raises(InputError, match="does not depend on the parameters"):
        hvp(model, lambda o, t: (o.detach() ** 2).mean(), data, {"w": torch.ones(DIM)})
    with pytest.raises(InputTypeError, match="scalar tensor"):
        hvp(model, lambda o, t: 1.0, data, {"w": torch.ones(DIM)})
    with pytest.raises(InputError, match="one split"):
        hvp(model, loss, {"train": data, "test": data}, {"w": torch.ones(DIM)})
    with pytest.raises(InputError, match="no tensor for 'w'"):
        hvp(model, loss, data, {"v": torch.ones(DIM)})
    with pytest.raises(InputError, match="shape"):
        hvp(model, loss, data, {"w": torch.ones(DIM + 1)})
    with pytest.raises(InputTypeError, match=r"lm\.Direction"):
        hvp(model, loss, data, torch.ones(DIM))
    with pytest.raises(InputError, match="nonzero direction"):
        curvature(model, loss, data, {"w": torch.zeros(DIM)})
    with pytest.raises(InputError, match="probes=1 must be >= 2"):
        hessian_trace(model, loss, data, probes=1)
    with pytest.raises(InputError, match="does not have"):
        hvp(model, loss, data, {"w": torch.ones(DIM)}, params=["nope"])
    with pytest.raises(InputError, match="sigma"):
        broaden(np.zeros(2), np.ones(2) / 2, sigma=0)
    with pytest.raises(InputTypeError, match=r"torch\.nn\.Module"):
        hvp(lambda x: x, loss, data, {"w": torch.ones(DIM)})
    nan_loss = lambda o, t: (o * float("nan")).mean()  # noqa: E731
    with pytest.raises(InputError, match="nan"):
        hessian_trace(model, nan_loss, data, probes=2)


def test_no_convergence_says_what_to_raise():
    net, loss_fn, X, y = small_net()
    with pytest.raises(InputError, match=r"found only \d of n=3 .* raise maxiter"):
        hessian_eigenpairs(net, loss_fn, (X, y), n=3, which="smallest", ncv=5, maxiter=1, tol=1e-12)


def test_one_entry_dict_and_samples_subset(quad):
    model, loss, data, A, *_ = quad
    d = {"w": torch.ones(DIM, dtype=F64)}
    a = hvp(model, loss, {"train": data}, d)
    b = hvp(model, loss, data, d, samples=5, seed=1)
    np.testing.assert_allclose(a["w"].numpy(), A @ np.ones(DIM), rtol=1e-12)
    np.testing.assert_allclose(b["w"].numpy(), A @ np.ones(DIM), rtol=1e-12)


# -- docs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("module", [hessian_mod, spectral_mod])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


PUBLIC = [hvp, curvature, hessian_eigenpairs, hessian_trace, slq_nodes_weights, broaden]
PUBLIC.append(hessian_density)


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__name__)
def test_docstrings_match_signatures(fn, assert_docstring_matches_signature):
    assert_docstring_matches_signature(fn)


def test_n_probes_is_a_deprecated_name_of_probes():
    model, loss, data = _deprecation_case()
    a = slq_nodes_weights(model, loss, data, n_lanczos=3, probes=2, seed=1)
    with pytest.warns(DeprecationWarning, match=r"n_probes=\.\.\.\) is deprecated"):
        b = slq_nodes_weights(model, loss, data, n_lanczos=3, n_probes=2, seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.warns(DeprecationWarning, match="hessian_density"):
        hessian_density(model, loss, data, n_lanczos=3, n_probes=2)


def _deprecation_case():
    net = torch.nn.Linear(3, 1, bias=False).double()
    X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    return net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double())


@pytest.mark.parametrize("call, new", [
    (lambda m, lf, d: hvp(m, lf, d, {"weight": torch.ones(1, 3, dtype=F64)}), "matvec"),
    (lambda m, lf, d: curvature(m, lf, d, {"weight": torch.ones(1, 3, dtype=F64)}), "quadratic"),
    (lambda m, lf, d: hessian_eigenpairs(m, lf, d, n=1), "eigenpairs"),
    (lambda m, lf, d: hessian_trace(m, lf, d, probes=2), "trace"),
    (lambda m, lf, d: hessian_density(m, lf, d, n_lanczos=3, probes=1), "density"),
    (lambda m, lf, d: slq_nodes_weights(m, lf, d, n_lanczos=3, probes=1), "nodes_weights"),
])
def test_old_functions_warn_naming_the_new_call(call, new):
    with pytest.warns(FutureWarning, match=rf"lm\.curvature_operator\(.*\)\.{new}\("):
        call(*_deprecation_case())
