"""Random directions, normalized per filter, tensor or model to match the centre's size.

Normalization units (the slices whose norm is matched to the centre's):

* ``"filter"`` — each output unit of a tensor with two or more dimensions
  (a row of a Linear weight, an output channel of a Conv or ConvTranspose
  weight, a column of a GPT-2 ``Conv1D`` weight, a token's row of an
  Embedding), found from the model's layer types (:mod:`.units`); a tensor
  with fewer dimensions (a bias, a normalization scale) is one unit.
* ``"layer"`` — each tensor (the fmin.xyz example's per-parameter rule).
* ``"model"`` — the whole parameter vector.
* ``"none"`` — raw N(0, 1) entries, no rescaling.

A unit of the centre whose norm is zero (a zero-initialized bias, say) gets a
zero direction: matching a zero norm leaves nothing to perturb.
"""


from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .. import params as P
from ..backends.registry import find_backend
from ..errors import InputError, InputTypeError
from ..seeding import check_seed
from .direction import Direction
from .result import Directions
from .storage import check_storage, make_recipe
from .subset import Pattern, select_params, subset_meta
from .units import check_rule, from_units, rules_for, to_units

NORMS = ("filter", "layer", "model", "none")
IGNORES = ("biasbn", None)


def check_norm(norm: str) -> str:
    """Return ``norm`` if it is a known normalization, else raise naming the choices."""
    if norm not in NORMS:
        raise InputError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
    return norm


def check_ignore(ignore: str | None) -> str | None:
    """Return ``ignore`` if valid (``"biasbn"`` or ``None``)."""
    if ignore in ("none", ""):
        return None
    if ignore not in IGNORES:
        raise InputError(f"unknown ignore {ignore!r}: use 'biasbn' (zero 1-D tensors) or None")
    return ignore


def _orthonormalize_units(D: torch.Tensor, C: torch.Tensor | None) -> torch.Tensor:
    """Gram–Schmidt within each unit, then rescale each unit.

    D: (n, U, M) raw directions; C: (U, M) centre, or None to keep each unit's
    own pre-orthogonalization norm (``norm="none"``). Orthogonalizing inside a
    unit and then scaling that unit keeps both properties exact.
    """
    D = D.clone()
    target = C.norm(dim=-1) if C is not None else None  # (U,)
    raw = D.norm(dim=-1)  # (n, U)
    for k in range(D.shape[0]):
        for j in range(k):
            jj = (D[j] * D[j]).sum(-1)  # (U,)
            coef = torch.where(jj > 0, (D[k] * D[j]).sum(-1) / jj.clamp_min(1e-300), 0.0)
            D[k] -= coef[:, None] * D[j]
        have = D[k].norm(dim=-1)  # (U,)
        want = target if target is not None else raw[k]
        scale = torch.where(have > 0, want / have.clamp_min(1e-300), 0.0)
        D[k] *= scale[:, None]
    return D


def random_directions(
    model_or_state: P.StateLike,
    n: int,
    *,
    norm: str = "filter",
    ignore: str | None = "biasbn",
    seed: int = 0,
    orthogonal: bool = False,
    filter_axis: int | None = None,
    params: Pattern | None = None,
    storage: str = "auto",
    centre: P.StateLike | None = None,
) -> list[Direction]:
    """Draw ``n`` Gaussian directions, normalized to the given centre.

    Parameters
    ----------
    model_or_state : nn.Module or dict[str, Tensor]
        The centre whose parameter norms the directions match. Buffers
        (BatchNorm running statistics) never get a direction.
    n : int
        Number of directions (1 for a line, 2 for a plane).
    norm : {"filter", "layer", "model", "none"}, default "filter"
        Normalization unit, see the module docstring.
    ignore : {"biasbn", None}, default "biasbn"
        ``"biasbn"`` zeroes 1-D tensors (biases, normalization scales and
        shifts); ``None`` keeps them, normalized by the same rule.
    seed : int, default 0
        Seed of a private CPU generator: the same seed gives bit-identical
        directions on every machine and device. Global RNG state is untouched.
    orthogonal : bool, default False
        Make every direction exactly orthogonal to the earlier ones while
        keeping the normalization exact (orthogonalized within each unit,
        then rescaled).
    filter_axis : int, optional
        One output axis for every weight tensor, along which ``norm="filter"``
        slices units. Default: for a PyTorch model, each tensor's rule from
        its layer type (Linear rows, Conv and ConvTranspose output channels,
        GPT-2 ``Conv1D`` columns, Embedding token rows; see
        :mod:`lossmap.directions.units`, which warns, naming the tensor, for
        a 2-D parameter of a layer type it does not know); -1 for a JAX
        model or a flat dict of its weights (names ``"params/…"``); 0 for a
        PyTorch state dict, whose layer types are unknown. The rule each
        tensor got is in ``meta["units"]``.
    params : str, list of str or callable, optional
        Build the directions over these parameter tensors only: a glob on the
        names (``"*lora_*"``, ``"transformer.h.0.*"``), a list of globs, or a
        callable ``name -> bool`` (see :mod:`lossmap.directions.subset`). The
        directions have no entry for the other tensors, so a scan leaves them
        at the centre; ``norm`` and ``ignore`` apply within the subset.
        Recorded in ``meta["params"]``.
    storage : {"auto", "recipe", "tensors"}, default "auto"
        How a store (or :meth:`Direction.save`) keeps the direction: as its
        tensors, or as its recipe (seed, settings, centre fingerprint and a
        checksum), regenerated exactly on load; ``"auto"`` keeps a recipe
        above :data:`lossmap.directions.storage.RECIPE_ELEMENTS` values.
    centre : dict of str to Tensor, nn.Module or path, optional
        The point the directions are normalized to when it is not the
        model's current weights (a checkpoint); ``model_or_state`` then only
        names the tensors and their layer types.

    Returns
    -------
    Directions
        ``n`` directions (a tuple ``lm.scan`` takes as it is); the first
        equals ``random_direction(..., seed=seed)``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(4, 3)
    >>> d1, d2 = random_directions(net, 2, norm="filter", seed=0, orthogonal=True)
    >>> abs(d1.cosine(d2)) < 1e-6
    True
    >>> bool(torch.allclose(d1["weight"].norm(dim=1), net.weight.detach().norm(dim=1)))
    True
    >>> d, = random_directions(net, 1, params="weight")  # the weight only: no bias entry
    >>> list(d), d.meta["params"]["tensors"]
    (['weight'], 1)
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n={n!r} must be an integer >= 1 (number of directions)")
    check_norm(norm)
    ignore = check_ignore(ignore)
    seed = check_seed(seed)
    storage = check_storage(storage)
    state, axis = centre_of(model_or_state, filter_axis, centre)
    state = {k: state[k] for k in select_params(state, params)}
    units, units_from = {}, None
    if norm == "filter":  # each tensor's output units, from its layer type where known
        normalized = {k: t for k, t in state.items() if not (ignore == "biasbn" and t.dim() <= 1)}
        units, units_from = rules_for(model_or_state, normalized, filter_axis,
                                      None if isinstance(model_or_state, (Mapping, nn.Module))
                                      else axis)
    out = draw(state, n, norm=norm, ignore=ignore, seed=seed, orthogonal=orthogonal,
               units=units)
    sub = subset_meta(params, state)
    recipe = make_recipe(state, n=n, norm=norm, ignore=ignore, seed=seed,
                         orthogonal=bool(orthogonal), axis=axis, params=sub.get("params"),
                         units=units)
    return Directions([
        Direction._adopt(
            out[i],
            {
                "kind": "random",
                "norm": norm,
                "ignore": ignore,
                "seed": seed,
                "index": i,
                "orthogonal": bool(orthogonal),
                **({"filter_axis": axis} if axis != 0 else {}),
                **({"units": units, "units_from": units_from} if norm == "filter" else {}),
                **sub,
            },
            recipe={**recipe, "index": i},
            storage=storage,
        )
        for i in range(n)
    ])


def centre_of(model_or_state: P.StateLike, filter_axis: int | None,
              centre: P.StateLike | None = None) -> tuple[dict, int]:
    """The centre's parameters (in the model's order) and the filter axis of its weights."""
    backend = find_backend(model_or_state)
    if backend is not None:  # a model: its backend names its weights and filter axis
        centre = backend.state(model_or_state, centre)[0]
        axis = backend.filter_axis if filter_axis is None else filter_axis
    else:
        if centre is not None:
            raise InputError("centre= needs a model as the first argument (its layer types); "
                             "pass the centre's state dict as the first argument instead")
        centre = P.parameter_state(model_or_state)
        jax_names = bool(centre) and all(k.startswith("params/") for k in centre)
        axis = (-1 if jax_names else 0) if filter_axis is None else filter_axis
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise InputTypeError(f"filter_axis={filter_axis!r} must be an integer (0 or -1)")
    return centre, axis


def draw(centre: dict, n: int, *, norm: str, ignore: str | None, seed: int, orthogonal: bool,
         units: Mapping[str, str]) -> list[dict[str, torch.Tensor]]:
    """The tensors of ``n`` directions around ``centre`` (checked arguments), in its order.

    ``units`` maps each tensor to its unit rule (:mod:`.units`) for
    ``norm="filter"``. The draws follow the order of ``centre``'s names; a
    recipe regenerates a direction by calling this again with the same arguments.
    """
    gens = [torch.Generator(device="cpu").manual_seed(_seed(seed, i)) for i in range(n)]
    kept = [name for name, t in centre.items() if not (ignore == "biasbn" and t.dim() <= 1)]
    # Output tensors in the centre's dtype; float64 only for one tensor at a time,
    # so the peak memory is n directions plus a few tensors, whatever the model size.
    out = [{name: torch.zeros_like(t, device="cpu") for name, t in centre.items()}
           for _ in range(n)]
    if norm in ("model", "none"):
        # Pass 1: draw every tensor; accumulate the Gram matrix of the draws in float64.
        G = torch.zeros(n, n, dtype=torch.float64)
        c2 = 0.0
        for k in kept:
            D = torch.stack([torch.randn(centre[k].shape, generator=g, dtype=torch.float64)
                             .reshape(-1) for g in gens])
            G += D @ D.T
            c2 += float(centre[k].double().pow(2).sum())
            for i in range(n):
                out[i][k].copy_(D[i].reshape(centre[k].shape))
        # Pass 2: one linear map of the draws gives Gram–Schmidt + rescaling at once.
        target = torch.full((n,), c2**0.5, dtype=torch.float64) if norm == "model" else \
            G.diagonal().sqrt()
        M = _whitening(G, target, orthogonal)
        for k in kept:
            D = torch.stack([out[i][k].double().reshape(-1) for i in range(n)])
            D = M @ D
            for i in range(n):
                out[i][k].copy_(D[i].reshape(centre[k].shape))
    else:
        for k in kept:
            shape = centre[k].shape
            rule = units.get(k, "tensor") if norm == "filter" else "tensor"
            check_rule(k, shape, rule)
            if not orthogonal:  # one direction at a time, scaled in place: the float64
                # copies stay one tensor's (bit-identical to scaling the stack of all n)
                _scale_each(centre[k], gens, [o[k] for o in out], rule)
                continue
            C = to_units(centre[k].double(), rule)
            D = torch.stack([to_units(torch.randn(shape, generator=g, dtype=torch.float64),
                                      rule) for g in gens])
            D = _orthonormalize_units(D, C)
            for i in range(n):
                out[i][k].copy_(from_units(D[i], shape, rule))
    return out


def _seed(seed: int, index: int) -> int:
    """The generator seed of direction ``index``: its draws never depend on how many are made."""
    import numpy as np

    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> 1)


def _whitening(G: torch.Tensor, target: torch.Tensor, orthogonal: bool) -> torch.Tensor:
    """The n×n map M so that M·D has rows of norm ``target`` (orthogonal if asked).

    With G = D·Dᵀ = L·Lᵀ (Cholesky), L⁻¹·D has orthonormal rows and row k of it
    is exactly what Gram–Schmidt makes of row k of D, normalized.
    """
    if not orthogonal:
        return torch.diag(torch.where(G.diagonal() > 0, target / G.diagonal().sqrt(), 0.0))
    L = torch.linalg.cholesky(G)
    return torch.diag(target) @ torch.linalg.inv(L)


def _scale_each(c: torch.Tensor, gens: list, outs: list[torch.Tensor], rule: str) -> None:
    """Draw each direction's tensor and rescale its units to the centre's, into ``outs``."""
    target = to_units(c.double(), rule).norm(dim=-1, keepdim=True)
    for g, o in zip(gens, outs, strict=True):
        D = to_units(torch.randn(c.shape, generator=g, dtype=torch.float64), rule)
        have = D.norm(dim=-1, keepdim=True)
        D.mul_(torch.where(have > 0, target / have.clamp_min(1e-300), 0.0))
        o.copy_(from_units(D, c.shape, rule))


def random_direction(
    model_or_state: P.StateLike,
    *,
    norm: str = "filter",
    ignore: str | None = "biasbn",
    seed: int = 0,
    filter_axis: int | None = None,
    params: Pattern | None = None,
    storage: str = "auto",
    centre: P.StateLike | None = None,
) -> Direction:
    """Draw one Gaussian direction normalized to the centre.

    Same as ``random_directions(model_or_state, 1, ...)[0]``; see there for
    the parameters.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(4, 3)
    >>> d = random_direction(net, norm="layer", seed=1)
    >>> bool(torch.isclose(d["weight"].norm(), net.weight.detach().norm()))
    True
    >>> float(d["bias"].abs().sum())  # ignore="biasbn" zeroes 1-D tensors
    0.0
    """
    return random_directions(model_or_state, 1, norm=norm, ignore=ignore, seed=seed,
                             filter_axis=filter_axis, params=params, storage=storage,
                             centre=centre)[0]
