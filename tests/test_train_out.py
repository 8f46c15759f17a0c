"""Nothing lost by rerunning: ``train(out=...)`` and ``lossmap train --out`` refuse a used folder.

A folder that holds anything (an earlier run, even of the same settings, or
files that are not lossmap's) is refused unless ``overwrite=True`` /
``--overwrite``; then only the earlier run's own files are replaced, and
nothing is deleted before every argument has been checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from lossmap.cli.main import main
from lossmap.errors import InputError, InputTypeError
from lossmap.train import load_run, train

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

FAST = {"lr": 0.1, "momentum": 0.9, "batch_size": 16, "progress": False}
RUN_FILES = ["checkpoints/epoch_000.safetensors", "history.json", "theta0.safetensors",
             "theta_hat.safetensors", "train.json"]


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 4, generator=g)
    return X, (X[:, 0] > 0).long()


def _model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder``: file → its bytes, folder → None."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def _first_run(out: Path, epochs: int = 2) -> dict[str, bytes | None]:
    train(_model(), _data(), epochs=epochs, out=out, **FAST)
    return _snapshot(out)


# --------------------------------------------------------------------------- API


def test_missing_and_empty_folders_are_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "nested"):
        result = train(_model(), _data(), epochs=1, out=out, **FAST)
        assert sorted(p for p, b in _snapshot(out).items() if b is not None) == sorted(
            [*RUN_FILES, "checkpoints/epoch_001.safetensors"]
        )
        assert load_run(out).history["epoch"] == result.history["epoch"] == [0, 1]


@pytest.mark.parametrize("same_settings", [True, False])
def test_second_run_is_refused_naming_the_files_and_the_first_run_is_intact(
    tmp_path, same_settings
):
    out = tmp_path / "run"
    before = _first_run(out, epochs=2)
    model = _model() if same_settings else _model(1)  # the same run again, or another one
    params = {k: v.clone() for k, v in model.state_dict().items()}
    settings = {"epochs": 2} if same_settings else {"epochs": 1, "seed": 5}
    with pytest.raises(InputError) as info:
        train(model, _data(), out=out, **settings, **FAST)
    message = str(info.value)
    assert message == (
        f"{out} holds another run (train.json, history.json, theta0.safetensors, "
        "theta_hat.safetensors, 3 checkpoints): pass overwrite=True / --overwrite to replace "
        "it, or choose another `out` / --out"
    )
    assert _snapshot(out) == before  # every byte of the first run, nothing added
    # Refused before training: the model passed in is untouched.
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


def test_overwrite_replaces_the_run_and_keeps_unrelated_files(tmp_path):
    out = tmp_path / "run"
    first = _first_run(out, epochs=3)
    (out / "notes.txt").write_text("my notes")
    (out / "plots").mkdir()
    (out / "plots" / "loss.png").write_bytes(b"\x89PNG fake")
    (out / "checkpoints" / "README").write_text("mine")
    (out / "checkpoints" / "best.safetensors").write_bytes(b"not lossmap's")
    mine = {k: v for k, v in _snapshot(out).items() if k not in first}

    with pytest.raises(InputError) as info:  # unrelated files: refused without overwrite
        train(_model(), _data(), epochs=1, out=out, **FAST)
    assert str(info.value).startswith(
        f"{out} holds files that are not a lossmap run (checkpoints/README, "
        "checkpoints/best.safetensors, notes.txt, plots/), and another run (train.json, "
        "history.json, theta0.safetensors, theta_hat.safetensors, 4 checkpoints): choose an "
        "empty or new folder"
    )
    assert "overwrite=True / --overwrite" in str(info.value)

    result = train(_model(2), _data(), epochs=1, out=out, overwrite=True, **FAST)
    after = _snapshot(out)
    assert {k: after[k] for k in mine} == mine  # every unrelated file, byte for byte
    run = sorted(k for k, v in after.items() if k not in mine and v is not None)
    assert run == sorted([*RUN_FILES, "checkpoints/epoch_001.safetensors"])  # 2 and 3 gone
    assert after["theta_hat.safetensors"] != first["theta_hat.safetensors"]
    back = load_run(out)
    assert back.history["epoch"] == [0, 1]
    assert all(torch.equal(back.theta_hat[k], v) for k, v in result.theta_hat.items())


def test_a_folder_of_other_files_only_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text("1,2\n")
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match=r"holds files that are not a lossmap run \(data\.csv\):"):
        train(_model(), _data(), epochs=1, out=tmp_path, **FAST)
    assert _snapshot(tmp_path) == before


def test_interrupted_run_is_refused_then_replaced(tmp_path):
    out = tmp_path / "run"
    _first_run(out, epochs=1)
    (out / "theta_hat.safetensors").unlink()  # as if cut short after epoch 1
    (out / ".history.json.tmp4242").write_bytes(b"{")  # an atomic write's leftover
    with pytest.raises(InputError, match=r"holds another run \(train\.json, history\.json, "
                                         r"theta0\.safetensors, \.history\.json\.tmp4242, "
                                         r"2 checkpoints\)"):
        train(_model(), _data(), epochs=1, out=out, **FAST)
    train(_model(), _data(), epochs=1, out=out, overwrite=True, **FAST)
    assert not (out / ".history.json.tmp4242").exists()  # ours, so replaced
    assert load_run(out).history["epoch"] == [0, 1]


def _model_with_3_classes() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda out: train(_model(), _data(), epochs=0, out=out, overwrite=True, **FAST),
         InputError, r"`epochs`=0 must be >= 1"),
        (lambda out: train(_model(), (torch.randn(4, 4), torch.arange(3)), out=out,
                           overwrite=True, **FAST),
         InputError, r"4 inputs X but 3 targets"),
        (lambda out: train(_model(), _data(), out=out, overwrite="yes", **FAST),
         InputTypeError, r"`overwrite`='yes' must be True or False"),
        # Found by running the model, after the argument checks but before any deletion.
        (lambda out: train(_model_with_3_classes(), (torch.randn(8, 4), torch.arange(8)),
                           out=out, overwrite=True, **FAST),
         InputError, r"class index 7 but the model gives only 3 class scores"),
    ],
)
def test_nothing_is_deleted_before_the_arguments_are_checked(tmp_path, call, error, match):
    out = tmp_path / "run"
    before = _first_run(out)
    with pytest.raises(error, match=match):
        call(out)
    assert _snapshot(out) == before


def test_overwrite_refuses_what_stands_where_the_run_writes(tmp_path):
    (tmp_path / "train.json").mkdir()
    (tmp_path / "train.json" / "keep").write_text("x")
    (tmp_path / "checkpoints").write_text("a file, not a folder")
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match=r"holds checkpoints, train\.json/ where the run "
                                         r"writes its own files \(train\.json, "):
        train(_model(), _data(), epochs=1, out=tmp_path, overwrite=True, **FAST)
    assert _snapshot(tmp_path) == before


@pytest.mark.jax
def test_jax_train_refuses_a_used_folder_too(tmp_path):
    import numpy as np

    from lossmap.jax.cnn import digits_cnn, init
    from lossmap.jax.train import train as jax_train

    out = tmp_path / "run"
    before = _first_run(out)
    X = np.zeros((8, 8, 8, 1), np.float32)
    with pytest.raises(InputError, match=r"holds another run \(train\.json, .*3 checkpoints\)"):
        jax_train(digits_cnn(), init(0, digits_cnn()), (X, np.arange(8) % 10), epochs=1,
                  out=out, progress=False)
    assert _snapshot(out) == before
    (out / "notes.txt").write_text("mine")
    jax_train(digits_cnn(), init(0, digits_cnn()), (X, np.arange(8) % 10), epochs=1,
              batch_size=8, out=out, overwrite=True, progress=False)
    after = _snapshot(out)
    assert after["notes.txt"] == b"mine"
    assert sorted(k for k, v in after.items() if v is not None) == sorted(
        [*RUN_FILES, "checkpoints/epoch_001.safetensors", "notes.txt"]
    )  # the torch run's epoch 2 is gone
    assert after["theta0.safetensors"] != before["theta0.safetensors"]


# --------------------------------------------------------------------------- CLI


def _cli(out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "digits", "--epochs", "1", "--limit", "64", "--batch-size",
            "32", "--no-progress", "--out", str(out), *extra]


def test_cli_refuses_a_used_out_with_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_cli(out)) == 0
    before = _snapshot(out)
    capsys.readouterr()

    assert main(_cli(out, "--seed", "3")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    assert re.fullmatch(
        rf"lossmap train: error: {re.escape(str(out))} holds another run \(train\.json, "
        r"history\.json, theta0\.safetensors, theta_hat\.safetensors, 2 checkpoints\): pass "
        r"overwrite=True / --overwrite to replace it, or choose another `out` / --out\n",
        err,
    )
    assert _snapshot(out) == before

    (out / "notes.txt").write_text("mine")
    assert main(_cli(out, "--seed", "3", "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"
    back = load_run(out)
    assert back.settings["seed"] == 3
    assert (out / "theta0.safetensors").read_bytes() != before["theta0.safetensors"]
