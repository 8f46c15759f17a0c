"""benchmarks/gpu.sh: the whole GPU check runs on the CPU (``--cpu --tiny``) and writes every field.

The script is meant to use a GPU within its first minutes, so every part of
it that does not need CUDA is run here: the CNN plane against the in-place
loop, the GPT-2 lines and planes (bfloat16 models), the ``pytest -m gpu``
subset (collected and skipped without CUDA) and the JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
GPU_TESTS = ROOT / "tests" / "test_cuda_paths.py"


def gpt2_parameters(layers: int, width: int, vocab: int, positions: int) -> int:
    """GPT-2 with tied embeddings: token and position tables, per block 12·d² + 13·d, final LN."""
    return vocab * width + positions * width + layers * (12 * width**2 + 13 * width) + 2 * width


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PY": sys.executable}
    res = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--cpu",
            "--tiny",
            "--out",
            str(out),
            "--tests",
            str(GPU_TESTS.relative_to(ROOT)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res, json.loads(out.read_text())


pytestmark = [pytest.mark.slow, pytest.mark.hf]


def test_the_report_names_the_machine_and_the_command(report):
    _, r = report
    assert r["schema"] == "lossmap-gpu-check/1"
    assert r["card"] == "cpu (no GPU)" and r["tiny"] is True
    assert r["machine"]["device"] == "cpu" and r["machine"]["torch"]
    assert r["command"].startswith("bash benchmarks/gpu.sh --cpu --tiny")
    assert r["wall_s"] > 0


def test_the_cnn_plane_agrees_with_the_in_place_loop_and_its_ratio_is_theirs(report):
    _, r = report
    c = r["cnn"]
    assert c["points"] == 9 and c["images"] == 64
    assert set(c["seconds"]) == {"lossmap", "plain_loop"}
    lossmap, plain = c["seconds"]["lossmap"], c["seconds"]["plain_loop"]
    assert len(lossmap) == len(plain) == 1 and min(lossmap + plain) > 0
    assert c["ratio_plain_over_lossmap"]["per_repeat"] == pytest.approx([plain[0] / lossmap[0]])
    assert c["points_per_s"]["lossmap"] == pytest.approx(9 / lossmap[0])
    assert c["max_abs_loss_diff"] < 1e-5  # two independent ways to the same plane
    assert c["lossmap_info"]["reuses_first_layer"] is True


def test_each_gpt2_line_and_plane_has_rate_memory_and_a_checked_centre(report):
    _, r = report
    assert set(r["gpt2"]) == {"124M", "1B"}
    for name, width in (("124M", 64), ("1B", 128)):
        g = r["gpt2"][name]
        assert g["dtype"] == "bfloat16"
        assert g["parameters"] == gpt2_parameters(2, width, 1000, 32)
        assert g["param_bytes"] == 2 * g["parameters"]
        for kind, points in (("line", 3), ("plane", 4)):
            s = g[kind]
            assert s["points"] == points == math.prod(n for _, _, n in s["grid"])
            assert s["points_per_s"] == pytest.approx(points / s["seconds"])
            assert s["peak_memory_bytes"] > g["param_bytes"]  # the process's peak RSS here
            # untrained, near-uniform predictions over 1000 tokens: the loss is about ln 1000
            assert abs(s["loss_min"] - math.log(1000)) < 0.5
            assert s["loss_min"] <= s["loss_max"] < 20
            assert s["info"]["batch_size"] >= 1
        # α = 0 of the line against a direct next-token cross-entropy of the model
        assert g["line"]["centre_abs_diff"] < 1e-4


def test_the_gpu_subset_is_collected_and_only_skipped_for_want_of_cuda(report):
    _, r = report
    t = r["tests"]
    defined = len(re.findall(r"^def test_", GPU_TESTS.read_text(), flags=re.M))
    assert t["tests"] == defined >= 7
    assert t["failures"] == t["errors"] == 0 and t["failed"] == []
    assert t["skipped"] == defined and t["passed"] == 0  # no CUDA on this machine
    assert t["skip_reasons"] and all("CUDA" in s for s in t["skip_reasons"])
    assert "-m gpu" in t["command"] and t["returncode"] == 0


def test_without_cuda_and_without_cpu_it_stops_with_one_line_naming_the_fix():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PY", None)
    res = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA" in lines[0] and "--cpu --tiny" in lines[0]
