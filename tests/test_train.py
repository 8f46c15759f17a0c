"""Tests of lossmap.train and lossmap train: seeding, history, saved runs, errors, CLI."""

from __future__ import annotations

import argparse
import json
import math
import struct
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lossmap.cli import train as train_cli
from lossmap.data import digits
from lossmap.errors import InputError, InputTypeError, MissingFileError, StoreError
from lossmap.models import digits_cnn
from lossmap.params import load_checkpoint
from lossmap.train import HISTORY_KEYS, load_run, train

# Small, quick settings: 1,348 digits, batches of 64 → 22 SGD steps per epoch.
FAST = {"lr": 0.05, "momentum": 0.9, "batch_size": 64, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def data():
    return digits("train"), digits("test")


def _net(dropout: float = 0.0) -> nn.Sequential:
    """A tiny MLP for the 8x8 digits (2,410 parameters): learns in a few epochs, in ms."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 10)
    )


def _model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return _net(dropout)


def _brute_force(state: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor):
    """Mean cross-entropy and accuracy, one sample at a time, on a fresh model."""
    model = _net()
    model.load_state_dict(state)
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for i in range(len(X)):
            out = model(X[i : i + 1])  # (1, 10)
            total += F.cross_entropy(out, y[i : i + 1]).item()
            correct += int(out.argmax(1).item() == y[i].item())
    return total / len(X), correct / len(X)


def _same_history(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in HISTORY_KEYS if k != "seconds")


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- seeding


def test_same_seed_is_bit_identical_and_other_seed_differs(data):
    train_data, test_data = data
    models = [_model(dropout=0.2) for _ in range(3)]  # the same θ0 three times
    rng_before = torch.get_rng_state()
    runs = [
        train(m, train_data, test_data, epochs=2, seed=s, **FAST)
        for m, s in zip(models, (3, 3, 4), strict=True)
    ]
    assert _same_state(runs[0].theta_hat, runs[1].theta_hat)
    assert _same_history(runs[0].history, runs[1].history)
    assert _same_state(runs[0].theta0, runs[2].theta0)  # same start …
    assert not _same_state(runs[0].theta_hat, runs[2].theta_hat)  # … other batches/dropout
    assert runs[0].history["train_loss"][1:] != runs[2].history["train_loss"][1:]
    # Dropout was seeded inside a fork: the caller's global RNG is untouched.
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_model_is_trained_in_place_and_modes_restored(data):
    train_data, _ = data
    model = _model(dropout=0.2)
    model.eval()
    model[3].train()  # a mixed set of flags must come back as it was
    flags = [m.training for m in model.modules()]
    result = train(model, train_data, epochs=1, **FAST)
    assert _same_state(model.state_dict(), result.theta_hat)
    assert not _same_state(result.theta0, result.theta_hat)
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- history


def test_loss_decreases_and_epoch0_matches_brute_force(data):
    (X, y), test_data = data
    result = train(_model(), (X, y), test_data, epochs=3, **FAST)
    h = result.history
    assert set(h) == set(HISTORY_KEYS)
    assert all(len(v) == 4 for v in h.values())
    assert h["epoch"] == [0, 1, 2, 3]
    assert h["train_loss"][0] == pytest.approx(math.log(10), abs=0.05)
    assert h["train_loss"][-1] < h["train_loss"][0] - 0.5
    assert h["test_loss"][-1] < h["test_loss"][0] - 0.5
    assert h["test_accuracy"][-1] > 0.5
    assert all(s >= 0 for s in h["seconds"])
    loss0, acc0 = _brute_force(result.theta0, X, y)
    assert h["train_loss"][0] == pytest.approx(loss0, rel=1e-6)
    assert h["train_accuracy"][0] == pytest.approx(acc0, abs=1e-12)
    assert result.checkpoints == [] and result.out is None
    assert result.settings["complete"] and result.final["train_loss"] == h["train_loss"][-1]


# --------------------------------------------------------------------------- saved runs


def _is_safetensors(path: Path) -> bool:
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    return isinstance(header, dict) and 8 + n <= len(blob)


def test_saved_run_loads_back_and_checkpoints_align_with_history(data, tmp_path):
    train_data, (Xt, yt) = data
    out = tmp_path / "run"
    result = train(_model(), train_data, (Xt, yt), epochs=2, out=out, **FAST)

    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names == {
        "train.json",
        "history.json",
        "theta0.safetensors",
        "theta_hat.safetensors",
        "checkpoints/epoch_000.safetensors",
        "checkpoints/epoch_001.safetensors",
        "checkpoints/epoch_002.safetensors",
    }
    for path in out.rglob("*"):  # nothing is a pickle (b"\x80") or torch zip (b"PK")
        if path.is_file():
            assert path.read_bytes()[:2] not in (b"\x80\x02", b"\x80\x04", b"PK")
            if path.suffix == ".safetensors":
                assert _is_safetensors(path)
            else:
                json.loads(path.read_text())

    settings = json.loads((out / "train.json").read_text())
    assert settings["complete"] is True
    assert settings["epochs"] == 2 and settings["batch_size"] == 64 and settings["seed"] == 0
    assert settings["lr"] == 0.05 and settings["momentum"] == 0.9
    assert settings["model"]["parameters"] == 2410
    assert settings["data"] == {
        "train": len(train_data[0]),
        "test": len(Xt),
        "input_shape": [1, 8, 8],
        "input_dtype": "float32",
    }
    assert settings["torch"] == torch.__version__

    back = load_run(out)
    assert _same_state(back.theta0, result.theta0)
    assert _same_state(back.theta_hat, result.theta_hat)
    assert back.history == result.history
    assert back.checkpoints == result.checkpoints
    assert len(back.checkpoints) == 2 + 1
    assert _same_state(load_checkpoint(back.checkpoints[0]), result.theta0)
    assert _same_state(load_checkpoint(back.checkpoints[-1]), result.theta_hat)

    # Each checkpoint, evaluated independently, gives the test numbers recorded for its epoch.
    for epoch, path in zip(back.history["epoch"], back.checkpoints, strict=True):
        loss, acc = _brute_force(load_checkpoint(path), Xt, yt)
        assert back.history["test_loss"][epoch] == pytest.approx(loss, rel=1e-6)
        assert back.history["test_accuracy"][epoch] == pytest.approx(acc, abs=1e-12)


def test_rerun_in_same_folder_replaces_the_trajectory(data, tmp_path):
    train_data, _ = data
    out = tmp_path / "run"
    train(_model(), train_data, epochs=3, out=out, **FAST)
    train(_model(), train_data, epochs=1, out=out, overwrite=True, **FAST)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch_000.safetensors",
        "epoch_001.safetensors",
    ]
    back = load_run(out)
    assert back.history["epoch"] == [0, 1]
    # No test data: test entries are NaN, stored as JSON null and read back as NaN.
    assert all(math.isnan(v) for v in back.history["test_loss"])
    assert json.loads((out / "history.json").read_text())["test_loss"] == [None, None]


def test_load_run_errors(tmp_path):
    with pytest.raises(MissingFileError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(MissingFileError, match=r"no train\.json"):
        load_run(tmp_path)
    (tmp_path / "train.json").write_text('{"format": "something-else"}')
    (tmp_path / "history.json").write_text("{}")
    with pytest.raises(StoreError, match="not a lossmap training run"):
        load_run(tmp_path)


def test_load_run_of_an_unfinished_run(data, tmp_path):
    train_data, _ = data
    out = tmp_path / "run"
    train(_model(), train_data, epochs=1, out=out, **FAST)
    (out / "theta_hat.safetensors").unlink()
    with pytest.raises(StoreError, match="did not finish"):
        load_run(out)


# --------------------------------------------------------------------------- bad input


def _xy(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 8, 8), torch.arange(n) % 10


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, InputError, r"`epochs`=0 must be >= 1"),
        ({"epochs": 1.5}, InputTypeError, r"`epochs`=1.5 must be an int"),
        ({"lr": 0}, InputError, r"`lr`=0.0 must be > 0"),
        ({"lr": -0.1}, InputError, r"`lr`=-0.1 must be > 0"),
        ({"lr": float("nan")}, InputError, r"`lr`=nan must be finite"),
        ({"momentum": 1.0}, InputError, r"`momentum`=1.0 must lie in \[0, 1\)"),
        ({"batch_size": 0}, InputError, r"`batch_size`=0 must be >= 1"),
        ({"seed": -1}, InputError, r"`seed`=-1 must be >= 0"),
        ({"seed": "0"}, InputTypeError, r"`seed`='0' must be an int"),
        ({"progress": "yes"}, InputTypeError, r"`progress`='yes' must be True or False"),
        ({"loss_fn": "mse"}, InputTypeError, r"`loss_fn` is a str, not callable"),
        ({"device": 3.0}, InputTypeError, r"device=3.0 must be a str"),
        ({"device": "gpu9"}, InputError, r"device .gpu9. is not a torch device"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        train(digits_cnn(), _xy(), **{"progress": False, **kwargs})


def test_bad_data_and_model():
    X, y = _xy()
    with pytest.raises(InputError, match=r"8 inputs X but 7 targets y"):
        train(digits_cnn(), (X, y[:7]), progress=False)
    with pytest.raises(InputTypeError, match=r"must be a pair \(X, y\)"):
        train(digits_cnn(), X, progress=False)
    with pytest.raises(InputTypeError, match=r"y is a list, not a torch.Tensor"):
        train(digits_cnn(), (X, y.tolist()), progress=False)
    with pytest.raises(InputTypeError, match=r"DataLoader; train takes the tensors"):
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y))
        train(digits_cnn(), loader, progress=False)
    with pytest.raises(InputTypeError, match=r"y has dtype torch.float32.*pass y.long\(\)"):
        train(digits_cnn(), (X, y.float()), progress=False)
    with pytest.raises(InputError, match=r"holds no samples"):
        train(digits_cnn(), (X[:0], y[:0]), progress=False)
    with pytest.raises(InputError, match=r"per-sample shape \(1, 4, 4\) but `train_data`"):
        train(digits_cnn(), (X, y), (X[:, :, :4, :4], y), progress=False)
    with pytest.raises(InputError, match=r"class index 12 but the model gives only 10"):
        train(digits_cnn(), (X, y + 5), progress=False)
    with pytest.raises(InputError, match=r"negative class index"):
        train(digits_cnn(), (X, y - 1), progress=False)
    with pytest.raises(InputTypeError, match=r"not a torch.nn.Module"):
        train(lambda x: x, (X, y), progress=False)
    frozen = digits_cnn().requires_grad_(False)
    with pytest.raises(InputError, match=r"no parameter with requires_grad=True"):
        train(frozen, (X, y), progress=False)


def test_custom_loss_without_accuracy():
    """A regression loss on float targets: accuracy does not apply and is NaN."""
    torch.manual_seed(0)
    X = torch.randn(64, 3)
    y = X.sum(1, keepdim=True)  # (64, 1)
    model = nn.Linear(3, 1)
    result = train(
        model, (X, y), (X, y), epochs=5, lr=0.05, batch_size=16, loss_fn=F.mse_loss, progress=False
    )
    h = result.history
    assert h["train_loss"][-1] < 0.1 * h["train_loss"][0]
    assert all(math.isnan(a) for a in h["train_accuracy"] + h["test_accuracy"])
    assert result.settings["loss"] == "torch.nn.functional.mse_loss"


# --------------------------------------------------------------------------- CLI


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_train_on_digits(tmp_path, capsys):
    out = tmp_path / "cli run"
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--limit", "300"]
    args = _parse([*argv, "--out", str(out), "--no-progress"])
    assert args.model is None and args.batch_size == 512 and args.lr == 0.01
    assert train_cli.run(args) == 0
    printed = capsys.readouterr().out
    back = load_run(out)
    h = back.history
    assert f"final train loss {h['train_loss'][-1]:.4f}" in printed
    assert f"final test  loss {h['test_loss'][-1]:.4f}" in printed
    assert f"accuracy {h['test_accuracy'][-1]:.2%}" in printed
    assert "300 of 1,348 train" in printed
    assert str(out) in printed
    assert len(back.checkpoints) == 2
    assert back.settings["data"]["train"] == 300
    assert back.settings["meta"]["dataset"] == "digits"
    assert back.settings["meta"]["model"] == "digits_cnn"
    assert back.settings["model"]["parameters"] == 3658


def test_cli_seed_sets_the_initialisation(tmp_path):
    def theta0(seed: int) -> dict:
        out = tmp_path / f"s{seed}"
        argv = ["train", "--dataset", "digits", "--epochs", "1", "--limit", "64"]
        argv += ["--seed", str(seed), "--out", str(out), "--overwrite", "--no-progress"]
        train_cli.run(_parse(argv))  # --overwrite: theta0(1) runs twice into s1
        return load_run(out).theta0

    assert _same_state(theta0(1), theta0(1))
    assert not _same_state(theta0(1), theta0(2))


def test_cli_model_entry_point(tmp_path, capsys):
    (tmp_path / "nets.py").write_text(
        "from torch import nn\n"
        "def make(dropout=0.0):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(64, 10))\n"
    )
    out = tmp_path / "run"
    model = f"{tmp_path / 'nets.py'}:make"
    argv = ["train", "--dataset", "digits", "--model", model, "--dropout", "0.1"]
    argv += ["--epochs", "1", "--limit", "100", "--out", str(out), "--no-progress"]
    assert train_cli.run(_parse(argv)) == 0
    settings = load_run(out).settings
    assert settings["model"]["parameters"] == 650
    assert settings["meta"]["dropout"] == 0.1


@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        (["--limit", "0"], InputError, r"--limit 0 must be >= 1"),
        (["--model", "mlp", "--dropout", "0.2"], InputError, r"--dropout applies to the CNNs"),
        (["--dropout", "1.5"], InputError, r"--dropout 1.5 must lie in \[0, 1\)"),
        (["--model", "resnet"], InputError, r"not one of fashion_cnn, digits_cnn, mlp"),
        (["--model", "no_such_module_xyz:f"], InputError, r"does not import"),
        (["--epochs", "0"], InputError, r"`epochs`=0 must be >= 1"),
    ],
)
def test_cli_errors(tmp_path, extra, error, match):
    argv = ["train", "--dataset", "digits", "--out", str(tmp_path / "x"), "--no-progress"]
    with pytest.raises(error, match=match):
        train_cli.run(_parse(argv + extra))


def test_cli_missing_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSMAP_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    args = _parse(["train", "--dataset", "mnist", "--out", str(tmp_path / "x"), "--no-progress"])
    with pytest.raises(MissingFileError, match=r"--dataset digits"):
        train_cli.run(args)
