"""Keep the user's model exactly as it was, whatever happens during a scan."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for the block; restore it bit-identically afterwards.

    Restored on normal exit, on any exception and on ``KeyboardInterrupt``:
    the parameter and buffer objects registered on every submodule, their
    values (bit for bit), ``requires_grad`` and each submodule's ``training``
    flag. One snapshot of the values is taken (one model copy per scan, never
    one per point).
    """
    modules = list(model.modules())
    training = [m.training for m in modules]
    registered = [(dict(m._parameters), dict(m._buffers)) for m in modules]
    requires = [
        {k: p.requires_grad for k, p in m._parameters.items() if p is not None} for m in modules
    ]
    snapshot = [
        {k: t.detach().clone() for k, t in {**ps, **bs}.items() if t is not None}
        for ps, bs in registered
    ]
    try:
        model.eval()
        yield model
    finally:
        with torch.no_grad():
            for m, was_training, (ps, bs), req, snap in zip(
                modules, training, registered, requires, snapshot, strict=True
            ):
                m._parameters.clear()
                m._parameters.update(ps)
                m._buffers.clear()
                m._buffers.update(bs)
                for k, t in {**ps, **bs}.items():
                    if t is None:
                        continue
                    if t.shape != snap[k].shape or t.dtype != snap[k].dtype:
                        t.data = snap[k]
                    elif not _same_bits(t, snap[k]):
                        t.copy_(snap[k])
                for k, flag in req.items():
                    ps[k].requires_grad_(flag)
                m.training = was_training


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    return bool(
        torch.equal(a.detach().reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )
