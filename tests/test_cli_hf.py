"""``lossmap scan`` on a transformers model with dict batches: --loss causal_lm | model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lossmap as lm
from cli_run import run_cli

GPT = Path(__file__).parent / "cli_fixtures" / "tinygpt.py"


@pytest.mark.slow
@pytest.mark.hf
def test_scan_a_gpt2_with_token_loss_and_its_own_loss_agree_with_the_api(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("lossmap_test_tinygpt", GPT)
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    out = {}
    for loss in ("causal_lm", "model"):
        out[loss] = tmp_path / f"{loss}.lossmap"
        code, _, err = run_cli(capsys, "scan", "--model", f"{GPT}:model", "--data",
                               f"{GPT}:data", "--loss", loss, "--dirs", 1, "--grid", "-1:1:3",
                               "--seed", 2, "-o", out[loss], "--no-progress")
        assert code == 0, err
    a, b = lm.load(out["causal_lm"]), lm.load(out["model"])
    assert a.spec.metrics == ("loss",) and a.spec.splits == ("train", "test")
    np.testing.assert_allclose(a["test_loss"], b["test_loss"], rtol=1e-5)
    model = fx.model()
    api = lm.scan(model, lm.metrics.causal_lm_loss, data=fx.data(),
                  directions=a.spec.directions and lm.load_directions(out["causal_lm"]),
                  grid=(-1, 1, 3), progress=False)
    np.testing.assert_allclose(api["train_loss"], a["train_loss"], rtol=1e-6)
    code, _, err = run_cli(capsys, "hessian", "--model", f"{GPT}:model", "--data",
                           f"{GPT}:data", "--loss", "model", "-o", tmp_path / "h.json")
    assert code == 2 and "--loss model" in err and len(err.strip().splitlines()) == 1
