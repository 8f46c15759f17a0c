"""FSDP2: a scan of a model sharded over 2 ranks (torchrun, gloo, CPU) equals the unsharded scan."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lossmap as lm
from lossmap.backends.sharded import is_sharded

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))

# The model, data and directions, shared by the worker (sharded) and the test (unsharded).
COMMON = """
import torch
from torch import nn
import lossmap as lm

def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 9), nn.Tanh(),
                         nn.Linear(9, 3))

def data():
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(100, 6, generator=g), torch.randint(0, 3, (100,), generator=g)
    return {"train": (X[:80], y[:80]), "test": (X[80:], y[80:])}

def directions(net):
    return lm.random_direction(net, seed=0), lm.random_direction(net, seed=1)

LINE, PLANE = (-1, 1, 9), [(-1, 1, 5), (-0.5, 1, 5)]
BATCH = 17  # train: 5 batches (3 on rank 0, 2 on rank 1), test: 2; forwards per point: 3 + 1
"""

WORKER = """
import json, os, sys
import numpy as np
import torch, torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
import lossmap as lm
from lossmap.backends.sharded import is_sharded
from lossmap.scan.plan import Plan
from common import BATCH, LINE, PLANE, data, directions, model

out = sys.argv[1]
dist.init_process_group("gloo")
net = model()
d1, d2 = directions(net)  # full tensors, made before sharding, the same on every rank
fully_shard(net[0]); fully_shard(net[2]); fully_shard(net)  # the root owns net[4] itself
net.train()

def shards():
    return {k: p.to_local().clone() for k, p in net.named_parameters()}

before = shards()
checks = {"sharded": is_sharded(net), "dtensor": all(
    type(p).__name__ == "DTensor" for p in net.parameters())}

def unchanged():  # bit for bit, and the training flag
    now = shards()
    return all(torch.equal(before[k], now[k]) for k in before) and net.training

loss = nn.CrossEntropyLoss()
plan = lm.plan_scan(net, loss, data=data(), directions=d1, grid=LINE, batch_size=BATCH)
checks["plan"] = [type(plan).__name__, plan.backend.name]
runs, run = [], Plan.run
def spy(self, **kw):  # every scan of the sharded model goes through Plan.run
    runs.append(self.backend.name)
    return run(self, **kw)
Plan.run = spy
lm.scan(net, loss, data=data(), directions=d1, grid=LINE, batch_size=BATCH, progress=False,
        store=f"{out}/line.lossmap")
checks["line"] = unchanged()
kw = dict(data=data(), directions=[d1, d2], grid=PLANE, batch_size=BATCH,
          metrics=("loss", "accuracy"), progress=False)
plane = lm.scan(net, loss, **kw)
checks["plane"] = unchanged()
if dist.get_rank() == 0:
    np.savez(f"{out}/plane.npz", **{k: plane[k] for k in plane.values})

forwards = {"n": 0, "stop": 0}
def count(module, args, output):  # after FSDP's own hook: every rank stops at the same forward
    forwards["n"] += 1
    if forwards["n"] == forwards["stop"]:
        raise KeyboardInterrupt
net.register_forward_hook(count)
forwards["stop"] = 2 + 4 * 7 + 2  # the probe (2 forwards), 7 points, into the 8th
try:
    lm.scan(net, loss, store=f"{out}/plane.lossmap", **kw)
except KeyboardInterrupt:
    checks["interrupted"] = unchanged()
checks["committed"] = int(lm.load(f"{out}/plane.lossmap").done.sum())
forwards.update(n=0, stop=0)
lm.scan(net, loss, store=f"{out}/plane.lossmap", **kw)
checks["resumed_forwards"] = forwards["n"]
checks["resumed"] = unchanged()
for bad in ({"bn": "recompute"}, {"strategy": "vmap"}, {"centre": {}}, {"compile": True}):
    try:
        lm.scan(net, loss, data=data(), directions=d1, grid=LINE, progress=False, **bad)
    except lm.InputError as exc:
        checks[next(iter(bad))] = str(exc)
checks["runs"] = list(runs)  # the refused scans below also reach Plan.run
# every rank must read the same data and move along the same directions: refused on every rank
rank = dist.get_rank()
g = torch.Generator().manual_seed(rank)
own = {"train": (torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g))}
for what, args in (("data", dict(data=own, directions=d1)),
                   ("direction", dict(data=data(), directions=lm.random_direction(
                       model(), seed=rank)))):
    try:
        lm.scan(net, loss, grid=LINE, progress=False, **args)
    except lm.InputError as exc:
        with open(f"{out}/refused_{what}_{rank}.txt", "w") as f:
            f.write(str(exc))
checks["after_refusals"] = unchanged()
if dist.get_rank() == 0:
    with open(f"{out}/checks.json", "w") as f:
        json.dump(checks, f)
dist.destroy_process_group()
"""


def _brute_force(net, data, dirs, coef):
    """float64: copy the model, load c + Σ aᵢ·dᵢ, mean loss over every sample of each split."""
    ref = copy.deepcopy(net).double().eval()
    c = {k: v.detach().double().clone() for k, v in net.named_parameters()}
    out = {}
    with torch.no_grad():
        for a in coef:
            for k, p in ref.named_parameters():
                p.copy_(c[k] + sum(ai * d[k].double() for ai, d in zip(a, dirs, strict=True)))
            for name, (X, y) in data.items():
                out.setdefault(name, []).append(
                    float(nn.functional.cross_entropy(ref(X.double()), y, reduction="sum"))
                    / len(y))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.slow  # one torchrun job of 2 ranks: about 15 s
def test_fsdp2_scan_equals_the_unsharded_scan_and_leaves_the_shards_alone(tmp_path):
    (tmp_path / "common.py").write_text(COMMON)
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2",
                          str(tmp_path / "worker.py"), str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    checks = json.loads((tmp_path / "checks.json").read_text())

    sys.path.insert(0, str(tmp_path))
    try:
        import common
    finally:
        sys.path.remove(str(tmp_path))
    net, data = common.model(), common.data()
    d1, d2 = common.directions(net)
    assert not is_sharded(net)
    loss = nn.CrossEntropyLoss()
    kw = dict(data=data, batch_size=common.BATCH, progress=False)
    ref_line = lm.scan(net, loss, directions=d1, grid=common.LINE, **kw)
    ref_plane = lm.scan(net, loss, directions=[d1, d2], grid=common.PLANE, **kw)

    # values and standard errors: those of one process reading every batch
    line = lm.load(tmp_path / "line.lossmap")
    plane = np.load(tmp_path / "plane.npz")
    resumed = lm.load(tmp_path / "plane.lossmap")
    assert line.complete and resumed.complete
    assert set(line.values) == set(ref_line.values) == set(plane.files)
    for v in ref_line.values:
        np.testing.assert_allclose(line[v], ref_line[v], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(plane[v], ref_plane[v], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(resumed[v], ref_plane[v], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(line.se(v), ref_line.se(v), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(resumed.se(v), ref_plane.se(v), rtol=1e-6, atol=1e-12)
    a = np.linspace(*common.LINE)
    brute = _brute_force(net, data, [d1], a[:, None])
    for name in data:
        np.testing.assert_allclose(line[f"{name}_loss"], brute[name], rtol=1e-5)

    # the model's local shards bit for bit after each scan, after Ctrl-C too
    assert checks["sharded"] and checks["dtensor"]
    assert checks["line"] and checks["plane"] and checks["interrupted"] and checks["resumed"]
    # the store resumed: only the points not committed were evaluated (probe: 2 forwards)
    assert 0 < checks["committed"] < 25
    assert checks["resumed_forwards"] == 2 + 4 * (25 - checks["committed"])
    # refused, naming why
    assert "BatchNorm statistics" in checks["bn"]
    assert "strategy='vmap' is not supported" in checks["strategy"]
    assert "load the centre into the model before sharding" in checks["centre"]
    assert "torch.compile" in checks["compile"]

    # one pipeline: lm.plan_scan of a sharded model is a Plan on the sharded backend, every
    # lm.scan of it ran through Plan.run (line, plane, interrupted, resumed), and its store
    # records the spec and fingerprints of the unsharded scan
    assert checks["plan"] == ["Plan", "sharded"]
    assert checks["runs"] == ["sharded"] * 4
    assert line.spec == ref_line.spec and line.fingerprints == ref_line.fingerprints
    # ranks that read other data, or move along other directions: refused on every rank,
    # naming the rank and what differs, before any point; the shards untouched
    for what, words in (("data", "train data"), ("direction", "direction 0")):
        for rank in (0, 1):
            msg = (tmp_path / f"refused_{what}_{rank}.txt").read_text()
            assert msg.startswith(f"rank 1's {words} differs from rank 0's (fingerprint "), msg
    assert "every rank must read the same data" in (tmp_path / "refused_data_1.txt").read_text()
    assert "every rank must pass the same directions" in msg
    assert checks["after_refusals"]


def test_unsharded_models_are_not_sharded():
    assert not is_sharded(nn.Linear(2, 2))
    assert not is_sharded(object())
