"""examples/compare_flatness.py: its SAM step, and its miniature run end to end.

The SAM step is checked against the update written out from its definition
(w ← w − lr ∇L(w + ρ g/‖g‖), g = ∇L(w), the first momentum step being a plain
step); the miniature run's surfaces and table against losses computed here
directly, in float64, from the models it trained.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one torch thread
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "compare_flatness.py"


def _example():
    spec = importlib.util.spec_from_file_location("compare_flatness", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sam_step_is_the_gradient_at_the_climbed_point():
    ex = _example()
    net = ex.mlp(seed=3).double()
    x = torch.randn(20, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(20) % 10
    loss_fn, lr, rho = nn.CrossEntropyLoss(), 0.1, 0.05
    ref = copy.deepcopy(net)
    params = list(ref.parameters())
    g = torch.autograd.grad(loss_fn(ref(x), y), params)
    norm = torch.sqrt(sum((t**2).sum() for t in g))
    climbed = copy.deepcopy(ref)
    with torch.no_grad():
        for p, t in zip(climbed.parameters(), g, strict=True):
            p.add_(rho * t / norm)
    g2 = torch.autograd.grad(loss_fn(climbed(x), y), list(climbed.parameters()))
    want = [p.detach() - lr * t for p, t in zip(params, g2, strict=True)]
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    ex.sam_step(net, loss_fn, x, y, opt, rho)
    for got, w in zip(net.parameters(), want, strict=True):
        torch.testing.assert_close(got.detach(), w, rtol=0, atol=1e-12)
    # and it is not the plain step w − lr g: the check tells SAM from SGD
    assert (next(net.parameters()) - (params[0] - lr * g[0])).abs().max() > 1e-4


@pytest.mark.slow  # trains three models, scans three planes, measures sharpness: ~15 s of CPU
def test_miniature_run_compares_three_models_by_one_rule(tmp_path):
    out = _example().main(["--tiny", "--out", str(tmp_path)])
    r, models, data = out["comparison"], out["models"], out["data"]
    assert r.names == ["SGD, batch 16", "SGD, batch 512", "SAM, batch 16"]
    for f in ("comparison.png", "comparison.html", "comparison.json", "comparison.md"):
        assert (tmp_path / f).stat().st_size > 0
    X, y = data["train"]
    for name, net in models.items():
        with torch.no_grad():  # the centre of each plane is the trained model's own train loss
            direct = nn.functional.cross_entropy(copy.deepcopy(net).double()(X.double()), y)
        surf = out["surfaces"][name]
        assert surf["train_loss"][surf.centre_index()] == pytest.approx(float(direct), rel=1e-5)
        assert r.table.cell(name, "at the centre")["value"] == pytest.approx(
            float(direct), rel=1e-5
        )
        for column, finding in out["findings"][name].items():
            assert finding.centre_loss == pytest.approx(float(direct), rel=1e-4)
            assert r.table.cell(name, column) == {
                "value": pytest.approx(finding.value),
                "se": pytest.approx(finding.se),
            }
    lowest = min(float(s["train_loss"].min()) for s in out["surfaces"].values())
    assert r.scale.log and r.scale.vmin == pytest.approx(lowest)
