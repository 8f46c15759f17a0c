"""How functions and tensor methods (``call_function`` / ``call_method`` nodes) treat channels.

Elementwise functions pass the channels through; additions, products and
other binary elementwise operations tie the channels of their operands
together (a residual connection); pooling works channel by channel; flatten,
``view(N, -1)`` and spatial reductions keep the channels; zero-padding the
channel axis adds units that hold zeros; ``torch.cat`` along the channels
puts two sets of units side by side; transposes and ``permute`` carry the
channels to their new axis, ``.data`` passes them through; an elementwise op
with a tensor operand (``clamp`` with tensor bounds) ties like a sum.
Anything else is refused.
"""

from __future__ import annotations

import builtins
import dataclasses
import operator
from collections.abc import Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F

from .checks import need_first, refuse
from .graph import Fixed, Recorder, Space


def _names(module: object, names: str) -> list[Callable]:
    return [getattr(module, n) for n in names.split() if hasattr(module, n)]


_UNARY = "relu relu_ relu6 gelu silu elu selu celu leaky_relu mish hardtanh hardswish " \
         "hardsigmoid softplus softsign tanhshrink sigmoid tanh logsigmoid abs exp neg " \
         "square sqrt dropout dropout1d dropout2d dropout3d alpha_dropout " \
         "feature_alpha_dropout softmax log_softmax clamp clip clamp_min clamp_max"
_BINARY = "add sub mul div true_divide maximum minimum fmax fmin pow where lt le gt ge eq ne " \
          "greater greater_equal less less_equal not_equal"
_TRANSPOSE = "transpose swapaxes swapdims t permute"
# attributes of a tensor that are not tensors (sizes, types): no channels
_META_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "is_cpu", "is_meta",
                        "is_sparse", "is_quantized", "layout", "requires_grad", "is_leaf",
                        "names", "itemsize", "nbytes"})
_SPATIAL = "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d " \
           "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d " \
           "adaptive_max_pool2d adaptive_max_pool3d lp_pool1d lp_pool2d interpolate upsample"
_REDUCE = "mean sum amax amin"

KIND: dict[Callable, str] = {}
for _fn in _names(F, _UNARY) + _names(torch, _UNARY) + [operator.neg, operator.pos]:
    KIND[_fn] = "unary"
for _fn in _names(torch, _BINARY) + _names(operator, "add iadd sub isub mul imul truediv "
                                                     "itruediv pow lt le gt ge eq ne"):
    KIND[_fn] = "binary"
for _fn in _names(torch, _TRANSPOSE):
    KIND[_fn] = "transpose"
for _fn in _names(F, _SPATIAL) + _names(torch, _SPATIAL):
    KIND[_fn] = "spatial"
for _fn in _names(torch, _REDUCE):
    KIND[_fn] = "reduce"
KIND |= {torch.flatten: "flatten", torch.reshape: "view", operator.getitem: "getitem",
         F.pad: "pad", torch.cat: "cat", builtins.getattr: "attr", builtins.len: "meta"}
for _fn in _names(torch, "concat concatenate"):
    KIND[_fn] = "cat"

_UNARY_METHODS = "contiguous clone detach float double half bfloat16 to type_as clamp_ " \
                 "sigmoid_ tanh_ abs_ neg_"
METHOD_KIND = {name: "unary" for name in (_UNARY + " " + _UNARY_METHODS).split()}
METHOD_KIND |= {n: "binary" for n in (_BINARY + " add_ sub_ mul_ div_ masked_fill").split()}
METHOD_KIND |= {n: "transpose" for n in _TRANSPOSE.split()}
METHOD_KIND |= {n: "reduce" for n in _REDUCE.split()}
METHOD_KIND |= {"flatten": "flatten", "view": "view", "reshape": "view",
                "size": "meta", "dim": "meta", "numel": "meta"}


def _arg(node: fx.Node, args: list, i: int, name: str, default: object = None) -> object:
    """Argument ``i`` (or keyword ``name``) of the node, as a value or a constant."""
    return args[i] if len(args) > i else node.kwargs.get(name, default)


def _tensor(v: object) -> bool:
    return isinstance(v, (Space, Fixed))


def function_rule(node: fx.Node, args: list, kwargs: dict, rec: Recorder) -> object:
    """The output value of a ``call_function`` or ``call_method`` node."""
    if node.op == "call_method":
        kind, what = METHOD_KIND.get(node.target), f"Tensor.{node.target}()"
    else:
        kind = KIND.get(node.target)
        what = getattr(node.target, "__name__", str(node.target))
    if kind == "attr":
        return _attribute(node, args[0], str(args[1]))
    values = list(args) + list(kwargs.values())
    flat = [v for a in values for v in (a if isinstance(a, (list, tuple)) else [a])]
    if kind == "meta" or not any(_tensor(v) for v in flat):
        if kind == "meta" or getattr(node.target, "__module__", None) in ("_operator",
                                                                          "builtins"):
            return None  # sizes, shapes and arithmetic on them
        return Fixed()  # a tensor made from constants: it does not move with the units
    x = args[0] if args else None
    if kind == "unary" and _tensor(x):
        operands = [v for v in flat if _tensor(v)]
        if len(operands) > 1 and node.target not in ("to", "type_as"):
            # clamp(x, min=<a bound per unit>): the bounds meet the units as in x + bound
            return tie(node, what, operands, rec)
        return x
    if kind == "transpose" and _tensor(x):
        return _transpose(node, what, x, args[1:], kwargs)
    if kind == "binary":
        return tie(node, what, [v for v in flat if _tensor(v)], rec)
    if kind == "spatial" and _tensor(x):
        at = 2 if what.startswith("adaptive_max_pool") else 6  # return_indices' position
        if node.kwargs.get("return_indices") or (len(args) > at and args[at] is True):
            refuse(node, what, "return_indices=True returns a tuple")
        return x if isinstance(x, Fixed) else need_first(node, what, x)
    if kind == "flatten" and _tensor(x):
        start = _arg(node, args, 1, "start_dim", 0)
        return flatten(node, what, x, start, _arg(node, args, 2, "end_dim", -1))
    if kind == "view" and _tensor(x):
        return _view(node, what, x, args[1:] if node.op == "call_method" else args[1])
    if kind == "reduce" and _tensor(x):
        return _reduce(node, what, x, _arg(node, args, 1, "dim"),
                       bool(_arg(node, args, 2, "keepdim", False)))
    if kind == "getitem" and _tensor(x):
        return _getitem(node, what, x, args[1])
    if kind == "pad" and _tensor(x):
        return _pad(node, what, x, tuple(args[1] if len(args) > 1 else kwargs["pad"]),
                    _arg(node, args, 2, "mode", "constant"), rec)
    if kind == "cat":
        return _cat(node, what, list(x), _arg(node, args, 1, "dim", 0), rec)
    refuse(node, what, "align does not know how this operation treats channels "
                       "(e.g. a reshape, transpose or matmul that mixes or moves them)")


def _attribute(node: fx.Node, x: object, name: str) -> object:
    """``x.name``: sizes and types are no tensors; ``.data`` is ``x``; transposes move axes."""
    if not _tensor(x) or name in _META_ATTRS:
        return None
    what = f"Tensor.{name}"
    if name == "data":
        return x
    if name in ("T", "H"):  # every axis reversed (a matrix: transposed)
        rank = x.ndim if x.ndim is not None else _rank(node)
        if rank is None and isinstance(x, Space):
            refuse(node, what, "the rank of its input is unknown, so align cannot tell where "
                               "the transpose puts the channels",
                   "use x.transpose(a, b) or x.mT, whose axes are named, or pass data= so "
                   "align sees the shapes")
        return _moved(node, what, x, tuple(reversed(range(rank))) if rank else None)
    if name in ("mT", "mH"):  # the last two axes swapped
        return _swapped(node, what, x, -2, -1)
    if isinstance(x, Fixed):
        return Fixed()
    refuse(node, what, f"align does not know what the attribute .{name} of a tensor holding "
                       "hidden units is")


def _rank(node: fx.Node) -> int | None:
    """The rank of the node's first argument, where a run on inputs noted it (``verify``)."""
    src = node.args[0] if node.args else None
    return getattr(src, "meta", {}).get("rank")


def _transpose(node: fx.Node, what: str, x: Space | Fixed, dims: tuple | list,
               kwargs: dict) -> object:
    """transpose/swapaxes(x, a, b), x.t(), permute(x, order): channels go with their axis."""
    name = getattr(node.target, "__name__", node.target)
    if name == "t":  # a matrix transposed; a vector kept
        rank = x.ndim if x.ndim is not None else _rank(node)
        return x if rank is not None and rank < 2 else _swapped(node, what, x, 0, 1)
    dims = tuple(dims) or tuple(v for k, v in kwargs.items() if k != "input")
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    if not all(isinstance(d, int) for d in dims):
        refuse(node, what, f"its axes {dims!r} are not known when tracing")
    if name == "permute":
        return _moved(node, what, x, dims)
    if len(dims) != 2:
        refuse(node, what, f"it swaps axes {dims!r}, not two axes")
    return _swapped(node, what, x, *dims)


def _swapped(node: fx.Node, what: str, x: Space | Fixed, a: int, b: int) -> object:
    """``x`` with axes ``a`` and ``b`` swapped."""
    rank = x.ndim if x.ndim is not None else _rank(node)
    if rank is not None:
        if not (-rank <= a < rank and -rank <= b < rank):
            refuse(node, what, f"it swaps axes {a} and {b} of a tensor of rank {rank}")
        order = list(range(rank))
        order[a], order[b] = order[b], order[a]
        return _moved(node, what, x, tuple(order))
    if isinstance(x, Fixed):
        return Fixed()
    if (a < 0) == (b < 0) == (x.axis < 0):  # counted from the same end: no rank needed
        axis = b if x.axis == a else a if x.axis == b else x.axis
        return dataclasses.replace(x, axis=axis)
    refuse(node, what, "the rank of its input is unknown, so align cannot tell whether it "
                       "moves the channels", "pass data= so align sees the shapes")


def _moved(node: fx.Node, what: str, x: Space | Fixed, order: tuple | None) -> object:
    """``x`` with its axes put in ``order`` (axis i of the result is axis order[i])."""
    if order is None:  # a scalar or a vector: nothing moves
        return x
    rank = len(order)
    if sorted(o % rank for o in order) != list(range(rank)) or (
            x.ndim is not None and x.ndim != rank):
        refuse(node, what, f"the axis order {order!r} does not fit a tensor of rank "
                           f"{x.ndim or rank}")
    if isinstance(x, Fixed):
        return Fixed(rank)
    c = x.axis % rank
    return dataclasses.replace(x, axis=[o % rank for o in order].index(c), ndim=rank)


def tie(node: fx.Node, what: str, tensors: list, rec: Recorder) -> object:
    """Elementwise over several tensors: their channels are the same units."""
    spaces = [t for t in tensors if isinstance(t, Space)]
    if len(spaces) < len(tensors):  # a constant or the input: these units cannot move
        for sp in spaces:
            rec.units.fix(sp.slots)
        return Fixed(next((t.ndim for t in tensors if t.ndim is not None), None))
    first = spaces[0]
    for sp in spaces[1:]:
        moved = sp.ndim is not None and first.ndim is not None and sp.first() != first.first()
        if sp.n != first.n or sp.block != first.block or moved:
            refuse(node, what, f"its operands have different channel layouts ({first.n} "
                               f"channels on axis {first.axis} and {sp.n} on axis {sp.axis}), "
                               "so align cannot tell which channel meets which")
        rec.units.union(first.slots, sp.slots)
    return first


def flatten(node: fx.Node, what: str, x: object, start: int, end: int) -> object:
    """torch.flatten(x, start, end): channels kept; flattened with the axes after them."""
    if isinstance(x, Fixed):
        if x.ndim is None:
            return Fixed(2 if (start, end) == (1, -1) else None)
        s, e = start % x.ndim, end % x.ndim
        return Fixed(x.ndim - (e - s))
    if x.ndim is None:
        if (start, end) == (1, -1) and x.axis == 1:
            return dataclasses.replace(x, axis=1, ndim=2, block=None)
        if (start, end) == (-1, -1) or start == end:
            return x
        refuse(node, what, "the rank of its input is unknown, so align cannot tell whether it "
                           "flattens the channels")
    s, e, c = start % x.ndim, end % x.ndim, x.first()
    ndim = x.ndim - (e - s)
    if c < s:
        return dataclasses.replace(x, axis=c, ndim=ndim)
    if c > e:
        return dataclasses.replace(x, axis=c - (e - s), ndim=ndim)
    if c != s:
        refuse(node, what, f"it flattens axes {s}..{e} including axes before the channels "
                           f"(axis {c}), which mixes channels with other axes")
    return dataclasses.replace(x, axis=c, ndim=ndim, block=x.block if e == c else None)


def _view(node: fx.Node, what: str, x: object, shape: object) -> object:
    """view/reshape: only (N, -1) and (-1, K) (a flatten from axis 1) are understood."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    batch_first = len(shape) == 2 and shape[1] == -1 and not _tensor(shape[0])
    features = len(shape) == 2 and shape[0] == -1 and isinstance(shape[1], int)
    if batch_first or features:
        out = flatten(node, what, x, 1, -1)
        if features and isinstance(out, Space) and out.block is None and shape[1] % out.n == 0:
            out = dataclasses.replace(out, block=shape[1] // out.n)
        return out
    if isinstance(x, Fixed):
        return Fixed()
    shown = ", ".join("?" if v is None else str(v) for v in shape)
    refuse(node, what, f"a reshape to ({shown}) may move or mix the channels",
           "reshape with x.flatten(1) or x.view(x.size(0), -1) between a feature map and a "
           "Linear layer; other reshapes (attention heads, channel shuffles) are not supported")


def _reduce(node: fx.Node, what: str, x: object, dim: object, keepdim: bool) -> object:
    """mean/sum/amax/amin: over the channels the result is invariant, elsewhere kept."""
    if dim is None or dim == () or dim == []:  # over every axis: a scalar
        return Fixed(0)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    ndim = x.ndim
    if ndim is None:
        if isinstance(x, Space) and x.axis == 1 and all(d > 1 for d in dims):
            return x
        if isinstance(x, Fixed):
            return Fixed()
        refuse(node, what, "the rank of its input is unknown, so align cannot tell whether it "
                           "reduces over the channels")
    dims = tuple(d % ndim for d in dims)
    out_ndim = ndim if keepdim else ndim - len(dims)
    if isinstance(x, Fixed):
        return Fixed(out_ndim)
    c = x.first()
    if c in dims:
        return Fixed(out_ndim)  # a sum over the units does not depend on their order
    if x.block != 1:
        refuse(node, what, "it reduces a flattened feature map")
    shift = 0 if keepdim else sum(d < c for d in dims)
    return dataclasses.replace(x, axis=c - shift, ndim=out_ndim)


def _getitem(node: fx.Node, what: str, x: object, index: object) -> object:
    """x[...]: slices keep the channels; a slice of the channel axis keeps some of them."""
    index = index if isinstance(index, tuple) else (index,)
    if not all(isinstance(i, slice) for i in index):
        if isinstance(x, Fixed):
            return Fixed()
        refuse(node, what, f"indexing with {index!r} may drop or move axes",
               "use slices (x[:, :, ::2, ::2]) only")
    if isinstance(x, Fixed):
        return x
    c = x.first()
    if c is None:
        refuse(node, what, "the rank of its input is unknown")
    if c >= len(index) or index[c] == slice(None):
        return x
    if x.block != 1:
        refuse(node, what, "it slices a flattened feature map")
    return dataclasses.replace(x, slots=x.slots[index[c]])


def _pad(node: fx.Node, what: str, x: object, pad: tuple, mode: str, rec: Recorder) -> object:
    """F.pad: padding the channel axis with a constant adds units that hold that constant."""
    if isinstance(x, Fixed):
        return x
    back = x.last()
    if back is None:
        refuse(node, what, "the rank of its input is unknown, so align cannot tell which "
                           "axes it pads")
    k = -back - 1  # the pair of ``pad`` that pads the channel axis
    if len(pad) < 2 * k + 2 or pad[2 * k] == pad[2 * k + 1] == 0:
        return x
    before, after = int(pad[2 * k]), int(pad[2 * k + 1])
    if before < 0 or after < 0 or mode != "constant" or x.block != 1:
        refuse(node, what, f"it pads the channels with mode {mode!r} and widths "
                           f"({before}, {after})", "only constant padding is supported")
    slots = np.concatenate([rec.units.new(before), x.slots, rec.units.new(after)])
    return dataclasses.replace(x, slots=slots)


def _cat(node: fx.Node, what: str, parts: list, dim: int, rec: Recorder) -> object:
    """torch.cat: along the channels, units side by side; along another axis, tied."""
    spaces = [p for p in parts if isinstance(p, Space)]
    if len(spaces) < len(parts):
        return tie(node, what, parts, rec)
    first = spaces[0]
    if first.ndim is not None:
        along = dim % first.ndim == first.first()
    elif (dim >= 0) == (first.axis >= 0):
        along = dim == first.axis
    else:
        refuse(node, what, "the rank of its inputs is unknown, so align cannot tell whether "
                           "it joins them along the channels")
    if not along:
        return tie(node, what, parts, rec)
    if any(p.block != 1 or p.axis != first.axis or p.ndim != first.ndim for p in spaces):
        refuse(node, what, "it joins tensors whose channels are laid out differently")
    return dataclasses.replace(first, slots=np.concatenate([p.slots for p in spaces]))
