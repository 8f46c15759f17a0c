"""Permuting tensors and models by the permutations of a :class:`~.graph.Structure`.

A permutation ``perm`` of a group of ``m`` units says: unit ``i`` of the
aligned model is unit ``perm[i]`` of the model being aligned. Along an axis
where the group's units sit at channels ``index``, channel ``index[i]`` of the
result is channel ``index[perm[i]]`` of the input (each channel a block of
``block`` consecutive entries after a flatten).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .graph import AxisRef, Structure


def axis_index(structure: Structure, key: str, dim: int,
               refs: Sequence[tuple[int, AxisRef]], perms: Sequence[np.ndarray]) -> torch.Tensor:
    """The gather index along dimension ``dim`` of ``key`` under ``perms``."""
    n, block = structure.axes[(key, dim)]
    idx = np.arange(n)
    for gi, ax in refs:
        idx[ax.index] = ax.index[perms[gi]]
    if block > 1:
        idx = (idx[:, None] * block + np.arange(block)).reshape(-1)  # (n * block,)
    return torch.from_numpy(idx)


def by_key(structure: Structure) -> dict[str, list[tuple[int, list[tuple[int, AxisRef]]]]]:
    """key -> [(dim, [(group number, AxisRef)])]: every permuted axis of each state entry."""
    out: dict[str, list] = defaultdict(list)
    for (key, dim), refs in structure.by_axis().items():
        out[key].append((dim, refs))
    return dict(out)


def permute_tensor(t: torch.Tensor, key: str, structure: Structure, axes: list,
                   perms: Sequence[np.ndarray], *, skip: int | None = None) -> torch.Tensor:
    """``t`` (the state entry ``key``) with every permuted axis but ``skip`` permuted."""
    for dim, refs in axes:
        if dim != skip:
            idx = axis_index(structure, key, dim, refs, perms).to(t.device)
            t = t.index_select(dim, idx)
    return t


def permute_state(state: Mapping[str, torch.Tensor], structure: Structure,
                  perms: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """New tensors for the entries of ``state`` that the permutations move."""
    return {key: permute_tensor(state[key], key, structure, axes, perms)
            for key, axes in by_key(structure).items()}


@torch.no_grad()
def permute_model(model: nn.Module, structure: Structure, perms: Sequence[np.ndarray]) -> None:
    """Permute ``model``'s parameters and buffers in place (call it on a copy)."""
    live = model.state_dict(keep_vars=True)
    for key, t in permute_state({k: v.detach() for k, v in live.items()}, structure,
                                perms).items():
        live[key].copy_(t)
