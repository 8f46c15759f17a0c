"""The user's model comes back bit-identical: after success, an exception, Ctrl-C."""

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm


def model_and_data():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(4 * 6 * 6, 3),
    )
    m.train()  # the user left it in training mode
    m[2].eval()  # with one submodule in eval mode
    m[0].bias.requires_grad_(False)  # and one frozen tensor
    with torch.no_grad():
        m[1].running_mean.uniform_(-1, 1)
    X, y = torch.randn(30, 1, 8, 8), torch.randint(0, 3, (30,))
    return m, X, y


def snapshot(m):
    return {
        "state": {k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()},
        "objects": {k: id(v) for k, v in m.state_dict(keep_vars=True).items()},
        "training": [mod.training for mod in m.modules()],
        "requires_grad": {k: p.requires_grad for k, p in m.named_parameters()},
        "grad": {k: p.grad for k, p in m.named_parameters()},
    }


def assert_same(m, snap):
    now = snapshot(m)
    assert now["objects"] == snap["objects"]
    assert now["training"] == snap["training"]
    assert now["requires_grad"] == snap["requires_grad"]
    assert all(g is None for g in now["grad"].values())
    for k, v in snap["state"].items():
        assert torch.equal(
            now["state"][k].view(-1).view(torch.uint8)
            if v.is_floating_point()
            else now["state"][k],
            v.view(-1).view(torch.uint8) if v.is_floating_point() else v,
        ), k


def test_restored_after_success():
    m, X, y = model_and_data()
    snap = snapshot(m)
    dirs = lm.random_directions(m, 2, seed=0)
    lm.scan(
        m,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=dirs,
        grid=[(-1, 1, 3), (-1, 1, 3)],
        progress=False,
    )
    assert_same(m, snap)


def test_scan_is_in_eval_mode_without_grad():
    m, X, y = model_and_data()
    seen = []

    def loss(out, t):
        seen.append((all(not mod.training for mod in m.modules()), torch.is_grad_enabled()))
        return nn.functional.cross_entropy(out, t)

    d = lm.random_direction(m, seed=0)
    surf = lm.scan(m, loss, data={"train": (X, y)}, directions=d, grid=(-1, 1, 3), progress=False)
    assert seen and all(ev and not grad for ev, grad in seen)
    # dropout off: the value at the centre is deterministic and equals a plain eval forward
    m.eval()
    with torch.no_grad():
        expect = nn.functional.cross_entropy(m(X), y).item()
    assert surf["train_loss"][1] == pytest.approx(expect, rel=1e-6)


class BoomError(Exception):
    pass


@pytest.mark.parametrize("exc", [BoomError, KeyboardInterrupt])
def test_restored_after_exception_inside_loss(exc, tmp_path):
    m, X, y = model_and_data()
    snap = snapshot(m)
    calls = []

    def loss(out, t):
        calls.append(1)
        if len(calls) == 5:  # one shape check, then three points, then fail
            with torch.no_grad():  # a hostile loss that also scribbles on the model
                m[5].weight.add_(1.0)
                m.train()
            raise exc("stop")
        return nn.functional.cross_entropy(out, t)

    d = lm.random_direction(m, seed=0)
    store = tmp_path / "s.lossmap"
    with pytest.raises(exc):
        lm.scan(
            m,
            loss,
            data={"train": (X, y)},
            directions=d,
            grid=(-1, 1, 9),
            store=store,
            metrics=("loss",),
            progress=False,
        )
    assert_same(m, snap)
    partial = lm.load(store)  # finished points are kept
    assert partial.done.sum() == 3 and not partial.complete
    assert np.isnan(partial["train_loss"][~partial.done]).all()


def test_no_model_copy_per_point(monkeypatch):
    m, X, y = model_and_data()
    import copy

    def refuse(*a, **k):
        raise AssertionError("deepcopy called")

    monkeypatch.setattr(copy, "deepcopy", refuse)
    d = lm.random_direction(m, seed=0)
    lm.scan(
        m,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=d,
        grid=(-1, 1, 3),
        progress=False,
    )


def test_outside_write_to_the_model_is_reported():
    m, X, y = model_and_data()
    held = m[5].weight  # a loss that holds the real tensor and writes into it

    def loss(out, t):
        with torch.no_grad():
            held.mul_(1.0)
        return nn.functional.cross_entropy(out, t)

    d = lm.random_direction(m, seed=0)
    with pytest.warns(RuntimeWarning, match=r"'5\.weight' was modified in place"):
        lm.scan(m, loss, data={"train": (X, y)}, directions=d, grid=(-1, 1, 3), progress=False)
