"""Every rank of a torchrun job must scan the same thing: a rank that differs is refused by name.

The two-rank jobs (``tests/test_distributed.py``, ``tests/test_sharded.py``) run
the real collective; here a group whose ``all_gather`` hands back other ranks'
facts checks, in one process, what each difference is called.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap import distributed


@dataclass(frozen=True)
class Ranks(distributed.Group):
    """Rank 0 of a job whose other ranks report rank 0's facts with ``changes`` made."""

    changes: tuple = ()

    def all_gather(self, obj):
        return [obj, *({**obj, **change} for change in self.changes)]


def _scan_as_rank_0(monkeypatch, *changes, **kw):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    X, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
    group = Ranks(0, 1 + len(changes), tuple(changes))
    monkeypatch.setattr(distributed, "group", lambda device: group)
    with pytest.raises(lm.InputError) as exc:
        lm.scan(
            net,
            nn.CrossEntropyLoss(),
            data={"train": (X, y), "test": (X[:8], y[:8])},
            directions=lm.random_direction(net, seed=0),
            grid=(-1, 1, 3),
            progress=False,
            **kw,
        )
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    return str(exc.value)


def test_a_rank_with_other_data_is_named_with_both_fingerprints(monkeypatch):
    msg = _scan_as_rank_0(monkeypatch, {}, {"data_test": "0123456789abcdef"})
    assert msg.startswith("rank 2's test data differs from rank 0's (fingerprint ")
    assert msg.endswith(" vs 0123456789ab…): every rank must read the same data")
    assert "\n" not in msg


def test_other_directions_centre_or_settings_are_named(monkeypatch):
    msg = _scan_as_rank_0(monkeypatch, {"dir_0": "f" * 16})
    assert msg.startswith("rank 1's direction 0 differs from rank 0's (fingerprint ")
    assert msg.endswith("every rank must pass the same directions (draw them with a fixed seed)")
    msg = _scan_as_rank_0(monkeypatch, {"centre": "e" * 16})
    assert msg.startswith("rank 1's centre (the model's weights) differs from rank 0's")
    msg = _scan_as_rank_0(monkeypatch, {"spec.samples": "6"}, samples=8)
    assert msg == (
        "rank 1's scan setting 'samples' differs from rank 0's (8 vs 6): every "
        "rank must run the same scan"
    )
    # a split only rank 1 has
    msg = _scan_as_rank_0(monkeypatch, {"data_val": "a" * 16})
    assert msg.startswith(
        "rank 1's val data differs from rank 0's (fingerprint (none) vs aaaaaaaaaaaa…)"
    )
