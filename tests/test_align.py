"""lm.align: permutation alignment with the structure read off the torch.fx graph (issue 14).

- the aligned copy computes model_b's function (MLP, CNN with BatchNorm, a
  flattened feature map, ResNet-20 with its option-A shortcuts, residual and
  concatenating toy models), in eval and in train mode;
- a model aligned to a randomly permuted copy of itself gets the copy back
  exactly (weights equal, the permutation found is the inverse of the one
  applied, zero barrier on the straight path);
- on two MLPs trained on the 8x8 digits from different seeds, the barrier of
  the straight path falls after weight matching and after activation matching;
- architectures align cannot read are refused naming the layer; the input
  models are never changed, also after an error;
- ``lossmap align A B -o OUT`` writes the aligned copy; bad input is one line, exit 2.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.func import functional_call

import lossmap as lm
from cli_run import run_cli
from lossmap.align.apply import permute_model
from lossmap.align.trace import infer_structure, trace
from lossmap.data.digits import digits
from lossmap.errors import InputError, InputTypeError
from lossmap.models.cnn import fashion_cnn, mlp
from lossmap.models.resnet import resnet20

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def _snapshot(model: nn.Module) -> tuple[dict, list[bool]]:
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()])


def _unchanged(model: nn.Module, snap: tuple[dict, list[bool]]) -> bool:
    state, modes = snap
    now = model.state_dict()
    return (all(torch.equal(now[k], v) for k, v in state.items())
            and [m.training for m in model.modules()] == modes)


def _random_bn_stats(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm with non-trivial statistics and affine parameters (else BN hides mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model


def _same_function(b: nn.Module, aligned: nn.Module, x: torch.Tensor) -> None:
    """Equal outputs to 1e-5 relative (to the largest output), in eval and in train mode."""
    for train in (False, True):
        m1, m2 = copy.deepcopy(b).train(train), copy.deepcopy(aligned).train(train)
        with torch.no_grad():
            o1, o2 = m1(x), m2(x)
        assert torch.allclose(o1, o2, rtol=0, atol=1e-5 * float(o1.abs().max())), (
            train, float((o1 - o2).abs().max()))


def _moved(b: nn.Module, aligned: nn.Module) -> bool:
    """Whether any tensor changed: a test of function preservation must permute something."""
    sa = aligned.state_dict()
    return any(not torch.equal(v, sa[k]) for k, v in b.state_dict().items())


def bn_cnn(seed: int) -> nn.Sequential:
    """Conv/BN/ReLU stages, a flatten of a 4x4 map into a Linear, BatchNorm1d, Linear."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 12), nn.BatchNorm1d(12), nn.ReLU(),
        nn.Linear(12, 10),
    )


class ResidualMLP(nn.Module):
    """x -> fc_in -> (h + fc(relu(h))) twice -> LayerNorm -> out: one tied residual stream."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_in = nn.Linear(6, 10)
        self.fc1, self.fc2 = nn.Linear(10, 10), nn.Linear(10, 10)
        self.norm = nn.LayerNorm(10)
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc_in(x)
        h = h + self.fc1(F.relu(h))
        h = h + self.fc2(F.relu(h))
        return self.out(self.norm(h))


class CatShared(nn.Module):
    """A conv called twice (shared weights) and a concatenation along the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 5, 3, padding=1), nn.Conv2d(2, 4, 1)
        self.shared = nn.Conv2d(9, 9, 3, padding=1)
        self.head = nn.Linear(9, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([F.relu(self.c1(x)), torch.tanh(self.c2(x))], dim=1)
        h = F.relu(self.shared(h))
        h = F.relu(self.shared(h))
        return self.head(h.mean((2, 3)))


# --------------------------------------------------------------------------- function preserved


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_mlp_function_preserved(method):
    a, b = mlp((20, 16, 16, 5), seed=0), mlp((20, 16, 16, 5), seed=1)
    x = torch.randn(64, 20, generator=torch.Generator().manual_seed(0))
    data = (x, torch.zeros(64, dtype=torch.long)) if method == "activations" else None
    aligned = lm.align(a, b, method=method, data=data)
    assert _moved(b, aligned)
    _same_function(b, aligned, x)


def test_cnn_with_batchnorm_and_a_flattened_map_function_preserved():
    a, b = _random_bn_stats(bn_cnn(0), 1), _random_bn_stats(bn_cnn(2), 3)
    aligned, perms = lm.align(a, b, return_perms=True)
    assert set(perms) == {"0", "4", "9"}  # two convs and the hidden Linear; not the output
    assert _moved(b, aligned)
    _same_function(b, aligned, torch.randn(16, 1, 8, 8, generator=torch.Generator()
                                           .manual_seed(0)))


def test_flatten_moves_each_channel_as_a_block_of_features():
    """fashion_cnn: conv '3' has 32 channels of 7x7 flattened into Linear '8' (1568 inputs)."""
    a, b = fashion_cnn(seed=0), fashion_cnn(seed=1)
    aligned, perms = lm.align(a, b, return_perms=True)
    p = perms["3"]
    assert sorted(p.tolist()) == list(range(32)) and not torch.equal(p, torch.arange(32))
    w = b[8].weight.reshape(64, 32, 49)[:, p].reshape(64, 1568)  # independent of lossmap
    assert torch.equal(aligned[8].weight, w[perms["8"]])
    assert torch.equal(aligned[3].weight, b[3].weight[p][:, perms["0"]])
    _same_function(b, aligned, torch.randn(4, 1, 28, 28))


def test_resnet20_function_preserved():
    a, b = _random_bn_stats(resnet20(seed=0), 1), _random_bn_stats(resnet20(seed=2), 3)
    aligned = lm.align(a, b)
    assert _moved(b, aligned)
    _same_function(b, aligned, torch.randn(4, 3, 32, 32, generator=torch.Generator()
                                           .manual_seed(0)))


def test_resnet20_option_a_shortcut_ties_the_stages():
    """The zero-padded shortcut of stage 2 carries stage 1's 16 channels at 8..23."""
    groups = {g.name: g for g in infer_structure(trace(resnet20(seed=0), what="m")).groups}
    assert {n: g.size for n, g in groups.items() if "conv2" in n or n == "0"} == {
        "0": 16, "4.0.conv2": 16, "5.0.conv2": 32}
    stem = {(ax.key, ax.dim): ax.index.tolist() for ax in groups["0"].axes}
    assert stem[("0.weight", 0)] == list(range(16))
    assert stem[("4.0.conv2.weight", 0)] == list(range(8, 24))  # (32 - 16) // 2 = 8 before
    assert stem[("5.0.conv2.weight", 0)] == list(range(24, 40))  # 16 more in stage 3
    pad = {(ax.key, ax.dim): ax.index.tolist() for ax in groups["4.0.conv2"].axes}
    assert pad[("4.0.conv2.weight", 0)] == [*range(8), *range(24, 32)]
    assert ("4.0.conv1.weight", 0) not in stem and ("4.0.conv1.weight", 1) in stem


@pytest.mark.parametrize("make", [lambda s: ResidualMLP(), lambda s: CatShared()],
                         ids=["residual-layernorm", "cat-and-shared-conv"])
def test_residual_concat_and_shared_layers_function_preserved(make):
    torch.manual_seed(0)
    a = make(0)
    torch.manual_seed(1)
    b = make(1)
    x = torch.randn(8, 6) if isinstance(a, ResidualMLP) else torch.randn(8, 2, 5, 5)
    aligned, perms = lm.align(a, b, return_perms=True)
    assert perms and _moved(b, aligned)
    _same_function(b, aligned, x)


def test_activation_data_may_be_a_loader_a_pair_or_a_dict_of_splits():
    """One split as lm.scan takes it: the same inputs give the same permutations."""
    from torch.utils.data import DataLoader, TensorDataset

    a, b = mlp((20, 16, 16, 5), seed=0), mlp((20, 16, 16, 5), seed=1)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(96, 20, generator=g), torch.randint(0, 5, (96,), generator=g)
    loader = DataLoader(TensorDataset(X, y), batch_size=32, shuffle=True)
    found = [lm.align(a, b, method="activations", data=d, return_perms=True)[1]
             for d in ((X, y), loader, {"test": (X[:8], y[:8]), "train": (X, y)})]
    for perms in found[1:]:
        assert all(torch.equal(perms[k], found[0][k]) for k in found[0])
    with pytest.raises(InputTypeError, match="split 'align' is a str"):
        lm.align(a, b, method="activations", data="train.pt")


# --------------------------------------------------------------------------- identity recovered


def _permuted_mlp(a: nn.Sequential, p1: torch.Tensor, p2: torch.Tensor) -> nn.Sequential:
    """``a`` with its two hidden layers permuted by hand (Linear rows, next Linear columns)."""
    b = copy.deepcopy(a)
    with torch.no_grad():
        b[1].weight.copy_(a[1].weight[p1])
        b[1].bias.copy_(a[1].bias[p1])
        b[3].weight.copy_(a[3].weight[p2][:, p1])
        b[3].bias.copy_(a[3].bias[p2])
        b[5].weight.copy_(a[5].weight[:, p2])
    return b


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_a_permuted_copy_is_mapped_back_exactly(method):
    a = mlp((12, 24, 24, 4), seed=0)
    g = torch.Generator().manual_seed(5)
    p1, p2 = torch.randperm(24, generator=g), torch.randperm(24, generator=g)
    b = _permuted_mlp(a, p1, p2)
    X = torch.randn(256, 12, generator=g)
    y = torch.randint(0, 4, (256,), generator=g)
    data = (X, y) if method == "activations" else None
    aligned, perms = lm.align(a, b, method=method, data=data, return_perms=True)
    for k, v in a.state_dict().items():
        assert torch.equal(aligned.state_dict()[k], v), k
    assert torch.equal(p1[perms["1"]], torch.arange(24))  # the inverse of the permutation
    assert torch.equal(p2[perms["3"]], torch.arange(24))
    d = lm.interpolation(a, aligned)
    surf = lm.scan(a, nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
                   grid=(0, 1, 5), progress=False)
    assert lm.barrier(surf, "train_loss").value == 0.0


@pytest.mark.parametrize("name", ["cnn", "resnet20"])
def test_a_randomly_permuted_network_is_mapped_back(name):
    a = _random_bn_stats(bn_cnn(0) if name == "cnn" else resnet20(seed=0), 1)
    structure = infer_structure(trace(a, what="a"))
    g = torch.Generator().manual_seed(3)
    perms = [torch.randperm(grp.size, generator=g).numpy() for grp in structure.groups]
    b = copy.deepcopy(a)
    permute_model(b, structure, perms)
    assert _moved(a, b)
    aligned = lm.align(a, b)
    for k, v in a.state_dict().items():
        assert torch.equal(aligned.state_dict()[k], v), k


# --------------------------------------------------------------------------- trained models


def _train_digits_mlp(X: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Sequential:
    model = mlp((64, 64, 64, 10), seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(15):
        for idx in torch.randperm(len(X), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
    return model


def _barrier(a: nn.Module, b: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """max over α of L(α) − [(1 − α) L(0) + α L(1)] on the straight line, by a plain loop."""
    sa, sb = a.state_dict(), b.state_dict()
    alphas = [i / 10 for i in range(11)]
    with torch.no_grad():
        losses = [float(F.cross_entropy(functional_call(
            a, {k: (1 - t) * sa[k] + t * sb[k] for k in sa}, (X,)), y)) for t in alphas]
    chord = [(1 - t) * losses[0] + t * losses[-1] for t in alphas]
    return max(L - c for L, c in zip(losses, chord, strict=True))


@pytest.mark.slow
def test_alignment_lowers_the_barrier_between_two_trained_digit_mlps():
    X, y = digits("train")
    a, b = _train_digits_mlp(X, y, 0), _train_digits_mlp(X, y, 1)
    snap_a, snap_b = _snapshot(a), _snapshot(b)
    before = _barrier(a, b, X, y)
    by_weights = _barrier(a, lm.align(a, b), X, y)
    by_activations = _barrier(a, lm.align(a, b, method="activations", data=(X, y)), X, y)
    assert before > 0.3  # two minima from different seeds: a clear barrier to start with
    assert by_weights < before / 4 and by_activations < before / 4, (
        before, by_weights, by_activations)
    assert _unchanged(a, snap_a) and _unchanged(b, snap_b)


# --------------------------------------------------------------------------- refusals, inputs


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.att = nn.Linear(8, 16), nn.MultiheadAttention(16, 2, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.out(self.att(h, h, h)[0])


class Shuffle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x)
        n, c, hh, ww = h.shape
        h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
        return self.c2(h)


class Branching(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.out = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if h.sum() > 0:
            h = -h
        return self.out(h)


def _grouped() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2),
                         nn.ReLU(), nn.Conv2d(8, 2, 1))


def _groupnorm() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 2, 1))


@pytest.mark.parametrize(("make", "named"), [
    (Attention, "layer 'att'"),
    (Shuffle, "node 'view'"),
    (_grouped, "layer '2'"),
    (_groupnorm, "layer '1'"),
    (Branching, "cannot be traced by torch.fx"),
])
def test_unsupported_architectures_are_refused_naming_the_layer(make, named):
    torch.manual_seed(0)
    a, b = make(), make()
    b.train()
    snaps = _snapshot(a), _snapshot(b)
    with pytest.raises(InputError, match=named):
        lm.align(a, b)
    assert _unchanged(a, snaps[0]) and _unchanged(b, snaps[1])


@pytest.mark.parametrize("method", ["weights", "activations"])
def test_the_input_models_are_never_changed(method):
    a, b = _random_bn_stats(bn_cnn(0), 1).train(), _random_bn_stats(bn_cnn(2), 3).train()
    b[5].eval()  # a mixed mode must survive too
    snaps = _snapshot(a), _snapshot(b)
    X = torch.randn(32, 1, 8, 8)
    data = {"train": (X, torch.zeros(32))} if method == "activations" else None
    aligned = lm.align(a, b, method=method, data=data)
    assert _unchanged(a, snaps[0]) and _unchanged(b, snaps[1])
    assert [m.training for m in aligned.modules()] == snaps[1][1]  # the copy keeps b's modes


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"method": "greedy"}, InputError, "method='greedy' is not one of"),
    ({"method": "activations"}, InputError, "needs data"),
    ({"max_iter": 0}, InputError, "max_iter=0 must be"),
    ({"seed": -1}, InputError, "seed=-1 must be"),
])
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        lm.align(mlp((20, 8, 3), seed=0), mlp((20, 8, 3), seed=1), **kwargs)


def test_models_of_another_architecture_or_type_are_refused():
    with pytest.raises(InputError, match=r"shape .* for '1.weight'.*another model"):
        lm.align(mlp((20, 8, 3), seed=0), mlp((20, 9, 3), seed=1))
    with pytest.raises(InputTypeError, match="model_b is a OrderedDict"):
        lm.align(mlp((20, 8, 3), seed=0), mlp((20, 8, 3), seed=1).state_dict())


def test_a_model_without_hidden_units_is_copied_with_a_warning():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    with pytest.warns(UserWarning, match="no hidden units"):
        out, perms = lm.align(a, b, return_perms=True)
    assert perms == {} and out is not b and torch.equal(out.weight, b.weight)


# --------------------------------------------------------------------------- command line

TINY = "tests/cli_fixtures/tinynet.py"


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    a, b = mlp((8, 16, 3), seed=0), mlp((8, 16, 3), seed=1)
    save_file(a.state_dict(), tmp_path / "a.safetensors")
    save_file(b.state_dict(), tmp_path / "b.safetensors")
    model = tmp_path / "net.py"
    model.write_text("from lossmap.models.cnn import mlp\n\n\ndef make():\n"
                     "    return mlp((8, 16, 3), seed=7)\n")
    return tmp_path, a, b, f"{model}:make"


def test_cli_writes_the_aligned_copy(checkpoints, capsys):
    tmp, a, b, model = checkpoints
    out = tmp / "sub" / "b_aligned.safetensors"
    code, stdout, err = run_cli(capsys, "align", tmp / "a.safetensors", tmp / "b.safetensors",
                                "-o", out, "--model", model)
    assert code == 0, err
    assert "parameter distance to A" in stdout and f"wrote {out}" in stdout
    expected = lm.align(a, b)
    state = load_file(out)
    assert all(torch.equal(state[k], v) for k, v in expected.state_dict().items())
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["method"] == "weights" and '"1": [' in f.metadata()["perms"]
    code, _, err = run_cli(capsys, "align", tmp / "a.safetensors", tmp / "b.safetensors",
                           "-o", out, "--model", model, "--method", "activations",
                           "--data", f"{TINY}:make_data", "--samples", "32")
    assert code == 0, err  # its own earlier output is replaced without --overwrite
    code, _, err = run_cli(capsys, "align", tmp / "a.safetensors", tmp / "b.safetensors",
                           "-o", out, "--model", model, "--data", f"{TINY}:make_data")
    assert code == 0, err  # weight matching, its copy checked on the inputs of --data


@pytest.mark.parametrize(("extra", "match"), [
    (["-o", "x.pt"], "use -o FILE.safetensors"),
    (["--method", "activations"], "--method activations needs --data"),
    (["--samples", "4"], "add --data"),
    (["--model", f"{TINY}:make_model"], "A '.*a.safetensors'.*another model"),
])
def test_cli_errors_are_one_line_exit_2(checkpoints, capsys, extra, match):
    tmp, _, _, model = checkpoints
    argv = ["align", tmp / "a.safetensors", tmp / "b.safetensors", "-o",
            tmp / "out.safetensors", "--model", model, *extra]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("lossmap align: error: ")
    assert __import__("re").search(match, err), err


def test_cli_refuses_to_replace_a_file_it_did_not_write(checkpoints, capsys):
    tmp, _, _, model = checkpoints
    other = tmp / "other.safetensors"
    save_file({"x": torch.zeros(1)}, other)
    code, _, err = run_cli(capsys, "align", tmp / "a.safetensors", tmp / "b.safetensors",
                           "-o", other, "--model", model)
    assert code == 2 and "--overwrite" in err
    assert list(load_file(other)) == ["x"]
