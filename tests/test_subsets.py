"""Parameter subsets (``params=``) and random directions kept as their recipe (issue 13).

Subsets: a direction over some tensors moves those only — at every point of a
scan the other tensors are bit-identical to the centre (seen through a hook
that reads the weights the model is called with) — and a LoRA-only plane of a
``peft`` GPT-2 equals a brute-force loop. Recipes: a direction saved as its
recipe regenerates bit-identically; a store keeps one above the threshold;
an altered recipe, a damaged one and another centre are refused by name.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tests.cli_run import run_cli
from torch import nn

import lossmap as lm
from lossmap.directions import regenerate
from lossmap.directions import storage as R
from lossmap.errors import InputError, InputTypeError, StoreError

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest

TINY = Path(__file__).parent / "cli_fixtures" / "tinynet.py"
_spec = importlib.util.spec_from_file_location("lossmap_test_subsets_tinynet", TINY)
tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def data(n: int = 48) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"train": (torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g))}


def record_weights(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Every forward's weights, as the model sees them then (functional_call swaps them in)."""
    seen: list[dict[str, torch.Tensor]] = []

    def hook(mod, args):
        got = {}
        for name, _ in mod.named_parameters():
            owner, _, leaf = name.rpartition(".")
            got[name] = getattr(mod.get_submodule(owner), leaf).detach().clone()
        seen.append(got)

    model.register_forward_pre_hook(hook)
    return seen


# -- subsets ------------------------------------------------------------------------------


def test_line_moves_only_the_matching_tensors_at_every_point():
    net = mlp()
    centre = {k: v.detach().clone() for k, v in net.named_parameters()}
    d = lm.random_direction(net, seed=3, params="2.*", ignore=None)
    assert sorted(d) == ["2.bias", "2.weight"]
    seen = record_weights(net)
    grid = (-1.0, 1.0, 5)
    surf = lm.scan(net, nn.CrossEntropyLoss(), data=data(), directions=d, grid=grid,
                   progress=False, reuse_first_layer=False, strategy="loop")
    alphas = set()
    for w in seen:
        for k in ("0.weight", "0.bias", "4.weight", "4.bias"):  # bit-identical to the centre
            assert torch.equal(w[k].to(centre[k].dtype), centre[k]), k
        step = (w["2.weight"].double() - centre["2.weight"].double()) / d["2.weight"].double()
        alphas.add(round(float(step.mean()), 5))
        assert float((step - step.mean()).abs().max()) < 1e-5  # c + α·d, one α for the tensor
    assert {-1.0, -0.5, 0.0, 0.5, 1.0} <= alphas  # every grid point was evaluated that way
    # The values are those of a brute-force loop that moves the subset only.
    X, y = data()["train"]
    for a, got in zip(np.linspace(*grid[:2], grid[2]), surf["train_loss"], strict=True):
        m = copy.deepcopy(mlp())
        with torch.no_grad():
            for k in d:
                m.get_parameter(k).add_(float(a) * d[k])
            want = nn.functional.cross_entropy(m(X), y).item()
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7)
    assert surf.spec.directions[0]["params"] == {"pattern": "2.*", "tensors": 2, "values": 54}
    assert all(torch.equal(p, centre[k]) for k, p in net.named_parameters())


def test_pattern_forms_glob_list_and_callable_agree():
    net = mlp()
    a = lm.random_directions(net, 2, seed=1, params=["0.*", "4.weight"])
    b = lm.random_directions(net, 2, seed=1, params=lambda n: n.startswith("0.") or n == "4.weight")
    c = lm.random_directions(net, 2, seed=1, params=("0.*", "4.weight"))
    for x, y, z in zip(a, b, c, strict=True):
        assert list(x) == ["0.weight", "0.bias", "4.weight"]
        assert x.fingerprint() == y.fingerprint() == z.fingerprint()
    assert a[0].meta["params"] == {"pattern": ["0.*", "4.weight"], "tensors": 3, "values": 66}
    assert b[0].meta["params"]["pattern"].startswith("callable:")
    assert list(lm.random_direction(net, params="*.weight")) == ["0.weight", "2.weight",
                                                                  "4.weight"]
    # Without params the meta is as before 0.2 (stores made then still resume).
    assert "params" not in lm.random_direction(net).meta


def test_pattern_matching_nothing_lists_names_and_bad_types_are_refused():
    net = mlp()
    with pytest.raises(InputError, match=r"matches none.*0\.weight, 0\.bias.*fnmatch"):
        lm.random_direction(net, params="*lora_*")
    with pytest.raises(InputTypeError, match="glob pattern"):
        lm.random_direction(net, params=[])
    with pytest.raises(InputTypeError, match="glob pattern"):
        lm.random_direction(net, params=3)


def test_filter_norm_and_ignore_apply_within_the_subset():
    net = mlp()
    d1, d2 = lm.random_directions(net, 2, seed=5, params="2.*", orthogonal=True)
    w = net[2].weight.detach()
    assert torch.allclose(d1["2.weight"].norm(dim=1), w.norm(dim=1), rtol=1e-5)
    assert float(d1["2.bias"].abs().sum()) == 0.0  # ignore="biasbn" zeroes the bias
    assert abs(d1.cosine(d2)) < 1e-6
    # norm="model": the subset's norm matches the centre subset's norm
    dm = lm.random_direction(net, seed=5, params="2.*", norm="model", ignore=None)
    centre_norm = float(torch.cat([net[2].weight.flatten(), net[2].bias]).detach().norm())
    assert dm.norm() == pytest.approx(centre_norm, rel=1e-5)


def test_plan_accepts_a_declared_subset_and_refuses_an_undeclared_partial_direction():
    net = mlp()
    partial = {"2.weight": torch.ones(6, 8)}
    with pytest.raises(InputError, match=r"has no tensor for '0\.weight'"):
        lm.plan_scan(net, nn.CrossEntropyLoss(), data=data(), directions=partial, grid=(-1, 1, 3))
    declared = lm.Direction(partial, meta={"params": {"pattern": "2.weight", "tensors": 1}})
    plan = lm.plan_scan(net, nn.CrossEntropyLoss(), data=data(), directions=declared,
                        grid=(-1, 1, 3))
    assert plan.spec.directions[0]["params"]["pattern"] == "2.weight"
    wrong = lm.Direction({"2.weight": torch.ones(3, 3)}, meta={"params": {}})
    with pytest.raises(InputError, match="shape"):
        lm.plan_scan(net, nn.CrossEntropyLoss(), data=data(), directions=wrong, grid=(-1, 1, 3))


def test_interpolation_and_plane_over_a_subset():
    a, b, c = mlp(), mlp(), mlp()
    with torch.no_grad():
        for i, m in enumerate((b, c)):
            for p in m.parameters():
                p.add_(0.1 * (i + 1) * torch.randn_like(p))
    d = lm.interpolation(a, b, params="4.*")
    assert sorted(d) == ["4.bias", "4.weight"] and d.meta["params"]["tensors"] == 2
    assert torch.equal(a[4].weight + d["4.weight"], b[4].weight)
    d1, d2, _ = lm.plane(a, b, c, params=["2.*", "4.*"])
    assert sorted(d1) == sorted(d2) == ["2.bias", "2.weight", "4.bias", "4.weight"]
    assert abs(d1.cosine(d2)) < 1e-6 and d2.meta["params"]["pattern"] == ["2.*", "4.*"]


# -- a LoRA-only plane of a peft GPT-2 --------------------------------------------------------


class CausalLM(nn.Module):
    """input_ids → logits: a GPT-2 behind today's (X, y) calling convention."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=input_ids).logits


def shifted_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, the mean over the batch's tokens."""
    v = logits.shape[-1]
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1))


def lora_gpt2() -> nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                     bos_token_id=0, eos_token_id=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = get_peft_model(GPT2LMHeadModel(cfg), LoraConfig(r=4, target_modules=["c_attn"]))
    with torch.no_grad():  # as after fine-tuning: LoRA's B starts at zero, a flat plane
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn_like(p))
    return CausalLM(net).eval()


@pytest.mark.slow
@pytest.mark.hf
def test_lora_only_plane_equals_a_brute_force_loop_and_leaves_the_base_weights():
    model = lora_gpt2()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 64, (12, 16), generator=g)
    d1, d2 = lm.random_directions(model, 2, seed=0, params="*lora_*")
    lora = [k for k, _ in model.named_parameters() if "lora_" in k]
    assert sorted(d1) == sorted(lora) and len(lora) == 4
    centre = {k: v.detach().clone() for k, v in model.named_parameters()}
    seen = record_weights(model)
    grid = [(-1.0, 1.0, 3), (-1.0, 1.0, 3)]
    surf = lm.scan(model, shifted_ce, data={"train": (ids, ids)}, directions=[d1, d2], grid=grid,
                   metrics=["loss"], batch_size=5, progress=False)
    base = [k for k in centre if k not in lora]
    assert seen and all(torch.equal(w[k].to(centre[k].dtype), centre[k])
                        for w in seen for k in base)
    assert all(torch.equal(p, centre[k]) for k, p in model.named_parameters())
    for i, a in enumerate(np.linspace(-1, 1, 3)):  # brute force: a copy, c + a·d1 + b·d2
        for j, b in enumerate(np.linspace(-1, 1, 3)):
            m = copy.deepcopy(model)
            with torch.no_grad():
                for k in lora:
                    p = m.get_parameter(k)
                    p.copy_((p.double() + a * d1[k].double() + b * d2[k].double()).float())
                want = shifted_ce(m(ids), ids).item()
            assert surf["train_loss"][i, j] == pytest.approx(want, rel=1e-5)
    assert np.ptp(surf["train_loss"]) > 1e-3  # the adapters do move the loss


# -- recipes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm,orthogonal", [("filter", True), ("model", True),
                                              ("layer", False)])
def test_recipe_round_trip_is_bit_identical(tmp_path, norm, orthogonal):
    net = mlp()
    dirs = lm.random_directions(net, 2, seed=11, norm=norm, orthogonal=orthogonal,
                                params=["0.*", "4.*"])
    for i, d in enumerate(dirs):
        path = tmp_path / f"d{i}.safetensors"
        d.save(path, storage="recipe")
        with safe_open(str(path), framework="pt") as f:
            assert list(f.keys()) == []  # no tensors in the file
            recipe = json.loads(f.metadata()[R.KEY])
        assert recipe["checksum"] == d.fingerprint() and recipe["n"] == 2
        loaded = lm.Direction.load(path)
        assert len(loaded) == 0 and "not regenerated" in repr(loaded)
        back = regenerate(lm.Direction.load(path), net)
        assert list(back) == list(d) and back.meta == d.meta
        assert all(torch.equal(back[k], d[k]) for k in d)
        assert regenerate(loaded, net.state_dict()).fingerprint() == d.fingerprint()


def test_store_keeps_a_recipe_above_the_threshold(tmp_path, monkeypatch):
    net = mlp()
    d = lm.random_direction(net, seed=4)
    small = tmp_path / "small.lossmap"
    lm.scan(net, nn.CrossEntropyLoss(), data=data(), directions=d, grid=(-1, 1, 3),
            store=small, progress=False)
    assert len(lm.load_directions(small)[0]) == 6  # below RECIPE_ELEMENTS: the tensors
    monkeypatch.setattr(R, "RECIPE_ELEMENTS", 10)
    big = tmp_path / "big.lossmap"
    lm.scan(net, nn.CrossEntropyLoss(), data=data(), directions=d, grid=(-1, 1, 3),
            store=big, progress=False)
    (blob,) = sqlite3.connect(big).execute("SELECT data FROM directions").fetchone()
    assert len(blob) < 2000  # a recipe, not 128 float32 values and their header
    assert len(lm.load_directions(big)[0]) == 0
    back = lm.load_directions(big, centre=net)[0]
    assert all(torch.equal(back[k], d[k]) for k in d) and back.meta == d.meta
    # Forced either way, whatever the size.
    tensors = tmp_path / "tensors.lossmap"
    lm.scan(net, nn.CrossEntropyLoss(), data=data(), directions=d.stored_as("tensors"),
            grid=(-1, 1, 3), store=tensors, progress=False)
    assert len(lm.load_directions(tensors)[0]) == 6
    # A recipe direction without its tensors cannot be scanned: the message says how.
    with pytest.raises(InputError, match=r"load_directions\(store, centre=model\)"):
        lm.plan_scan(net, nn.CrossEntropyLoss(), data=data(),
                     directions=lm.load_directions(big), grid=(-1, 1, 3))
    with pytest.raises(InputError, match="no recipe"):
        lm.interpolation(net, mlp()).stored_as("recipe")


def _rewrite(path: Path, **changes) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    recipe = {**json.loads(meta[R.KEY]), **changes}
    save_file({}, str(path), metadata={**meta, R.KEY: json.dumps(recipe)})


def test_altered_recipe_damaged_recipe_and_another_centre_are_refused(tmp_path):
    net = mlp()
    d = lm.random_direction(net, seed=2)
    path = tmp_path / "d.safetensors"
    d.save(path, storage="recipe")
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[0].weight[0, 0] += 1e-3
    with pytest.raises(InputError, match=r"fingerprint.*pass the model"):
        regenerate(lm.Direction.load(path), other)
    with pytest.raises(InputError, match="lacks"):
        regenerate(lm.Direction.load(path), tiny.make_model())
    _rewrite(path, seed=3)
    with pytest.raises(StoreError, match=r"does not regenerate bit-identically.*altered"):
        regenerate(lm.Direction.load(path), net)
    # As if written by another torch whose generator drew other values: the message says so.
    _rewrite(path, seed=2, torch="1.0.0", checksum="0" * 16)
    with pytest.raises(StoreError, match=r"torch 1\.0\.0 .*load it with torch==1\.0\.0"):
        regenerate(lm.Direction.load(path), net)
    _rewrite(path, n="two")
    with pytest.raises(StoreError, match=r"'n' is 'two'.*damaged"):
        lm.Direction.load(path)


def test_store_recipe_tampered_with_a_matching_hash_is_refused(tmp_path):
    import hashlib

    from safetensors.torch import save

    net = mlp()
    d = lm.random_direction(net, seed=4, storage="recipe")
    path = tmp_path / "s.lossmap"
    lm.scan(net, nn.CrossEntropyLoss(), data=data(), directions=d, grid=(-1, 1, 3),
            store=path, progress=False)
    conn = sqlite3.connect(path)
    (blob,) = conn.execute("SELECT data FROM directions").fetchone()
    n = int.from_bytes(blob[:8], "little")
    meta = json.loads(blob[8:8 + n])["__metadata__"]
    meta[R.KEY] = json.dumps({**json.loads(meta[R.KEY]), "seed": 5})
    new = save({}, metadata=meta)
    conn.execute("UPDATE directions SET data = ?, sha = ?",
                 (new, hashlib.sha256(new).hexdigest()))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"direction 0 of .*s\.lossmap.*bit-identically"):
        lm.load_directions(path, centre=net)


# -- command line ----------------------------------------------------------------------------


def test_cli_params_scans_a_subset_and_info_shows_it(tmp_path, capsys):
    out = tmp_path / "sub.lossmap"
    code, text, err = run_cli(capsys, "scan", "--model", f"{TINY}:make_model", "--data",
                              f"{TINY}:make_data", "--out", out, "--no-progress", "--dirs", "1",
                              "--grid", "-1:1:3", "--params", "3.*")
    assert code == 0, err
    assert "Surface(line over params '3.*'" in text
    (d,) = lm.load_directions(out)
    assert sorted(d) == ["3.bias", "3.weight"]
    assert lm.load(out).spec.directions[0]["params"] == {"pattern": "3.*", "tensors": 2,
                                                         "values": 15}
    code, text, _ = run_cli(capsys, "info", out)
    assert code == 0 and "params={'pattern': '3.*', 'tensors': 2" in text
    code, text, _ = run_cli(capsys, "info", out, "--spec")
    assert code == 0 and "params: 3.*" in text
    two = tmp_path / "two.lossmap"
    code, _, err = run_cli(capsys, "scan", "--model", f"{TINY}:make_model", "--data",
                           f"{TINY}:make_data", "--out", two, "--no-progress", "--dirs", "1",
                           "--grid", "-1:1:3", "--params", "1.weight", "--params", "3.weight")
    assert code == 0, err
    assert sorted(lm.load_directions(two)[0]) == ["1.weight", "3.weight"]


def test_cli_params_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "x.lossmap"
    code, _, err = run_cli(capsys, "scan", "--model", f"{TINY}:make_model", "--data",
                           f"{TINY}:make_data", "--out", out, "--no-progress", "--dirs", "1",
                           "--grid", "-1:1:3", "--params", "*lora_*")
    assert code == 2 and "matches none" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    code, _, err = run_cli(capsys, "scan", "--model", f"{TINY}:make_model", "--data",
                           f"{TINY}:make_data", "--out", out, "--no-progress",
                           "--hessian-dirs", "2", "--params", "3.*")
    assert code == 2 and "--params cannot be combined with --hessian-dirs" in err


def _rows_01(t: torch.Tensor, norm: str, axis: int) -> torch.Tensor:
    """0.1's unit view: a filter-normalized tensor of 2+ dims by ``axis``, else one row."""
    if norm == "filter" and t.dim() >= 2:
        return t.movedim(axis, 0).reshape(t.shape[axis], -1)
    return t.reshape(1, -1)


def _unrows_01(rows: torch.Tensor, shape: torch.Size, norm: str, axis: int) -> torch.Tensor:
    if norm == "filter" and len(shape) >= 2:
        moved = (shape[axis], *[s for i, s in enumerate(shape) if i != axis % len(shape)])
        return rows.reshape(moved).movedim(0, axis)
    return rows.reshape(shape)


def test_default_draw_is_bit_identical_to_the_stacked_formula():
    """The in-place draw (one float64 tensor at a time) gives the directions of 0.1's formula.

    Directions drawn before must come out the same bit for bit: stores made then resume
    only if their fingerprints match, and recipes regenerate only if the draw is unchanged.
    The formula is written out here (0.1's unit view), not read from the module.
    """
    from lossmap.directions import random as RD

    g = torch.Generator().manual_seed(0)
    state = {"conv.weight": torch.randn(8, 3, 3, 3, generator=g), "conv.bias": torch.randn(8),
             "fc.weight": torch.randn(10, 72, generator=g), "fc.bias": torch.zeros(10)}
    state["fc.weight"][3] = 0.0  # a unit of zero norm
    for norm, axis in (("filter", 0), ("filter", -1), ("layer", 0)):
        dirs = lm.random_directions(state, 2, norm=norm, ignore=None, seed=7, filter_axis=axis)
        gens = [torch.Generator().manual_seed(RD._seed(7, i)) for i in range(2)]
        for k, c in state.items():
            C = _rows_01(c.double(), norm, axis)
            D = torch.stack([_rows_01(torch.randn(c.shape, generator=gen,
                                                  dtype=torch.float64), norm, axis)
                             for gen in gens])
            have = D.norm(dim=-1, keepdim=True)
            D = torch.where(have > 0, D * (C.norm(dim=-1, keepdim=True) / have.clamp_min(1e-300)),
                            0.0)
            for i, d in enumerate(dirs):
                want = _unrows_01(D[i], c.shape, norm, axis).to(c.dtype)
                assert torch.equal(d[k], want), (norm, axis, k, i)
