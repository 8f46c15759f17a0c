"""Which slices of a weight tensor are its output units, for ``norm="filter"``.

A filter-normalized direction matches, unit by unit, the norm of the centre's
*output* units: a row of a ``Linear`` weight, an output channel of a
convolution. Where that unit lies depends on the layer, not on the tensor, so
the rule is read from the model's modules (``model.named_modules()``):

============================================  =======================  ==================
module                                        weight layout            rule
============================================  =======================  ==================
``nn.Linear``, ``nn.Bilinear``                (out, in…)               ``"axis 0"``
``nn.Conv1d/2d/3d``                           (out, in/groups, k…)     ``"axis 0"``
``nn.ConvTranspose1d/2d/3d``                  (in, out/groups, k…)     ``"axis 1"`` (groups
                                                                       > 1: ``"transposed
                                                                       groups=G"``)
``nn.Embedding``, ``nn.EmbeddingBag``         (tokens, dim)            ``"axis 0"`` (a token)
``nn.RNN/LSTM/GRU`` (and cells)               (gates·hidden, in)       ``"axis 0"``
``nn.MultiheadAttention`` projections         (out, in)                ``"axis 0"``
``transformers`` ``Conv1D`` (GPT-2)           (in, out)                ``"axis -1"``
normalization layers (any shape)              elementwise scale        ``"tensor"``
============================================  =======================  ==================

A tensor with fewer than two dimensions is one unit (``"tensor"``). A 2-D or
larger parameter of any other module type (a positional-embedding table, a
custom layer) gets ``"axis 0"`` with a warning naming the tensor and its module
type. Without modules the rule is one axis for every tensor: ``filter_axis``
if given, else the backend's (PyTorch 0, Flax −1: Dense kernels are (in, out),
Conv kernels HWIO), else 0 for a state dict of PyTorch names and −1 for a
state dict of JAX names (``"params/…"``); a PyTorch state dict's ``Conv1D`` or
transposed-convolution weights are then sliced along the wrong axis, so pass
the model where you can. The rule each tensor got is recorded in the
direction's ``meta["units"]`` (name → rule) and ``meta["units_from"]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import InputError

#: How many unknown tensors a warning names.
SHOWN = 5

_ROWS = (
    nn.Linear,
    nn.Bilinear,
    nn.Embedding,
    nn.EmbeddingBag,
    nn.RNNBase,
    nn.RNNCellBase,
    nn.MultiheadAttention,
)
_NORMS = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def _is_hf_conv1d(module: nn.Module) -> bool:
    """A ``transformers.pytorch_utils.Conv1D`` (or subclass), recognized without importing it."""
    return any(
        c.__name__ == "Conv1D" and c.__module__.startswith("transformers")
        for c in type(module).__mro__
    )


def module_rule(module: nn.Module, tensor: torch.Tensor) -> str | None:
    """The unit rule of a parameter of ``module`` (None: a module type lossmap does not know).

    Examples
    --------
    >>> module_rule(nn.Linear(3, 2), nn.Linear(3, 2).weight)
    'axis 0'
    >>> t = nn.ConvTranspose2d(4, 6, 3, groups=2)
    >>> module_rule(t, t.weight), tuple(t.weight.shape)
    ('transposed groups=2', (4, 3, 3, 3))
    """
    if tensor.dim() < 2 or isinstance(module, _NORMS):
        return "tensor"
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "axis 1" if module.groups == 1 else f"transposed groups={module.groups}"
    if isinstance(module, (nn.modules.conv._ConvNd, *_ROWS)):
        return "axis 0"
    if _is_hf_conv1d(module):
        return "axis -1"
    return None


def module_rules(model: nn.Module, names: list[str]) -> dict[str, str]:
    """The rule of each named parameter of ``model``, warning once for unknown module types."""
    owners: dict[int, nn.Module] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), module)  # a tied tensor: its first owner, as the name
    rules, unknown = {}, []
    for name in names:
        t = model.get_parameter(name)
        module = owners[id(t)]
        rule = module_rule(module, t)
        if rule is None:
            rule = "axis 0"
            unknown.append(f"{name!r} ({type(module).__name__}, shape {tuple(t.shape)})")
        rules[name] = rule
    if unknown:
        shown = ", ".join(unknown[:SHOWN]) + (
            f" and {len(unknown) - SHOWN} more" if len(unknown) > SHOWN else ""
        )
        warnings.warn(
            f"norm='filter': lossmap does not know which axis holds the output units of "
            f"{shown}; normalized per slice of axis 0 (the tensor-level rule, as for a Linear "
            "weight). Pass filter_axis=, norm='layer', or params= to leave them out",
            UserWarning,
            stacklevel=4,
        )
    return rules


def axis_rules(state: Mapping[str, torch.Tensor], axis: int) -> dict[str, str]:
    """One axis for every tensor of two or more dimensions; ``"tensor"`` for the rest."""
    return {k: (f"axis {axis}" if t.dim() >= 2 else "tensor") for k, t in state.items()}


def is_rule(rule: Any) -> bool:
    """Whether ``rule`` is a unit rule this module can apply (a recipe's are checked).

    Examples
    --------
    >>> is_rule("axis -1"), is_rule("transposed groups=2"), is_rule("rows")
    (True, True, False)
    """
    if not isinstance(rule, str):
        return False
    if rule == "tensor":
        return True
    head, _, num = rule.partition(" " if rule.startswith("axis ") else "=")
    if head not in ("axis", "transposed groups"):
        return False
    try:
        value = int(num)
    except ValueError:
        return False
    return head == "axis" or value >= 1


def _groups(rule: str) -> int:
    return int(rule.split("=", 1)[1])


def check_rule(name: str, shape: torch.Size, rule: str) -> None:
    """Raise naming the tensor when ``rule`` cannot slice a tensor of ``shape``."""
    if rule.startswith("axis ") and len(shape) >= 2:
        axis = int(rule[5:])
        if not -len(shape) <= axis < len(shape):
            raise InputError(
                f"filter_axis={axis} is out of range for {name!r} of shape {tuple(shape)}"
            )
    elif rule.startswith("transposed groups=") and shape[0] % _groups(rule):
        raise InputError(
            f"{name!r} of shape {tuple(shape)} does not split into "
            f"{_groups(rule)} groups of input channels"
        )


def to_units(t: torch.Tensor, rule: str) -> torch.Tensor:
    """View ``t`` as (units, values per unit) under ``rule``."""
    if rule == "tensor" or t.dim() < 2:
        return t.reshape(1, -1)
    if rule.startswith("axis "):
        axis = int(rule[5:])
        return t.movedim(axis, 0).reshape(t.shape[axis], -1)
    g = _groups(rule)  # (in, out/g, k…): output channel (group, j) reads in-channels of group
    cin, og = t.shape[0], t.shape[1]
    return t.reshape(g, cin // g, og, -1).transpose(1, 2).reshape(g * og, -1)


def from_units(rows: torch.Tensor, shape: torch.Size, rule: str) -> torch.Tensor:
    """Undo :func:`to_units`: the tensor of ``shape`` whose units are ``rows``."""
    if rule == "tensor" or len(shape) < 2:
        return rows.reshape(shape)
    if rule.startswith("axis "):
        axis = int(rule[5:]) % len(shape)
        moved = (shape[axis], *[s for i, s in enumerate(shape) if i != axis])
        return rows.reshape(moved).movedim(0, axis)
    g = _groups(rule)
    cin, og = shape[0], shape[1]
    return rows.reshape(g, og, cin // g, -1).transpose(1, 2).reshape(shape)


def rules_for(
    model_or_state: Any,
    centre: Mapping[str, torch.Tensor],
    filter_axis: int | None,
    backend_axis: int | None,
) -> tuple[dict[str, str], str]:
    """Each tensor's rule, and where the rules came from (``meta["units_from"]``).

    ``backend_axis`` is the axis of a non-PyTorch backend's model (None for a
    PyTorch module or a state dict).
    """
    if filter_axis is not None:
        return axis_rules(centre, filter_axis), f"filter_axis={filter_axis}"
    if isinstance(model_or_state, nn.Module):
        return module_rules(model_or_state, list(centre)), "modules"
    if backend_axis is not None:
        return axis_rules(centre, backend_axis), f"the backend (axis {backend_axis})"
    jax_names = bool(centre) and all(k.startswith("params/") for k in centre)
    axis = -1 if jax_names else 0
    return axis_rules(centre, axis), (f"a state dict (layer types unknown: axis {axis})")
