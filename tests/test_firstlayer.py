"""First-layer reuse is exact or steps aside: every case against a brute-force loop.

The reference copies the model and assigns c + Σ aᵢ·dᵢ to each parameter's
``.data`` before a plain forward, so tied weights stay tied there.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import helpers
import lossmap as lm
from lossmap.backends.torch import firstlayer

# -- models ------------------------------------------------------------------


class TiedAE(nn.Module):
    """An autoencoder whose decoder shares the encoder's (first layer's) weight."""

    def __init__(self, enc_first=True):
        super().__init__()
        if enc_first:
            self.enc, self.dec = nn.Linear(5, 5), nn.Linear(5, 5)
        else:  # the shared tensor is then named 'dec.weight' in named_parameters()
            self.dec, self.enc = nn.Linear(5, 5), nn.Linear(5, 5)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.tanh(self.enc(x)))


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(5, 4)
        self.head = nn.Linear(4, 5)


class ReadsOutFeatures(Head):
    """Reads a plain attribute of its first layer: the reuse can stay on."""

    def forward(self, x):
        return self.head(torch.tanh(self.l(x)).reshape(-1, self.l.out_features))


class ReadsWeight(Head):
    """Uses its first layer's weight directly, as an output projection (an embedding tie)."""

    def forward(self, x):
        h = torch.tanh(self.l(x))
        return self.head(h) + h @ self.l.weight


class ReadsWeightShape(Head):
    def forward(self, x):
        return self.head(torch.tanh(self.l(x)).reshape(-1, self.l.weight.shape[0]))


class Aliased(Head):
    """Registers its first layer twice and calls it under the second name."""

    def __init__(self):
        super().__init__()
        self.m = self.l

    def forward(self, x):
        return self.head(torch.tanh(self.m(x)))


class Peeking(Head):
    """Keeps its first layer outside the module tree too, and reads its weight there."""

    def __init__(self):
        super().__init__()
        self.refs = [self.l]  # a plain list: not a submodule, invisible to the structure

    def forward(self, x):
        h = torch.tanh(self.l(x))
        return self.head(h) + h @ self.refs[0].weight


class Plain(Head):
    def forward(self, x):
        return self.head(torch.tanh(self.l(x)))


class ScaledInput(Head):
    """Calls its first layer on something other than the raw input."""

    def forward(self, x):
        return self.head(torch.tanh(self.l(2 * x)))


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(5, 5)

    def forward(self, x):
        return self.l(torch.tanh(self.l(x)))


def data(n=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(
        n, 5, generator=g, dtype=torch.float64
    )


def make(cls, *args):
    torch.manual_seed(0)
    return cls(*args).double().eval()


def brute_force(model, dirs, grid, X, y):
    """MSE at every grid point: a copy of the model per point, weights set by hand."""
    axes = [np.linspace(lo, hi, n) for lo, hi, n in grid]
    out = np.empty([len(a) for a in axes])
    with torch.no_grad():
        for idx in np.ndindex(*out.shape):
            m = helpers.moved(model, dirs, [axes[i][j] for i, j in enumerate(idx)])
            out[idx] = nn.functional.mse_loss(m(X), y).item()
    return out


GRIDS = {"line": [(-1.0, 1.0, 5)], "plane": [(-1.0, 1.0, 4), (-0.5, 1.0, 3)]}
OPTIONS = {"default": {}, "vmap": {"strategy": "vmap", "compile": False}}


def scan(model, grid, X, y, capsys=None, **kw):
    dirs = lm.random_directions(model, len(grid), ignore=None, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    surf = lm.scan(model, nn.MSELoss(), data={"train": (X, y)}, directions=dirs, grid=grid,
                   progress=False, profile=capsys is not None, **kw)
    for k, v in model.state_dict().items():  # the user's model is left alone
        assert torch.equal(v, before[k]), k
    return surf["train_loss"], dirs


def reuse_reported(capsys):
    err = capsys.readouterr().err
    assert "first-layer reuse" in err
    return "first-layer reuse on" in err


# -- the values ----------------------------------------------------------------


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("enc_first", [True, False], ids=["enc-first", "dec-first"])
def test_tied_weights_equal_brute_force(enc_first, grid, options, capsys):
    model = make(TiedAE, enc_first)
    X, y = data()
    got, dirs = scan(model, grid, X, y, capsys, **options)
    np.testing.assert_allclose(got, brute_force(model, dirs, grid, X, y), rtol=1e-6, atol=0)
    assert not reuse_reported(capsys)


def test_tied_weights_are_the_obstacle_named():
    model = make(TiedAE)
    first = firstlayer.FirstLayer("enc", model.enc, (5,))
    state = dict(model.named_parameters())
    assert "tied" in firstlayer.obstacle(model, first, state)
    assert "'dec.weight' shares its tensor with 'enc.weight'" in firstlayer.obstacle(
        model, first, state
    )


def test_a_view_of_the_first_weight_elsewhere_is_an_obstacle():
    model = make(Plain)
    model.register_buffer("peek", model.l.weight.detach()[:2])  # the same memory
    first = firstlayer.FirstLayer("l", model.l, (5,))
    assert "'peek' shares" in firstlayer.obstacle(model, first, dict(model.named_parameters()))


@pytest.mark.parametrize(
    ("cls", "reused"),
    [
        (ReadsOutFeatures, True),  # the stand-in answers out_features: reuse stays on
        (ReadsWeight, False),
        (ReadsWeightShape, False),
        (Aliased, False),
        (Peeking, False),
        (ScaledInput, False),
        (CalledTwice, False),
        (Plain, True),
    ],
)
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_forwards_that_see_the_first_layer_equal_brute_force(cls, reused, options, capsys):
    model = make(cls)
    X, y = data()
    grid = GRIDS["plane"]
    got, dirs = scan(model, grid, X, y, capsys, **options)
    np.testing.assert_allclose(got, brute_force(model, dirs, grid, X, y), rtol=1e-6, atol=0)
    assert reuse_reported(capsys) is reused


def test_the_stand_in_refuses_the_layers_tensors_and_gives_the_rest():
    model = make(Plain)
    _, given = firstlayer.shadow(model, firstlayer.FirstLayer("l", model.l, (5,)))
    assert given.out_features == 4 and given.in_features == 5
    with pytest.raises(AttributeError, match="has no 'weight'"):
        given.weight  # noqa: B018
    with pytest.raises(AttributeError):
        given.no_such_thing  # noqa: B018
    copy.deepcopy(given)  # copying does not recurse into the delegation


@pytest.mark.parametrize(
    "hook",
    [
        lambda m: m.l.register_forward_hook(lambda mod, args, out: out * 2),
        lambda m: m.l.register_forward_pre_hook(lambda mod, args: (args[0] + 1,)),
        lambda m: nn.modules.module.register_module_forward_hook(
            lambda mod, args, out: out + 1 if isinstance(mod, nn.Linear) else None
        ),
    ],
    ids=["forward-hook", "pre-hook", "global-hook"],
)
def test_hooks_on_the_first_layer_equal_brute_force(hook, capsys):
    model = make(Plain)
    X, y = data()
    handle = hook(model)
    try:
        got, dirs = scan(model, GRIDS["line"], X, y, capsys)
        want = brute_force(model, dirs, GRIDS["line"], X, y)
    finally:
        handle.remove()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
    assert not reuse_reported(capsys)


# -- the safety net --------------------------------------------------------------


def by_name(dirs):
    """Directions as the evaluator passes them: name -> one tensor per direction."""
    return {k: [d[k] for d in dirs] for k in dirs[0]}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_probe_accepts_an_exact_reuse_to_round_off(dtype, monkeypatch):
    model = make(Plain).to(dtype)
    X = data()[0][:2].to(dtype)
    dirs = lm.random_directions(model, 2, ignore=None, seed=3)
    state = dict(model.named_parameters())
    diffs = []
    close = firstlayer._close

    def spy(got, want):
        diffs.append((got - want).abs().max().item())
        return close(got, want)

    monkeypatch.setattr(firstlayer, "_close", spy)
    first = firstlayer.detect(model, state, X, by_name(dirs))
    assert first is not None and first.path == "l"
    assert 0 < diffs[0] < 1e3 * torch.finfo(dtype).eps  # the paths differ, by round-off only


def test_the_probe_alone_catches_tied_weights(monkeypatch):
    model = make(TiedAE)
    X, y = data()
    dirs = lm.random_directions(model, 2, ignore=None, seed=1)
    state = dict(model.named_parameters())
    first = firstlayer.FirstLayer("enc", model.enc, (5,))
    assert not firstlayer.agrees(model, first, state, by_name(dirs), X[:2])
    # With the structural check switched off, the probe still turns the reuse off, quietly.
    monkeypatch.setattr(firstlayer, "obstacle", lambda *a: None)
    assert firstlayer.detect(model, state, X[:2]) is not None  # without directions: no probe
    assert firstlayer.detect(model, state, X[:2], by_name(dirs)) is None
    got, dirs = scan(model, GRIDS["line"], X, y)
    np.testing.assert_allclose(got, brute_force(model, dirs, GRIDS["line"], X, y), rtol=1e-6)


def test_the_probe_alone_catches_a_reference_outside_the_module_tree():
    model = make(Peeking)
    X = data()[0][:2]
    dirs = lm.random_directions(model, 1, ignore=None, seed=1)
    state = dict(model.named_parameters())
    assert firstlayer.obstacle(model, firstlayer.FirstLayer("l", model.l, (5,)), state) is None
    assert firstlayer.detect(model, state, X) is not None
    assert firstlayer.detect(model, state, X, by_name(dirs)) is None


def test_outputs_are_compared_by_structure_and_to_round_off():
    close = firstlayer._close
    t = torch.tensor([1.0, float("nan"), float("inf"), 3.0])
    assert close({"a": t, "b": (t, 2)}, {"a": t.clone(), "b": (t.clone(), 2)})
    assert close(t * (1 + 1e-5), t)  # float32 round-off
    assert not close(t * (1 + 1e-2), t)
    assert not close(t.double() * (1 + 1e-5), t.double())  # beyond float64 round-off
    inf = float("inf")
    assert not close(torch.tensor([1.0, 2.0, -inf]), torch.tensor([1.0, 2.0, inf]))
    assert not close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    assert not close({"a": t}, {"b": t})
    assert not close((t,), (t, t))
    assert not close((t, 1), (t, 2))
    assert not close(t, t.double())


def test_a_tied_models_own_state_dict_is_a_valid_centre():
    """``state_dict()`` of a tied model lists both names; they fold into one tensor."""
    torch.manual_seed(0)

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
            self.dec.weight = self.enc.weight

        def forward(self, x):
            return self.dec(torch.tanh(self.enc(x)))

    net = Tied()
    X, y = torch.randn(16, 4), torch.randint(0, 4, (16,))
    d = lm.random_direction(net, seed=0)
    kw = dict(data={"t": (X, y)}, directions=d, grid=(-1, 1, 5), progress=False)
    a = lm.scan(net, nn.CrossEntropyLoss(), **kw)
    b = lm.scan(net, nn.CrossEntropyLoss(), centre=net.state_dict(), **kw)
    np.testing.assert_array_equal(a["t_loss"], b["t_loss"])
    bad = {**net.state_dict(), "dec.weight": torch.zeros(4, 4)}
    with pytest.raises(lm.InputError, match=r"values for 'dec\.weight' and 'enc\.weight'"):
        lm.scan(net, nn.CrossEntropyLoss(), centre=bad, **kw)


# -- the ReLU after the layer, and the kept partial sums --------------------------


class ReluCalledElsewhere(nn.Module):
    """Runs the ReLU after its first layer a second time, on something else."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 5))

    def forward(self, x):
        return self.body(x) + self.body[1](-x)


def relu_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(),
                         nn.Linear(6, 5))


def evaluator_of(model, X, y, ndirs=2, **options):
    dirs = lm.random_directions(model, ndirs, ignore=None, seed=3)
    grid = [(-1.0, 1.0, 3)] * ndirs
    plan = lm.plan_scan(model, nn.MSELoss(), data={"train": (X, y)}, directions=dirs,
                        grid=grid, **options)
    return plan, dirs


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_the_relu_after_the_first_layer_runs_in_the_stand_in_with_the_same_values(options,
                                                                                 capsys):
    model = make(relu_mlp)
    X, y = data()
    grid = GRIDS["plane"]
    got, dirs = scan(model, grid, X, y, capsys, **options)
    np.testing.assert_allclose(got, brute_force(model, dirs, grid, X, y), rtol=1e-6, atol=0)
    assert reuse_reported(capsys)
    assert type(model[2]) is nn.ReLU  # the user's model keeps its ReLU
    plan, _ = evaluator_of(model, X, y)
    with plan.backend.guard(model):
        ev = plan.evaluator()
    assert ev.first.fuse_relu and ev.given.relu
    assert type(ev.net[2]) is nn.Identity and type(model[2]) is nn.ReLU


def test_a_relu_called_elsewhere_or_hooked_stays_in_the_model(capsys):
    model = make(ReluCalledElsewhere)
    X, y = data()
    grid = GRIDS["plane"]
    got, dirs = scan(model, grid, X, y, capsys)
    np.testing.assert_allclose(got, brute_force(model, dirs, grid, X, y), rtol=1e-6, atol=0)
    assert reuse_reported(capsys)  # the reuse stays on, without the fusion
    first = firstlayer.detect(model, dict(model.state_dict()), X[:2],
                              {k: [torch.randn_like(v)] for k, v in model.state_dict().items()})
    assert first is not None and not first.fuse_relu

    hooked = make(relu_mlp)
    hooked[2].register_forward_hook(lambda m, a, out: out * 2)
    first = firstlayer.detect(hooked, dict(hooked.state_dict()), X[:2],
                              {k: [torch.randn_like(v)] for k, v in hooked.state_dict().items()})
    assert first is not None and not first.fuse_relu
    got, dirs = scan(hooked, grid, X, y)
    np.testing.assert_allclose(got, brute_force(hooked, dirs, grid, X, y), rtol=1e-6, atol=0)


@pytest.mark.parametrize("ndirs", [2, 3])
def test_kept_partial_sums_give_the_values_of_the_whole_sum(ndirs):
    """Points sharing their leading coefficients reuse Y_c + Σ_{i<k} aᵢ·Yᵢ; a change of
    them, a zero and a return are all exact against the evaluator without the partials."""
    model = make(relu_mlp)
    X, y = data(n=40)
    plan, dirs = evaluator_of(model, X, y, ndirs=ndirs, batch_size=16)
    lead = [[0.5] * (ndirs - 1), [0.5] * (ndirs - 1), [0.0] * (ndirs - 1),
            [-0.25] * (ndirs - 1), [0.5] * (ndirs - 1)]
    points = np.array([[*r, b] for r, b in zip(lead, [0.3, -0.7, 0.4, 0.0, 0.3], strict=True)])
    with plan.backend.guard(model):
        ev = plan.evaluator()
        assert ev._partials is not None and ev.chunk == 1
        got = np.concatenate([ev.evaluate(points[i:i + 1]) for i in range(len(points))])
        kept = ev._partials[(0, 0)]
        ev_plain = plan.evaluator()
        ev_plain._partials = None
        want = np.concatenate([ev_plain.evaluate(points[i:i + 1])
                               for i in range(len(points))])
    assert kept[0] == [0.5] * (ndirs - 1)  # the last leading coefficients are kept
    assert len(ev._partials) == 3  # one per batch: 16 + 16 + 8
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    ref = np.array([[nn.functional.mse_loss(helpers.moved(model, dirs, list(p))(X), y).item()]
                    for p in points])
    np.testing.assert_allclose(got[:, :1], ref, rtol=1e-10, atol=0)
