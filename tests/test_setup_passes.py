"""The passes before a scan's first point (issue 26): cheaper, and the evidence unchanged.

* The slopes at the centre run through the scan's own evaluator (its batches
  and kept first-layer outputs): the same values as the plain forward-mode
  pass, and as float64 per-example gradients taken one example at a time.
* The round-off floor is measured on a spread subset of each split: it still
  bounds the evaluator's full-data error against float64 at the floor points.
* ``profile=True`` lists every pass with its time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.backends.torch import backend as torch_backend
from lossmap.backends.torch import evaluator as torch_evaluator
from lossmap.backends.torch import roundoff
from lossmap.backends.torch.plain import plain_values
from lossmap.backends.torch.slopes import centre_slopes
from lossmap.data.splits import Split
from lossmap.models import mlp

CPU = torch.device("cpu")


def small_mlp(dtype=torch.float64) -> nn.Module:
    return mlp((12, 16, 16, 3), seed=0).to(dtype).eval()


def data(n: int, dtype=torch.float64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "train": (torch.randn(n, 12, generator=g).to(dtype), torch.randint(0, 3, (n,), generator=g))
    }


def by_example(net: nn.Module, X: torch.Tensor, y: torch.Tensor, d: dict) -> np.ndarray:
    """Each example's loss gradient · d, by reverse mode, one example at a time (float64)."""
    out = []
    params = dict(net.named_parameters())
    for i in range(len(y)):
        loss = nn.functional.cross_entropy(net(X[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()))
        out.append(sum(float((g * d[k]).sum()) for k, g in zip(params, grads, strict=True)))
    return np.asarray(out)


@pytest.mark.parametrize("cache", [True, False])
def test_slopes_through_the_evaluator_equal_the_plain_pass_and_float64_gradients(
    monkeypatch, cache
):
    if not cache:  # first-layer outputs too large to keep: computed again per batch
        monkeypatch.setattr(torch_evaluator, "CACHE_BUDGET", 0)
    net = small_mlp()
    d = data(50)
    dirs = lm.random_directions(net, 2, seed=1)
    plan = lm.plan_scan(
        net, nn.CrossEntropyLoss(), data=d, directions=dirs, grid=[(-1, 1, 3)] * 2, batch_size=16
    )
    with plan.backend.guard(net):
        ev = plan.evaluator()
        assert ev.reuses_first_layer and (ev.cache is not None) == cache
        got = plan.backend.centre_slopes(plan, ev)
    params = {k: v.detach() for k, v in net.named_parameters()}
    ref = centre_slopes(net, plan.metrics, params, {}, plan.directions, plan.splits, CPU, 16)
    X, y = d["train"]
    assert sorted(got) == ["train_loss"]  # accuracy: piecewise constant, none
    for i, direction in enumerate(plan.directions):
        g = by_example(net, X, y, direction)
        want = {"slope": g.mean(), "se": g.std(ddof=1) / np.sqrt(len(g)), "n": 50}
        for key in ("slope", "se"):
            assert got["train_loss"][i][key] == pytest.approx(ref["train_loss"][i][key], rel=1e-10)
            assert got["train_loss"][i][key] == pytest.approx(want[key], rel=1e-9)
        assert got["train_loss"][i]["n"] == 50
    assert dict(net.named_parameters()).keys() == params.keys()
    for k, v in net.named_parameters():  # the model is unchanged
        assert torch.equal(v, params[k])


def test_a_conv_net_scan_records_the_plain_passes_slopes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    X, y = torch.randn(40, 1, 6, 6), torch.randint(0, 3, (40,))
    dirs = lm.random_directions(net, 2, seed=0)
    surf = lm.scan(
        net,
        nn.CrossEntropyLoss(),
        data={"train": (X, y)},
        directions=dirs,
        grid=[(-1, 1, 3)] * 2,
        batch_size=16,
        progress=False,
    )
    assert surf.profile["reuses_first_layer"]
    params = {k: v.detach() for k, v in net.named_parameters()}
    ref = centre_slopes(
        net,
        {"loss": nn.CrossEntropyLoss()},
        params,
        {},
        list(dirs),
        [Split("train", X, y)],
        CPU,
        16,
    )
    for i in range(2):
        for key in ("slope", "se"):
            assert surf.slopes["train_loss"][i][key] == pytest.approx(
                ref["train_loss"][i][key], rel=1e-4, abs=1e-7
            )


def test_the_floor_on_a_spread_subset_bounds_the_full_data_error(monkeypatch):
    monkeypatch.setattr(roundoff, "FLOOR_SAMPLES", 250)
    seen = []

    def recording(*args, **kw):  # the float64 reference: on which samples it runs
        seen.append([s.n for s in args[4]])
        return plain_values(*args, **kw)

    monkeypatch.setattr(torch_backend, "plain_values", recording)
    net = mlp((12, 64, 64, 3), seed=0).eval()
    d = data(2000, torch.float32)
    dirs = lm.random_directions(net, 2, seed=1)
    plan = lm.plan_scan(
        net,
        nn.CrossEntropyLoss(),
        data=d,
        directions=dirs,
        grid=[(-1, 1, 5)] * 2,
        metrics=("loss",),
    )
    surf = plan.run(progress=False)
    assert [250] in seen  # every 8th sample: 250 of 2,000
    # the evaluator's full-data error against float64 at the floor points
    points = roundoff.floor_points(plan.spec.coords())
    with plan.backend.guard(net):
        ours = plan.evaluator().evaluate(points)
    state = {k: v.detach() for k, v in net.named_parameters()}
    ref = plain_values(net, plan.metrics, state, plan.directions, plan.splits, points, CPU, 256)
    full = float(np.max(np.abs(ours[:, 0] - ref[:, 0])))
    floor = surf.roundoff["train_loss"]
    eps_v = float(np.finfo(np.float32).eps * np.max(np.abs(ref[:, 0])))
    assert full > 0 and floor >= full
    assert floor <= 20 * max(full, eps_v)  # the same order: not a bound out of all proportion


def test_spread_subset_takes_every_kth_sample_and_keeps_small_splits_whole():
    s = Split("test", torch.arange(10.0)[:, None], torch.arange(10))
    assert roundoff.spread_subset(s, 3).y.tolist() == [0, 4, 8]
    assert roundoff.spread_subset(s, 10) is s


def test_the_profile_lists_every_set_up_pass(capsys):
    net = small_mlp(torch.float32)
    surf = lm.scan(
        net,
        nn.CrossEntropyLoss(),
        data=data(64, torch.float32),
        directions=lm.random_directions(net, 2, seed=0),
        grid=[(-1, 1, 3)] * 2,
        progress=False,
        profile=True,
    )
    printed = capsys.readouterr().err
    assert set(surf.profile["setup"]) == {"prepare", "probe", "roundoff", "slopes"}
    assert all(v >= 0 for v in surf.profile["setup"].values())
    assert surf.profile["timings"]["centre_terms"] > 0
    assert surf.roundoff is not None and surf.slopes is not None  # the evidence, computed
    for name in ("prepare", "probe", "roundoff", "slopes", "centre_terms", "together"):
        assert f"    {name}" in printed
