"""Sharpness during training (lossmap.callbacks.sharpness): λmax every k steps against 2/η.

References: the exact Hessian of a quadratic; a dense float64 Hessian from
``torch.func.hessian`` with ``scipy.sparse.linalg.eigsh``; Adam's
preconditioner recomputed from its state by hand.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import eigsh
from torch import nn
from torch.func import functional_call

from lossmap.callbacks.sharpness import SharpnessRecorder, read_sharpness
from lossmap.callbacks.topeig import top_eigenpair
from lossmap.errors import InputError, InputTypeError

pytestmark = pytest.mark.usefixtures("one_thread", "close_figures")

MSE = nn.MSELoss()


def mlp(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(dropout), nn.Linear(6, 1)).double()


def batch(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, dtype=torch.float64, generator=g)
    return X, torch.sin(X.sum(1, keepdim=True)) + 0.1 * torch.randn(n, 1, generator=g).double()


def dense_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """∇²L of the mean loss over (X, y), all parameters, float64, by torch.func.hessian."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(v):
        parts = dict(
            zip(
                names,
                (
                    t.reshape(s)
                    for t, s in zip(v.split([s.numel() for s in shapes]), shapes, strict=True)
                ),
                strict=True,
            )
        )
        return MSE(functional_call(model.eval(), parts, (X,)), y)

    return torch.func.hessian(loss)(flat).numpy()


def test_lanczos_warm_start_is_exact_in_one_product():
    H = torch.diag(torch.tensor([4.0, 2.0, 1.0, -7.0], dtype=torch.float64))
    cold = top_eigenpair(lambda v: H @ v, torch.ones(4, dtype=torch.float64), tol=1e-12)
    assert cold.value == pytest.approx(4.0, rel=1e-12) and cold.products <= 4
    warm = top_eigenpair(lambda v: H @ v, cold.vector, tol=1e-12)
    assert warm.products == 1 and warm.value == pytest.approx(4.0, rel=1e-12)


def test_gradient_descent_on_a_quadratic_tracks_the_exact_lambda_max(tmp_path):
    X, y = batch(40)
    X[:, 0] *= 3.0  # a clear top direction
    model = nn.Linear(3, 1, bias=False).double()
    exact = float(np.linalg.eigvalsh((2 / len(X) * X.T @ X).numpy())[-1])  # H of the MSE
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = SharpnessRecorder(tmp_path / "s.json", MSE, (X, y), every=3, tol=1e-8, jitter=0)
    jittered = SharpnessRecorder(tmp_path / "j.json", MSE, (X, y), every=3, tol=1e-8)
    for step in range(13):
        loss = MSE(model(X), y)
        rec(model, step, opt, loss)
        jittered(model, step, opt, loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = read_sharpness(tmp_path / "s.json")
    assert r["steps"] == [0, 3, 6, 9, 12]
    np.testing.assert_allclose(r["lambda_max"], exact, rtol=1e-10)
    assert r["hvps"][0] <= 3 and r["hvps"][1:] == [1, 1, 1, 1]  # warm: H is constant
    np.testing.assert_allclose(read_sharpness(tmp_path / "j.json")["lambda_max"], exact, rtol=1e-10)
    assert r["two_over_lr"] == [40.0] * 5 and r["threshold"] == [40.0] * 5
    assert np.isnan(r["preconditioned_lambda_max"]).all()  # SGD has no preconditioner


class Diagonal(nn.Module):
    """outputs = X ⊙ w; with loss ½ Σ aᵢ outᵢ² and X = 1, H = diag(a)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, X):
        return X * self.w


def test_a_new_top_direction_is_found_after_eigenvalues_cross(tmp_path):
    a = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    loss_fn = lambda out, y: 0.5 * (a * out**2).sum(1).mean()  # noqa: E731
    data = (torch.ones(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    model = Diagonal()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    still = SharpnessRecorder(tmp_path / "s.json", loss_fn, data, every=1, tol=1e-8, jitter=0)
    fresh = SharpnessRecorder(tmp_path / "f.json", loss_fn, data, every=1, tol=1e-8)
    for rec in (still, fresh):
        assert rec(model, 0, opt)["lambda_max"] == pytest.approx(2.0, rel=1e-12)
    a[:] = torch.tensor([1.0, 3.0, 0.5])  # the top direction is now e₂, ⊥ the last vector
    assert still(model, 1, opt)["lambda_max"] == pytest.approx(1.0)  # e₁ is still an eigenvector
    assert fresh(model, 1, opt)["lambda_max"] == pytest.approx(3.0, rel=1e-12)


def test_mlp_lambda_max_equals_a_fresh_lanczos_on_the_dense_hessian(tmp_path):
    X, y = batch()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    rec = SharpnessRecorder(tmp_path / "s.json", MSE, (X, y), every=5)
    refs, cold = [], []
    for step in range(31):
        loss = MSE(model(X), y)
        row = rec(model, step, opt, loss)
        if row is not None:
            H = dense_hessian(model, X, y)
            refs.append(float(eigsh(H, k=1, which="LA", return_eigenvectors=False)[0]))
            start = torch.randn(
                H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(9)
            )
            Ht = torch.from_numpy(H)
            cold.append(top_eigenpair(lambda v, Ht=Ht: Ht @ v, start).products)
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = read_sharpness(tmp_path / "s.json")
    rel = np.abs(np.array(r["lambda_max"]) - refs) / np.abs(refs)
    assert len(refs) == 7 and rel.max() < 0.02, rel
    assert max(rel) < 1e-4  # tol=1e-3 on the residual: the eigenvalue is far better
    assert refs[-1] != pytest.approx(refs[0], rel=1e-2)  # λmax moved during training
    assert sum(r["hvps"][1:]) < sum(cold[1:]), (r["hvps"], cold)


def test_adam_preconditioned_lambda_max_equals_the_dense_computation(tmp_path):
    X, y = batch()
    model = mlp(2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99), eps=1e-6)
    rec = SharpnessRecorder(tmp_path / "s.json", MSE, (X, y), every=4, tol=1e-7)
    refs = []
    for step in range(13):
        loss = MSE(model(X), y)
        row = rec(model, step, opt, loss)
        if row is not None and step > 0:
            H = dense_hessian(model, X, y)
            v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in model.parameters()])
            t = opt.state[next(model.parameters())]["step"].item()
            s = 1 / np.sqrt((v / (1 - 0.99**t)).sqrt().numpy() + 1e-6)
            refs.append(np.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = read_sharpness(tmp_path / "s.json")
    assert np.isnan(r["preconditioned_lambda_max"][0])  # no v̂ before the first step
    np.testing.assert_allclose(r["preconditioned_lambda_max"][1:], refs, rtol=1e-8)
    assert r["threshold"][0] == pytest.approx(3.8 / 0.1 / 0.01)  # (2 + 2β₁)/((1 − β₁)η)
    assert all(h >= 1 for h in r["preconditioned_hvps"][1:])


def train(
    recorder: SharpnessRecorder | None, *, every: int = 2
) -> tuple[list[float], nn.Module, list]:
    """Adam on a dropout MLP with a shuffling loader; the recorder measures on that loader."""
    X, y = batch(64)
    torch.manual_seed(123)
    model = mlp(3, dropout=0.2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=16, shuffle=True
    )
    losses, grads = [], []
    model.train()
    for step, (xb, yb) in enumerate(x for _ in range(3) for x in loader):
        loss = MSE(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        if recorder is not None:  # between backward and step: the gradients must survive
            recorder(model, step, opt, loss)
        grads.append([p.grad.clone() for p in model.parameters()])
        opt.step()
        losses.append(loss.item())
    return losses, model, grads


def test_training_is_bit_identical_with_the_recorder(tmp_path):
    plain_losses, plain_model, plain_grads = train(None)
    X, y = batch(64)
    measure = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=32, shuffle=True
    )
    rec = SharpnessRecorder(tmp_path / "s.json", MSE, measure, every=2)
    losses, model, grads = train(rec)
    assert losses == plain_losses
    for a, b in zip(grads, plain_grads, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    for (n, p), q in zip(model.named_parameters(), plain_model.parameters(), strict=True):
        assert torch.equal(p, q), n
    assert model.training and len(read_sharpness(tmp_path / "s.json")["steps"]) == 6


def test_momentum_threshold_and_refusals(tmp_path):
    X, y = batch()
    model = mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rec = SharpnessRecorder(tmp_path / "m.json", MSE, (X, y))
    row = rec(model, 0, sgd)
    assert row["two_over_lr"] == pytest.approx(20.0) and row["threshold"] == pytest.approx(38.0)
    zero = rec.record(model, 1, torch.optim.SGD(model.parameters(), lr=0.0), force=True)
    assert zero["two_over_lr"] == zero["threshold"] == np.inf  # a schedule's end: no edge
    assert np.isnan(read_sharpness(tmp_path / "m.json")["two_over_lr"][1])
    with pytest.raises(InputError, match="jitter=2 must be a number from 0 to 1"):
        SharpnessRecorder(tmp_path / "n.json", MSE, (X, y), jitter=2)
    with pytest.raises(InputError, match="exists: pass overwrite=True"):
        SharpnessRecorder(tmp_path / "m.json", MSE, (X, y))
    with pytest.raises(InputTypeError, match="pass the torch optimizer"):
        rec.record(model, 1, None, force=True)
    two = torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[3].parameters(), "lr": 1.0}], lr=0.1
    )
    with pytest.raises(InputError, match=r"learning rates \[0.1, 1.0\]"):
        rec.record(model, 1, two, force=True)
    with pytest.raises(InputError, match="not trained by the optimizer"):
        rec.record(model, 1, torch.optim.SGD(model[0].parameters(), lr=0.1), force=True)
    with pytest.raises(InputError, match="needs an Adam-type optimizer"):
        SharpnessRecorder(tmp_path / "p.json", MSE, (X, y), preconditioned=True)(model, 0, sgd)
    with pytest.raises(InputError, match="not a lossmap sharpness file"):
        (tmp_path / "x.json").write_text("{}")
        read_sharpness(tmp_path / "x.json")


def test_model_is_unchanged_after_a_measurement(tmp_path):
    X, y = batch()
    model = mlp()
    model.train()
    before = copy.deepcopy(model.state_dict())
    state = torch.random.get_rng_state()
    SharpnessRecorder(tmp_path / "s.json", MSE, (X, y))(
        model, 0, torch.optim.SGD(model.parameters(), lr=0.1)
    )
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_plot_draws_the_recorded_columns(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from lossmap.plot import plot_eos

    X, y = batch()
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    rec = SharpnessRecorder(tmp_path / "s.json", MSE, (X, y), every=2)
    for step in range(5):
        loss = MSE(model(X), y)
        rec(model, step, opt, loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    r = read_sharpness(tmp_path / "s.json")
    ax = plot_eos(tmp_path / "s.json", log=True)
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert list(lines) == ["λmax", "2/η", "λmax(P⁻¹ᐟ²HP⁻¹ᐟ²)", "edge with momentum"]
    np.testing.assert_array_equal(lines["λmax"], r["lambda_max"])
    np.testing.assert_array_equal(lines["2/η"], [200.0] * 3)
    np.testing.assert_array_equal(lines["λmax(P⁻¹ᐟ²HP⁻¹ᐟ²)"], r["preconditioned_lambda_max"])
    assert plot_eos(rec).get_lines()[0].get_ydata().tolist() == r["lambda_max"]
    with pytest.raises(InputTypeError, match=r"pass the recorder's \.json path"):
        plot_eos(3)


# -- Lightning and Hugging Face -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec")  # Lightning 2.6 on torch 2.13, not lossmap
def test_the_lightning_callback_measures_and_leaves_training_as_it_was(
    tmp_path, assert_docstring_matches_signature
):
    import lightning.pytorch as L

    from lossmap.callbacks.lightning import SharpnessCallback

    assert_docstring_matches_signature(SharpnessCallback)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = mlp(4, dropout=0.1)
            self.losses = []

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            loss = MSE(self(batch[0]), batch[1])
            self.losses.append(loss.item())
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.02)

    X, y = batch(64)

    def fit(callbacks):
        torch.manual_seed(5)
        module = Module()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X, y), batch_size=8, shuffle=True
        )
        trainer = L.Trainer(max_steps=6, accelerator="cpu", logger=False, callbacks=callbacks,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)  # fmt: skip
        trainer.fit(module, loader)
        return module

    plain = fit([])
    module = fit([SharpnessCallback(tmp_path / "s.json", MSE, (X, y), every_steps=3, tol=1e-8)])
    assert module.losses == plain.losses
    r = read_sharpness(tmp_path / "s.json")
    assert r["steps"] == [3, 6] and r["two_over_lr"] == [100.0, 100.0]
    H = dense_hessian(module.net, X, y)  # the weights after step 6
    assert r["lambda_max"][-1] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-10)
    assert np.isfinite(r["preconditioned_lambda_max"]).all()


@pytest.mark.slow
@pytest.mark.hf
def test_the_hugging_face_callback_measures_and_leaves_training_as_it_was(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    import lossmap as lm
    from lossmap.callbacks.huggingface import SharpnessCallback

    with pytest.raises(InputError, match="every_steps=0"):
        SharpnessCallback(tmp_path / "x.json", [], every_steps=0)

    ids = torch.randint(0, 32, (24, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": x, "labels": x} for x in ids]
    measure = [{"input_ids": ids[:8], "labels": ids[:8]}]  # one dict batch

    def fit(callbacks, name):
        torch.manual_seed(0)
        config = GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=32, n_positions=8,
                            bos_token_id=0, eos_token_id=0)  # fmt: skip
        args = TrainingArguments(
            output_dir=str(tmp_path / name), max_steps=4, per_device_train_batch_size=4,
            learning_rate=1e-2, lr_scheduler_type="constant", logging_steps=1, report_to=[],
            use_cpu=True,
            save_strategy="no", disable_tqdm=True, seed=0,
        )  # fmt: skip
        trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=data,
                          callbacks=callbacks)  # fmt: skip
        trainer.train()
        return trainer, [h["loss"] for h in trainer.state.log_history if "loss" in h]

    _, plain = fit([], "plain")
    trainer, losses = fit([SharpnessCallback(tmp_path / "s.json", measure, every_steps=2)], "cb")
    assert losses == plain
    r = read_sharpness(tmp_path / "s.json")
    assert r["steps"] == [2, 4] and r["two_over_lr"] == [200.0, 200.0]
    assert np.isfinite(r["preconditioned_lambda_max"]).all()
    fresh = lm.curvature_operator(trainer.model, None, measure).eigenpairs(1)[0]
    assert r["lambda_max"][-1] == pytest.approx(fresh.meta["eigenvalue"], rel=1e-3)


def test_docstrings_match_signatures(assert_docstring_matches_signature):
    from lossmap.plot.eos import plot_eos

    for fn in (SharpnessRecorder, read_sharpness, top_eigenpair, plot_eos):
        assert_docstring_matches_signature(fn)
