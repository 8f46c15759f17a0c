"""Trace a model with ``torch.fx`` and walk its graph into a :class:`~.graph.Structure`."""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

from ..errors import InputError
from .graph import Fixed, Recorder, Space, Structure
from .layers import module_rule
from .ops import function_rule


def trace(model: nn.Module, *, what: str) -> fx.GraphModule:
    """``torch.fx.symbolic_trace(model)``, or an InputError that says why it cannot be traced."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(
            f"{what} ({type(model).__name__}) cannot be traced by torch.fx "
            f"({type(exc).__name__}: {first[:200]}): align reads the hidden units off the "
            "traced graph, so the forward must not branch or loop on tensor values; move "
            "such code out of forward, or align the model by hand"
        ) from None


def aliases(model: nn.Module) -> dict[str, str]:
    """State keys that name a tensor already named by an earlier key (tied weights)."""
    seen: dict[int, str] = {}
    out: dict[str, str] = {}
    for key, t in model.state_dict(keep_vars=True).items():
        first = seen.setdefault(id(t), key)
        if first != key:
            out[key] = first
    return out


def infer_structure(gm: fx.GraphModule, alias: dict[str, str] | None = None) -> Structure:
    """The permutation groups of the traced model ``gm`` (see :mod:`.graph`).

    Raises
    ------
    lossmap.errors.InputError
        A layer or operation whose channel semantics align does not know,
        naming the layer and the node.
    """
    rec = Recorder(alias or {})
    env: dict[fx.Node, object] = {}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        args = list(fx.node.map_arg(node.args, env.__getitem__))
        kwargs = dict(fx.node.map_arg(node.kwargs, env.__getitem__))
        if node.op == "placeholder":
            value: object = Fixed()
        elif node.op == "get_attr":
            value = _attr(gm, str(node.target))
        elif node.op == "call_module":
            value = module_rule(node, modules[node.target], args + list(kwargs.values()), rec)
        elif node.op in ("call_function", "call_method"):
            value = function_rule(node, args, kwargs, rec)
        else:  # output: what leaves the model keeps its channels in place
            for v in _leaves(args):
                if isinstance(v, Space):
                    rec.units.fix(v.slots)
            value = None
        env[node] = value
        rec.node(node, value)
    return rec.structure()


def _attr(gm: fx.GraphModule, target: str) -> object:
    """A tensor used directly in forward: a scalar, or a constant whose channels never move."""
    obj: object = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, torch.Tensor):
        return None if obj.numel() == 1 else Fixed(obj.dim())
    return None


def _leaves(values: object) -> list:
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _leaves(item)]
    if isinstance(values, dict):
        return [v for item in values.values() for v in _leaves(item)]
    return [values]
