"""Training callbacks: ``lm.TrajectoryRecorder`` in a plain loop, and the Hugging Face and
Lightning callbacks, each writing a folder that ``lm.pca_directions``/``lm.project`` read."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import lossmap as lm
from lossmap.callbacks import read_trajectory
from lossmap.directions.trajectory import checkpoints_in
from lossmap.errors import InputError, InputTypeError, MissingFileError

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def _loop(model: nn.Module, rec, steps: int, *, seed: int = 0):
    """A plain SGD loop calling ``rec(model, step, loss)`` at every step from 0 to ``steps``.

    Returns θ and the loss at every step (the loss computed at θ_step, before its update).
    """
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    params = list(model.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    states, losses = [], []
    for step in range(steps + 1):
        loss = nn.functional.cross_entropy(model(X), y)
        states.append(_params(model))
        losses.append(loss.item())
        rec(model, step, loss)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():  # SGD with momentum 0.9 (torch.optim's first use costs seconds)
            for p, v, g in zip(params, velocity, grads, strict=True):
                v.mul_(0.9).add_(g)
                p.sub_(0.3 * v)
    return states, losses


def _assert_state_equal(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


# -- the plain recorder ---------------------------------------------------------------------


def test_records_every_step_with_its_loss_as_safetensors(tmp_path):
    model = _net()
    rec = lm.TrajectoryRecorder(tmp_path / "run")
    states, losses = _loop(model, rec, 5)
    assert rec.steps == [0, 1, 2, 3, 4, 5]
    assert rec.losses == pytest.approx(losses, rel=0, abs=0)
    assert [f.name for f in rec.files] == [f"step_00000{i}.safetensors" for i in range(6)]
    for path, state in zip(rec.files, states, strict=True):
        saved = load_file(str(path))
        assert list(saved) == sorted(state)  # parameters only, named as named_parameters()
        _assert_state_equal(saved, state)
    index = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert index["steps"] == [0, 1, 2, 3, 4, 5]
    assert index["loss"] == losses
    assert index["files"] == [f.name for f in rec.files]
    assert index["parameters"] == [k for k, _ in model.named_parameters()]
    back = read_trajectory(tmp_path / "run")
    assert (back.steps, back.losses, back.files, back.keep) == (
        rec.steps, losses, rec.files, "parameters")


def test_every_records_every_nth_call_and_force_any(tmp_path):
    rec = lm.TrajectoryRecorder(tmp_path, every=3)
    model = _net()
    written = [rec(model, step) for step in range(10)]
    assert [w is not None for w in written] == [s % 3 == 0 for s in range(10)]
    assert rec.record(model, 10, force=True) == tmp_path / "step_000010.safetensors"
    assert rec.steps == [0, 3, 6, 9, 10]
    assert all(math.isnan(v) for v in rec.losses)  # no loss given: NaN, stored as null
    assert json.loads((tmp_path / "trajectory.json").read_text())["loss"] == [None] * 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        *(f"step_{s:06d}.safetensors" for s in (0, 3, 6, 9, 10)), "trajectory.json"]


def test_the_model_is_left_as_it_was(tmp_path):
    model = _net().train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = lm.TrajectoryRecorder(tmp_path, keep="state")
    rec(model, 0, torch.tensor(1.0, requires_grad=True))
    assert model.training and not model[0].weight.requires_grad and model[2].weight.requires_grad
    _assert_state_equal(model.state_dict(), before)
    with torch.no_grad():
        model[2].weight.add_(1.0)  # the file holds a copy, not a view of the model
    assert torch.equal(load_file(str(rec.files[0]))["2.weight"], before["2.weight"])


def test_steps_must_not_decrease_and_the_last_step_again_replaces_it(tmp_path):
    model = _net()
    rec = lm.TrajectoryRecorder(tmp_path)
    rec(model, 0, 2.0)
    rec(model, 5, 1.0)
    with pytest.raises(InputError, match="step 3 comes before step 5"):
        rec(model, 3)
    with torch.no_grad():
        model[0].bias.fill_(7.0)
    rec(model, 5)  # no loss given: the recorded one stays
    assert rec.steps == [0, 5] and rec.losses == [2.0, 1.0]
    assert torch.equal(load_file(str(rec.files[1]))["0.bias"], torch.full((8,), 7.0))
    rec(model, 5, 0.5)
    assert rec.losses == [2.0, 0.5]
    rec.set_loss(0, torch.tensor(3.0))
    assert read_trajectory(tmp_path).losses == [3.0, 0.5]
    with pytest.raises(InputError, match="step 4 was not recorded"):
        rec.set_loss(4, 1.0)


def test_bad_arguments_are_named(tmp_path):
    model = _net()
    for kwargs, match in [({"every": 0}, "every=0 must be an integer >= 1"),
                          ({"every": 2.0}, "every=2.0"),
                          ({"keep": "all"}, "keep='all' must be 'parameters'")]:
        with pytest.raises(InputError, match=match):
            lm.TrajectoryRecorder(tmp_path / "a", **kwargs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        lm.TrajectoryRecorder(tmp_path / "file")
    rec = lm.TrajectoryRecorder(tmp_path / "b")
    with pytest.raises(InputTypeError, match=r"not a torch nn\.Module"):
        rec({"w": torch.zeros(2)}, 0)
    with pytest.raises(InputTypeError, match="step='3' must be an integer"):
        rec(model, "3")
    with pytest.raises(InputError, match="step=-1 must be an integer >= 0"):
        rec(model, -1)
    with pytest.raises(InputError, match=r"shape \(2,\): pass the scalar"):
        rec(model, 0, torch.ones(2))
    with pytest.raises(InputTypeError, match="loss='low' is a str"):
        rec(model, 0, "low")
    with pytest.raises(InputError, match="has no parameters"):
        rec(nn.ReLU(), 0)
    rec(model, 0)
    with pytest.raises(InputError, match="not those recorded so far"):
        rec(nn.Linear(4, 8), 1)
    assert rec.steps == [0]


def test_a_folder_with_another_recording_or_other_files_is_refused_unless_overwrite(tmp_path):
    model = _net()
    out = tmp_path / "run"
    lm.TrajectoryRecorder(out)  # an empty recording already claims the folder
    with pytest.raises(InputError, match=r"holds another recording \(trajectory.json\)"):
        lm.TrajectoryRecorder(out)
    first = lm.TrajectoryRecorder(out, overwrite=True)
    for step in range(4):
        first(model, step)
    with pytest.raises(InputError, match=r"trajectory.json, 4 step files\): pass overwrite=True"):
        lm.TrajectoryRecorder(out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"not a lossmap recording \(notes.txt\), and another "
                                         r"recording \(trajectory.json, 4 step files\)"):
        lm.TrajectoryRecorder(out)
    assert len(list(out.iterdir())) == 6  # refusing deletes nothing
    second = lm.TrajectoryRecorder(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "trajectory.json"]
    assert read_trajectory(out).steps == []
    second(model, 10)
    assert sorted(p.name for p in out.iterdir()) == [
        "notes.txt", "step_000010.safetensors", "trajectory.json"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    with pytest.raises(InputError, match=r"not a lossmap recording \(data.csv\): choose an empty"):
        lm.TrajectoryRecorder(other)
    blocked = tmp_path / "blocked"
    (blocked / "trajectory.json").mkdir(parents=True)
    with pytest.raises(InputError, match=r"holds trajectory\.json/ where the recording writes "
                                         r"its own files \(trajectory\.json must be a plain"):
        lm.TrajectoryRecorder(blocked, overwrite=True)


def test_files_are_written_aside_and_renamed_step_file_first(tmp_path, monkeypatch):
    model = _net()
    rec = lm.TrajectoryRecorder(tmp_path)
    rec(model, 0, 1.0)
    moves = []
    real_replace = os.replace

    def replace(src, dst):
        moves.append((os.fspath(src), os.fspath(dst)))
        if os.fspath(dst).endswith("step_000002.safetensors"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    rec(model, 1, 0.5)
    names = [(os.path.basename(s), os.path.basename(d)) for s, d in moves]
    pid = os.getpid()
    assert names == [(f".step_000001.safetensors.tmp{pid}", "step_000001.safetensors"),
                     (f".trajectory.json.tmp{pid}", "trajectory.json")]
    assert all(os.path.dirname(s) == os.path.dirname(d) == str(tmp_path) for s, d in moves)
    with pytest.raises(OSError, match="disk full"):
        rec(model, 2, 0.25)
    # the failed step left no file and no temporary; the index still reads as before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_000000.safetensors", "step_000001.safetensors", "trajectory.json"]
    assert read_trajectory(tmp_path).steps == [0, 1] and rec.steps == [0, 1]
    monkeypatch.setattr(os, "replace", real_replace)
    rec(model, 2, 0.25)
    assert read_trajectory(tmp_path).losses == [1.0, 0.5, 0.25]


def test_a_step_file_the_index_does_not_list_is_not_part_of_the_trajectory(tmp_path):
    rec = lm.TrajectoryRecorder(tmp_path)
    model = _net()
    for step in (5, 999_999, 1_000_000, 1_000_001):
        rec(model, step)
    # names sort 1000000, 1000001, 999999: the index, not the names, gives the order
    assert sorted(p.name for p in tmp_path.glob("*.safetensors"))[0] == "step_000005.safetensors"
    assert sorted(p.name for p in tmp_path.glob("*.safetensors"))[1] == "step_1000000.safetensors"
    assert checkpoints_in(tmp_path) == rec.files
    assert [f.name for f in rec.files][1:3] == ["step_999999.safetensors",
                                                "step_1000000.safetensors"]
    (tmp_path / "step_000007.safetensors").write_bytes(rec.files[0].read_bytes())  # a write cut
    assert checkpoints_in(tmp_path) == rec.files
    rec.files[2].unlink()
    with pytest.raises(MissingFileError, match=r"lacks 1 of its step files, e\.g\. 'step_1000000"):
        checkpoints_in(tmp_path)


def _reference_pca(states: list[dict], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Li et al.'s PCA by a dense SVD in float64: rows θ_t − θ_T (t < T), top right vectors."""
    names = sorted(states[-1])
    flat = np.stack([np.concatenate([s[k].double().reshape(-1).numpy() for k in names])
                     for s in states])
    M = flat[:-1] - flat[-1]
    _, sv, vt = np.linalg.svd(M, full_matrices=False)
    return vt[:n], (sv**2 / (sv**2).sum())[:n]


def _flat(d: lm.Direction, names: list[str]) -> np.ndarray:
    return np.concatenate([d[k].double().reshape(-1).numpy() for k in names])


def test_pca_and_project_read_the_folder_as_they_read_the_states(tmp_path):
    model = _net(1)
    rec = lm.TrajectoryRecorder(tmp_path, every=2)
    states, _ = _loop(model, rec, 20)
    kept = states[::2]
    assert len(kept) == len(rec.steps) == 11
    dirs_f = lm.pca_directions(tmp_path, 2)
    ratio_f = dirs_f.explained_variance_ratio
    dirs_l = lm.pca_directions(kept, 2)
    ratio_l = dirs_l.explained_variance_ratio
    # equal up to the order of summation (the files list tensors by name, the states by
    # named_parameters()): the Gram matrix is accumulated tensor by tensor
    np.testing.assert_allclose(ratio_f, ratio_l, rtol=1e-12)
    for a, b in zip(dirs_f, dirs_l, strict=True):
        assert set(a) == set(b)
        for k in b:
            np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(lm.project(tmp_path, dirs_f), lm.project(kept, dirs_l),
                               rtol=1e-9, atol=1e-12)
    # and both are right: the dense SVD of the same matrix, in float64
    names = sorted(kept[-1])
    vt, ratio = _reference_pca(kept, 2)
    np.testing.assert_allclose(ratio_f, ratio, rtol=1e-6)
    for i, d in enumerate(dirs_f):
        assert abs(_flat(d, names) @ vt[i]) == pytest.approx(1.0, abs=1e-5)
    path = lm.project(tmp_path, dirs_f)
    assert path.shape == (11, 2) and np.all(path[-1] == 0)


def test_buffers_recorded_with_keep_state_stay_out_of_pca(tmp_path):
    class WithBuffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 6)
            self.bn = nn.BatchNorm1d(6)
            self.out = nn.Linear(6, 2)
            self.register_buffer("scale", torch.ones(6))  # a float buffer: not a parameter

        def forward(self, x):
            self.scale.mul_(1.01)  # it moves along the run, as running statistics do
            return self.out(self.bn(self.fc(x)) * self.scale)

    torch.manual_seed(0)
    model = WithBuffers()
    rec = lm.TrajectoryRecorder(tmp_path, keep="state")
    states, _ = _loop(model, rec, 8)
    saved = load_file(str(rec.files[-1]))
    assert set(saved) == set(model.state_dict())  # buffers recorded too
    assert {"bn.running_mean", "bn.num_batches_tracked", "scale"} <= set(saved)
    dirs = lm.pca_directions(tmp_path, 2)
    ratio = dirs.explained_variance_ratio
    assert set(dirs[0]) == {k for k, _ in model.named_parameters()}
    ref_dirs = lm.pca_directions(states, 2)  # parameters only
    ref_ratio = ref_dirs.explained_variance_ratio
    np.testing.assert_allclose(ratio, ref_ratio, rtol=1e-12)
    for a, b in zip(dirs, ref_dirs, strict=True):
        for k in b:
            np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=0, atol=1e-12)
    # what the index prevents: guessing from the files would take the buffer `scale` in
    guessed = lm.pca_directions(list(rec.files), 2)
    assert "scale" in set(guessed[0])
    np.testing.assert_allclose(lm.project(tmp_path, dirs), lm.project(states, dirs), atol=1e-12)


def test_the_cli_pca_reads_a_recording_in_step_order(tmp_path, capsys):
    from lossmap.cli import main

    tiny = Path(__file__).parent / "cli_fixtures" / "tinynet.py"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))
    rec = lm.TrajectoryRecorder(tmp_path / "traj")
    for i, step in enumerate((0, 10, 999_999, 1_000_000, 1_000_001)):  # names out of order
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * (i + 1) * torch.randn_like(p))
        rec(model, step)
    out = tmp_path / "pca.lossmap"
    code = main(["scan", "--model", f"{tiny}:make_model", "--data", f"{tiny}:make_data",
                 "--out", str(out), "--no-progress", "--pca", str(tmp_path / "traj"),
                 "--grid=-1:1:3", "--grid=-1:1:3"])
    assert code == 0, capsys.readouterr().err
    surf = lm.load(out)
    assert surf.meta["trajectory"] == [str(f) for f in rec.files]
    dirs = lm.pca_directions(tmp_path / "traj", 2)
    ratio = dirs.explained_variance_ratio
    np.testing.assert_allclose(surf.meta["path"], lm.project(tmp_path / "traj", dirs),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(surf.meta["explained_variance_ratio"], ratio, rtol=1e-9)


def test_docstrings_match_signatures(tmp_path, assert_docstring_matches_signature):
    rec = lm.TrajectoryRecorder(tmp_path)
    for fn in (lm.TrajectoryRecorder, rec.record, rec.set_loss, read_trajectory):
        assert_docstring_matches_signature(fn)


@pytest.mark.slow
def test_lossmap_and_its_callbacks_package_import_no_training_framework():
    code = ("import sys, lossmap, lossmap.callbacks; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('transformers', 'lightning', 'pytorch_lightning', 'accelerate')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.strip() == "[]"


# -- the Hugging Face Trainer --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.hf
def test_the_hugging_face_callback_records_a_trajectory_pca_reads(tmp_path,
                                                                   assert_docstring_matches_signature):
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from lossmap.callbacks.huggingface import LossmapCallback

    assert_docstring_matches_signature(LossmapCallback)
    with pytest.raises(InputError, match="every_steps=0"):
        LossmapCallback(tmp_path / "x", every_steps=0)
    with pytest.raises(InputError, match="keep='buffers' must be"):
        LossmapCallback(tmp_path / "x", keep="buffers")  # refused before training starts
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=32, n_positions=8,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    theta0 = _params(model)
    ids = torch.randint(0, 32, (24, 8))
    data = [{"input_ids": x, "labels": x} for x in ids]
    callback = LossmapCallback(tmp_path / "trajectory", every_steps=2)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"), max_steps=5, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, learning_rate=1e-2, logging_steps=100, report_to=[],
        use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()

    rec = read_trajectory(tmp_path / "trajectory")
    assert rec.steps == [0, 2, 4, 5]  # the start, every 2nd optimizer step, the end
    logged = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert math.isnan(rec.losses[0])
    assert rec.losses[1:] == [logged[2], logged[4], logged[5]]
    names = [k for k, _ in trainer.model.named_parameters()]
    assert rec.parameters == names and "lm_head.weight" not in names  # tied to the embedding
    _assert_state_equal(load_file(str(rec.files[0])), theta0)
    _assert_state_equal(load_file(str(rec.files[-1])), _params(trainer.model))
    assert not torch.equal(theta0["transformer.h.0.mlp.c_fc.weight"],
                           trainer.model.transformer.h[0].mlp.c_fc.weight)  # it trained
    dirs = lm.pca_directions(tmp_path / "trajectory", 2)
    ratio = dirs.explained_variance_ratio
    assert set(dirs[0]) == set(names) and 0 < ratio.sum() <= 1 + 1e-12
    path = lm.project(tmp_path / "trajectory", dirs)
    assert path.shape == (4, 2) and np.all(path[-1] == 0)


# -- Lightning ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LeafSpec")  # Lightning 2.6 on torch 2.13, not lossmap
def test_the_lightning_callback_records_a_trajectory_pca_reads(tmp_path,
                                                               assert_docstring_matches_signature):
    import lightning.pytorch as L

    from lossmap.callbacks.lightning import LossmapCallback

    assert_docstring_matches_signature(LossmapCallback)
    with pytest.raises(InputError, match=r"every_steps=1\.5"):
        LossmapCallback(tmp_path / "x", every_steps=1.5)
    with pytest.raises(InputError, match="keep='buffers' must be"):
        LossmapCallback(tmp_path / "x", keep="buffers")

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net(2)
            self.seen = []  # (global step before the update, batch loss)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.seen.append((self.global_step, loss.item()))
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.3)

    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    module = Module()
    theta0 = _params(module)
    callback = LossmapCallback(tmp_path / "trajectory", every_steps=3)
    trainer = L.Trainer(max_steps=7, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[callback])
    trainer.fit(module, loader)

    rec = read_trajectory(tmp_path / "trajectory")
    assert rec.steps == [0, 3, 6, 7]  # the start, every 3rd optimizer step, the end
    # the loss of step s: the mean over the two accumulated batches that led to it
    want = [np.mean([v for s, v in module.seen if s == step - 1]) for step in (3, 6, 7)]
    assert math.isnan(rec.losses[0])
    np.testing.assert_allclose(rec.losses[1:], want, rtol=1e-6)
    assert rec.parameters == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    _assert_state_equal(load_file(str(rec.files[0])), theta0)
    _assert_state_equal(load_file(str(rec.files[-1])), _params(module))
    assert not torch.equal(theta0["net.0.weight"], module.net[0].weight)  # it trained
    dirs = lm.pca_directions(tmp_path / "trajectory", 2)
    ratio = dirs.explained_variance_ratio
    assert set(dirs[0]) == set(rec.parameters) and 0 < ratio.sum() <= 1 + 1e-12
    path = lm.project(tmp_path / "trajectory", dirs)
    assert path.shape == (4, 2) and np.all(path[-1] == 0)
