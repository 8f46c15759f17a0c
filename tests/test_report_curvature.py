"""The report states PCA, Hessian and model annotations, and a `lossmap hessian` result."""

import html
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lossmap as lm
from lossmap.cli import main
from lossmap.report import write_report

TINY = Path(__file__).parent / "cli_fixtures" / "tinynet.py"


def _tiny():
    spec = importlib.util.spec_from_file_location("lossmap_test_report_tinynet", TINY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _text(path: Path) -> str:
    return html.unescape(path.read_text(encoding="utf-8"))


def test_meta_findings_state_pca_hessian_and_models(tmp_path):
    tiny = _tiny()
    model, data = tiny.make_model(), tiny.make_data()
    dirs = lm.random_directions(model, 2, seed=0)
    meta = {"explained_variance_ratio": [0.8, 0.15], "path": [[1.0, 0.5], [0.2, 0.1], [0, 0]],
            "hessian": {"eigenvalues": [3.25, 1.5], "split": "train"},
            "models": {"a": [0.0, 0.0], "b": [1.0, 0.0]}}
    surf = lm.scan(model, nn.CrossEntropyLoss(), data=data, directions=dirs,
                   grid=[(-1, 1, 3)] * 2, progress=False, meta=meta)
    page = _text(write_report([("pca", surf)], tmp_path / "r.html"))
    assert "explained variance ratio 0.800 + 0.150 = 0.950" in page
    assert "the 3 checkpoints are drawn as a path" in page
    assert "top-2 eigenvalues of the train loss at the centre: 3.25, 1.5" in page
    assert "a at (0.0, 0.0); b at (1.0, 0.0)" in page
    plain = lm.scan(model, nn.CrossEntropyLoss(), data=data, directions=dirs,
                    grid=[(-1, 1, 3)] * 2, progress=False)
    page = _text(write_report([("plain", plain)], tmp_path / "p.html"))
    assert "explained variance" not in page and "eigenvalues" not in page


def test_report_command_adds_the_hessian_result(tmp_path, capsys):
    tiny = _tiny()
    js, store, out = tmp_path / "h.json", tmp_path / "s.lossmap", tmp_path / "r.html"
    assert main(["hessian", "--model", f"{TINY}:make_model", "--data", f"{TINY}:make_data",
                 "--k", "3", "--trace", "--density", "--probes", "4", "--lanczos", "12",
                 "-o", str(js)]) == 0
    assert main(["scan", "--model", f"{TINY}:make_model", "--data", f"{TINY}:make_data",
                 "--grid", "-1:1:5", "--dirs", "1", "--out", str(store), "--no-progress"]) == 0
    assert main(["report", str(store), "--hessian", str(js), "-o", str(out)]) == 0
    page = _text(out)
    model, (X, y) = tiny.make_model(), tiny.make_data()["train"]
    vals = lm.hessian_eigenpairs(model, nn.CrossEntropyLoss(), (X, y), n=3).eigenvalues
    assert "top-3 eigenvalues of the train loss: " + ", ".join(f"{v:.4g}" for v in vals) in page
    assert "trace " in page and "Hutchinson, 4 probes" in page
    assert "spectral density (stochastic Lanczos quadrature, 10 probes × 12 steps)" in page
    assert 'href="#curvature"' in page and 'alt="Hessian eigenvalues"' in page
    bad = tmp_path / "bad.json"
    bad.write_text('{"trace": 1}')
    capsys.readouterr()
    assert main(["report", str(store), "--hessian", str(bad), "-o", str(out)]) == 2
    assert "no 'eigenvalues' list" in capsys.readouterr().err
    assert main(["report", str(store), "--hessian", str(tmp_path / "nope.json"),
                 "-o", str(out)]) == 2
    assert np.isfinite(vals).all() and torch.is_tensor(X)
