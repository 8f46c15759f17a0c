"""Exact reuse of the first layer: L(c + a·d1 + b·d2) needs its output only once.

The first parameterized layer that reads the raw input is affine in its
weights: ``layer(X; W + a·D1 + b·D2, β + a·δ1 + b·δ2) = Y_c + a·Y_1 + b·Y_2``
with ``Y_c = layer(X; W, β)`` and ``Y_i = layer(X; Dᵢ, δᵢ)``. Those three
outputs are computed once per data batch; each grid point then costs a scaled
sum instead of the layer. The rule applies when the layer is a plain
``nn.Linear`` or ``nn.ConvNd`` called exactly once per forward on the input
itself (a reshape of it, such as ``Flatten``, is fine); :func:`detect` checks
this by running the model once with hooks, and returns None otherwise (the
evaluator then runs the full model, with the same results).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FirstLayer:
    """Where the reusable layer sits and how its input derives from the raw input."""

    path: str  # module name, e.g. "0" or "features.conv1"
    module: nn.Module
    in_shape: tuple[int, ...]  # per-sample shape of the layer input (a reshape of X)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names of the layer, as in ``model.named_parameters()``."""
        prefix = f"{self.path}." if self.path else ""
        return tuple(prefix + n for n, _ in self.module.named_parameters(recurse=False))

    def output(self, X: torch.Tensor, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The layer's output on raw input X with weights taken from ``state``.

        ``state`` may lack the bias (then no bias is added): that gives the
        direction terms Yᵢ when the direction has no bias entry.
        """
        prefix = f"{self.path}." if self.path else ""
        x = X.reshape(X.shape[0], *self.in_shape)
        w = state[prefix + "weight"]
        b = state.get(prefix + "bias") if self.module.bias is not None else None
        if isinstance(self.module, nn.Linear):
            return nn.functional.linear(x, w, b)
        return self.module._conv_forward(x, w, b)


def detect(
    model: nn.Module, state: Mapping[str, torch.Tensor], X: torch.Tensor
) -> FirstLayer | None:
    """Find a reusable first layer by running the model once on a small batch X."""
    calls: list[tuple[str, nn.Module, torch.Tensor | None]] = []
    hooks = []
    for name, m in model.named_modules():
        if any(True for _ in m.parameters(recurse=False)):

            def hook(mod, args, _name=name):
                calls.append(
                    (_name, mod, args[0] if args and isinstance(args[0], torch.Tensor) else None)
                )

            hooks.append(m.register_forward_pre_hook(hook))
    X = X.contiguous()
    try:
        with torch.no_grad():
            functional_call(model, dict(state), (X,))
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    if not calls:
        return None
    name, mod, inp = calls[0]
    if type(mod) not in _KINDS or sum(1 for c in calls if c[1] is mod) != 1:
        return None
    if (
        inp is None
        or inp.numel() != X.numel()
        or inp.shape[0] != X.shape[0]
        or not inp.is_contiguous()
        or inp.data_ptr() != X.data_ptr()
    ):
        return None
    return FirstLayer(name, mod, tuple(inp.shape[1:]))


class _Given(nn.Module):
    """Stands in for the first layer: returns the value the evaluator set."""

    def __init__(self) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.value


def shadow(model: nn.Module, first: FirstLayer) -> tuple[nn.Module, _Given]:
    """A structural copy of the model with the first layer replaced by a stand-in.

    Only the modules on the path to the layer are copied (shallowly); every
    other module, parameter and buffer is shared, and the user's model is not
    changed.
    """
    given = _Given()
    if not first.path:  # the model is the layer itself
        return given, given
    root = copy.copy(model)
    root._modules = dict(model._modules)
    parent = root
    parts = first.path.split(".")
    for part in parts[:-1]:
        child = copy.copy(parent._modules[part])
        child._modules = dict(child._modules)
        parent._modules[part] = child
        parent = child
    parent._modules[parts[-1]] = given
    return root, given
