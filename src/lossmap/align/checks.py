"""Checks shared by the rules of :mod:`.layers` and :mod:`.ops`, and the refusal they raise."""

from __future__ import annotations

import dataclasses
from typing import NoReturn

import torch.fx as fx

from ..errors import InputError
from .graph import Space, layer_of

KNOWN = ("align knows Linear, Conv1d/2d/3d (and transposed), BatchNorm, InstanceNorm, "
         "LayerNorm, GroupNorm, Embedding, residual additions, concatenation, flatten, "
         "channel zero-padding and parameter-free elementwise and pooling ops")


def refuse(node: fx.Node, what: str, problem: str, fix: str = "") -> NoReturn:
    """Raise the error that names the layer and node align cannot handle."""
    fix = fix or (f"{KNOWN}; rewrite that part with these, or align the model by hand")
    layer = layer_of(node)
    where = f"layer {layer!r} (node {node.name!r}, {what})" if layer else (
        f"node {node.name!r} ({what}) in the model's own forward")
    raise InputError(f"align cannot handle {where}: {problem}; {fix}")


def need_first(node: fx.Node, what: str, x: Space, *, flat_ok: bool = False) -> Space:
    """``x`` with its channels on axis 1 of a (N, C, ...) tensor, or a refusal.

    ``flat_ok``: the layer also takes (N, C) (BatchNorm1d, GroupNorm, PReLU);
    then a features-last tensor of unknown rank (a Linear's output) is taken
    as (N, C), and the layer's channel count is checked next. Pooling on a
    (N, C) tensor would read it as one unbatched sample: refused.
    """
    if x.block != 1:
        refuse(node, what, "its input is a flattened feature map (each channel spans several "
                           "features), which this layer would treat as separate channels")
    if x.ndim == 2 and flat_ok and x.first() == 1:
        return dataclasses.replace(x, axis=1)
    if x.first() == 1 and x.ndim != 2:
        return x
    if flat_ok and x.ndim is None and x.axis == -1:
        return dataclasses.replace(x, axis=1, ndim=2)
    refuse(node, what, "it works on axis 1 of a (N, C, ...) input, but the channels there "
                       f"are on axis {x.axis} of a tensor of rank {x.ndim or 'unknown'}")


def need_count(node: fx.Node, what: str, x: Space, expected: int, *, block: int = 1) -> None:
    """Refuse if the layer's channel count is not the traced one (a misread layout)."""
    if x.n * block != expected:
        refuse(node, what, f"the layer expects {expected} input channels but align traced "
                           f"{x.n} channels x {block} entries into it; an op before it "
                           "changes the channel layout in a way align does not know")
