"""A store recognises the computation, not only its inputs (issue 17, item 3).

Fingerprints cover the parameters, the data and the directions; two models
with the same parameters but another activation, or one loss with another
setting, have the same fingerprints. The probe (every variable at the
centre on a fixed small sample, recorded when the store is made) tells them
apart: resuming with another computation is refused with the difference
named, and nothing is written.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm


class Net(nn.Module):
    def __init__(self, act: nn.Module):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(6, 16), act, nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.fixture
def setting():
    torch.manual_seed(0)
    relu = Net(nn.ReLU())
    tanh = Net(nn.Tanh())
    tanh.load_state_dict(relu.state_dict())  # the same parameters: the same fingerprints
    g = torch.Generator().manual_seed(1)
    data = {"train": (torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g))}
    dirs = lm.random_directions(relu, 2, seed=0)
    return relu, tanh, data, dirs


def _partial(path, model, loss, data, dirs, keep=10):
    """A store of the full plane with only its first ``keep`` points left, as after a kill."""
    lm.scan(model, loss, data=data, directions=dirs, grid=[(-1, 1, 5)] * 2, store=path,
            progress=False)
    with sqlite3.connect(path) as conn:
        ids = [r[0] for r in conn.execute("SELECT idx FROM points ORDER BY finished")]
        conn.executemany("DELETE FROM points WHERE idx = ?", [(i,) for i in ids[keep:]])


def _points(path):
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]


def test_resume_with_another_activation_is_refused(setting, tmp_path):
    relu, tanh, data, dirs = setting
    path = tmp_path / "s.lossmap"
    _partial(path, relu, nn.CrossEntropyLoss(), data, dirs)
    with pytest.raises(lm.StoreError, match=r"another computation.*train_loss") as err:
        lm.scan(tanh, nn.CrossEntropyLoss(), data=data, directions=dirs,
                grid=[(-1, 1, 5)] * 2, store=path, progress=False)
    assert "model, loss setting or metric" in str(err.value)
    assert _points(path) == 10  # nothing written
    # The same computation resumes, and its values equal a scan without a store.
    surf = lm.scan(relu, nn.CrossEntropyLoss(), data=data, directions=dirs,
                   grid=[(-1, 1, 5)] * 2, store=path, progress=False)
    fresh = lm.scan(relu, nn.CrossEntropyLoss(), data=data, directions=dirs,
                    grid=[(-1, 1, 5)] * 2, progress=False)
    assert surf.complete
    np.testing.assert_allclose(surf["train_loss"], fresh["train_loss"], rtol=1e-6)


def test_resume_with_another_loss_setting_is_refused(setting, tmp_path):
    relu, _, data, dirs = setting
    path = tmp_path / "s.lossmap"
    _partial(path, relu, nn.CrossEntropyLoss(), data, dirs)
    with pytest.raises(lm.StoreError, match="another computation"):
        lm.scan(relu, nn.CrossEntropyLoss(label_smoothing=0.5), data=data, directions=dirs,
                grid=[(-1, 1, 5)] * 2, store=path, progress=False)
    assert _points(path) == 10


def test_probe_is_recorded_and_equals_the_centre(setting, tmp_path):
    relu, _, data, dirs = setting
    path = tmp_path / "s.lossmap"
    lm.scan(relu, nn.CrossEntropyLoss(), data=data, directions=dirs, grid=[(-1, 1, 3)] * 2,
            store=path, progress=False)
    from lossmap.store import Store

    with Store.open(path) as store:
        probe = store.probe
    X, y = data["train"]
    with torch.no_grad():
        out = relu(X[:64])
    assert probe["train_loss"] == pytest.approx(float(nn.functional.cross_entropy(out, y[:64])),
                                                rel=1e-6)
    assert probe["train_accuracy"] == pytest.approx(float((out.argmax(1) == y[:64]).float()
                                                          .mean()))
