"""Checking that an aligned copy computes the function of the model it was made from.

Whatever way the permutations were found, the copy of ``model_b`` must give
the outputs ``model_b`` gives; a difference beyond round-off means that the
graph walk misread an operation, and the copy is refused, naming the group
of units whose permutation alone changes the outputs. The check runs on the
inputs of ``data=`` where given, else on random inputs of a shape read off
the model's first layer (:func:`example_inputs`). Those inputs also let
:func:`record_ranks` note every tensor's rank on the traced graph, which
the rules of :mod:`.ops` read where a transpose needs it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ..errors import InputError
from .apply import permute_model
from .graph import Structure
from .layers import BATCHNORM, CONV, CONV_T

# spatial sizes tried for a model whose first layer is a convolution (smallest first)
SIDES = (8, 16, 28, 32, 64, 96, 224)
BATCH = 8
# layers whose sizes tell the model's input shape
FIRST = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.GroupNorm, *CONV, *CONV_T, *BATCHNORM)


def copy_of(model: nn.Module, name: str) -> nn.Module:
    """``copy.deepcopy(model)``, or an InputError saying why align needs one."""
    try:
        return copy.deepcopy(model)
    except Exception as exc:
        raise InputError(
            f"{name} cannot be copied (copy.deepcopy raised "
            f"{type(exc).__name__}: {exc}); align never changes its inputs, so "
            "it needs a copy"
        ) from None


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next((t for t in model.parameters() if t.is_floating_point()), None)
    return (
        (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.get_default_dtype())
    )


def _spatial(mod: nn.Module) -> tuple[int, list[int]]:
    """(channels, the numbers of spatial axes it may take) of a channels-first layer."""
    if isinstance(mod, CONV + CONV_T):
        return mod.in_channels, [len(mod.kernel_size)]
    if isinstance(mod, nn.GroupNorm):
        return mod.num_channels, [0, 2, 1]
    digit = type(mod).__name__[-2]  # BatchNorm2d, InstanceNorm3d, ...
    return mod.num_features, ([0, 1] if digit == "1" else [int(digit)] if digit.isdigit() else [2])


def _candidates(mod: nn.Module, dtype: torch.dtype, g: torch.Generator) -> list[torch.Tensor]:
    """Inputs that the layer ``mod`` takes first, of each shape it may take."""

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(BATCH, *shape, generator=g).to(dtype)

    if isinstance(mod, nn.Linear):
        return [normal(mod.in_features)]
    if isinstance(mod, nn.Embedding):
        return [torch.randint(0, mod.num_embeddings, (BATCH, 6), generator=g)]
    if isinstance(mod, nn.LayerNorm):
        return [normal(*mod.normalized_shape)]
    channels, ranks = _spatial(mod)
    return [normal(channels, *[side] * d) for d in ranks for side in (SIDES if d else (1,))]


@torch.no_grad()
def example_inputs(gm: fx.GraphModule, model: nn.Module) -> torch.Tensor | None:
    """A small batch of random inputs that ``model`` runs on, or None if none is found.

    The model must take one tensor; its shape is read off the first Linear,
    convolution, Embedding or norm layer in the traced graph ``gm`` (spatial
    sizes tried from 8 up to 224). The inputs are seeded, so a check repeats.
    """
    required = [n for n in gm.graph.nodes if n.op == "placeholder" and not n.args]
    if len(required) != 1:
        return None
    modules = dict(gm.named_modules())
    first = next(
        (
            modules[n.target]
            for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(modules[n.target], FIRST)
        ),
        None,
    )
    if first is None:
        return None
    device, dtype = _device_dtype(model)
    probe = copy_of(model, "model_b").eval()
    for x in _candidates(first, dtype, torch.Generator().manual_seed(0)):
        try:
            probe(x.to(device))
        except Exception:  # not this shape: try the next one
            continue
        return x.to(device)
    return None


class _Ranks(fx.Interpreter):
    """Run a traced model and note each tensor's rank on its node (``node.meta["rank"]``)."""

    def run_node(self, n: fx.Node) -> object:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            n.meta["rank"] = out.dim()
        return out


@torch.no_grad()
def record_ranks(gm: fx.GraphModule, X: torch.Tensor) -> None:
    """Note the rank of each node's output on ``gm`` (``node.meta["rank"]``), if it runs."""
    try:
        _Ranks(gm.eval()).run(X)
    except Exception:  # the ranks stay unknown; rules that need one refuse by name
        for node in gm.graph.nodes:
            node.meta.pop("rank", None)


def _outputs(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _outputs(v)]
    return []


def _compare(reference: list[torch.Tensor], outs: list[torch.Tensor]) -> tuple[bool, float]:
    """(whether ``outs`` equal ``reference`` to round-off, their largest difference)."""
    same, worst = len(outs) == len(reference), 0.0
    for ref, out in zip(reference, outs, strict=False):
        if ref.shape != out.shape:
            return False, float("inf")
        r, o = ref.detach().double(), out.detach().double()
        both = r.isfinite() & o.isfinite()
        if not torch.equal(r[~both].nan_to_num(0.0), o[~both].nan_to_num(0.0)):
            return False, float("inf")  # a NaN or an infinity where the other has none
        r, o = r[both], o[both]
        if not r.numel():
            continue
        eps = torch.finfo(ref.dtype).eps if ref.is_floating_point() else 0.0
        diff = (r - o).abs()
        tol = max(1e-5, 100 * eps) * float(r.abs().max()) + 1e-6 + 1e-4 * r.abs()
        worst = max(worst, float(diff.max()))
        same = same and bool((diff <= tol).all())
    return same, worst


@torch.no_grad()
def _run(model: nn.Module, X: torch.Tensor) -> list[torch.Tensor]:
    """The output tensors of a copy of ``model`` in eval mode."""
    return _outputs(copy_of(model, "model_b").eval()(X))


def check_same_function(
    model_b: nn.Module,
    aligned: nn.Module,
    X: torch.Tensor,
    structure: Structure,
    perms: Sequence[np.ndarray],
) -> None:
    """Refuse ``aligned`` if it does not compute ``model_b``'s function on ``X`` (eval mode).

    Raises
    ------
    lossmap.errors.InputError
        The outputs differ beyond round-off; the message names the layer whose
        units' permutation alone changes them.
    """
    try:
        reference = _run(model_b, X)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise InputError(
            f"model_b cannot run on the inputs of data ({type(exc).__name__}: "
            f"{first}): pass data whose X model_b takes"
        ) from None
    same, worst = _compare(reference, _run(aligned, X))
    if same:
        return
    culprit = ""
    for gi, g in enumerate(structure.groups):
        alone = [p if i == gi else np.arange(len(p)) for i, p in enumerate(perms)]
        one = copy_of(model_b, "model_b")
        permute_model(one, structure, alone)
        if not _compare(reference, _run(one, X))[0]:
            culprit = g.name
            break
    where = (
        f"of the units of layer {culprit!r}"
        if culprit
        else "of its units (no single layer's alone)"
    )
    raise InputError(
        f"align refused its result: the permutation {where} changes model_b's function "
        f"(outputs differ by up to {worst:.3g} on {len(X)} check inputs, beyond round-off), "
        "so align misread how an operation there treats the units; align cannot handle "
        "this model: align it by hand, and please report the model"
    )
