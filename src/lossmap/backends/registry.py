"""Which backend a model belongs to, without importing JAX unless the user already has."""

from __future__ import annotations

import sys
from typing import Any


def is_jax(obj: Any) -> bool:
    """Whether ``obj`` is a JAX/Flax model form (see :func:`lossmap.jax.as_model`).

    Never imports JAX: an object can only be a JAX model if the user's process
    has imported it already.
    """
    if "jax" not in sys.modules:
        return False
    from ..jax.model import is_jax_model

    return is_jax_model(obj)
