"""Every grid point against an independent reference: closed-form float64 and brute force."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import helpers
import lossmap as lm


def regression(dtype=torch.float64, n=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g, dtype=dtype)
    y = torch.randn(n, 1, generator=g, dtype=dtype)
    torch.manual_seed(seed)
    model = nn.Linear(5, 1).to(dtype)
    return model, X, y


def closed_form(model, X, y, dirs, coords):
    """MSE of the linear model at c + Σ aᵢ dᵢ, in float64 numpy."""
    w = model.weight.detach().double().numpy().copy()
    b = model.bias.detach().double().numpy().copy()
    for a, d in zip(coords, dirs, strict=True):
        w = w + a * d["weight"].double().numpy()
        b = b + a * d["bias"].double().numpy()
    pred = X.double().numpy() @ w.T + b
    return float(np.mean((pred - y.double().numpy()) ** 2))


@pytest.mark.parametrize(
    "grid",
    [
        [(-1.0, 1.0, 11)],
        [(0.25, 2.0, 6)],  # a range without 0, even count
        [(-1.0, 1.0, 7), (-2.0, 0.5, 4)],  # non-square plane
        [(0.1, 0.3, 2), (-3.0, -1.0, 5)],  # neither range contains 0
    ],
)
def test_float64_matches_closed_form(grid):
    model, X, y = regression()
    dirs = lm.random_directions(model, len(grid), norm="none", ignore=None, seed=2)
    surf = lm.scan(
        model,
        nn.MSELoss(),
        data={"train": (X, y)},
        directions=dirs,
        grid=grid,
        batch_size=10,
        progress=False,
    )
    axes = [np.linspace(lo, hi, n) for lo, hi, n in grid]
    assert surf["train_loss"].shape == tuple(len(a) for a in axes)
    assert "train_accuracy" not in surf.values  # regression: accuracy dropped from defaults
    for idx in np.ndindex(*surf["train_loss"].shape):
        coords = [axes[k][i] for k, i in enumerate(idx)]
        expect = closed_form(model, X, y, dirs, coords)
        assert surf["train_loss"][idx] == pytest.approx(expect, rel=1e-12), (idx, coords)
    np.testing.assert_allclose(surf.coords["alpha"], axes[0], rtol=0, atol=0)


def test_float32_matches_closed_form_to_round_off():
    model, X, y = regression(dtype=torch.float32)
    dirs = lm.random_directions(model, 2, norm="filter", ignore=None, seed=0)
    surf = lm.scan(
        model,
        nn.MSELoss(),
        data={"a": (X, y), "b": (X[:40], y[:40])},
        directions=dirs,
        grid=[(-1, 1, 5), (-1, 1, 4)],
        progress=False,
    )
    for idx in np.ndindex(5, 4):
        coords = [np.linspace(-1, 1, 5)[idx[0]], np.linspace(-1, 1, 4)[idx[1]]]
        assert surf["a_loss"][idx] == pytest.approx(
            closed_form(model, X, y, dirs, coords), rel=1e-5
        )
        assert surf["b_loss"][idx] == pytest.approx(
            closed_form(model, X[:40], y[:40], dirs, coords), rel=1e-5
        )


def classifier():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 6 * 6, 3),
    ).double()


def brute_force(model, loss_fn, X, y, dirs, coords, batch=7):
    """A deep copy per point, parameters set by hand, a plain loop over batches."""
    m = helpers.moved(model, dirs, coords).eval()
    with torch.no_grad():
        tot_loss = tot_acc = 0.0
        for i in range(0, len(X), batch):
            out = m(X[i : i + batch])
            tot_loss += loss_fn(out, y[i : i + batch]).item() * len(out)
            tot_acc += (out.argmax(1) == y[i : i + batch]).sum().item()
    return tot_loss / len(X), tot_acc / len(X)


def test_classifier_matches_brute_force_with_uneven_batches():
    model = classifier()
    with torch.no_grad():  # non-trivial running statistics, used in eval mode
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(53, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (53,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=10)
    dirs = lm.random_directions(model, 2, norm="filter", ignore="biasbn", seed=4)
    loss_fn = nn.CrossEntropyLoss()
    surf = lm.scan(
        model,
        loss_fn,
        data={"train": loader},
        directions=dirs,
        grid=[(-0.5, 1.0, 4), (-1, 1, 3)],
        progress=False,
    )
    for i, a in enumerate(np.linspace(-0.5, 1.0, 4)):
        for j, b in enumerate(np.linspace(-1, 1, 3)):
            loss, acc = brute_force(model, loss_fn, X, y, dirs, (a, b))
            assert surf["train_loss"][i, j] == pytest.approx(loss, rel=1e-10)
            assert surf["train_accuracy"][i, j] == pytest.approx(acc, abs=1e-12)


def test_batch_size_does_not_change_values():
    model = classifier()
    X = torch.randn(41, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (41,))
    d = lm.random_direction(model, seed=0)
    kw = dict(data={"t": (X, y)}, directions=d, grid=(-1, 1, 5), progress=False)
    a = lm.scan(model, nn.CrossEntropyLoss(), batch_size=41, **kw)
    b = lm.scan(model, nn.CrossEntropyLoss(), batch_size=3, **kw)
    np.testing.assert_allclose(a["t_loss"], b["t_loss"], rtol=1e-12)


def test_custom_metrics_weighted_by_batch_size():
    model, X, y = regression(n=23)

    def mae(out, t):
        return (out - t).abs().mean()

    d = lm.random_direction(model, norm="none", ignore=None, seed=0)
    surf = lm.scan(
        model,
        nn.MSELoss(),
        data={"train": (X, y)},
        directions=d,
        grid=(-1, 1, 3),
        metrics=("loss", mae),
        batch_size=5,
        progress=False,
    )
    for i, a in enumerate([-1.0, 0.0, 1.0]):
        w = model.weight.detach() + a * d["weight"]
        b = model.bias.detach() + a * d["bias"]
        expect = float((X @ w.T + b - y).abs().mean())
        assert surf["train_mae"][i] == pytest.approx(expect, rel=1e-12)


def test_samples_is_a_fixed_subset_used_at_every_point():
    model, X, y = regression(n=200)
    d = lm.random_direction(model, norm="none", ignore=None, seed=0)
    kw = dict(data={"train": (X, y)}, directions=d, grid=(-1, 1, 5), progress=False)
    a = lm.scan(model, nn.MSELoss(), samples=50, **kw)
    b = lm.scan(model, nn.MSELoss(), samples=50, **kw)
    full = lm.scan(model, nn.MSELoss(), **kw)
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])
    assert not np.allclose(a["train_loss"], full["train_loss"])
    assert a.fingerprints["data_train"] != full.fingerprints["data_train"]
    # the same 50 samples at every point: some 50-subset reproduces the whole line exactly
    from lossmap.data.splits import as_split

    sub = as_split((X, y), "train", samples=50, seed=0)
    rows = {tuple(r.tolist()) for r in X}
    assert sub.n == 50 and all(tuple(r.tolist()) in rows for r in sub.X)
    for i, alpha in enumerate(np.linspace(-1, 1, 5)):
        assert a["train_loss"][i] == pytest.approx(
            closed_form(model, sub.X, sub.y, [d], [alpha]), rel=1e-12
        )


def test_shuffling_loader_gives_identical_scan():
    model = classifier()
    X = torch.randn(60, 1, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (60,))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=8, shuffle=True
    )
    d = lm.random_direction(model, seed=0)
    runs = [
        lm.scan(
            model,
            nn.CrossEntropyLoss(),
            data={"train": loader},
            directions=d,
            grid=(-1, 1, 3),
            progress=False,
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0]["train_loss"], runs[1]["train_loss"])
    assert runs[0].fingerprints == runs[1].fingerprints


def test_non_finite_points_are_kept_and_counted():
    model, X, y = regression(n=16)

    def log_loss(out, t):  # -inf at 0 and NaN where predictions go negative
        return torch.log(out).mean()

    lm.random_direction(model, norm="none", ignore=None, seed=0)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(1.0)
        d_bias = {"weight": torch.zeros_like(model.weight), "bias": torch.ones_like(model.bias)}
    with pytest.warns(RuntimeWarning, match="non-finite"):
        surf = lm.scan(
            model,
            log_loss,
            data={"train": (X, y)},
            directions=lm.Direction(d_bias),
            grid=(-3, 1, 5),
            metrics=("loss",),
            progress=False,
        )
    vals = surf["train_loss"]  # bias 1 + a: a = -3, -2 give log(<0) = NaN; -1 gives log 0
    assert math.isnan(vals[0]) and math.isnan(vals[1]) and vals[2] == -math.inf
    assert vals[3] == pytest.approx(0.0) and vals[4] == pytest.approx(math.log(2))
    assert surf.done.all() and surf.diverged() == 3 and surf.summary()["diverged"] == 3
    assert "3 diverged" in repr(surf)
