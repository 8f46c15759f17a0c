"""ReLUs after a Linear/Conv of a plain Sequential run in place in the evaluator's copy only."""

import numpy as np
import torch
from torch import nn

import lossmap as lm
from lossmap.backends.torch.inplace import relus_in_place
from lossmap.backends.torch.slopes import centre_slopes
from lossmap.data.splits import Split


class Custom(nn.Sequential):
    """A Sequential with its own forward: its ReLU sees the layer's output twice."""

    def forward(self, x):
        h = self[0](x)
        return self[2](self[1](h) + h)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(6, 8), nn.ReLU(),
                         nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 3)).double()


def test_only_relus_after_a_fresh_layer_output_are_replaced_in_a_copy():
    model = net()
    copy_, n = relus_in_place(model)
    assert n == 2
    assert copy_[3].inplace and copy_[4][1].inplace
    assert not copy_[1].inplace  # after Flatten: a view of the data, kept as it is
    assert not model[3].inplace and not model[4][1].inplace  # the user's model is unchanged
    assert copy_[2] is model[2] and copy_[4][0] is model[4][0]  # layers shared, not copied

    hooked = net()
    hooked[2].register_forward_hook(lambda m, a, out: None)  # may keep the layer's output
    copy_, n = relus_in_place(hooked)
    assert n == 1 and not copy_[3].inplace and copy_[4][1].inplace

    custom = Custom(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert relus_in_place(custom) == (custom, 0)


def test_scan_values_and_slopes_through_in_place_relus_equal_the_plain_model():
    model = net().eval()
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(40, 2, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,))
    dirs = lm.random_directions(model, 2, seed=2)
    grid = [(-1.0, 1.0, 3)] * 2
    kw = dict(data={"train": (X, y)}, directions=dirs, grid=grid, progress=False)
    plan = lm.plan_scan(model, nn.CrossEntropyLoss(), **kw)
    with plan.backend.guard(model):
        assert plan.evaluator().relus_in_place == 2
    surf = lm.scan(model, nn.CrossEntropyLoss(), **kw)
    ref = lm.scan(model, nn.CrossEntropyLoss(), **kw, reuse_first_layer=False,
                  strategy="vmap")
    np.testing.assert_allclose(surf["train_loss"], ref["train_loss"], rtol=1e-12)
    # brute force at every point: the model itself, weights moved
    for idx in np.ndindex(3, 3):
        a, b = (np.linspace(-1, 1, 3)[i] for i in idx)
        params = {k: p + a * dirs[0][k] + b * dirs[1][k] for k, p in model.named_parameters()}
        out = torch.func.functional_call(model, params, (X,))
        want = nn.functional.cross_entropy(out, y).item()
        assert abs(surf["train_loss"][idx] - want) < 1e-12
    plain = centre_slopes(model, {"loss": nn.CrossEntropyLoss()},
                          dict(model.named_parameters()), {}, list(dirs),
                          [Split("train", X, y)], torch.device("cpu"), 16)
    for got, want in zip(surf.slopes["train_loss"], plain["train_loss"], strict=True):
        assert abs(got["slope"] - want["slope"]) < 1e-12 and got["n"] == want["n"] == 40
    assert not model[3].inplace


class Counting(nn.Module):
    """Counts its forward calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.body(x)


def test_the_centre_point_takes_the_sums_of_the_centre_pass():
    """The centre's per-example pass also gives the centre point its values: the grid's
    centre costs no forward of its own, and its values are those of a forward there."""
    model = Counting().double().eval()
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (30,))
    dirs = lm.random_directions(model, 2, seed=4)
    kw = dict(data={"train": (X, y)}, directions=dirs, progress=False, batch_size=8,
              reuse_first_layer=False)  # the model itself runs: its calls are counted
    plan = lm.plan_scan(model, nn.CrossEntropyLoss(), grid=[(-1.0, 1.0, 3)] * 2, **kw)
    with plan.backend.guard(model):
        ev = plan.evaluator()
        model.calls = 0
        centre, off = np.zeros((1, 2)), np.array([[0.5, -0.5]])
        v0, se0, paired0 = ev.evaluate(centre, errors=True)
        calls_centre = model.calls  # the centre's pass: 4 batches, and no point of its own
        v1 = ev.evaluate(off)
        calls_off = model.calls - calls_centre
    assert calls_centre == 4 and calls_off == 4
    out = torch.func.functional_call(model, dict(model.named_parameters()), (X,))
    assert abs(v0[0, 0] - nn.functional.cross_entropy(out, y).item()) < 1e-14
    assert np.all(paired0[:, 0] == 0.0) and se0[0, 0] > 0  # no difference from itself
    params = {k: p + 0.5 * dirs[0][k] - 0.5 * dirs[1][k] for k, p in model.named_parameters()}
    want = nn.functional.cross_entropy(torch.func.functional_call(model, params, (X,)), y)
    assert abs(v1[0, 0] - want.item()) < 1e-12


class CallsItsReluElsewhere(nn.Module):
    """A custom forward that calls the Sequential's ReLU on a tensor it uses again."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(),
                                 nn.Linear(4, 3))

    def forward(self, x):
        h = x * 2.0
        r = self.seq[3](h)  # an in-place ReLU here would overwrite h
        return self.seq(x) + h[:, :3] - r[:, :3]


def test_relus_reached_by_a_custom_forward_stay_as_they_are():
    model = CallsItsReluElsewhere().double().eval()
    assert relus_in_place(model) == (model, 0)
    inner, n = relus_in_place(model.seq)  # the Sequential alone: nothing else can call it
    assert n == 1 and inner[3].inplace
    g = torch.Generator().manual_seed(5)
    X, y = torch.randn(20, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (20,))
    dirs = lm.random_directions(model, 1, seed=6)
    surf = lm.scan(model, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=dirs,
                   grid=(-1.0, 1.0, 3), progress=False)
    for i, a in enumerate(np.linspace(-1, 1, 3)):
        params = {k: p + a * dirs[0][k] for k, p in model.named_parameters()}
        out = torch.func.functional_call(model, params, (X,))
        assert abs(surf["train_loss"][i] - nn.functional.cross_entropy(out, y).item()) < 1e-12
