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
        "hooks": [
            (list(mod._forward_pre_hooks.items()), list(mod._forward_hooks.items()),
             list(mod._backward_hooks.items()))
            for mod in m.modules()
        ],
    }


def assert_same(m, snap):
    now = snapshot(m)
    assert now["objects"] == snap["objects"]
    assert now["training"] == snap["training"]
    assert now["requires_grad"] == snap["requires_grad"]
    assert now["hooks"] == snap["hooks"]
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
        # checks, the round-off floor's 2 x 3 points, the centre's per-example pass, points
        if len(calls) == 5 + 6 + 1 + 2:
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
    partial = lm.load(store)  # finished points are kept, with the values of a clean scan
    assert 1 <= partial.done.sum() < 9
    assert np.isnan(partial["train_loss"][~partial.done]).all()
    m, X, y = model_and_data()
    ref = lm.scan(m, nn.CrossEntropyLoss(), data={"train": (X, y)},
                  directions=lm.random_direction(m, seed=0), grid=(-1, 1, 9), metrics=("loss",),
                  progress=False)
    np.testing.assert_allclose(partial["train_loss"][partial.done],
                               ref["train_loss"][partial.done], rtol=1e-6)


def _foreign_hooks(m: nn.Module, own: int) -> int:
    """Hooks on the model beyond the user's ``own``: those lossmap registers for a moment."""
    return sum(len(x._forward_pre_hooks) + len(x._forward_hooks) for x in m.modules()) - own


@pytest.mark.parametrize("exc", [BoomError, KeyboardInterrupt])
def test_restored_after_exception_while_lossmap_hooks_are_on(exc):
    """A user's hook scribbles on the model and raises while lossmap's own hooks (first-layer
    detection, batch sizing) are registered: everything comes back, the user's hooks stay and
    lossmap's go. Fails if ``evaluate.restore.preserved`` restores nothing."""
    m, X, y = model_and_data()
    held = m[0].bias  # the user's own frozen tensor
    seen, raised = [], []

    def spy(mod, args, out):  # a harmless user hook: must survive the scan
        seen.append(1)

    def hostile(mod, args):
        foreign = _foreign_hooks(m, own=2)
        if foreign > 0 or raised:  # from the first call with lossmap's hooks on, every call
            raised.append(foreign)
            m.train()
            held.requires_grad_(True)
            m[1].register_buffer("extra", torch.zeros(1))
            raise exc("stop")

    m[5].register_forward_hook(spy)
    m[0].register_forward_pre_hook(hostile)
    snap = snapshot(m)
    d = lm.random_direction(m, seed=0)
    with pytest.raises(exc):
        lm.scan(m, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
                grid=(-1, 1, 5), progress=False)
    assert raised and raised[0] > 0, "the hook never fired while lossmap's hooks were on"
    assert seen  # the user's hooks ran during the scan
    assert_same(m, snap)
    assert _foreign_hooks(m, own=2) == 0
    assert "extra" not in dict(m[1].named_buffers()) and not held.requires_grad


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
