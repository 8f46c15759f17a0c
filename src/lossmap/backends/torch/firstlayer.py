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

The stand-in replaces the layer at one place, so the reuse is exact only when
nothing else sees the layer or its tensors. :func:`obstacle` refuses what can
be seen in the model's structure (a weight tied to another layer, the layer
registered twice, hooks on it, a parametrization); :func:`agrees` then
compares the model's outputs with and without the reuse at one point off the
centre, which catches the rest (a forward that reads ``self.fc.weight``, a
reference to the layer kept outside the module tree, ...).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules import module as _module
from torch.nn.utils import parametrize

_KINDS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class FirstLayer:
    """Where the reusable layer sits and how its input derives from the raw input."""

    path: str  # module name, e.g. "0" or "features.conv1"
    module: nn.Module
    in_shape: tuple[int, ...]  # per-sample shape of the layer input (a reshape of X)
    fuse_relu: bool = False  # the stand-in takes the nn.ReLU after it (:func:`shadow`)

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
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    directions: Mapping[str, Sequence[torch.Tensor]] | None = None,
) -> FirstLayer | None:
    """Find a reusable first layer by running the model once on a small batch X.

    Parameters
    ----------
    model : nn.Module
    state : dict of str to Tensor
        The centre's parameters and buffers, in ``named_parameters()`` naming.
    X : Tensor
        A few samples (two are enough).
    directions : dict of str to list of Tensor, optional
        The tensors each direction adds, by name (one per direction). When
        given, the reuse must also reproduce the model's outputs on X at a
        point off the centre (:func:`agrees`).

    Returns
    -------
    FirstLayer or None
        None where the reuse does not apply or could be wrong: the evaluator
        then runs the whole model.
    """
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
    first = FirstLayer(name, mod, tuple(inp.shape[1:]))
    if obstacle(model, first, state) is not None:
        return None
    if directions is None:
        return first
    # With the ReLU after the layer taken into the stand-in where that reproduces the model
    # (a forward that also calls that ReLU module elsewhere would not), else without it.
    fused = dataclasses.replace(first, fuse_relu=True)
    for candidate in (fused, first) if _fusable(model, first) else (first,):
        if agrees(model, candidate, state, directions, X):
            return candidate
    return None


def obstacle(
    model: nn.Module, first: FirstLayer, state: Mapping[str, torch.Tensor]
) -> str | None:
    """Why replacing ``first`` by a stand-in could change the model's values, or None.

    Seen in the structure: the layer registered at several places; tensors
    other than ``weight`` and ``bias``; a parametrization; forward hooks on
    the layer (or global ones), which the stand-in would skip; and any of its
    tensors used under another name, by identity or by shared memory (tied
    weights: ``dec.weight = enc.weight``), which the stand-in would leave at
    the centre.
    """
    mod = first.module
    paths = [n for n, m in model.named_modules(remove_duplicate=False) if m is mod]
    if len(paths) != 1:
        return f"the layer is registered at {len(paths)} places: {', '.join(paths)}"
    own = dict(mod.named_parameters(recurse=False))
    if "weight" not in own or set(own) - {"weight", "bias"} or mod._buffers or mod._modules:
        return "the layer holds tensors other than 'weight' and 'bias'"
    if parametrize.is_parametrized(mod):
        return "the layer is parametrized"
    if mod._forward_hooks or mod._forward_pre_hooks or any(
        getattr(_module, g, None) for g in ("_global_forward_hooks", "_global_forward_pre_hooks")
    ):
        return "forward hooks would not run on the reused output"
    mine = {f"{first.path}.{k}" if first.path else k: t for k, t in own.items()}
    others = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for other, t in others:
        if other in mine:
            continue
        for name, p in mine.items():
            if t is p or _overlap(t, p):
                return f"{other!r} shares its tensor with {name!r} (tied weights)"
    missing = [n for n in first.names if n not in state]
    if missing:
        return f"the centre has no tensor named {missing[0]!r}"
    return None


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors share memory (one a view of the other, or overlapping views)."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    try:
        def span(t: torch.Tensor) -> tuple[int, int]:
            extent = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride(), strict=True))
            return t.data_ptr(), t.data_ptr() + (extent + 1) * t.element_size()

        (a0, a1), (b0, b1) = span(a), span(b)
    except (RuntimeError, NotImplementedError):  # tensors without storage
        return False
    return a0 < b1 and b0 < a1


#: The point (a, b) at which :func:`agrees` compares the reused and the plain paths.
CHECK_POINT = (0.5, -0.3)
#: The coefficients of a third to sixth direction there (more, along a path, repeat all six).
CHECK_POINT_MORE = (0.4, -0.2, 0.35, -0.45)


def agrees(
    model: nn.Module,
    first: FirstLayer,
    state: Mapping[str, torch.Tensor],
    directions: Mapping[str, Sequence[torch.Tensor]],
    X: torch.Tensor,
) -> bool:
    """Whether the reuse reproduces the model's outputs on X at one point off the centre.

    The point is c + Σ aᵢ·dᵢ with (a₁, a₂, …) = :data:`CHECK_POINT`. Through the stand-in, the
    layer's output is Y_c + Σ aᵢ·Yᵢ, as the evaluator forms it. The outputs
    must agree to round-off (√eps of their dtype, relative to the largest
    value); an error on the reused path (a forward that reads ``weight`` from
    the layer, say) counts as a disagreement.
    """
    n = max((len(v) for v in directions.values()), default=0)
    every = CHECK_POINT + CHECK_POINT_MORE
    coef = [every[i % len(every)] for i in range(n)]  # every direction is checked
    point = dict(state)
    for name, ds in directions.items():
        if name in point:
            t = point[name].clone()
            for a, d in zip(coef, ds, strict=False):
                t.add_(d.to(t), alpha=a)
            point[name] = t
    with torch.no_grad():
        try:
            want = functional_call(model, point, (X.clone(),))
            net, given = shadow(model, first)
            Xr = X.clone()
            Y = first.output(Xr, state)
            for i, a in enumerate(coef):
                d = {k: directions[k][i] if k in directions else torch.zeros_like(state[k])
                     for k in first.names}
                Y = Y + a * first.output(Xr, d)
            given.take(Y, owned=True)
            got = functional_call(net, {k: v for k, v in point.items()
                                        if k not in first.names}, (Xr,))
        except Exception:
            return False
    return _close(got, want)


def _leaves(out: Any) -> list:
    if isinstance(out, Mapping):
        return [("key", k) for k in out] + [x for v in out.values() for x in _leaves(v)]
    if isinstance(out, (list, tuple)):
        return [("len", len(out))] + [x for v in out for x in _leaves(v)]
    return [out]


def _close(got: Any, want: Any) -> bool:
    """Equal structure, equal non-tensor values, tensors equal to round-off."""
    a, b = _leaves(got), _leaves(want)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or x.dtype != y.dtype:
                return False
            kind = x.dtype if x.is_floating_point() or x.is_complex() else torch.float32
            tol = torch.finfo(kind).eps ** 0.5
            wide = torch.complex128 if x.is_complex() else torch.float64
            x, y = x.detach().to(wide), y.detach().to(wide)
            fin = y.isfinite()
            if not torch.equal(fin, x.isfinite()):
                return False
            xn, yn = x[~fin], y[~fin]  # NaN where NaN, the same infinities
            if not torch.equal(xn.isnan(), yn.isnan()) or not torch.equal(
                xn[~xn.isnan()], yn[~yn.isnan()]
            ):
                return False
            if fin.any() and (x[fin] - y[fin]).abs().max() > tol * y[fin].abs().max():
                return False
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return False
        else:
            try:
                if not bool(x == y):
                    return False
            except Exception:
                return False
    return True


class _Given(nn.Module):
    """Stands in for the first layer: returns the value the evaluator set.

    Other attributes (``out_features``, ``kernel_size``, ...) are the layer's;
    its tensors are not available (their value at a point is not known here).

    ``relu``: the ``nn.ReLU`` right after the layer was taken into the stand-in
    (:func:`shadow`); :meth:`take` applies it to the value it is given.
    """

    def __init__(self, layer: nn.Module | None = None) -> None:
        super().__init__()
        self.value: torch.Tensor | None = None
        self.relu = False
        self.__dict__["_layer"] = layer  # not a submodule: its tensors are not the stand-in's

    def take(self, value: torch.Tensor, *, owned: bool = False) -> None:
        """Set the layer's output at the point: ``value``, through the fused ReLU if any.

        ``owned``: ``value`` is a buffer of the caller's that may be overwritten, so
        the ReLU runs in place on it (one pass over the activations fewer).
        """
        if self.relu:
            value = value.relu_() if owned else torch.relu(value)
        self.value = value

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            layer = self.__dict__.get("_layer")
            if layer is None or name.startswith("__"):
                raise
        if name in layer._parameters or name in layer._buffers:
            raise AttributeError(
                f"the reused first layer stands in for {type(layer).__name__} and has no "
                f"{name!r}: the forward reads the layer's tensors, so the reuse does not apply"
            )
        return getattr(layer, name)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.value


def shadow(model: nn.Module, first: FirstLayer) -> tuple[nn.Module, _Given]:
    """A structural copy of the model with the first layer replaced by a stand-in.

    Only the modules on the path to the layer are copied (shallowly); every
    other module, parameter and buffer is shared, and the user's model is not
    changed.

    With ``first.fuse_relu`` (set by :func:`detect`) where the layer sits in a
    plain ``nn.Sequential`` and the next module is an ``nn.ReLU`` without
    hooks, the copy holds ``nn.Identity`` there and the stand-in applies the
    ReLU itself (``given.relu``): the evaluator then runs it in place on the
    buffer it forms the layer's output in, instead of writing a second copy of
    the activations at every point. The values are the same; :func:`detect`
    has checked them against the model (:func:`agrees`).
    """
    given = _Given(first.module)
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
    after = _relu_after(parent, parts[-1]) if first.fuse_relu else None
    if after is not None:
        parent._modules[after] = nn.Identity()
        given.relu = True
    return root, given


def _fusable(model: nn.Module, first: FirstLayer) -> bool:
    """Whether a plain ``nn.Sequential`` runs an ``nn.ReLU`` right after the layer."""
    if not first.path:
        return False
    parent = model.get_submodule(first.path.rpartition(".")[0])
    return _relu_after(parent, first.path.rpartition(".")[2]) is not None


def _relu_after(parent: nn.Module, name: str) -> str | None:
    """The name of the ``nn.ReLU`` that a plain ``nn.Sequential`` runs right after ``name``."""
    if not isinstance(parent, nn.Sequential) or type(parent).forward is not nn.Sequential.forward:
        return None
    keys = list(parent._modules)
    i = keys.index(name)
    if i + 1 >= len(keys):
        return None
    nxt = parent._modules[keys[i + 1]]
    if type(nxt) is not nn.ReLU or nxt._forward_hooks or nxt._forward_pre_hooks:
        return None
    return keys[i + 1]


def combine_many(Ys: tuple[torch.Tensor, ...], A: torch.Tensor) -> torch.Tensor:
    """Y_c + Σ aᵢ·Yᵢ for K points at once: (K, *Y.shape)."""
    Y = torch.stack(Ys[1:]).flatten(1)  # (ndim, numel)
    out = torch.addmm(Ys[0].reshape(1, -1), A.to(Y.dtype), Y)
    return out.reshape(len(A), *Ys[0].shape)
