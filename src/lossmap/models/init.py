"""Flax's default initialization for PyTorch models (the original notebook's θ0).

Flax's ``linen.Dense`` and ``linen.Conv`` draw their kernels with
``lecun_normal()``, i.e. ``variance_scaling(1.0, "fan_in", "truncated_normal")``:
a standard normal truncated to (-2, 2), scaled by ``sqrt(1 / fan_in) / 0.8796…``
so that the truncated values have the standard deviation ``sqrt(1 / fan_in)``
(0.87962566103423978 is the standard deviation of a standard normal truncated
to (-2, 2)); biases start at zero. PyTorch's ``nn.Linear`` and ``nn.Conv2d`` draw
weights *and* biases from Kaiming-uniform ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
a standard deviation ``sqrt(1 / (3 fan_in))``: √3 smaller. The loss surface
around θ0 differs accordingly (issue 15: along the demo's θ0 line the loss range
is about 15× narrower under PyTorch's init).

:func:`lecun_normal_` re-draws a model's ``Linear`` and ``Conv1d/2d/3d`` weights
this way from a private ``torch.Generator`` (torch's global RNG is neither read
nor advanced) and zeroes their biases. The fan-in of a PyTorch weight,
``(out, in [, kh, kw …])``, is ``in · kh · kw …`` (``in`` per group for grouped
convolutions): the fan-in Flax computes for its ``(in, out)`` and ``HWIO`` kernels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from ..seeding import check_seed

__all__ = ["INITS", "TRUNCATED_STD", "apply_init", "check_init", "lecun_normal_"]

INITS = ("torch", "flax")
"""The initializations the model builders offer (their ``init`` argument)."""

TRUNCATED_STD = 0.87962566103423978
"""Standard deviation of a standard normal truncated to (-2, 2), as in ``jax.nn.initializers``."""

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def lecun_normal_(model: nn.Module, *, seed: int) -> nn.Module:
    """Re-initialize ``model`` in place as Flax does by default; returns ``model``.

    Every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` weight is drawn from Flax's
    ``lecun_normal()``: a normal truncated at ±2 standard deviations, rescaled
    so that its standard deviation is ``sqrt(1 / fan_in)`` (every value lies
    within ``2 · sqrt(1 / fan_in) / 0.8796…``); their biases are set to zero.
    Other parameters are left as they are (BatchNorm's ones and zeros are
    Flax's defaults too). The draws come from a private ``torch.Generator``
    seeded with ``seed``, layer after layer in ``model.modules()`` order, so
    the same seed gives the same weights and torch's global RNG is untouched.
    The values are not Flax's own draws (JAX's PRNG differs), only their
    distribution.

    Parameters
    ----------
    model : torch.nn.Module
        The model to re-initialize (changed in place).
    seed : int
        Seed of the private generator, >= 0.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    InputError
        If the model has a transposed convolution (whose fan-in Flax counts
        differently) or no ``Linear``/``Conv`` layer at all.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layer = lecun_normal_(nn.Linear(400, 300), seed=0)
    >>> round(layer.weight.std().item(), 2), round((1 / 400) ** 0.5, 2)
    (0.05, 0.05)
    >>> bool(layer.weight.abs().max() <= 2 * (1 / 400) ** 0.5 / TRUNCATED_STD)
    True
    >>> bool((layer.bias == 0).all())
    True
    """
    check_seed(seed)
    transposed = [name for name, m in model.named_modules()
                  if isinstance(m, nn.modules.conv._ConvTransposeNd)]
    if transposed:
        raise InputError(f"the Flax-style init does not support transposed convolutions "
                         f"({', '.join(transposed)}): initialize them yourself")
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, *_CONVS))]
    if not layers:
        raise InputError(f"{type(model).__name__} has no Linear or Conv layer to initialize "
                         "the Flax way")
    generator = torch.Generator().manual_seed(seed)
    for layer in layers:
        weight = layer.weight
        fan_in = weight[0].numel()  # in (per group) · kernel size
        scale = math.sqrt(1.0 / fan_in) / TRUNCATED_STD
        draw = torch.empty(weight.shape, dtype=torch.float64)
        nn.init.trunc_normal_(draw, 0.0, 1.0, -2.0, 2.0, generator=generator)
        weight.copy_(draw * scale)
        if layer.bias is not None:
            layer.bias.zero_()
    return model


def apply_init(model: nn.Module, init: str, seed: int | None) -> nn.Module:
    """Apply the builders' ``init`` choice to a freshly built ``model``; returns it.

    Parameters
    ----------
    model : torch.nn.Module
        The model just built with PyTorch's default initialization.
    init : str
        ``"torch"`` keeps PyTorch's initialization; ``"flax"`` re-draws it with
        :func:`lecun_normal_` from ``seed``.
    seed : int, optional
        Seed of the Flax-style init; None draws one from torch's global RNG (as
        the builders do without a seed).

    Returns
    -------
    torch.nn.Module
        ``model``.

    Examples
    --------
    >>> from torch import nn
    >>> layer = apply_init(nn.Linear(3, 2), "flax", seed=0)
    >>> layer.bias.tolist()
    [0.0, 0.0]
    """
    check_init(init)
    if init == "torch":
        return model
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return lecun_normal_(model, seed=seed)


def check_init(init: object) -> str:
    """Return ``init`` if it is one of :data:`INITS`, else raise a message naming the choices.

    Parameters
    ----------
    init : object
        The value to check.

    Returns
    -------
    str
        ``init``.

    Raises
    ------
    InputError
        If ``init`` is not ``"torch"`` or ``"flax"``.

    Examples
    --------
    >>> check_init("flax")
    'flax'
    """
    if init not in INITS:
        raise InputError(f"`init`={init!r} is not an initialization: use 'torch' (PyTorch's "
                         "default, Kaiming uniform) or 'flax' (Flax's LeCun normal, zero biases)")
    return init  # type: ignore[return-value]
