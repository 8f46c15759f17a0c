"""GPT-2 from a config and the three ways to scan it: lossmap, an in-place loop, reload-per-point.

Every method has the signature ``(model, ids, directions, axes, batch)`` and
returns a :class:`methods.Run` whose ``values`` are the token-mean next-token
loss at each grid point, ``(points, 1)``, in ``methods.grid_points(axes)``
order. ``ids`` is a ``(sequences, tokens)`` tensor of token ids already on the
model's device; the labels are the inputs (a causal LM's usual collator).

The two loops compute the loss on their own (a float32 cross-entropy summed
per batch, accumulated in float64, divided by the number of scored tokens),
not through :mod:`lossmap.metrics`, so that they check lossmap's token-exact
path rather than share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lossmap as lm

from hardware import sync
from methods import Axes, Run, _at, grid_points


@dataclass(frozen=True)
class GPT2Size:
    """A GPT-2 configuration and the data it is scanned on."""

    layers: int
    width: int
    heads: int
    vocab: int
    sequences: int
    tokens: int

    def describe(self) -> str:
        return (
            f"GPT-2 {self.layers} layers × {self.width} wide, vocabulary {self.vocab}; "
            f"{self.sequences} sequences of {self.tokens} tokens"
        )


SMALL = GPT2Size(12, 768, 12, 50257, 16, 256)  # GPT-2 small, 256 positions: 123,849,984
BILLION = GPT2Size(18, 2048, 16, 50257, 1, 256)  # 1,009,903,616 parameters (4.04 GB float32)
TINY = GPT2Size(2, 64, 2, 1000, 4, 32)  # --quick / --tiny: the same code paths in seconds


def gpt2(
    size: GPT2Size, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """An untrained ``GPT2LMHeadModel`` (seed 0), evaluation mode, no key/value cache."""
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(
        n_layer=size.layers,
        n_embd=size.width,
        n_head=size.heads,
        vocab_size=size.vocab,
        n_positions=max(size.tokens, 8),
        use_cache=False,
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialised where it runs: a 1B model in seconds on a GPU
        return transformers.GPT2LMHeadModel(cfg).to(dtype=dtype).eval()


def token_ids(size: GPT2Size, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(sequences, tokens)`` random token ids (seed 1)."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, size.vocab, (size.sequences, size.tokens), generator=g).to(device)


def param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@torch.no_grad()
def token_loss(model: nn.Module, batches: list[torch.Tensor]) -> float:
    """Next-token cross-entropy summed over every batch, ÷ the number of scored tokens."""
    total = torch.zeros((), dtype=torch.float64, device=batches[0].device)
    count = 0
    for x in batches:
        logits = model(input_ids=x).logits[:, :-1].float()
        total += F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum"
        ).double()
        count += x[:, 1:].numel()
    return float(total) / count


def lossmap_scan(model, ids, directions, axes: Axes, batch: int | None = None, **options) -> Run:
    """``lm.scan``, ``lm.metrics.causal_lm_loss`` on ``{"train": (ids, ids)}``, as a user runs it.

    ``batch`` None lets lossmap choose; ``options`` go to ``lm.scan``.
    """
    device = ids.device
    sync(device)
    t0 = time.perf_counter()
    surf = lm.scan(
        model,
        lm.metrics.causal_lm_loss,
        data={"train": (ids, ids)},
        directions=list(directions),
        grid=[tuple(a) for a in axes],
        metrics=("loss",),
        batch_size=batch,
        progress=False,
        **options,
    )
    sync(device)
    seconds = time.perf_counter() - t0
    prof = surf.profile
    info = {k: v for k, v in prof.items() if isinstance(v, (int, float, str, bool))}
    info["timings"] = {k: round(v, 4) for k, v in prof.get("timings", {}).items()}
    info["set_up_s"] = round(seconds - prof.get("seconds", 0.0), 4)  # wall outside the grid
    return Run(seconds, surf["train_loss"].reshape(-1, 1).astype(np.float64), info)


def _aliases(model: nn.Module) -> dict[str, str]:
    """Every parameter name (tied ones too, e.g. ``lm_head.weight``) → its canonical name."""
    first = {id(p): k for k, p in model.named_parameters()}
    return {k: first[id(p)] for k, p in model.named_parameters(remove_duplicate=False)}


@torch.no_grad()
def inplace_loop(model, ids, directions, axes: Axes, batch: int) -> Run:
    """Per point: ``p.copy_(c + a·d1 + b·d2)`` for every parameter, one no-grad pass; restored."""
    params = dict(model.named_parameters())
    centre = {k: p.detach().clone() for k, p in params.items()}
    dirs = {k: [d[k].to(p.device, p.dtype) for d in directions] for k, p in params.items()}
    batches = list(ids.split(batch))
    points = grid_points(axes)
    values = np.empty((len(points), 1))
    sync(ids.device)
    t0 = time.perf_counter()
    try:
        for i, coef in enumerate(points.tolist()):
            for k, p in params.items():
                p.copy_(_at(centre[k], dirs[k], coef))
            values[i, 0] = token_loss(model, batches)
    finally:
        for k, p in params.items():
            p.copy_(centre[k])
    return Run(time.perf_counter() - t0, values)


@torch.no_grad()
def reload_loop(model, ids, directions, axes: Axes, batch: int) -> Run:
    """The published LLM-landscape way: perturb a CPU copy of the state dict, ``load_state_dict``.

    Per point a new CPU state dict ``c + a·d1 + b·d2`` (buffers as they are, tied
    names given the same tensor) is loaded into the model, then evaluated; the
    centre is loaded back at the end.
    """
    centre = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    aliases = _aliases(model)
    dirs = {k: [d[k].to("cpu", centre[k].dtype) for d in directions] for k in set(aliases.values())}
    batches = list(ids.split(batch))
    points = grid_points(axes)
    values = np.empty((len(points), 1))
    sync(ids.device)
    t0 = time.perf_counter()
    try:
        for i, coef in enumerate(points.tolist()):
            moved = {k: _at(centre[k], dirs[k], coef) for k in dirs}
            state = {k: moved[aliases[k]] if k in aliases else v for k, v in centre.items()}
            model.load_state_dict(state)
            values[i, 0] = token_loss(model, batches)
    finally:
        model.load_state_dict(centre)
    return Run(time.perf_counter() - t0, values)


METHODS = {"lossmap": lossmap_scan, "inplace_loop": inplace_loop, "reload": reload_loop}
