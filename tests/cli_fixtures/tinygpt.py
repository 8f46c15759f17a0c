"""A tiny GPT-2 from a transformers config and dict batches of two lengths, for CLI tests."""

import torch
import transformers

transformers.logging.set_verbosity_error()


def model():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def batch(rows, length, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 32, (rows, length), generator=g)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[0, -2:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def data():
    return {"train": [batch(2, 6, 1), batch(3, 9, 2)], "test": [batch(2, 7, 3)]}
