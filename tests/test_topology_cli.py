"""``lossmap topology STORE`` (issue 25): a stored scan's basins, as lm.topology states them."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import lossmap as lm
from cli_run import run_cli as cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    data = {"train": (torch.randn(60, 8), torch.randint(0, 3, (60,)))}
    dirs = lm.random_directions(model, 2, seed=0)
    path = tmp_path_factory.mktemp("topo") / "plane.lossmap"
    lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data=data,
        directions=dirs,
        grid=[(-3, 3, 13)] * 2,
        store=path,
        progress=False,
    )
    return path


def test_prints_the_basins_and_writes_the_finding(store, tmp_path, capsys):
    out = tmp_path / "t.json"
    code, text, err = cli(capsys, "topology", store, "--bootstrap", "20", "-o", out)
    assert code == 0, err
    t = lm.topology(lm.load(store), bootstrap=20)
    assert t.sentence() in text
    rows = [line for line in text.splitlines() if line.startswith("  alpha=")]
    assert len(rows) == len(t.basins)
    saved = json.loads(out.read_text())
    assert saved["smad"] == pytest.approx(t.smad) and saved["n_basins"] == t.n_basins
    assert saved["sentence"] == t.sentence()


def test_bad_input_is_one_line_and_exit_2(store, tmp_path, capsys):
    code, _, err = cli(capsys, "topology", store, "--variable", "test_loss")
    assert code == 2 and "test_loss" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "topology", store, "-o", tmp_path / "t.txt")
    assert code == 2 and "FILE.json" in err
