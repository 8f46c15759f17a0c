"""lm.align must never return a copy that computes another function (issue 21, items 1-3).

- a layer called on the model's input and again on a hidden layer keeps the
  units of the axis that meets the input fixed in both calls (Linear, Conv2d);
- ``.T``, ``.mT``, ``.H``, ``transpose``, ``permute`` carry the units to their
  new axis, ``.data`` passes them through; what cannot be followed is refused
  by name;
- ``clamp`` with per-unit tensor bounds, ``maximum`` and ``where`` with a
  parameter or buffer hold those units fixed, as ``x + const`` does;
- after any alignment the copy's outputs are compared with ``model_b``'s on a
  few inputs, and a copy that differs beyond round-off is refused, naming the
  layer (here a misread injected on purpose).

Each aligned copy is checked against model B itself, the unaligned function,
on random inputs, and the input models are never changed.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossmap as lm
from lossmap.align import ops
from lossmap.align.api import permutations
from lossmap.align.trace import infer_structure, trace
from lossmap.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


def _pair(make, seeds=(0, 1)) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seeds[0])
    a = make()
    torch.manual_seed(seeds[1])
    return a, make()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _align_checked(
    a: nn.Module, b: nn.Module, x: torch.Tensor, **kwargs
) -> tuple[nn.Module, set[str]]:
    """lm.align(a, b) keeps B's function to 1e-5 of the largest output; a, b unchanged.

    Returns the aligned copy and the names of the groups of units it permuted.
    """
    before = _state(a), _state(b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "could not check", no "nothing to permute"
        aligned = lm.align(a, b, **kwargs)
    perms = permutations(aligned)
    for model, state in zip((a, b), before, strict=True):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        want, got = b.eval()(x), aligned.eval()(x)
    assert torch.allclose(got, want, rtol=0, atol=1e-5 * float(want.abs().max())), float(
        (got - want).abs().max()
    )
    moved = [k for k, v in b.state_dict().items() if not torch.equal(v, aligned.state_dict()[k])]
    assert moved, "nothing was permuted: the test would not see a misread"
    return aligned, set(perms)


def _data(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x, torch.zeros(len(x), dtype=torch.long)


METHODS = ["weights", "activations"]


# --------------------------------------------------------------------------- 1: a layer used twice


class LinearTwice(nn.Module):
    """fc reads the input, then its own output: its units can never move."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.hidden, self.out = nn.Linear(8, 8), nn.Linear(8, 12), nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(x))
        h = F.relu(self.fc(h))
        return self.out(F.relu(self.hidden(h)))


class ConvTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.hidden = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        h = F.relu(self.conv(h))
        return self.out(F.relu(self.hidden(h)).mean((2, 3)))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("make", "shape", "shared"),
    [(LinearTwice, (32, 8), "fc"), (ConvTwice, (32, 4, 6, 6), "conv")],
    ids=["linear", "conv2d"],
)
def test_a_layer_that_also_reads_the_input_keeps_its_units(make, shape, shared, method):
    a, b = _pair(make)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    data = _data(x) if method == "activations" else None
    aligned, _ = _align_checked(a, b, x, method=method, data=data)
    for name in ("weight", "bias"):  # the shared layer's units meet the input: fixed
        key = f"{shared}.{name}"
        assert torch.equal(aligned.state_dict()[key], b.state_dict()[key]), key


# --------------------------------------------------------------------------- 2: transposes, .data


class Head(nn.Module):
    """x -> fc1 -> relu -> ``between`` -> fc2 -> relu -> fc3 -> ``after``."""

    def __init__(self, between, after=lambda y: y) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(5, 8), nn.Linear(8, 7), nn.Linear(7, 3)
        self.between, self.after = between, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.between(F.relu(self.fc1(x)))
        return self.after(self.fc3(F.relu(self.fc2(h))))


def _data_then_relu(h: torch.Tensor) -> torch.Tensor:
    return F.relu(h.data)  # .data in the middle: fc2 must still read fc1's units


def _transposed_back(h: torch.Tensor) -> torch.Tensor:
    return h.T.relu().T  # (N, 8) -> (8, N) -> (N, 8): units on axis 0 in between


FOLLOWED = {
    ".data": (_data_then_relu, lambda y: y),
    ".T at the output": (lambda h: h, lambda y: y.T),
    ".T twice": (_transposed_back, lambda y: y),
    ".H twice": (lambda h: h.H.H, lambda y: y),
    ".mT at the output": (lambda h: h, lambda y: y.mT),
    "t()": (lambda h: h.t().t(), lambda y: y.t()),
    "transpose(0, 1)": (lambda h: h.transpose(0, 1).transpose(1, 0), lambda y: y),
    "permute(1, 0)": (lambda h: torch.permute(h, (1, 0)).permute(1, 0), lambda y: y),
    "detach()": (lambda h: h.detach(), lambda y: y),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", FOLLOWED, ids=list(FOLLOWED))
def test_transposes_and_data_are_followed(case, method):
    between, after = FOLLOWED[case]
    a, b = _pair(lambda: Head(between, after))
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    data = _data(x) if method == "activations" else None
    aligned, groups = _align_checked(a, b, x, method=method, data=data)
    assert groups == {"fc1", "fc2"}  # fc3 makes the output's units: never a group
    assert torch.equal(aligned.fc3.bias, b.fc3.bias)


class Transposed3d(nn.Module):
    """Conv channels moved last by transposes and permute, read by a Linear, moved back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv1d(3, 6, 3, padding=1), nn.Linear(6, 6)
        self.out = nn.Conv1d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x)).transpose(1, 2)  # (N, L, 6)
        h = F.relu(self.fc(h)).permute(0, 2, 1)  # (N, 6, L)
        return self.out(h).mT


def test_transposes_of_a_feature_map_are_followed():
    a, b = _pair(Transposed3d)
    x = torch.randn(8, 3, 10, generator=torch.Generator().manual_seed(2))
    assert _align_checked(a, b, x, data=_data(x))[1] == {"conv", "fc"}


def test_what_cannot_be_followed_is_refused_by_name():
    def real(h: torch.Tensor) -> torch.Tensor:
        return h.real

    a, b = _pair(lambda: Head(real))
    before = _state(b)
    with pytest.raises(InputError, match=r"Tensor\.real.*attribute \.real"):
        lm.align(a, b)
    assert all(torch.equal(b.state_dict()[k], v) for k, v in before.items())
    # without shapes (a bare trace), the rank of a Linear's output is unknown: .T is refused
    with pytest.raises(InputError, match=r"Tensor\.T.*rank of its input is unknown"):
        infer_structure(trace(Head(lambda h: h, lambda y: y.T), what="m"))


# --------------------------------------------------------------------------- 3: per-unit operands


class Bounded(nn.Module):
    """fc1's units meet a tensor with one entry per unit: they cannot move; fc2's can."""

    def __init__(self, bound) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(5, 8), nn.Linear(8, 9), nn.Linear(9, 3)
        self.register_buffer("lo", torch.linspace(-0.5, 0.3, 8))
        self.hi = nn.Parameter(torch.linspace(0.4, 1.2, 8))
        self.bound = bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bound(self, self.fc1(x))
        return self.out(F.relu(self.fc2(h)))


BOUNDS = {
    "clamp(min=buffer)": lambda m, h: torch.clamp(h, min=m.lo),
    "clamp(buffer, parameter)": lambda m, h: torch.clamp(h, m.lo, m.hi),
    "Tensor.clamp(max=parameter)": lambda m, h: h.clamp(max=m.hi),
    "clamp_min(buffer)": lambda m, h: torch.clamp_min(h, m.lo),
    "maximum(buffer)": lambda m, h: torch.maximum(h, m.lo),
    "where(h > 0, h, parameter)": lambda m, h: torch.where(h > 0, h, m.hi),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", BOUNDS, ids=list(BOUNDS))
def test_per_unit_bounds_hold_their_units_fixed(case, method):
    a, b = _pair(lambda: Bounded(BOUNDS[case]))
    x = torch.randn(32, 5, generator=torch.Generator().manual_seed(3)) * 2
    data = _data(x) if method == "activations" else None
    aligned, groups = _align_checked(a, b, x, method=method, data=data)
    assert groups == {"fc2"}  # the bounded units of fc1 stay
    assert torch.equal(aligned.fc1.weight, b.fc1.weight)


# --------------------------------------------------------------------------- the final check


class Cumulative(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 10), nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.cumsum(F.relu(self.fc1(x)), -1))


@pytest.mark.parametrize(
    ("method", "with_data"), [("weights", False), ("weights", True), ("activations", True)]
)
def test_a_misread_operation_is_refused_by_the_function_check(monkeypatch, method, with_data):
    """cumsum over the units is taken (on purpose) for an elementwise op: the check refuses."""
    monkeypatch.setitem(ops.KIND, torch.cumsum, "unary")
    a, b = _pair(Cumulative)
    snaps = _state(a), _state(b)
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(4))
    data = _data(x) if with_data else None
    with pytest.raises(
        InputError,
        match=r"permutation of the units of layer 'fc1' changes "
        r"model_b's function",
    ) as err:
        lm.align(a, b, method=method, data=data)
    assert len(str(err.value).splitlines()) == 1
    for model, state in zip((a, b), snaps, strict=True):
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


class Odd(nn.Module):
    """A Conv1d over length 10, flattened into a Linear: no tried input size fits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc, self.out = nn.Conv1d(2, 4, 3), nn.Linear(4 * 8, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc(F.relu(self.conv(x)).flatten(1))))


def test_weight_matching_checks_on_data_when_no_input_shape_is_found():
    a, b = _pair(Odd)
    x = torch.randn(16, 2, 10, generator=torch.Generator().manual_seed(5))
    with pytest.warns(UserWarning, match="could not check .* pass data="):
        lm.align(a, b)
    _align_checked(a, b, x, data=_data(x))  # weights, checked on data: no warning
