"""Directions between models: interpolation and the plane through three models.

Both move every floating-point tensor of the state — parameters *and* buffers
such as BatchNorm running statistics — so that the points 0 and 1 of a path
are exactly the two models (integer buffers such as ``num_batches_tracked``
stay at the centre's value). Note that running variances interpolated far
outside [0, 1] can turn negative; such points evaluate to NaN and are counted
as diverged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from .. import params as P
from ..backends.registry import find_backend
from ..errors import InputError, InputTypeError
from .direction import Direction
from .result import Directions
from .subset import Pattern, select_params, subset_meta

ModelLike = nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike


def full_state(obj: ModelLike, *, what: str) -> dict[str, torch.Tensor]:
    """Parameters and buffers of a model, a state dict, or a checkpoint file."""
    if isinstance(obj, nn.Module):  # tied weights once, as named_parameters() names them
        return {**P.parameters_of(obj), **P.buffers_of(obj)}
    backend = find_backend(obj)
    if backend is not None:  # another framework's model (JAX)
        params, buffers = backend.state(obj)
        return {**params, **buffers}
    if isinstance(obj, (str, os.PathLike)):
        return P.load_checkpoint(obj)
    if isinstance(obj, Mapping):
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in obj.items()}
    raise InputTypeError(
        f"{what} is a {type(obj).__name__}; pass a model, a state dict or a checkpoint path"
    )


def _moving(a: Mapping, b: Mapping, what: str,
            params: Pattern | None = None) -> dict[str, torch.Tensor]:
    """b − a over the floating tensors (those ``params`` chooses), after a layout check."""
    P.check_same_layout(a, b, what=what, ref_what="the first model")
    names = select_params([k for k in a if a[k].is_floating_point()], params)
    return {k: (b[k].to(torch.float64) - a[k].to(torch.float64)).to(a[k].dtype) for k in names}


def interpolation(a: ModelLike, b: ModelLike, *, params: Pattern | None = None) -> Direction:
    """The direction from model ``a`` to model ``b`` (scan it with ``centre=a``).

    On the line ``a + α·(b − a)``, α = 0 is ``a`` and α = 1 is ``b``; the usual
    grid is α ∈ [−0.5, 1.5] with a count that puts 0 and 1 on it, e.g.
    ``grid=(-0.5, 1.5, 41)``. ``params`` (a glob, a list of globs or a callable
    on names, as for :func:`~lossmap.directions.random.random_directions`)
    moves only those tensors: α = 1 is then ``a`` with them taken from ``b``.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> d = interpolation(a, b)
    >>> bool(torch.allclose(a.weight + d["weight"], b.weight))
    True
    """
    sa, sb = full_state(a, what="model a"), full_state(b, what="model b")
    d = _moving(sa, sb, "model b", params)
    return Direction(d, meta={"kind": "interpolation", **subset_meta(params, d)})


def plane(a: ModelLike, b: ModelLike, c: ModelLike, *,
          params: Pattern | None = None) -> Directions:
    """The plane through three models, centred on ``a``: two directions ``lm.scan`` takes.

    ``params`` moves only the chosen tensors (see :func:`interpolation`); the
    models then lie on the plane in those tensors.

    Parameters
    ----------
    a, b, c : nn.Module, state dict or checkpoint path
        The three models; ``a`` is the centre.
    params : str, list of str or callable, optional
        The tensors that move (see :func:`interpolation`).

    Returns
    -------
    Directions
        ``(d1, d2)``: ``d1 = b − a``; ``d2`` the part of ``c − a``
        orthogonal to ``d1`` (orthogonality measured on the parameters;
        buffers follow the same linear map, so every model sits exactly on
        the plane). ``.coords`` (also in each direction's ``meta``) is
        ``{"a": (0, 0), "b": (1, 0), "c": (α_c, 1)}``, the models' exact
        (α, β). Scan it with ``lm.scan(..., directions=result)``. (Unpacking
        it into three names, ``d1, d2, coords``, the 0.1 form, still works
        with a DeprecationWarning.)

    Examples
    --------
    >>> import torch
    >>> nets = [torch.nn.Linear(3, 2) for _ in range(3)]
    >>> d1, d2 = result = plane(*nets)
    >>> abs(d1.cosine(d2)) < 1e-6, result.coords["b"]
    (True, (1.0, 0.0))
    """
    sa = full_state(a, what="model a")
    d1 = _moving(sa, full_state(b, what="model b"), "model b", params)
    dc = _moving(sa, full_state(c, what="model c"), "model c", params)
    sub = subset_meta(params, d1)
    params = [k for k in d1 if not P.is_buffer_name(k)]
    d1p = {k: d1[k] for k in params}
    n11 = P.dot(d1p, d1p)
    if n11 == 0.0:
        raise InputError("models a and b are identical: a plane needs three distinct models")
    alpha_c = P.dot({k: dc[k] for k in params}, d1p) / n11
    d2 = {k: (dc[k].double() - alpha_c * d1[k].double()).to(dc[k].dtype) for k in dc}
    if P.norm({k: d2[k] for k in params}) <= 1e-5 * n11**0.5:  # float32 round-off
        raise InputError("model c lies on the line through a and b: pick a third model off it")
    coords = {"a": (0.0, 0.0), "b": (1.0, 0.0), "c": (float(alpha_c), 1.0)}
    meta = {"kind": "plane", "coords": coords, **sub}
    dirs = (Direction(d1, meta={**meta, "index": 0}), Direction(d2, meta={**meta, "index": 1}))
    return Directions(dirs, {"coords": coords}, legacy=((*dirs, coords), (
        "unpacking lm.plane(...) into (d1, d2, coords) is deprecated: it returns the two "
        "directions, which lm.scan takes as they are; the models' coordinates are "
        "result.coords. Write `d1, d2 = result = lm.plane(a, b, c)`")))
