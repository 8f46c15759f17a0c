"""The runner's rounds: each is committed at once, and their size follows the measured pace."""

import itertools
import time

import torch
from torch import nn

import lossmap as lm
from lossmap.scan import runner


class Slow(nn.Module):
    """A forward of about 5 ms: the pace the rounds are sized from."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        time.sleep(0.005)
        return self.lin(torch.tanh(x))


def test_a_quick_first_point_does_not_size_a_round_of_the_whole_grid(tmp_path, monkeypatch):
    """The centre comes first and costs no forward (its sums come from the centre's pass):
    the next round grows from it at most GROWTH-fold, so a kill still loses little."""
    rounds = []
    real = runner.Store.write

    def spy(self, rows):
        rounds.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(runner.Store, "write", spy)
    monkeypatch.setattr(runner, "CHUNK_SECONDS", 0.05)  # about 10 points per round here
    model = Slow().eval()
    X, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    lm.scan(model, nn.CrossEntropyLoss(), data={"t": (X, y)},
            directions=lm.random_directions(model, 2, seed=0), grid=[(-1.0, 1.0, 9)] * 2,
            store=tmp_path / "s.lossmap", progress=False)
    assert sum(rounds) == 81
    assert rounds[0] == 1  # the centre alone
    assert rounds[1] <= runner.GROWTH  # not the other 80 at once
    assert all(b <= runner.GROWTH * a for a, b in itertools.pairwise(rounds))
    assert len(rounds) >= 5
