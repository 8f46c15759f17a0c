"""Keep the user's model exactly as it was, whatever happens during a scan."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def preserved(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for the block; restore it exactly afterwards.

    Restored on normal exit, on any exception and on ``KeyboardInterrupt``:
    the parameter and buffer objects registered on every submodule,
    ``requires_grad`` and each submodule's ``training`` flag. Values need no
    copy: lossmap evaluates through ``functional_call`` with tensors of its
    own and never writes into the model's tensors. Should other code write
    into them during the block (their version counter moves), a warning says
    which.
    """
    modules = list(model.modules())
    training = [m.training for m in modules]
    registered = [(dict(m._parameters), dict(m._buffers)) for m in modules]
    requires = [
        {k: p.requires_grad for k, p in m._parameters.items() if p is not None} for m in modules
    ]
    versions = {id(t): t._version for ps, bs in registered for t in (*ps.values(), *bs.values())
                if t is not None}
    try:
        model.eval()
        yield model
    finally:
        for m, was_training, (ps, bs), req in zip(
            modules, training, registered, requires, strict=True
        ):
            m._parameters.clear()
            m._parameters.update(ps)
            m._buffers.clear()
            m._buffers.update(bs)
            for k, flag in req.items():
                ps[k].requires_grad_(flag)
            m.training = was_training
        changed = [name for name, t in model.state_dict(keep_vars=True).items()
                   if id(t) in versions and t._version != versions[id(t)]]
        if changed:
            warnings.warn(
                f"the model's tensor {changed[0]!r} was modified in place during the scan by "
                "code outside lossmap (a loss or hook holding it): its new values were kept",
                RuntimeWarning, stacklevel=3,
            )
