"""The demo end to end on small data (digits): every artefact written, numbers consistent."""

import json

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap.cli import main
from lossmap.demo import DemoSettings, run_demo


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _check_demo(out, summary) -> dict:
    """What every demo run writes: stores, figures, report, and a trained θ̂."""
    for name in ("lines_after.png", "plane_before.png", "plane_after.png", "history.png",
                 "surface3d_after.png", "plane_after.html", "report.html", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "summary.json").read_text())
    assert saved["dataset"] == "digits"
    before, after = lm.load(out / "line_before.lossmap"), lm.load(out / "line_after.lossmap")
    centre = before.centre_index()
    # around θ0 the loss is near ln 10; training lowered it
    assert abs(before["train_loss"][centre] - np.log(10)) < 0.1
    assert after["train_loss"][centre] < before["train_loss"][centre] - 0.5
    # the summary reports the stores' own values
    assert saved["lines"]["after"]["train_loss"]["centre"] == pytest.approx(
        after["train_loss"][centre])
    assert summary["final"]["after"]["test_accuracy"] > 0.5
    html = (out / "report.html").read_text()
    assert "line_after" in html and "plane_after" in html and "cdn.plot.ly" not in html
    return saved


def test_demo_api_writes_everything_and_trains(tmp_path):
    out = tmp_path / "demo"
    settings = DemoSettings(epochs=10, line_points=7, plane_points=5, samples=128)
    summary = run_demo(out, settings=settings, dataset="digits", progress=False)
    for name in ("line_before", "line_after", "plane_before", "plane_after"):
        assert lm.load(out / f"{name}.lossmap").complete
    saved = _check_demo(out, summary)
    assert any("10 training epochs" in n for n in saved["notes"])


def test_demo_command_line(tmp_path, capsys):
    code = main(["demo", "--dataset", "digits", "--epochs", "10", "--out", str(tmp_path / "d"),
                 "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "lossmap demo (digits) finished" in out and "report:" in out
    assert (tmp_path / "d" / "report.html").exists()


def test_demo_rejects_zero_epochs(tmp_path, capsys):
    assert main(["demo", "--epochs", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--epochs 0 must be >= 1" in capsys.readouterr().err


def test_demo_jax_backend_writes_everything_and_trains(tmp_path):
    out = tmp_path / "demo_jax"
    settings = DemoSettings(epochs=10, line_points=7, plane_points=5, samples=128)
    summary = run_demo(out, settings=settings, dataset="digits", progress=False, backend="jax")
    for name in ("line_before", "line_after", "plane_before", "plane_after"):
        surf = lm.load(out / f"{name}.lossmap")
        assert surf.complete and surf.spec.directions[0]["norm"] == "layer"
    saved = _check_demo(out, summary)
    assert saved["backend"] == "jax" and any("JAX backend" in n for n in saved["notes"])
    # the trajectory is saved by flattened Flax names, one file per epoch
    from safetensors.numpy import load_file

    checkpoints = sorted((out / "train_after" / "checkpoints").glob("epoch_*.safetensors"))
    assert len(checkpoints) == 11
    assert "params/Conv_0/kernel" in load_file(str(checkpoints[-1]))
    assert "(JAX)" in (out / "report.html").read_text()


def test_demo_command_line_takes_a_backend(tmp_path, capsys):
    assert main(["demo", "--backend", "jax", "--epochs", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--epochs 0 must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--backend", "tensorflow", "--out", str(tmp_path / "d")])
