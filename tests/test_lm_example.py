"""examples/language_model.py: its batches, its models, and what its fine-tunes did.

The losses here are computed by a direct loop over ``lm.metrics.causal_lm_loss``
(Σ totals / Σ counts), from the files the run saved, not from the run's own summary.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from lossmap.metrics import causal_lm_loss

# the example imports transformers and peft: hf tests (left out by `make test-fast`)
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.hf]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "language_model.py"


def _example():
    spec = importlib.util.spec_from_file_location("language_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Lazy:
    """The example module, loaded at the first test that uses it (not at collection)."""

    module = None

    def __getattr__(self, name):
        if name.startswith("_"):  # pytest's probes at collection (__test__, _pytestfixture…)
            raise AttributeError(name)
        if _Lazy.module is None:
            _Lazy.module = _example()
        return getattr(_Lazy.module, name)


LM = _Lazy()


@torch.no_grad()
def _loss(model, batches) -> float:
    total = count = 0.0
    for batch in batches:
        totals, counts = causal_lm_loss(model(**batch), batch)
        total += totals.sum().item()
        count += counts.sum().item()
    return total / count


def test_texts_ship_with_installed_packages_and_tokenize_to_bytes():
    texts = {name: LM.text(name) for name in LM.TEXTS}
    assert "Apache License" in texts["apache"] and len(texts["apache"]) > 10_000
    assert texts["zen"].startswith("The Zen of Python") and "Permission is hereby granted" in (
        texts["mit"])
    assert LM.decode(LM.encode(texts["zen"])) == texts["zen"]
    with pytest.raises(ValueError, match="use one of 'apache', 'zen', 'mit'"):
        LM.text("gpl")


def test_eval_batches_cover_the_text_once_with_dynamic_padding():
    s = LM.text("mit")
    batches = LM.eval_batches(s, batch_size=4, seed=3)
    widths = {b["input_ids"].shape[1] for b in batches}
    assert len(widths) > 1 and max(widths) <= LM.MAX_LEN  # batches differ in length
    pieces = []
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask", "labels"}
        pad = b["attention_mask"] == 0
        assert torch.equal(b["labels"] == -100, pad)  # -100 exactly on the padding
        assert torch.equal(b["labels"][~pad], b["input_ids"][~pad])
        pieces += [row[m == 1] for row, m in zip(b["input_ids"], b["attention_mask"],
                                                 strict=True)]
    assert LM.decode(torch.cat(pieces)) == s  # every byte once, in order
    assert any(bool((b["attention_mask"] == 0).any()) for b in batches)
    again = LM.eval_batches(s, batch_size=4, seed=3)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, again,
                                                                            strict=True))


@pytest.mark.slow  # two short runs and their evaluations (several seconds)
def test_a_run_is_reproducible_file_for_file(tmp_path):
    kw = dict(pretrain_steps=3, finetune_steps=2, lora_steps=2, seed=4)
    LM.run(tmp_path / "a", **kw)
    LM.run(tmp_path / "b", **kw)
    for name in ("base", "zen", "mit", "lora_zen"):
        a = (tmp_path / "a" / f"{name}.safetensors").read_bytes()
        assert a == (tmp_path / "b" / f"{name}.safetensors").read_bytes(), name
    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert a["losses"] == b["losses"]
    w4, w5 = (LM.build_model(seed).transformer.wte.weight for seed in (4, 5))
    assert not torch.equal(w4, w5)  # the seed is what decides


@pytest.mark.slow  # trains about 120 steps (a few seconds)
def test_reduced_run_fine_tunes_lower_their_own_texts_loss(tmp_path):
    summary = LM.run(tmp_path, pretrain_steps=80, finetune_steps=20, lora_steps=20, seed=0)
    assert set(summary["files"]) == {"config.json", "base.safetensors", "zen.safetensors",
                                     "mit.safetensors", "lora_zen.safetensors"}
    models = LM.load_models(tmp_path)
    from peft import PeftModel

    assert isinstance(models["lora_zen"], PeftModel)
    evals = {t: LM.eval_batches(LM.text(t)) for t in LM.TEXTS}
    loss = {m: {t: _loss(model, evals[t]) for t in LM.TEXTS} for m, model in models.items()}
    # pretraining learnt its text: well below uniform guessing (ln 256 = 5.55), and below
    # the texts it never saw
    assert loss["base"]["apache"] < min(0.6 * 5.545, loss["base"]["zen"], loss["base"]["mit"])
    for own, other in (("zen", "mit"), ("mit", "zen")):
        assert loss[own][own] < loss["base"][own] - 0.05, loss  # lowered its own text's loss
        assert loss[own][own] < loss[other][own], loss  # better there than the other fine-tune
    assert loss["lora_zen"]["zen"] < loss["base"]["zen"] - 0.05, loss
    # the saved files hold what the run measured (reloaded models, independent loop)
    for m in models:
        for t in LM.TEXTS:
            assert loss[m][t] == pytest.approx(summary["losses"][m][t], rel=1e-6)
    # LoRA moved only its adapter: the base weights inside the peft model are the start's
    base = models["base"].state_dict()
    for name, value in models["lora_zen"].state_dict().items():
        if "lora_" not in name:
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            assert torch.equal(value, base[key]), name
    assert summary["parameters"]["lora"] == 2 * 4 * (64 + 192)  # 2 blocks: A (4, 64), B (192, 4)
