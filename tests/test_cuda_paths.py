"""The CUDA paths, on a GPU: autocast, channels_last, compile, vmap, bf16 points, NCCL, FSDP.

Every test here is marked ``gpu``: ``make test`` deselects them (``-m "not
gpu"``) on a machine without CUDA, and ``benchmarks/gpu.sh`` runs them
(``pytest -m gpu``) on a GPU. Each compares the CUDA path against an
independent reference: the same scan in full precision or contiguous layout,
a direct loop that forms each point itself, or the same scan on one rank.
TF32 convolutions (cuDNN's default) round to about 1e-3, hence the tolerances.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.models import fashion_cnn

pytestmark = pytest.mark.gpu
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
KW = dict(metrics=("loss",), progress=False)


def cnn_setup(n: int = 256):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    model = fashion_cnn(seed=0).cuda().eval()
    data = {"test": (X.cuda(), y.cuda())}
    return model, data, lm.random_directions(model, 2, seed=0)


def plane(model, data, dirs, **options) -> np.ndarray:
    surf = lm.scan(
        model,
        nn.CrossEntropyLoss(),
        data=data,
        directions=dirs,
        grid=[(-1, 1, 5), (-1, 1, 5)],
        **KW,
        **options,
    )
    return surf["test_loss"]


def brute_force(model, data, dirs, grid) -> np.ndarray:
    """float64 copy of the model on the CPU, each point loaded and evaluated."""
    ref = fashion_cnn(seed=0).double().eval()
    c = {k: v.detach().cpu().double() for k, v in model.named_parameters()}
    X, y = (t.cpu() for t in data["test"])
    out = np.empty((grid[0][2], grid[1][2]))
    with torch.no_grad():
        for i, a in enumerate(np.linspace(*grid[0])):
            for j, b in enumerate(np.linspace(*grid[1])):
                for k, p in ref.named_parameters():
                    p.copy_(c[k] + a * dirs[0][k].cpu().double() + b * dirs[1][k].cpu().double())
                out[i, j] = float(nn.functional.cross_entropy(ref(X.double()), y))
    return out


def test_the_default_cuda_plane_matches_a_float64_loop():
    model, data, dirs = cnn_setup()
    got = plane(model, data, dirs)
    np.testing.assert_allclose(
        got, brute_force(model, data, dirs, [(-1, 1, 5)] * 2), rtol=2e-3, atol=2e-3
    )


def test_vmap_and_loop_strategies_agree_on_cuda():
    model, data, dirs = cnn_setup()
    np.testing.assert_allclose(
        plane(model, data, dirs, strategy="vmap"),
        plane(model, data, dirs, strategy="loop"),
        rtol=2e-3,
        atol=2e-3,
    )


def test_channels_last_equals_the_contiguous_layout_on_cuda():
    model, data, dirs = cnn_setup()
    np.testing.assert_allclose(
        plane(model, data, dirs, channels_last=True),
        plane(model, data, dirs, channels_last=False),
        rtol=2e-3,
        atol=2e-3,
    )


def test_compile_equals_eager_on_cuda():
    model, data, dirs = cnn_setup()
    np.testing.assert_allclose(
        plane(model, data, dirs, compile=True, strategy="loop"),
        plane(model, data, dirs, strategy="loop"),
        rtol=2e-3,
        atol=2e-3,
    )


def test_autocast_bfloat16_stays_within_bf16_rounding_of_full_precision():
    model, data, dirs = cnn_setup()
    full, half = plane(model, data, dirs), plane(model, data, dirs, autocast="bfloat16")
    assert not np.array_equal(full, half)  # it did run in bf16
    np.testing.assert_allclose(half, full, rtol=2e-2)


def test_bf16_model_points_are_formed_in_float32_then_cast():
    """A model held in bfloat16: each point is (c + a·d in float32) cast once, so steps far
    below bf16's spacing near c still move the weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 10)).cuda().bfloat16()
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(512, 32, generator=g).cuda().bfloat16(), torch.randint(0, 10, (512,))
    data = {"train": (X, y.cuda())}
    d = lm.random_direction(model, seed=0)
    grid = (-0.05, 0.05, 5)
    got = lm.scan(model, nn.CrossEntropyLoss(), data=data, directions=d, grid=grid, **KW)[
        "train_loss"
    ]
    c = {k: p.detach().float() for k, p in model.named_parameters()}
    ref = []
    with torch.no_grad():
        for a in np.linspace(*grid):
            state = {k: (c[k] + float(a) * d[k].cuda().float()).bfloat16() for k in c}
            out = torch.func.functional_call(model, state, (X,))
            ref.append(float(nn.functional.cross_entropy(out.float(), y.cuda())))
    np.testing.assert_allclose(got, ref, rtol=1e-2)
    assert len(set(np.round(got, 6))) == len(got)  # no step rounded away
    assert all(torch.equal(p.detach().float(), c[k]) for k, p in model.named_parameters())


NCCL_USER = """
import torch
from torch import nn

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

def data():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(256, 1, 4, 4, generator=g), torch.randint(0, 4, (256,), generator=g)
    return {"train": (X, y)}
"""


def _scan_cmd(out: Path) -> list[str]:
    cli = "-m lossmap scan --model user.py:model --data user.py:data --grid -1:1:7 --grid -1:1:5"
    return [*cli.split(), "--no-progress", "--out", str(out)]


@pytest.mark.slow
def test_two_ranks_over_nccl_equal_one_gpu(tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip(f"NCCL needs one GPU per rank: {torch.cuda.device_count()} GPU here")
    (tmp_path / "user.py").write_text(NCCL_USER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, *_scan_cmd(tmp_path / "one.lossmap"), "--device", "cuda"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [TORCHRUN, "--nproc-per-node", "2", "--standalone", *_scan_cmd(tmp_path / "two.lossmap")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = lm.load(tmp_path / "one.lossmap"), lm.load(tmp_path / "two.lossmap")
    assert b.complete
    for v in a.values:
        np.testing.assert_allclose(a[v], b[v], rtol=1e-5, atol=1e-6)


FSDP_WORKER = """
import json, os, sys
import numpy as np
import torch, torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
import lossmap as lm
from lossmap.backends.sharded import is_sharded

dist.init_process_group("nccl")
rank = dist.get_rank()
torch.cuda.set_device(rank)
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).cuda()
g = torch.Generator().manual_seed(1)
X, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
data = {"train": (X.cuda(), y.cuda())}
plain = model()
d = lm.random_direction(plain, seed=0)
kw = dict(data=data, directions=d, grid=(-1, 1, 9), metrics=("loss",), progress=False)
ref = lm.scan(plain, nn.CrossEntropyLoss(), **kw)["train_loss"]
net = model()
fully_shard(net[0]); fully_shard(net)
got = lm.scan(net, nn.CrossEntropyLoss(), **kw)["train_loss"]
if rank == 0:
    json.dump({"sharded": is_sharded(net), "ref": ref.tolist(), "got": got.tolist()},
              open(sys.argv[1], "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_fsdp_sharded_scan_on_gpus_equals_the_unsharded_scan(tmp_path):
    (tmp_path / "worker.py").write_text(FSDP_WORKER)
    ranks = min(2, torch.cuda.device_count())
    res = subprocess.run(
        [
            TORCHRUN,
            "--nproc-per-node",
            str(ranks),
            "--standalone",
            "worker.py",
            str(tmp_path / "out.json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    import json

    out = json.loads((tmp_path / "out.json").read_text())
    assert out["sharded"]
    np.testing.assert_allclose(out["got"], out["ref"], rtol=1e-5, atol=1e-6)
