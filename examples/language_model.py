"""A small GPT-2 trained here, fine-tuned twice and with LoRA: the models a landscape study needs.

    python examples/language_model.py [--out runs/lm] [--quick] [--landscape]

Everything is made on this machine, nothing is downloaded: the texts ship with packages
the project installs, the model is a ``transformers`` GPT-2 built from a config, the
tokenizer is the bytes of the text (256 tokens). The script

1. pretrains the model on the Apache License 2.0 (as shipped with ``transformers``);
2. fine-tunes it twice from that same start: on the Zen of Python (the standard
   library's ``this``) and on the MIT License (as shipped with PyYAML);
3. fine-tunes a ``peft`` LoRA adapter (rank 4 on the attention projections) on the Zen;
4. saves the four models (``base``, ``zen``, ``mit``, ``lora_zen``; safetensors, no
   pickles), the model config and ``summary.json`` (losses before and after, seconds);
5. with ``--landscape`` (:func:`landscape`), scans them with lossmap: a line and a plane
   around each fine-tune, the interpolation between them, a plane over the LoRA
   adapter alone, and a report.

The batches are dicts, as a Hugging Face pipeline makes them: ``input_ids``,
``attention_mask`` and ``labels`` with -100 on padding, each batch padded to its own
longest sequence (dynamic padding), so batches differ in length. Every random draw
comes from the seed: a second run on the same thread count gives identical files.

The functions are importable (``tests/test_lm_example.py``, the notebook): see
:func:`run`, :func:`eval_batches`, :func:`build_model`, :func:`load_models`.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import importlib
import importlib.metadata
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from lossmap.metrics import causal_lm_loss
from lossmap.seeding import seeded_rng

VOCAB = 256  # byte-level: every text is its UTF-8 bytes
PAD_ID = 0  # the NUL byte never occurs in the texts; its positions are masked anyway
MAX_LEN = 64  # the longest sequence (the model's n_positions)
TEXTS = ("apache", "zen", "mit")
#: The LoRA adapter: rank 4 on GPT-2's fused q/k/v projection (a Conv1D: fan_in_fan_out).
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["c_attn"],
            fan_in_fan_out=True)


# --------------------------------------------------------------------------- texts, tokens


def _license(dist: str, prefix: str = "LICENSE") -> str:
    files = importlib.metadata.files(dist) or []
    found = sorted((f for f in files if f.name.upper().startswith(prefix)), key=str)
    if not found:
        raise FileNotFoundError(f"{dist} ships no {prefix} file in this environment")
    return found[0].read_text(encoding="utf-8")


def text(name: str) -> str:
    """One of the example's texts: ``"apache"``, ``"zen"`` or ``"mit"``.

    ``apache`` is the Apache License 2.0 of ``transformers`` (about 11 kB), ``zen``
    the Zen of Python (``codecs.decode(this.s, "rot13")``, 0.9 kB), ``mit`` the MIT
    License of PyYAML (1.1 kB).
    """
    if name == "apache":
        return _license("transformers")
    if name == "mit":
        return _license("pyyaml")
    if name == "zen":
        with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
            this = importlib.import_module("this")
        return codecs.decode(this.s, "rot13")
    raise ValueError(f"text {name!r}: use one of {', '.join(map(repr, TEXTS))}")


def encode(s: str) -> torch.Tensor:
    """The UTF-8 bytes of ``s`` as token ids (int64, shape (n,))."""
    return torch.tensor(list(s.encode("utf-8")), dtype=torch.long)


def decode(ids: torch.Tensor) -> str:
    """Token ids back to text (undecodable byte runs replaced)."""
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- batches


def collate(pieces: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Right-pad token rows to the longest: ``input_ids``, ``attention_mask``, ``labels``.

    Labels are the inputs with -100 on padding (the model shifts them itself), so a
    padded position is neither attended to nor scored.
    """
    width = max(len(p) for p in pieces)
    ids = torch.full((len(pieces), width), PAD_ID, dtype=torch.long)  # (B, T)
    mask = torch.zeros(len(pieces), width, dtype=torch.long)  # (B, T)
    for i, p in enumerate(pieces):
        ids[i, : len(p)] = p
        mask[i, : len(p)] = 1
    return {"input_ids": ids, "attention_mask": mask,
            "labels": ids.masked_fill(mask == 0, -100)}


def eval_batches(s: str, *, batch_size: int = 8, min_len: int = 24, max_len: int = MAX_LEN,
                 seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """The whole text once, in consecutive pieces of seeded random lengths, batched.

    Every byte is in exactly one piece; each batch is padded to its own longest piece,
    so the batches have different sequence lengths and different token counts.
    """
    ids = encode(s)
    g = torch.Generator().manual_seed(seed)
    pieces, start = [], 0
    while start < len(ids) - 1:  # a piece needs 2 tokens to score one
        n = int(torch.randint(min_len, max_len + 1, (), generator=g))
        pieces.append(ids[start:start + n])
        start += n
    return [collate(pieces[i:i + batch_size]) for i in range(0, len(pieces), batch_size)]


def train_batches(s: str, *, steps: int, batch_size: int = 16, min_len: int = 16,
                  max_len: int = MAX_LEN, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """``steps`` batches of random windows of the text, of random lengths, padded per batch."""
    ids = encode(s)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        lengths = torch.randint(min_len, min(max_len, len(ids)) + 1, (batch_size,), generator=g)
        starts = [int(torch.randint(0, len(ids) - int(n) + 1, (), generator=g)) for n in lengths]
        yield collate([ids[a:a + int(n)] for a, n in zip(starts, lengths, strict=True)])


# --------------------------------------------------------------------------- models


def model_config() -> GPT2Config:
    """A GPT-2 of 2 blocks, width 64, 4 heads, 64 positions, 256 byte tokens (~120k weights)."""
    return GPT2Config(vocab_size=VOCAB, n_positions=MAX_LEN, n_embd=64, n_layer=2, n_head=4,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=PAD_ID, eos_token_id=PAD_ID, pad_token_id=PAD_ID)


def build_model(seed: int = 0) -> GPT2LMHeadModel:
    """The untrained model, its initial weights a function of ``seed`` alone."""
    with seeded_rng(seed):
        return GPT2LMHeadModel(model_config())


def with_lora(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` wrapped in a fresh LoRA adapter (``LORA``); only the adapter trains."""
    from peft import LoraConfig, get_peft_model

    with seeded_rng(seed):  # lora_A's initialisation draws from the global generator
        return get_peft_model(model, LoraConfig(**LORA))


def train(model: torch.nn.Module, s: str, *, steps: int, lr: float, batch_size: int = 16,
          seed: int = 0) -> list[float]:
    """AdamW on the model's own next-token loss over ``train_batches``; the losses per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for batch in train_batches(s, steps=steps, batch_size=batch_size, seed=seed):
        loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def token_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """The exact mean next-token loss over all real tokens of ``batches`` (nats).

    A direct loop over :func:`lossmap.metrics.causal_lm_loss`: Σ totals / Σ counts.
    """
    was = model.training
    model.eval()
    total = count = 0.0
    for batch in batches:
        totals, counts = causal_lm_loss(model(**batch), batch)
        total += float(totals.sum())
        count += float(counts.sum())
    model.train(was)
    return total / count


# --------------------------------------------------------------------------- files


def _save(model: torch.nn.Module, path: Path) -> None:
    # clone: GPT-2 ties lm_head to wte, and safetensors refuses shared storage
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
              str(path))


def load_models(out: str | Path) -> dict[str, torch.nn.Module]:
    """The saved models by name: ``base``, ``zen``, ``mit`` (GPT-2) and ``lora_zen`` (peft)."""
    out = Path(out)
    models = {}
    for name in ("base", "zen", "mit"):
        model = GPT2LMHeadModel(GPT2Config.from_json_file(out / "config.json"))
        model.load_state_dict(load_file(str(out / f"{name}.safetensors")))
        models[name] = model.eval()
    lora = with_lora(GPT2LMHeadModel(GPT2Config.from_json_file(out / "config.json")))
    lora.load_state_dict(load_file(str(out / "lora_zen.safetensors")))
    models["lora_zen"] = lora.eval()
    return models


# --------------------------------------------------------------------------- the whole run


def run(out: str | Path, *, pretrain_steps: int = 400, finetune_steps: int = 100,
        lora_steps: int = 100, seed: int = 0, threads: int | None = 1) -> dict:
    """Pretrain, fine-tune twice, fine-tune LoRA; save the models; return the summary.

    Parameters
    ----------
    out : str or Path
        Folder for ``config.json``, ``{base,zen,mit,lora_zen}.safetensors`` and
        ``summary.json`` (created if missing).
    pretrain_steps, finetune_steps, lora_steps : int
        Optimiser steps of each stage (batches of 16 windows of 16–64 bytes).
    seed : int
        The one seed of the run (initialisation, LoRA's initialisation, batches).
    threads : int or None, default 1
        torch's thread count during the run (restored after). A model this small
        trains fastest on one thread, and results are bit-identical only for a
        fixed count. None: leave it as it is.

    Returns
    -------
    dict
        ``losses``: the token loss of each model on each text (``{model: {text: nats}}``),
        ``seconds`` per stage, ``parameters`` (model, LoRA adapter), ``files``.
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(Path(out), pretrain_steps, finetune_steps, lora_steps, seed)
    finally:
        torch.set_num_threads(before)


def _run(out: Path, pretrain_steps: int, finetune_steps: int, lora_steps: int,
         seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    texts = {name: text(name) for name in TEXTS}
    evals = {name: eval_batches(s, seed=seed) for name, s in texts.items()}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    base = build_model(seed)
    train(base, texts["apache"], steps=pretrain_steps, lr=3e-3, seed=seed)
    seconds["pretrain"] = time.perf_counter() - t0
    model_config().to_json_file(out / "config.json")
    _save(base, out / "base.safetensors")
    start = {k: v.clone() for k, v in base.state_dict().items()}

    models = {"base": base}
    for name in ("zen", "mit"):  # two fine-tunes from the same start
        t0 = time.perf_counter()
        model = build_model(seed)
        model.load_state_dict(start)
        train(model, texts[name], steps=finetune_steps, lr=3e-4, seed=seed + 1)
        seconds[f"finetune_{name}"] = time.perf_counter() - t0
        _save(model, out / f"{name}.safetensors")
        models[name] = model

    t0 = time.perf_counter()
    frozen = build_model(seed)
    frozen.load_state_dict(start)
    lora = with_lora(frozen, seed)
    train(lora, texts["zen"], steps=lora_steps, lr=1e-2, seed=seed + 2)
    seconds["lora_zen"] = time.perf_counter() - t0
    _save(lora, out / "lora_zen.safetensors")
    models["lora_zen"] = lora

    losses = {m: {t: token_loss(model, evals[t]) for t in TEXTS} for m, model in models.items()}
    adapter = sum(p.numel() for n, p in lora.named_parameters() if "lora_" in n)
    summary = {
        "losses": losses,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "parameters": {"model": sum(p.numel() for p in base.parameters()), "lora": adapter},
        "steps": {"pretrain": pretrain_steps, "finetune": finetune_steps, "lora": lora_steps},
        "seed": seed,
        "files": sorted(p.name for p in out.iterdir() if p.suffix in (".json", ".safetensors")),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def landscape(folder: str | Path, out: str | Path | None = None, *, points: int = 11,
              plane_points: int = 7, span: float = 1.0, seed: int = 0) -> dict:
    """The loss landscape of the saved models (:func:`run`), scanned with lossmap, and a report.

    Every scan evaluates the exact next-token loss over all real tokens of the Zen and
    the MIT texts (``lm.metrics.causal_lm_loss`` on dict batches of different lengths):
    variables ``zen_loss`` and ``mit_loss``, each with its standard error.

    * a line and a plane around each fine-tune (``zen``, ``mit``): random directions
      with filter-wise norm, α, β ∈ [−span, span];
    * the interpolation from ``zen`` (α = 0) to ``mit`` (α = 1), with its barrier;
    * a plane over the LoRA adapter of ``lora_zen`` only (``params="*lora_*"``: every
      other weight stays the base model's);
    * ``report.html`` with all of them.

    Returns a dict: the Surfaces by name, the barrier, the report's path.
    """
    import lossmap as lm
    from lossmap.report import write_report

    folder = Path(folder)
    out = Path(out) if out is not None else folder / "landscape"
    out.mkdir(parents=True, exist_ok=True)
    models = load_models(folder)
    data = {name: eval_batches(text(name), seed=seed) for name in ("zen", "mit")}
    loss = lm.metrics.causal_lm_loss
    common = dict(data=data, progress=False)
    surfaces = {}
    for name in ("zen", "mit"):
        m = models[name]
        d1, d2 = lm.random_directions(m, 2, seed=seed)
        surfaces[f"line_{name}"] = lm.scan(m, loss, directions=d1, grid=(-span, span, points),
                                           store=out / f"line_{name}.lossmap", **common)
        surfaces[f"plane_{name}"] = lm.scan(m, loss, directions=[d1, d2],
                                            grid=[(-span, span, plane_points)] * 2,
                                            store=out / f"plane_{name}.lossmap", **common)
    between = lm.interpolation(models["zen"], models["mit"])  # the grid holds α = 0 and 1
    surfaces["zen_to_mit"] = lm.scan(models["zen"], loss, directions=between,
                                     grid=(-0.25, 1.25, 6 * max(2, round(points / 6)) + 1),
                                     store=out / "zen_to_mit.lossmap", **common)
    lora = models["lora_zen"]
    adapters = lm.random_directions(lora, 2, seed=seed, params="*lora_*")
    surfaces["plane_lora"] = lm.scan(lora, loss, directions=adapters,
                                     grid=[(-span, span, plane_points)] * 2,
                                     store=out / "plane_lora.lossmap", **common)
    barrier = {v: lm.barrier(surfaces["zen_to_mit"], v) for v in ("zen_loss", "mit_loss")}
    report = write_report(list(surfaces.items()), out / "report.html",
                          title="lossmap: a small GPT-2, two fine-tunes and a LoRA adapter",
                          notes=["losses: the exact next-token loss over all real tokens of "
                                 "each text (nats)"])
    return {"surfaces": surfaces, "barrier": barrier, "report": report}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/lm", help="folder for the models (default runs/lm)")
    p.add_argument("--quick", action="store_true", help="a fifth of the steps (for a test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--landscape", action="store_true",
                   help="then scan the models with lossmap and write landscape/report.html")
    args = p.parse_args()
    k = 5 if args.quick else 1
    t0 = time.perf_counter()
    summary = run(args.out, pretrain_steps=400 // k, finetune_steps=100 // k,
                  lora_steps=100 // k, seed=args.seed)
    print(f"{summary['parameters']['model']} weights, LoRA adapter "
          f"{summary['parameters']['lora']}; token loss (nats) on each text:")
    print(f"{'model':<10}" + "".join(f"{t:>9}" for t in TEXTS))
    for m, row in summary["losses"].items():
        print(f"{m:<10}" + "".join(f"{row[t]:>9.3f}" for t in TEXTS))
    print(f"seconds: {summary['seconds']}; total {time.perf_counter() - t0:.1f}")
    print(f"wrote {args.out}")
    if args.landscape:
        t0 = time.perf_counter()
        result = landscape(args.out, seed=args.seed)
        for v, b in result["barrier"].items():
            print(f"zen → mit, {v}: {b.sentence()}")
        print(f"landscape in {time.perf_counter() - t0:.1f} s: {result['report']}")


if __name__ == "__main__":
    main()
