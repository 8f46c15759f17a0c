"""What exact embedding reuse could buy on a GPT-2-style model (issue 13), measured.

An embedding lookup is linear in the embedding matrix: (E + a·dE)[ids] = E[ids] + a·dE[ids],
so along a line the lookups could be done once per batch and combined per point, as lossmap's
first-layer reuse does for a vision model's first Linear/Conv. The saving is bounded by the
share of a forward pass the lookups take. This script measures that share side by side on
one machine: the forward pass of the whole model vs its token + position lookups alone.

    python benchmarks/embedding_reuse.py [--layers 4] [--width 256] [--vocab 8192] [--seq 128]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def main() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=a.layers, n_embd=a.width, n_head=max(1, a.width // 64),
                                  vocab_size=a.vocab, n_positions=a.seq, bos_token_id=0,
                                  eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    pos = torch.arange(a.seq)

    def forward():
        model(input_ids=ids)

    def lookups():
        model.transformer.wte(ids) + model.transformer.wpe(pos)

    def timed(fn):
        out = []
        with torch.no_grad():
            fn()
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        return statistics.median(out)

    full, emb = timed(forward), timed(lookups)
    result = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} threads, torch {torch.__version__}",
              "params": sum(p.numel() for p in model.parameters()),
              "forward_s": full, "lookups_s": emb, "share": emb / full,
              "config": vars(a)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
