"""Which backend a model belongs to, found at run time: the core imports no backend by module.

A backend is named here by the import path of its class. PyTorch is always
available; JAX is tried only when the user's process has imported ``jax``
already (an object can only be a JAX model then), so ``import lossmap`` and a
PyTorch scan never load JAX; FSDP2-sharded PyTorch likewise only once
``torch.distributed.tensor`` is imported (a model can only be sharded then).
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from typing import Any

from ..errors import InputTypeError
from .base import Backend

#: name -> (module, class, a module that must already be imported for the backend to apply),
#: asked in this order: a sharded model (FSDP2, DTensor weights) is a torch module too.
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "sharded": ("lossmap.backends.sharded", "ShardedBackend", "torch.distributed.tensor"),
    "torch": ("lossmap.backends.torch.backend", "TorchBackend", None),
    "jax": ("lossmap.backends.jax.backend", "JaxBackend", "jax"),
}


@cache
def backend_named(name: str) -> Backend:
    """The backend called ``name`` (``"torch"``, ``"sharded"`` or ``"jax"``); imports it on first
    use."""
    module, cls, _ = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)()


def find_backend(model: Any) -> Backend | None:
    """The backend that owns ``model``, or None (a state dict, a path, something else)."""
    for name, (_, _, needs) in BACKENDS.items():
        if needs is not None and needs not in sys.modules:
            continue
        backend = backend_named(name)
        if backend.owns(model):
            return backend
    return None


def backend_for(model: Any, *, what: str = "model") -> Backend:
    """The backend that owns ``model``, else an error naming the model forms accepted."""
    backend = find_backend(model)
    if backend is None:
        raise InputTypeError(
            f"{what} is a {type(model).__name__}; pass a torch.nn.Module (or a JAX/Flax model: "
            "lossmap.jax.JaxModel, a (linen.Module, variables) tuple or an nnx.Module)"
        )
    return backend


def is_jax(obj: Any) -> bool:
    """Whether ``obj`` is a JAX/Flax model form; never imports JAX."""
    backend = find_backend(obj)
    return backend is not None and backend.name == "jax"
