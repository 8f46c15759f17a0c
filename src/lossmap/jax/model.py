"""A JAX model as lossmap sees it: a pure ``apply_fn`` and a pytree of variables.

Every leaf of the variables gets a flat name, the ``/``-joined pytree path
including the collection (``"params/Conv_0/kernel"``,
``"batch_stats/BatchNorm_0/mean"``). Directions, stores and fingerprints use
these names, exactly as the PyTorch path uses ``named_parameters()``. Leaves
of the ``params`` collection are parameters (they get directions); leaves of
other collections are buffers (they move only in interpolation).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from ..errors import InputError, InputTypeError

PARAMS = "params"


def _name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


@dataclass(frozen=True, eq=False)
class JaxModel:
    """A JAX network for lossmap: ``apply_fn(variables, x) -> outputs``.

    Parameters
    ----------
    apply_fn : callable
        Pure function of the variables and an input batch, traceable by
        ``jax.jit``/``jax.vmap``; it runs the network in evaluation mode (for
        a linen module with BatchNorm, e.g.
        ``lambda v, x: module.apply(v, x, train=False)``).
    variables : pytree
        The weights: a dict of collections (``{"params": …, "batch_stats": …}``,
        as ``linen.Module.init`` returns) or a bare parameter tree, which is
        treated as ``{"params": tree}``.
    wrap_params : bool, optional
        Whether ``apply_fn`` expects the bare parameter tree (default: guessed;
        True when ``variables`` had no ``"params"`` collection).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> m = JaxModel(lambda v, x: x @ v["params"]["w"], {"params": {"w": jnp.ones((3, 2))}})
    >>> m.names()
    ['params/w']
    """

    apply_fn: Callable[[Any, Any], Any]
    variables: Any
    wrap_params: bool = False

    def __post_init__(self):
        if not callable(self.apply_fn):
            raise InputTypeError(
                f"apply_fn is a {type(self.apply_fn).__name__}; pass apply_fn(variables, x)"
            )
        v = self.variables
        if not (isinstance(v, Mapping) and PARAMS in v):
            object.__setattr__(self, "variables", {PARAMS: v})
            object.__setattr__(self, "wrap_params", True)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(self.variables)
        if not leaves:
            raise InputError("the JAX model has no variables (an empty pytree)")
        names = [_name(p) for p, _ in leaves]
        for n, (_, leaf) in zip(names, leaves, strict=True):
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                raise InputTypeError(f"variable {n!r} is a {type(leaf).__name__}, not an array")
        if len(set(names)) != len(names):
            raise InputError("two variables of the JAX model have the same flattened name")
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_treedef", treedef)

    # -- names and flat views -------------------------------------------------
    def names(self) -> list[str]:
        """Flattened names of every leaf, in pytree order."""
        return list(self._names)

    def is_param(self, name: str) -> bool:
        """Whether the leaf ``name`` is a parameter (in the ``params`` collection)."""
        return name.startswith(PARAMS + "/") or name == PARAMS

    def flat(self, variables: Any = None) -> dict[str, Any]:
        """Name → array for ``variables`` (default: the model's own)."""
        tree = self.variables if variables is None else variables
        leaves = jax.tree_util.tree_leaves(tree)
        if len(leaves) != len(self._names):
            raise InputError(
                f"the variables have {len(leaves)} arrays, the model {len(self._names)}: "
                "they belong to another model"
            )
        return dict(zip(self._names, leaves, strict=True))

    def unflatten(self, flat: Mapping[str, Any]) -> Any:
        """The variables pytree from a name → array mapping (all names needed)."""
        return jax.tree_util.tree_unflatten(self._treedef, [flat[n] for n in self._names])

    def torch_state(self, variables: Any = None) -> tuple[dict, dict]:
        """(parameters, buffers) as CPU torch tensors keyed by flattened name."""
        params, buffers = {}, {}
        for n, a in self.flat(variables).items():
            arr = np.array(a)  # a copy: torch must own writable memory
            if arr.dtype.kind not in "fiub":
                continue  # PRNG keys and other opaque leaves are not weights
            (params if self.is_param(n) else buffers)[n] = torch.from_numpy(arr)
        return params, buffers

    def __call__(self, variables: Any, x: Any) -> Any:
        """Run ``apply_fn`` (with the bare parameter tree if it wants one)."""
        return self.apply_fn(variables[PARAMS] if self.wrap_params else variables, x)


def is_jax_model(obj: Any) -> bool:
    """Whether ``obj`` is a model form the JAX backend accepts (see :func:`as_model`)."""
    if isinstance(obj, JaxModel):
        return True
    if "flax" in sys.modules:
        from flax import linen, nnx

        if isinstance(obj, nnx.Module):
            return True
        if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], linen.Module):
            return True
    return _is_jax_tree(obj)


def _is_jax_tree(obj: Any) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    leaves = jax.tree_util.tree_leaves(obj)
    return any(isinstance(x, jax.Array) for x in leaves)


def as_model(obj: Any, *, what: str = "model") -> JaxModel:
    """The :class:`JaxModel` for a JAX model given in any accepted form.

    Parameters
    ----------
    obj : JaxModel, (linen.Module, variables), nnx.Module or variables pytree
        A linen module is run as ``module.apply(variables, x)``; an NNX module
        is split into parameters (``nnx.Param``), batch statistics
        (``nnx.BatchStat``) and the rest, and run in ``eval()`` mode on a copy
        (the user's module is never changed). A bare pytree has no function
        to run: it serves as a centre or to draw directions.
    what : str
        How to name ``obj`` in error messages.

    Returns
    -------
    JaxModel
    """
    if isinstance(obj, JaxModel):
        return obj
    if "flax" in sys.modules:
        from flax import linen, nnx

        if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], linen.Module):
            module, variables = obj
            return JaxModel(module.apply, variables)
        if isinstance(obj, nnx.Module):
            return _from_nnx(obj)
    if _is_jax_tree(obj):
        return JaxModel(_no_apply, obj)
    raise InputTypeError(
        f"{what} is a {type(obj).__name__}; the JAX backend takes lossmap.jax.JaxModel"
        "(apply_fn, variables), a (flax.linen.Module, variables) tuple or an nnx.Module"
    )


def _no_apply(variables, x):
    raise InputTypeError(
        "this JAX model is a bare variables pytree with no function to run: scan "
        "lossmap.jax.JaxModel(apply_fn, variables) or a (linen.Module, variables) tuple"
    )


def _from_nnx(module) -> JaxModel:
    from flax import nnx

    graphdef, params, stats, other = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    variables = {PARAMS: nnx.to_pure_dict(params)}
    if jax.tree_util.tree_leaves(nnx.to_pure_dict(stats)):
        variables["batch_stats"] = nnx.to_pure_dict(stats)

    def apply_fn(v, x):
        p = jax.tree_util.tree_map(lambda a: a, params)  # fresh states: never mutate
        nnx.replace_by_pure_dict(p, v[PARAMS])
        s = jax.tree_util.tree_map(lambda a: a, stats)
        if "batch_stats" in v:
            nnx.replace_by_pure_dict(s, v["batch_stats"])
        net = nnx.merge(graphdef, p, s, other)
        net.eval()
        return net(x)

    return JaxModel(apply_fn, variables)


def to_jnp(t: Any, dtype: Any = None) -> jax.Array:
    """A torch tensor or array as a JAX array (on the default device)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return jnp.asarray(t, dtype=dtype)
