"""bn="recompute": statistics re-estimated at every point, checked against a brute-force copy."""


import numpy as np
import pytest
import torch
from torch import nn

import helpers
import lossmap as lm
from lossmap.errors import InputError


def bn_net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                      nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                      nn.Linear(8, 3)).double()
    with torch.no_grad():
        for bn in (m[1], m[6]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return m


def brute_force(model, d, a, X_bn, X, y, batch):
    """Deep copy, move, reset statistics, average them over the batches, evaluate."""
    m = helpers.moved(model, [d], [a])
    with torch.no_grad():
        m.eval()
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
                mod.momentum = None
                mod.train()
        for i in range(0, len(X_bn), batch):
            m(X_bn[i : i + batch])
        m.eval()
        return nn.functional.cross_entropy(m(X), y).item()


def test_recompute_matches_brute_force_and_differs_from_eval():
    model = bn_net()
    g = torch.Generator().manual_seed(3)
    Xtr = torch.randn(40, 1, 8, 8, generator=g, dtype=torch.float64)
    ytr = torch.randint(0, 3, (40,), generator=g)
    Xte, yte = Xtr[:17] * 1.5, ytr[:17]
    d = lm.random_direction(model, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(data={"train": (Xtr, ytr), "test": (Xte, yte)}, directions=d, grid=(-1, 1, 5),
              progress=False, batch_size=16)
    surf = lm.scan(model, nn.CrossEntropyLoss(), bn="recompute", bn_samples=40, **kw)
    plain = lm.scan(model, nn.CrossEntropyLoss(), **kw)
    from lossmap.data.splits import as_split

    X_bn = as_split((Xtr, ytr), "train", samples=40, seed=0).X  # the fixed subset the scan used
    for i, a in enumerate(np.linspace(-1, 1, 5)):
        expect = brute_force(model, d, a, X_bn, Xte, yte, batch=16)
        assert surf["test_loss"][i] == pytest.approx(expect, rel=1e-10)
    assert not np.allclose(surf["test_loss"], plain["test_loss"])
    assert surf.spec.bn == "recompute" and surf.spec.bn_samples == 40
    for k, v in model.state_dict().items():  # the user's statistics untouched
        assert torch.equal(v, before[k])
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            assert mod.momentum == 0.1 and mod.training


def test_recompute_needs_batchnorm_and_valid_options():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    X, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    d = lm.random_direction(model)
    kw = dict(data={"train": (X, y)}, directions=d, grid=(-1, 1, 3), progress=False)
    with pytest.raises(InputError, match="no BatchNorm layer"):
        lm.scan(model, nn.CrossEntropyLoss(), bn="recompute", **kw)
    with pytest.raises(InputError, match="bn='sometimes' must be"):
        lm.scan(model, nn.CrossEntropyLoss(), bn="sometimes", **kw)
    net = bn_net()
    Xi = torch.randn(8, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(InputError, match="bn_split='val' is not a split"):
        lm.scan(net, nn.CrossEntropyLoss(), bn="recompute", bn_split="val",
                data={"train": (Xi, y)}, directions=lm.random_direction(net), grid=(-1, 1, 3),
                progress=False)
