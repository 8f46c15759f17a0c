"""How each layer (``call_module`` node) treats channels: the rules for modules.

A rule takes the layer's input value (a :class:`~.graph.Space`, or
:class:`~.graph.Fixed` for a tensor whose channels never move), records which
axes of the layer's parameters and buffers are indexed by which channels, and
returns its output's value. A layer whose channel semantics are unknown is
refused with an :class:`~lossmap.errors.InputError` naming it.
"""

from __future__ import annotations

import dataclasses

import torch.fx as fx
from torch import nn

from .checks import need_count, need_first, refuse
from .graph import Fixed, Recorder, Space
from .ops import flatten

# Layers that work on each entry, or on each channel separately, and have no
# parameters indexed by channel: the channels pass through.
ELEMENTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold, nn.Hardshrink, nn.Softshrink,
    nn.Softmax, nn.LogSoftmax, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.FeatureAlphaDropout,
)
# Layers that work on the spatial axes of a channels-first tensor, channel by channel.
SPATIAL = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d,
    nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
)
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
             nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


def module_rule(node: fx.Node, mod: nn.Module, args: list, rec: Recorder) -> object:
    """The output value of the layer ``mod`` called by ``node`` on ``args`` (values)."""
    path, what = str(node.target), type(mod).__name__
    tensors = [a for a in args if isinstance(a, (Space, Fixed))]
    x = args[0] if args else None
    if len(tensors) != 1 or x is not tensors[0]:
        refuse(node, what, f"it takes {len(tensors)} tensors; align knows layers of one input")
    if isinstance(mod, ELEMENTWISE):
        return x
    if isinstance(mod, SPATIAL):
        if getattr(mod, "return_indices", False):
            refuse(node, what, "return_indices=True returns a tuple")
        return x if isinstance(x, Fixed) else need_first(node, what, x)
    if isinstance(mod, nn.Flatten):
        return flatten(node, what, x, mod.start_dim, mod.end_dim)
    if isinstance(mod, nn.Linear):
        return _linear(node, what, path, mod, x, rec)
    if isinstance(mod, CONV + CONV_T):
        return _conv(node, what, path, mod, x, rec)
    groupwise = isinstance(mod, nn.GroupNorm) and mod.num_groups in (1, mod.num_channels)
    if isinstance(mod, BATCHNORM) or groupwise:
        if isinstance(x, Fixed):
            return _record(path, mod, NORM_TENSORS, x, rec)
        count = mod.num_channels if isinstance(mod, nn.GroupNorm) else mod.num_features
        x = need_first(node, what, x, flat_ok=isinstance(mod, (nn.BatchNorm1d, nn.GroupNorm,
                                                                nn.SyncBatchNorm)))
        need_count(node, what, x, count)
        return _record(path, mod, NORM_TENSORS, x, rec)
    if isinstance(mod, nn.GroupNorm):
        refuse(node, what, f"GroupNorm with {mod.num_groups} groups of channels normalizes "
                           "each group together, so channels cannot move between groups",
               "use num_groups=1 or num_groups=num_channels, or align the model by hand")
    if isinstance(mod, nn.LayerNorm):
        return _layernorm(node, what, path, mod, x, rec)
    if isinstance(mod, nn.PReLU):
        if mod.num_parameters == 1:
            return x
        if isinstance(x, Space):
            x = need_first(node, what, x, flat_ok=True)
            need_count(node, what, x, mod.num_parameters)
        return _record(path, mod, ("weight",), x, rec)
    if isinstance(mod, nn.Embedding):
        out = Space(rec.units.new(mod.embedding_dim), -1, None)
        rec.axis(f"{path}.weight", 1, out)
        return out
    refuse(node, what, "align does not know how this layer treats channels")


def _linear(node: fx.Node, what: str, path: str, mod: nn.Linear, x: object,
            rec: Recorder) -> Space:
    if isinstance(x, Space):
        if x.last() != -1:
            refuse(node, what, "a Linear layer works on the last axis, but its input's "
                               f"channels are on axis {x.axis} of a tensor of rank "
                               f"{x.ndim or 'unknown'}",
                   "flatten the feature map first (nn.Flatten, torch.flatten(x, 1))")
        if x.block is None:  # after a flatten: each channel spans in_features / C features
            if mod.in_features % x.n:
                refuse(node, what, f"its {mod.in_features} input features are not a whole "
                                   f"number of blocks per channel of the {x.n} channels "
                                   "flattened into it")
            x = dataclasses.replace(x, block=mod.in_features // x.n)
        need_count(node, what, x, mod.in_features, block=x.block)
    rec.axis(f"{path}.weight", 1, x if isinstance(x, Space) else Fixed())
    ndim = x.ndim if isinstance(x, (Space, Fixed)) else None
    out = Space(rec.units.new(mod.out_features), -1, ndim)
    rec.axis(f"{path}.weight", 0, out)
    if mod.bias is not None:
        rec.axis(f"{path}.bias", 0, out)
    return out


def _conv(node: fx.Node, what: str, path: str, mod: nn.Module, x: object,
          rec: Recorder) -> Space | Fixed:
    transposed = isinstance(mod, CONV_T)
    ndim = len(mod.kernel_size) + 2
    if isinstance(x, Space):
        x = need_first(node, what, dataclasses.replace(x, ndim=x.ndim or ndim))
        need_count(node, what, x, mod.in_channels)
    if mod.groups != 1:
        depthwise = mod.groups == mod.in_channels == mod.out_channels and not transposed
        if not depthwise:
            refuse(node, what, f"a grouped convolution (groups={mod.groups}) only mixes "
                               "channels within each group",
                   "align supports groups=1 and depthwise (groups=in=out channels)")
        return _record(path, mod, ("weight", "bias"), x, rec)
    out = Space(rec.units.new(mod.out_channels), 1, ndim)
    w_in, w_out = (0, 1) if transposed else (1, 0)
    rec.axis(f"{path}.weight", w_in, x if isinstance(x, Space) else Fixed())
    rec.axis(f"{path}.weight", w_out, out)
    if mod.bias is not None:
        rec.axis(f"{path}.bias", 0, out)
    return out


def _layernorm(node: fx.Node, what: str, path: str, mod: nn.LayerNorm, x: object,
               rec: Recorder) -> object:
    if isinstance(x, Fixed):
        for dim in range(len(mod.normalized_shape)):
            _record(path, mod, ("weight", "bias"), x, rec, dim=dim)
        return x
    shape = tuple(mod.normalized_shape)
    back = x.last()
    if back is None:
        refuse(node, what, "the rank of its input is unknown, so align cannot tell whether "
                           "it normalizes over the channels")
    if -back > len(shape):  # normalizes each channel on its own (e.g. over the last axis)
        return x
    dim = len(shape) + back
    block = x.block
    if block is None:  # a flattened map: the normalized size tells the block
        if shape[dim] % x.n:
            refuse(node, what, "its size is not a whole number of features per channel")
        x = dataclasses.replace(x, block=shape[dim] // x.n)
    need_count(node, what, x, shape[dim], block=x.block)
    return _record(path, mod, ("weight", "bias"), x, rec, dim=dim)


def _record(path: str, mod: nn.Module, names: tuple[str, ...], x: Space | Fixed,
            rec: Recorder, *, dim: int = 0) -> Space | Fixed:
    """Say that dimension ``dim`` of each of the layer's tensors ``names`` is indexed by ``x``.

    A layer called on a fixed tensor (the model's input, a constant) fixes
    those axes: called again on hidden units, the same layer cannot move them,
    or its first call would read its input in another order. Returns ``x``.
    """
    value = x if isinstance(x, Space) else Fixed()
    for name in names:
        if getattr(mod, name, None) is not None:
            rec.axis(f"{path}.{name}", dim, value, buffer=name.startswith("running"))
    return x
