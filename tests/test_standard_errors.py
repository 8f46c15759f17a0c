"""Per-point standard errors (issue 15): every value's SE equals a brute-force computation."""

from __future__ import annotations

import copy
import sqlite3

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossmap as lm
from lossmap.backends.torch.metrics import batch_stats, per_example
from lossmap.stats import finish


def _net(seed=0, n_in=5, n_out=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, n_out))


def _data(n=103, n_in=5, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g), torch.randint(0, classes, (n,), generator=g)


def _moved(net, dirs, coefs):
    m = copy.deepcopy(net)
    with torch.no_grad():
        for name, p in m.named_parameters():
            for a, d in zip(coefs, dirs, strict=True):
                p.add_(float(a) * d[name])
    return m


def _ratio_se(t: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """The ratio estimator's value and SE, written out with a loop over examples."""
    n = len(t)
    r = t.sum() / c.sum()
    cbar = c.sum() / n
    ss = sum((ti - r * ci) ** 2 for ti, ci in zip(t, c, strict=True))
    return r, float(np.sqrt(ss / (n * (n - 1))) / cbar)


@pytest.mark.parametrize("strategy,reuse", [("loop", True), ("loop", False), ("vmap", True),
                                            ("vmap", False)])
def test_line_se_equals_brute_force_std_over_sqrt_n(strategy, reuse):
    net = _net()
    X, y = _data()
    d = lm.random_direction(net, seed=3)
    s = lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
                grid=(-1, 1, 5), progress=False, batch_size=16, strategy=strategy,
                reuse_first_layer=reuse)
    for i, a in enumerate(s.coords["alpha"]):
        with torch.no_grad():
            out = _moved(net, [d], [a])(X).double()
        losses = F.cross_entropy(out, y, reduction="none").numpy()
        correct = (out.argmax(1) == y).double().numpy()
        assert s["train_loss"][i] == pytest.approx(losses.mean(), rel=1e-6)
        assert s.se("train_loss")[i] == pytest.approx(losses.std(ddof=1) / np.sqrt(len(y)),
                                                      rel=1e-5)
        assert s.se("train_accuracy")[i] == pytest.approx(
            correct.std(ddof=1) / np.sqrt(len(y)), rel=1e-9)
    assert s.samples == {"train": len(y)}


def test_plane_se_two_splits_and_store_round_trip(tmp_path):
    net = _net(seed=2)
    (X, y), (Xt, yt) = _data(seed=4), _data(n=57, seed=5)
    dirs = lm.random_directions(net, 2, seed=7)
    path = tmp_path / "plane.lossmap"
    s = lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y), "test": (Xt, yt)},
                directions=dirs, grid=[(-1, 1, 3), (-0.5, 0.5, 3)], progress=False,
                batch_size=20, store=path)
    back = lm.load(path)
    for var in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        np.testing.assert_array_equal(back.se(var), s.se(var))
    for i, a in enumerate(s.coords["alpha"]):
        for j, b in enumerate(s.coords["beta"]):
            with torch.no_grad():
                out = _moved(net, dirs, [a, b])(Xt).double()
            losses = F.cross_entropy(out, yt, reduction="none").numpy()
            assert back.se("test_loss")[i, j] == pytest.approx(
                losses.std(ddof=1) / np.sqrt(len(yt)), rel=1e-5)
    assert back.samples == {"train": len(y), "test": len(yt)}
    ds = back.to_xarray()
    assert "test_loss_se" in ds and "done" in ds
    csv = back.to_csv(tmp_path / "p.csv").read_text().splitlines()[0]
    assert "train_loss_se" in csv.split(",")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the round-off floor is measured too
def test_weighted_and_ignored_class_loss_value_and_se_exact():
    """CrossEntropyLoss(weight, ignore_index): the value is the loss's own mean, the SE the
    ratio estimator over per-example (weighted loss, weight) terms."""
    net = _net(seed=3)
    X, y = _data(n=90, seed=8)
    y[::7] = -1
    w = torch.tensor([0.5, 2.0, 1.0])
    loss = nn.CrossEntropyLoss(weight=w, ignore_index=-1)
    d = lm.random_direction(net, seed=1)
    s = lm.scan(net, loss, data={"train": (X, y)}, directions=d, grid=(-1, 1, 3),
                metrics=("loss",), progress=False, batch_size=32)
    for i, a in enumerate(s.coords["alpha"]):
        with torch.no_grad():
            out = _moved(net, [d], [a])(X).double()
        assert s["train_loss"][i] == pytest.approx(
            float(F.cross_entropy(out, y, weight=w.double(), ignore_index=-1)), rel=1e-6)
        keep = y != -1
        t = F.cross_entropy(out, y, weight=w.double(), ignore_index=-1,
                            reduction="none").numpy()
        c = np.where(keep.numpy(), w.double()[y.clamp(min=0)].numpy(), 0.0)
        _, se = _ratio_se(t, c)
        assert s.se("train_loss")[i] == pytest.approx(se, rel=1e-5)


def test_mse_on_multi_output_targets_per_example_sums():
    net = _net(seed=4, n_out=4)
    X = torch.randn(50, 5)
    Y = torch.randn(50, 4)
    d = lm.random_direction(net, seed=2)
    s = lm.scan(net, nn.MSELoss(), data={"train": (X, Y)}, directions=d, grid=(-1, 1, 3),
                metrics=("loss",), progress=False, batch_size=16)
    with torch.no_grad():
        out = _moved(net, [d], [1.0])(X).double()
    per = ((out - Y.double()) ** 2).mean(1).numpy()  # each example's mean over 4 outputs
    assert s["train_loss"][2] == pytest.approx(per.mean(), rel=1e-6)
    assert s.se("train_loss")[2] == pytest.approx(per.std(ddof=1) / np.sqrt(50), rel=1e-5)


def test_user_metrics_per_sample_pairs_and_batch_means():
    """A metric returning per-sample values or (totals, counts) has an SE; a batch mean has
    none and keeps the row-weighted mean of 0.1."""
    net = _net(seed=5)
    X, y = _data(n=61, seed=9)
    counts = (torch.arange(61) % 4 + 1).double()  # examples of unequal weight ("tokens")

    def per_sample(out, yy):
        return F.cross_entropy(out, yy, reduction="none")

    # The pair metric needs each row's count: the target carries it as a second column.
    def pair_metric(out, target):
        cls, c = target[:, 0].long(), target[:, 1]
        return F.cross_entropy(out, cls, reduction="none") * c, c

    def batch_mean(out, yy):
        return F.cross_entropy(out, yy[:, 0].long())

    target = torch.stack([y.double(), counts], 1).float()
    d = lm.random_direction(net, seed=4)
    s = lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
                grid=(-1, 1, 3), metrics=("loss", per_sample), progress=False, batch_size=16)
    np.testing.assert_allclose(s.se("train_per_sample"), s.se("train_loss"), rtol=1e-9)
    s2 = lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, target)}, directions=d,
                 grid=(-1, 1, 3), metrics=(("tok", pair_metric), ("mean", batch_mean)),
                 progress=False, batch_size=16)
    with torch.no_grad():
        out = _moved(net, [d], [-1.0])(X).double()
    t = (F.cross_entropy(out, y, reduction="none") * counts).numpy()
    r, se = _ratio_se(t, counts.numpy())
    assert s2["train_tok"][0] == pytest.approx(r, rel=1e-6)
    assert s2.se("train_tok")[0] == pytest.approx(se, rel=1e-5)
    # a batch mean: value row-weighted over batches of 16, 16, 16, 13; no standard error
    means = [float(F.cross_entropy(out[i:i + 16], y[i:i + 16])) * len(y[i:i + 16])
             for i in range(0, 61, 16)]
    assert s2["train_mean"][0] == pytest.approx(sum(means) / 61, rel=1e-6)
    assert s2.se("train_mean") is None
    assert "train_mean" not in s2.errors


def test_functional_loss_gets_errors_and_sum_reduction_does_not():
    assert per_example(F.cross_entropy) is not None
    assert per_example(nn.CrossEntropyLoss(reduction="sum")) is None
    assert per_example(nn.CTCLoss()) is None
    out, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    t, c = per_example(F.cross_entropy)(out, y)
    assert float(t.sum() / c.sum()) == pytest.approx(float(F.cross_entropy(out, y)), rel=1e-6)


def test_finish_matches_numpy_and_needs_two_examples():
    v = np.array([0.3, 1.2, 0.7, 2.5])
    sums = batch_stats(torch.tensor(v), 4, torch.device("cpu")).numpy()
    r, se = finish(sums)
    assert r == pytest.approx(v.mean())
    assert se == pytest.approx(v.std(ddof=1) / 2)
    r1, se1 = finish(batch_stats(torch.tensor([0.4]), 1, torch.device("cpu")).numpy())
    assert r1 == pytest.approx(0.4) and np.isnan(se1)


def test_bad_metric_shape_is_refused_naming_the_forms():
    net = _net()
    X, y = _data(n=20)
    with pytest.raises(lm.InputError, match=r"metric 'two' returned shape .*\(totals, counts\)"):
        lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)},
                directions=lm.random_direction(net, seed=0), grid=(-1, 1, 3),
                metrics=(("two", lambda out, yy: out[:, :2]),), progress=False)


def test_store_without_error_columns_reads_and_resumes(tmp_path):
    """A store made before standard errors existed opens (errors None) and resumes."""
    net = _net(seed=6)
    X, y = _data(n=40, seed=3)
    d = lm.random_direction(net, seed=5)
    path = tmp_path / "old.lossmap"
    kw = dict(data={"train": (X, y)}, directions=d, grid=(-1, 1, 5), progress=False)
    full = lm.scan(net, nn.CrossEntropyLoss(), store=path, **kw)
    with sqlite3.connect(path) as conn:
        for (col,) in conn.execute("SELECT name FROM pragma_table_info('points')").fetchall():
            if col.endswith(("_se", "_dse")):
                conn.execute(f'ALTER TABLE points DROP COLUMN "{col}"')
        conn.execute("DELETE FROM points WHERE idx IN (1, 3)")
    old = lm.load(path)
    assert old.errors is None and int(old.done.sum()) == 3
    again = lm.scan(net, nn.CrossEntropyLoss(), store=path, **kw)
    np.testing.assert_allclose(again["train_loss"], full["train_loss"], rtol=1e-12)
    assert again.errors is None


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_paired_se_of_the_difference_from_the_centre_equals_brute_force(strategy):
    """std(ℓᵢ(p) − ℓᵢ(c))/√n at every point; 0 at the centre; far below the unpaired bound."""
    net = _net(seed=7)
    X, y = _data(n=97, seed=11)
    d = lm.random_direction(net, seed=8)
    s = lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
                grid=(-0.5, 0.5, 5), progress=False, batch_size=20, strategy=strategy)
    with torch.no_grad():
        centre = F.cross_entropy(net(X).double(), y, reduction="none")
    for i, a in enumerate(s.coords["alpha"]):
        with torch.no_grad():
            here = F.cross_entropy(_moved(net, [d], [a])(X).double(), y, reduction="none")
        diff = (here - centre).numpy()
        want = diff.std(ddof=1) / np.sqrt(len(y))
        assert s.paired["train_loss"][i] == pytest.approx(want, rel=1e-4, abs=1e-9)
    assert s.paired["train_loss"][2] == pytest.approx(0.0, abs=1e-9)
    unpaired = np.sqrt(s.se("train_loss") ** 2 + s.se("train_loss")[2] ** 2)
    assert (s.paired["train_loss"][[0, 1, 3, 4]] < 0.5 * unpaired[[0, 1, 3, 4]]).all()
    ds = s.to_xarray()
    assert "train_loss_dse" in ds


def test_paired_se_with_dict_batches_and_a_store(tmp_path):
    torch.manual_seed(3)
    net = nn.Linear(4, 3)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = net

        def forward(self, x):
            return self.lin(x)

    model = Net()
    g = torch.Generator().manual_seed(1)
    batches = [{"x": torch.randn(n, 4, generator=g), "y": torch.randint(0, 3, (n,), generator=g)}
               for n in (5, 7, 6)]

    def loss(out, batch):
        return F.cross_entropy(out, batch["y"], reduction="none")

    d = lm.random_direction(model, seed=2)
    path = tmp_path / "d.lossmap"
    lm.scan(model, loss, data={"train": batches}, directions=d, grid=(-1, 1, 3), store=path,
            progress=False)
    s = lm.load(path)
    X = torch.cat([b["x"] for b in batches])
    Y = torch.cat([b["y"] for b in batches])
    with torch.no_grad():
        c = F.cross_entropy(model(X).double(), Y, reduction="none")
        p = F.cross_entropy(_moved(model, [d], [1.0])(X).double(), Y, reduction="none")
    want = (p - c).std() / np.sqrt(len(Y))
    assert s.paired["train_loss"][2] == pytest.approx(float(want), rel=1e-5)
    assert s.se("train_loss")[2] == pytest.approx(float(p.std() / np.sqrt(len(Y))), rel=1e-5)


# -- issue 21 item 13: CrossEntropyLoss(weight, ignore_index=255), the segmentation convention


@pytest.mark.parametrize("segmentation", [False, True])
def test_weighted_cross_entropy_with_ignore_index_255_equals_torchs_own_loss(segmentation):
    torch.manual_seed(0)
    C = 4
    if segmentation:  # (N, C, H, W) outputs against (N, H, W) targets
        net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, C, 1))
        X, y = torch.randn(22, 3, 5, 5), torch.randint(0, C, (22, 5, 5))
        y[torch.rand(y.shape) < 0.3] = 255
        y[3] = 255  # an image with every pixel ignored counts 0
    else:
        net = _net(seed=2, n_out=C)
        X, y = torch.randn(40, 5), torch.randint(0, C, (40,))
        y[::3] = 255
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    loss = nn.CrossEntropyLoss(weight=w, ignore_index=255)
    d = lm.random_direction(net, seed=1)
    s = lm.scan(net, loss, data={"train": (X, y)}, directions=d, grid=(-1, 1, 3),
                metrics=("loss",), progress=False, batch_size=8)
    for i, a in enumerate(s.coords["alpha"]):
        with torch.no_grad():
            out = _moved(net, [d], [a])(X)
            own = nn.CrossEntropyLoss(weight=w.double(), ignore_index=255)(out.double(), y)
        assert s["train_loss"][i] == pytest.approx(float(own), rel=1e-6)
        if a == 0:  # torch's own float32 loss at the centre, to float32 round-off
            assert s["train_loss"][i] == pytest.approx(float(loss(out, y)), rel=2e-6)
        # the ratio estimator over images: tᵢ = Σ w[y]·loss, cᵢ = Σ w[y] over scored items
        t, c = [], []
        for k in range(len(y)):
            yk, ok = y[k].reshape(-1), out[k].double().reshape(C, -1).T
            keep = yk != 255
            t.append(sum(float(w[yk[j]]) * float(torch.logsumexp(ok[j], 0) - ok[j, yk[j]])
                         for j in range(len(yk)) if keep[j]))
            c.append(float(w[yk[keep]].sum()))
        value, se = _ratio_se(np.array(t), np.array(c))
        assert s["train_loss"][i] == pytest.approx(value, rel=1e-6)
        assert s.se("train_loss")[i] == pytest.approx(se, rel=1e-5)
    terms = per_example(loss)(out, y)  # the per-example form alone, at the last point
    assert float(terms[0].sum() / terms[1].sum()) == pytest.approx(float(loss(out, y)), rel=1e-6)


# -- one metric contract (issue 22 item 2): the length-1 rule, counts >= 0, accuracy's rule


def test_the_length_one_rule_is_the_same_for_values_stats_and_per_example_terms():
    from lossmap.backends.torch.persample import per_example_terms
    from lossmap.stats import MEAN, PAIR, TOTAL, VALUES, result_kind

    cpu = torch.device("cpu")
    one, eight = torch.zeros(1, 3), torch.zeros(8, 3)
    # shape (N,) on N examples is per example, N = 1 included; one element on more is a mean
    assert result_kind("m", torch.tensor([0.5]), 1) == VALUES
    assert result_kind("m", torch.tensor([0.5]), 8) == MEAN
    assert result_kind("m", (torch.ones(1), torch.ones(1)), 1) == PAIR
    assert result_kind("m", (torch.ones(1), torch.ones(1)), 8) == TOTAL
    stats = batch_stats(torch.tensor([0.5]), 1, cpu).numpy()  # one example, its own value
    assert stats[5] == 1 and stats[2] == 0.25
    stats = batch_stats((torch.tensor([6.0]), torch.tensor([3.0])), 8, cpu).numpy()
    assert stats[0] == 6 and stats[1] == 3 and stats[5] == 8 and np.isnan(stats[2])  # total
    stats = batch_stats(torch.tensor([0.5]), 8, cpu).numpy()  # a mean of shape (1,)
    assert stats[0] == 4 and stats[1] == 8 and np.isnan(stats[2])
    # per-example terms (slopes) read a one-example batch as the evaluator does
    sq = lambda o, t: (o ** 2).sum(1)  # noqa: E731
    t, c = per_example_terms(sq, one + 2, torch.zeros(1))
    assert t.tolist() == [12.0] and c is None
    assert per_example_terms(lambda o, t: (o ** 2).mean().reshape(1), eight, torch.zeros(8)) \
        is None


def test_a_split_whose_last_batch_has_one_example_keeps_its_slope():
    from lossmap.backends.torch.slopes import centre_slopes
    from lossmap.data.splits import Split

    net = _net(seed=5)
    X, y = _data(n=17, seed=2)  # batches of 16 and 1
    params = {k: v.detach() for k, v in net.named_parameters()}
    d = {k: torch.randn_like(v) for k, v in params.items()}
    out = centre_slopes(net, {"sq": lambda o, t: (o ** 2).mean(1)}, params, {}, [d],
                        [Split("train", X, y)], torch.device("cpu"), 16)
    assert out["train_sq"][0]["n"] == 17


def test_negative_counts_are_refused_naming_the_metric():
    net = _net()
    X, y = _data(n=40)
    d = lm.random_direction(net, seed=0)
    neg = ("neg", lambda o, t: ((o ** 2).sum(1), torch.full((len(t),), -2.0)))
    with pytest.raises(lm.InputError, match=r"metric 'neg' returned negative counts .*>= 0"):
        lm.scan(net, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
                grid=(-1, 1, 3), metrics=("loss", neg), progress=False)


def test_negative_counts_beyond_the_checked_samples_are_refused_before_any_point():
    """Dict batches: counts from the batch, negative only in its last batch."""
    net = _net()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)

    batches = []
    for b in range(3):
        X, y = _data(n=8, seed=b)
        batches.append({"x": X, "y": y, "w": torch.full((8,), -1.0 if b == 2 else 1.0)})

    def weighted(out, batch):
        return (out ** 2).sum(1) * batch["w"], batch["w"]

    model = Net()
    with pytest.raises(lm.InputError, match=r"metric 'loss' returned negative counts "
                                            r"\(-8.0 in all on split 'train'\)"):
        lm.scan(model, weighted, data={"train": batches}, directions=lm.random_direction(
                model, seed=0), grid=(-1, 1, 5), progress=False)


def test_accuracy_is_one_rule_for_indices_segmentation_one_hot_and_one_logit():
    from lossmap.backends.torch.metrics import accuracy
    from lossmap.metrics import classification_accuracy, token_accuracy

    g = torch.Generator().manual_seed(0)

    def brute(out, y, axis):  # a loop over every scored item
        right, scored = np.zeros(len(out)), np.zeros(len(out))
        o, t = np.moveaxis(out.numpy(), axis, -1), y.numpy()
        for idx in np.ndindex(t.shape):
            if t[idx] != -100:
                scored[idx[0]] += 1
                right[idx[0]] += float(np.argmax(o[idx]) == t[idx])
        return right, scored

    out, y = torch.randn(9, 4, generator=g), torch.randint(0, 4, (9,), generator=g)
    y[2] = -100
    np.testing.assert_array_equal(np.stack(accuracy(out, y)), np.stack(brute(out, y, 1)))
    seg, ys = torch.randn(3, 5, 4, 6, generator=g), torch.randint(0, 5, (3, 4, 6), generator=g)
    ys[0, 1] = -100
    np.testing.assert_array_equal(np.stack(accuracy(seg, ys)), np.stack(brute(seg, ys, 1)))
    onehot = F.one_hot(y.clamp(min=0), 4).float()
    correct, counts = accuracy(out, onehot)
    assert correct.tolist() == (out.argmax(1) == y.clamp(min=0)).double().tolist()
    assert counts.tolist() == [1.0] * 9
    logit, y01 = torch.randn(9, 1, generator=g), torch.randint(0, 2, (9,), generator=g)
    assert accuracy(logit, y01)[0].tolist() == ((logit[:, 0] > 0) == (y01 == 1)).double().tolist()
    # lm.metrics reads logits the same way (the classes last)
    tok, yt = torch.randn(2, 5, 7, generator=g), torch.randint(0, 7, (2, 5), generator=g)
    right, scored = brute(tok[:, :-1], yt[:, 1:], 2)
    assert token_accuracy(tok, {"labels": yt})[0].tolist() == right.tolist()
    assert token_accuracy(tok, {"labels": yt})[1].tolist() == scored.tolist()
    assert classification_accuracy(out, {"labels": y.clamp(min=0)}).tolist() == \
        (out.argmax(1) == y.clamp(min=0)).double().tolist()
    with pytest.raises(lm.InputError, match=r"accuracy cannot read outputs of shape \(9, 4\) "
                                            r"against targets of shape \(9, 2\)"):
        accuracy(out, torch.zeros(9, 2, dtype=torch.long))
