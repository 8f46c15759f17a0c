"""The demo end to end on small data (digits): every artefact written, numbers consistent."""

import dataclasses
import json

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap import demo
from lossmap.cli import main
from lossmap.demo import DemoSettings, run_demo

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


LINES = ("line_before", "line_after")
PLANES = ("plane_before", "plane_after")
VARIABLES = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


def _check_demo(out, summary) -> dict:
    """What every demo run writes, checked against itself.

    Stores of the settings' shapes with finite values; a summary.json that is
    the summary returned and agrees with the stores and the training history;
    figures; a report with a section per store, the training history and the
    notes; and a trained θ̂ that lowered the loss.
    """
    for name in ("lines_after.png", "plane_before.png", "plane_after.png", "history.png",
                 "surface3d_before.png", "surface3d_after.png", "plane_before.html",
                 "plane_after.html", "report.html", "summary.json",
                 *(["plane_after_draws.png"] if summary["settings"]["draws"] > 1 else [])):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary, default=str))  # what run_demo returned
    assert set(saved) == {"dataset", "backend", "settings", "init", "notes", "final", "lines",
                          "findings", "draws", "files", "seconds"}
    assert saved["dataset"] == "digits" and saved["seconds"] > 0
    # which θ0 initialization was used: in summary.json and (as a note) in the report
    init = demo.init_description(saved["settings"]["init"], saved["settings"]["seed"])
    assert saved["init"] == init and f"θ0: {init}" in saved["notes"]
    assert sorted(saved["files"]) == sorted(str(p) for p in out.iterdir() if p.is_file()
                                            and p.suffix in (".png", ".html"))

    # every store complete, of the settings' shape, finite, on the settings' grid
    settings = saved["settings"]
    n_line, n_plane, span = settings["line_points"], settings["plane_points"], settings["span"]
    stores = {name: lm.load(out / f"{name}.lossmap") for name in (*LINES, *PLANES)}
    draws = {"plane_before": settings["draws_before"], "plane_after": settings["draws"]}
    for name, surf in stores.items():
        shape = (n_line,) if name in LINES else (n_plane, n_plane)
        if draws.get(name, 1) > 1:  # K direction draws of the plane: a leading draw dimension
            shape = (draws[name], *shape)
            assert surf.dims[0] == "draw" and saved["draws"][name]["draws"] == draws[name]
        else:
            assert name not in saved["draws"]
        assert surf.complete and surf.spec.shape == shape, name
        for dim, coords in surf.coords.items():
            if dim == "draw":
                continue
            np.testing.assert_allclose(coords, np.linspace(-span, span, shape[-1]),
                                       err_msg=dim)
        for var in VARIABLES:
            values = surf[var]
            assert values.shape == shape and np.isfinite(values).all(), (name, var)
        assert ((surf["test_accuracy"] >= 0) & (surf["test_accuracy"] <= 1)).all(), name
    before, after = stores["line_before"], stores["line_after"]
    centre = before.centre_index()
    # around θ0 the loss is near ln 10; training lowered it
    assert abs(before["train_loss"][centre] - np.log(10)) < 0.1
    assert after["train_loss"][centre] < before["train_loss"][centre] - 0.5
    # a plane and a line around the same centre agree at the centre (same subset, same seed)
    for tag in ("before", "after"):
        line, plane = stores[f"line_{tag}"], stores[f"plane_{tag}"]
        plane = plane.isel(draw=0) if "draw" in plane.dims else plane
        for var in VARIABLES:
            assert plane[var][plane.centre_index()] == pytest.approx(
                line[var][line.centre_index()], rel=1e-5), (tag, var)

    # the summary reports the stores' own values and analysis
    from lossmap.analysis import analyse, findings, sentence

    assert set(saved["lines"]) == {"before", "after"}
    for tag in ("before", "after"):
        line = stores[f"line_{tag}"]
        facts = analyse(line)
        for var in ("train_loss", "test_loss"):
            entry = saved["lines"][tag][var]
            assert entry["centre"] == pytest.approx(line[var][line.centre_index()], rel=1e-12)
            for kind in ("slope", "convexity", "minimum"):
                assert entry[kind] == sentence(facts[var][kind])
        # every finding with its evidence, uncertainty and sentence, as the store gives them
        found = findings(line)
        assert saved["findings"][f"line_{tag}"] == json.loads(json.dumps(found.to_dict()))
        slope = saved["findings"][f"line_{tag}"]["variables"]["train_loss"]["slope"]
        assert slope["value"] == pytest.approx(found.variables["train_loss"]["slope"].value)
    # ... and the training run's own last epoch
    history = json.loads((out / "train_after" / "history.json").read_text())
    assert set(saved["final"]) == {"after"}
    assert len(history["epoch"]) == settings["epochs"] + 1
    for key, value in saved["final"]["after"].items():
        assert value == pytest.approx(history[key][-1]), key
    assert saved["final"]["after"]["test_accuracy"] > 0.5

    # the report: notes, contents, one section per store in order, the training history
    import html as html_lib

    text = (out / "report.html").read_text()
    assert "cdn.plot.ly" not in text
    for note in saved["notes"]:
        assert html_lib.escape(note) in text, note
    sections = text.split('<section class="card run" id="run-')[1:]
    assert len(sections) == 4
    for i, (name, section) in enumerate(zip((*LINES, *PLANES), sections, strict=True), 1):
        assert section.startswith(f'{i}"><h2>{name} '), name
        for heading in ("Findings", "Numbers", "Figures", "Interactive view",
                        "Scan specification", "Provenance"):
            assert f"<h3>{heading}</h3>" in section, (name, heading)
        assert f'<a href="#run-{i}">{name}</a>' in text
        # a plane of K > 1 direction draws: the draws' figure and the spread table
        k = draws.get(name, 1)
        assert (f"<h3>Spread over {k} direction draws</h3>" in section) == (k > 1), name
        assert ('alt="direction draws"' in section) == (k > 1), name
    assert '<section class="card" id="history"><h2>Training history</h2>' in text
    return saved


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple:
    """One demo run through the API that two tests read: PyTorch's init, 7-point lines,
    5×5 planes of 2 direction draws at θ0 and at θ̂ (the command's defaults, 3 draws at θ̂
    and 1 at θ0, are test_demo_command_line's); the stores checked by ``_check_demo``."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    settings = DemoSettings(epochs=10, line_points=7, plane_points=5, samples=64, init="torch",
                            draws=2, draws_before=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the `one_thread` fixture, which a module fixture precedes
    try:
        summary = run_demo(out, settings=settings, dataset="digits", progress=False)
    finally:
        torch.set_num_threads(threads)
    return out, _check_demo(out, summary)


@pytest.mark.slow  # trains 10 epochs and scans 4 stores (about 10 s, shared with the next test)
def test_demo_api_writes_everything_and_trains(small_run):
    out, saved = small_run
    assert (saved["settings"]["line_points"], saved["settings"]["plane_points"]) == (7, 5)
    assert any("10 training epochs" in n for n in saved["notes"])
    # PyTorch's init on request: recorded, and named as a departure from the original
    assert saved["init"] == "torch (Kaiming uniform, seed 0)"
    assert "θ0 from PyTorch's default (Kaiming uniform weights and biases) instead of the " \
           "original's Flax's default (truncated LeCun normal, zero biases)" in saved["notes"]
    from lossmap.models import digits_cnn
    from lossmap.train import load_run

    theta0 = load_run(out / "train_after").theta0
    assert all(torch.equal(v, theta0[k])
               for k, v in digits_cnn(seed=0, init="torch").state_dict().items())


@dataclasses.dataclass(frozen=True)
class _SmallGrid(DemoSettings):
    """The demo's default settings on a smaller grid and subset (the command has no flags
    for them): the command's own 31-point lines and 31×31 planes over 3 draws took ~30 s."""

    line_points: int = 7
    plane_points: int = 5
    samples: int = 128


@pytest.mark.slow  # the command's own settings, on a smaller grid (about 8 s)
def test_demo_command_line(tmp_path, capsys, monkeypatch):
    # the command's defaults are DemoSettings()'s: 31-point lines, 31×31 planes, 3 draws at θ̂
    assert (DemoSettings().line_points, DemoSettings().plane_points) == (31, 31)
    assert (DemoSettings().draws, DemoSettings().draws_before) == (3, 1)
    monkeypatch.setattr(demo, "DemoSettings", _SmallGrid)
    out = tmp_path / "d"
    code = main(["demo", "--dataset", "digits", "--epochs", "10", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    saved = _check_demo(out, json.loads((out / "summary.json").read_text()))
    assert saved["backend"] == "torch" and saved["settings"]["epochs"] == 10
    # the default θ0 is the notebook's: Flax's init (seed 0 unless --full)
    assert saved["init"] == "flax (LeCun normal, zero biases, seed 0)"
    assert not any("instead of the original's Flax" in n for n in saved["notes"])
    # the command ran DemoSettings()'s defaults: its grid, and 3 draws of the plane at θ̂
    assert (saved["settings"]["line_points"], saved["settings"]["plane_points"]) == (7, 5)
    assert (saved["settings"]["draws"], saved["settings"]["draws_before"]) == (3, 1)
    assert "lossmap demo (digits) finished" in printed
    assert f"report: {out / 'report.html'}" in printed
    for tag, line in saved["lines"].items():  # what it prints is what it saved
        for var, entry in line.items():
            assert f"line around {tag}: {var} L(0) = {entry['centre']:.4f}; " in printed


@pytest.mark.slow  # the run of small_run: 2 lines and 2 planes of 2 draws
def test_demo_report_shows_the_spread_over_draws_of_its_planes(small_run):
    import html as html_lib
    import re

    from lossmap.analysis.render import sentence
    from lossmap.report import format_value

    out, saved = small_run
    assert (saved["settings"]["draws"], saved["settings"]["draws_before"]) == (2, 2)
    text = (out / "report.html").read_text()
    for i, name in ((3, "plane_before"), (4, "plane_after")):
        surf = lm.load(out / f"{name}.lossmap")
        assert surf.spec.draws["count"] == 2
        section = text.split(f'id="run-{i}">')[1].split("</section>")[0]
        table = section.split("Spread over 2 direction draws")[1].split("</table>")[0]
        rows = [[html_lib.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)]
                for r in re.findall(r"<tr>(.*?)</tr>", table) if "<td" in r]
        for var in ("train_loss", "test_loss"):
            spread = lm.over_draws(surf, var)
            assert html_lib.escape(sentence(lm.over_draws(surf, "train_loss")["height"])) \
                in section
            for number, f in spread.items():
                row = next(r for r in rows if r[0] == var.replace("_", " ")
                           and r[1].startswith(number.replace("_", " ")))
                assert row[2:5] == [format_value(f.value), format_value(f.sd),
                                    format_value(f.se_samples)], (name, var, number)
                # summary.json holds the same numbers
                assert saved["draws"][name][var][number]["sd"] == pytest.approx(f.sd,
                                                                                 nan_ok=True)


def test_demo_draws_flag_sets_both_planes_and_refuses_zero(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda out, *, settings, **kw: seen.update(s=settings))
    monkeypatch.setattr(demo, "_print_summary", lambda *a: None)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    assert (seen["s"].draws, seen["s"].draws_before) == (3, 1)  # default: 3 at θ̂, 1 at θ0
    assert main(["demo", "--draws", "5", "--out", str(tmp_path / "d")]) == 0
    assert (seen["s"].draws, seen["s"].draws_before) == (5, 5)
    assert main(["demo", "--draws", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--draws 0 must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "seed", "init", "epochs"), [
    ([], 0, "flax", 8),
    (["--full"], 228, "flax", 25),  # the notebook's seed and init
    (["--full", "--init", "torch", "--seed", "3"], 3, "torch", 25),
    (["--init", "torch"], 0, "torch", 8),
])
def test_demo_flags_choose_seed_and_init(argv, seed, init, epochs, tmp_path, monkeypatch):
    seen = {}

    def fake_run_demo(out, *, settings, **kwargs):
        seen["settings"] = settings
        return {"settings": settings}

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    monkeypatch.setattr(demo, "_print_summary", lambda *a: None)
    assert main(["demo", *argv, "--out", str(tmp_path / "d")]) == 0
    settings = seen["settings"]
    assert (settings.seed, settings.init, settings.epochs) == (seed, init, epochs)
    assert DemoSettings.full().seed == 228 and DemoSettings.full().init == "flax"


def test_demo_refuses_torch_init_on_the_jax_backend(tmp_path, capsys):
    assert main(["demo", "--backend", "jax", "--init", "torch", "--out", str(tmp_path)]) == 2
    assert "init 'torch' needs the torch backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--init", "kaiming", "--out", str(tmp_path)])


def test_demo_rejects_zero_epochs(tmp_path, capsys):
    assert main(["demo", "--epochs", "0", "--out", str(tmp_path / "d")]) == 2
    assert "--epochs 0 must be >= 1" in capsys.readouterr().err


@pytest.mark.jax
def test_demo_command_line_runs_the_jax_backend(tmp_path, capsys, monkeypatch):
    # the command has no flags for the grid: shrink its default settings instead
    @dataclasses.dataclass(frozen=True)
    class Small(DemoSettings):
        line_points: int = 5
        plane_points: int = 3
        samples: int = 64

    monkeypatch.setattr(demo, "DemoSettings", Small)
    out = tmp_path / "d"
    assert main(["demo", "--backend", "jax", "--dataset", "digits", "--epochs", "1",
                 "--out", str(out), "--no-progress"]) == 0
    assert "lossmap demo (digits, JAX) finished" in capsys.readouterr().out
    saved = _check_demo(out, json.loads((out / "summary.json").read_text()))
    assert saved["backend"] == "jax" and any("JAX backend" in n for n in saved["notes"])
    # repeated draws run on PyTorch only: the JAX planes are one draw each, and it says so
    assert (saved["settings"]["draws"], saved["settings"]["draws_before"]) == (1, 1)
    assert any("repeated draws (lm.scan draws=K) run on the PyTorch backend only" in n
               for n in saved["notes"])
    assert (saved["settings"]["line_points"], saved["settings"]["plane_points"]) == (5, 3)
    assert "(JAX)" in (out / "report.html").read_text()
    for name in (*LINES, *PLANES):  # the JAX scans, normalized per layer as in the original
        assert lm.load(out / f"{name}.lossmap").spec.directions[0]["norm"] == "layer"
    # the trajectory is saved by flattened Flax names, one file per epoch
    from safetensors.numpy import load_file

    checkpoints = sorted((out / "train_after" / "checkpoints").glob("epoch_*.safetensors"))
    assert len(checkpoints) == saved["settings"]["epochs"] + 1 == 11
    assert "params/Conv_0/kernel" in load_file(str(checkpoints[-1]))
    with pytest.raises(SystemExit):
        main(["demo", "--backend", "tensorflow", "--out", str(tmp_path / "d")])
