"""``lm.align``: permute one model's hidden units to match another's."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from .. import params as P
from ..errors import InputError, InputTypeError
from .apply import permute_model
from .graph import Structure
from .match import activation_matching, weight_matching
from .trace import aliases, infer_structure, trace
from .verify import check_same_function, copy_of, example_inputs, record_ranks

METHODS = ("weights", "activations")
CHECKED = 64  # inputs of data= on which the aligned copy's function is checked
#: The permutations behind each module align returned (read by :func:`permutations`).
_PERMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    *,
    method: str = "weights",
    data: Any = None,
    max_iter: int = 100,
    seed: int = 0,
    return_perms: bool = False,
) -> nn.Module:
    """A copy of ``model_b`` whose hidden units are permuted to match ``model_a``'s.

    The copy computes the same function as ``model_b`` (its outputs are equal
    to round-off), but its units are put in the order that best matches
    ``model_a`` (Git Re-Basin, Ainsworth et al. 2023), so that the straight
    line from ``model_a`` to the copy (``lm.interpolation``) compares like with
    like. Which units may be permuted together is read off the model's
    ``torch.fx`` graph; nothing is written by hand per architecture:

    - Linear, Conv1d/2d/3d (also transposed and depthwise) and Embedding
      layers make hidden units; their weights and biases are permuted;
    - BatchNorm, InstanceNorm, GroupNorm (one group, or one per channel) and
      LayerNorm carry their input's units: weight, bias and the running
      statistics are permuted with them;
    - a residual addition (or any elementwise product or sum of two tensors,
      ``maximum``, ``where``, a ``clamp`` with tensor bounds) ties the units of
      its operands together: they move as one;
    - transposes (``.T``, ``.mT``, ``transpose``, ``permute``) carry the units
      to their new axis; ``.data`` and ``detach()`` pass them through;
    - ``Flatten`` (``view(N, -1)``) between a feature map and a Linear layer
      turns each channel into a block of H·W features, permuted as a block;
    - zero-padding the channels (ResNet's option-A shortcut) adds units that
      hold zeros; ``torch.cat`` along the channels puts units side by side;
    - parameter-free elementwise ops, pooling and dropout pass units through;
    - the input and output are left alone, and so is any unit that meets
      them or a constant tensor (a per-unit bound, a buffer), in any call of
      a layer used more than once.

    The copy is then checked: on 64 inputs of ``data`` (or, without data,
    on random inputs of the shape the model's first layer takes) its outputs
    must equal ``model_b``'s to round-off, else it is refused.

    Parameters
    ----------
    model_a : torch.nn.Module
        The reference model; never changed.
    model_b : torch.nn.Module
        The model to align, of the same architecture; never changed.
    method : {"weights", "activations"}
        ``"weights"`` (default): weight matching, which needs no data
        (coordinate descent over the groups, each step a linear assignment
        problem, until no group improves). ``"activations"``: each unit of
        ``model_a`` is paired with the unit of ``model_b`` whose activations on
        ``data`` correlate most (both models run in eval mode).
    data : (X, y) tuple of tensors, DataLoader, iterable of (X, y), or dict of splits
        The inputs for ``method="activations"`` (one split, as ``lm.scan``
        takes it; from a dict, ``"train"`` or the first split); only ``X`` is
        used. With weight matching, optional: the inputs on which the copy's
        function is checked.
    max_iter : int, default 100
        Weight matching: the most rounds of coordinate descent.
    seed : int, default 0
        Seed of the order in which weight matching visits the groups after
        its first round (which goes from the input to the output, matching
        each group on the weights that feed it).
    return_perms : bool, default False
        Deprecated (lossmap 0.1): also return the permutations, as a tuple
        ``(aligned, perms)``; warns. Use :func:`permutations` on the result.

    Returns
    -------
    torch.nn.Module
        The aligned copy of ``model_b`` (same device, dtype and train/eval
        mode). Its permutations: :func:`permutations` (``from lossmap.align
        import permutations``; ``permutations(aligned)``), a
        dict of str to torch.Tensor with one permutation per group of units,
        keyed by the layer that first produces them (e.g. ``"1"`` or
        ``"layer1.0.conv1"``); ``perm[i]`` is the unit of ``model_b`` that
        becomes unit ``i`` of the copy, counting that layer's output channels
        that belong to the group in order. So for an MLP layer ``"1"``,
        ``aligned[1].weight`` equals ``model_b[1].weight[perm]``.

    Raises
    ------
    lossmap.errors.InputError
        The models differ in architecture, the model cannot be traced by
        ``torch.fx``, or it holds a layer or operation whose channel semantics
        align does not know (attention, a reshape that moves channels, a
        grouped convolution, ...): the message names the layer and the node.
        Or the permuted copy computes another function than ``model_b`` (an
        operation align misread): the message names the layer.

    Warns
    -----
    UserWarning
        Without ``data``, no input shape that ``model_b`` runs on was found
        (the copy's function is not checked), or no unit can be permuted.

    Notes
    -----
    BatchNorm statistics are permuted, not re-estimated. Along the straight
    line between two aligned models the stored statistics are wrong for the
    averaged weights; scan it with ``bn="recompute"`` to re-estimate them at
    every point (the REPAIR-style reset of Jordan et al. 2023).

    Examples
    --------
    >>> import torch
    >>> import lossmap as lm
    >>> from lossmap.align import permutations
    >>> from lossmap.models.cnn import mlp
    >>> a, b = mlp((4, 8, 3), seed=0), mlp((4, 8, 3), seed=1)
    >>> b2 = lm.align(a, b)
    >>> perms = permutations(b2)
    >>> x = torch.randn(5, 4)
    >>> bool(torch.allclose(b2(x), b(x), atol=1e-6))
    True
    >>> sorted(perms), torch.equal(b2[1].weight, b[1].weight[perms["1"]])
    (['1'], True)
    """
    structure, aligned, perms = _align(model_a, model_b, method=method, data=data,
                                       max_iter=max_iter, seed=seed)
    _PERMS[aligned] = {g.name: torch.as_tensor(p, dtype=torch.long)
                       for g, p in zip(structure.groups, perms, strict=True)}
    if return_perms:
        warnings.warn("lm.align(..., return_perms=True) is deprecated: lm.align returns the "
                      "aligned module; its permutations are permutations(aligned) (from "
                      "lossmap.align import permutations)",
                      DeprecationWarning, stacklevel=2)
        return aligned, permutations(aligned)
    return aligned


def permutations(aligned: nn.Module) -> dict[str, torch.Tensor]:
    """The permutations :func:`align` applied to make ``aligned`` (the module it returned).

    Parameters
    ----------
    aligned : torch.nn.Module
        A module returned by :func:`align` (not a copy of it).

    Returns
    -------
    dict of str to torch.Tensor
        One permutation per group of units, as described in :func:`align`
        (empty where no unit could be permuted).

    Examples
    --------
    >>> import lossmap as lm
    >>> from lossmap.align import permutations
    >>> from lossmap.models.cnn import mlp
    >>> b2 = lm.align(mlp((4, 8, 3), seed=0), mlp((4, 8, 3), seed=1))
    >>> sorted(permutations(b2)), sorted(permutations(b2)["1"].tolist()) == list(range(8))
    (['1'], True)
    """
    if aligned not in _PERMS:
        raise InputError("this module was not returned by lm.align (a copy or a reloaded "
                         "module keeps no permutations): pass the module lm.align returned")
    return {k: v.clone() for k, v in _PERMS[aligned].items()}


def _align(model_a: Any, model_b: Any, *, method: str, data: Any, max_iter: int,
           seed: int) -> tuple[Structure, nn.Module, list]:
    for name, m in (("model_a", model_a), ("model_b", model_b)):
        if not isinstance(m, nn.Module):
            raise InputTypeError(f"{name} is a {type(m).__name__}; align takes two "
                                 "torch.nn.Module of the same architecture")
    if method not in METHODS:
        raise InputError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise InputError(f"max_iter={max_iter!r} must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed={seed!r} must be an integer >= 0")
    if method == "activations" and data is None:
        raise InputError("method='activations' needs data: pass data=(X, y) or a DataLoader "
                         "of inputs like those the models were trained on")
    X = _inputs(data) if data is not None else None
    sa, sb = model_a.state_dict(), model_b.state_dict()
    P.check_same_layout(sa, sb, what="model_b", ref_what="model_a")
    for key, t in sa.items():
        if t.dtype != sb[key].dtype:
            raise InputError(f"model_b has dtype {sb[key].dtype} for {key!r} but model_a has "
                             f"{t.dtype}: convert one of them, e.g. model_b.to({t.dtype})")
    aligned = copy_of(model_b, "model_b")
    probe = None  # the inputs on which the copy's function is checked
    if fx.Tracer().is_leaf_module(aligned, ""):  # one torch.nn layer: no hidden units
        structure = Structure(())
    else:
        gm = trace(copy_of(aligned, "model_b"), what="model_b")
        device = next((p.device for p in model_b.parameters()), torch.device("cpu"))
        probe = X[:CHECKED].to(device) if X is not None else example_inputs(gm, model_b)
        if probe is not None:
            record_ranks(gm, probe)  # the ranks that transposes need
        structure = infer_structure(gm, aliases(aligned))
    if not structure.groups:
        warnings.warn("align found no hidden units that can be permuted (no hidden layer, or "
                      "every unit meets the input, the output or a constant): the copy of "
                      "model_b is unchanged", stacklevel=3)
        return structure, aligned, []
    if method == "weights":
        perms, _ = weight_matching(structure, sa, sb, max_iter=max_iter, seed=seed)
    else:
        gms = [trace(copy_of(m, name).eval(), what=name)
               for name, m in (("model_a", model_a), ("model_b", model_b))]
        if [n.name for n in gms[0].graph.nodes] != [n.name for n in gms[1].graph.nodes]:
            raise InputError("model_a and model_b trace to different graphs: they must be "
                             "two instances of the same architecture")
        perms = activation_matching(structure, gms[0], gms[1], X)
    permute_model(aligned, structure, perms)
    if probe is None:
        warnings.warn("align could not check that the aligned copy computes model_b's "
                      "function (it found no input shape that model_b runs on): pass "
                      "data=(X, y) to check it", stacklevel=3)
    else:
        check_same_function(model_b, aligned, probe, structure, perms)
    return structure, aligned, perms


def _inputs(data: Any) -> torch.Tensor:
    """The inputs X of the split ``data`` (as ``lm.scan`` takes one split)."""
    from ..data.splits import as_split

    if isinstance(data, Mapping):
        if not data:
            raise InputError("data is an empty dict: pass one split, e.g. data=(X, y)")
        data = data["train"] if "train" in data else next(iter(data.values()))
    return as_split(data, "align").X
