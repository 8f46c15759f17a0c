"""Exact conversion between the PyTorch CNN and the Flax CNN: weights and directions.

The PyTorch :func:`lossmap.models.fashion_cnn` / ``digits_cnn`` (an
``nn.Sequential``) and the Flax :class:`lossmap.jax.cnn.CNN` compute the same
function once their weights are laid out as below. Every conversion is a pure
re-indexing (transpose or permutation), so a round trip is bit-exact.

==============  ======================  ==============================  ======================
PyTorch key     PyTorch shape           Flax flattened name             Flax shape
==============  ======================  ==============================  ======================
``0.weight``    (O, I, 3, 3)  OIHW      ``params/Conv_0/kernel``        (3, 3, I, O)  HWIO
``3.weight``    (O, I, 3, 3)  OIHW      ``params/Conv_1/kernel``        (3, 3, I, O)  HWIO
``8.weight``    (out, C·H·W)            ``params/Dense_0/kernel``       (H·W·C, out)
``10.weight``   (out, in)               ``params/Dense_1/kernel``       (in, out)
``k.bias``      (O,)                    ``params/<layer>/bias``         (O,)
==============  ======================  ==============================  ======================

- Conv: ``kernel = weight.permute(2, 3, 1, 0)`` (OIHW → HWIO); back with
  ``permute(3, 2, 0, 1)``. Both frameworks compute a cross-correlation, so
  no flip.
- Dense: ``kernel = weight.T`` ((out, in) → (in, out)).
- The first dense layer after the flatten also needs its input rows permuted:
  torch flattens (C, H, W), so input ``c·H·W + h·W + w``; Flax flattens NHWC
  activations (H, W, C), so input ``h·W·C + w·C + c``. Hence
  ``kernel = weight.reshape(out, C, H, W).permute(2, 3, 1, 0).reshape(H·W·C, out)``
  and back ``kernel.reshape(H, W, C, out).permute(3, 2, 0, 1).reshape(out, C·H·W)``.
  C is the second conv's output channels; H = W are inferred from the shapes
  (square images) unless ``spatial=(H, W)`` is given.

In every case PyTorch's output axis 0 becomes Flax's last axis, so a
"filter" (a row of a torch weight, a slice along the last axis of a Flax
kernel) maps to the same filter, with the same norm. Directions are converted
by the same maps (they are linear), so one direction can be scanned on both
backends: :func:`direction_to_flax` and :func:`direction_to_torch`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import torch

__all__ = [
    "LAYERS",
    "direction_to_flax",
    "direction_to_torch",
    "flatten_variables",
    "flax_to_torch",
    "torch_to_flax",
    "unflatten_variables",
]

#: PyTorch ``nn.Sequential`` index → Flax layer name, in order.
LAYERS: dict[str, str] = {"0": "Conv_0", "3": "Conv_1", "8": "Dense_0", "10": "Dense_1"}
_FLATTEN_INPUT = "Dense_0"  # the dense layer right after the flatten
_LAST_CONV = "Conv_1"
_SUFFIX = {"weight": "kernel", "bias": "bias"}


def flatten_variables(variables: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested variables ``{"params": {"Conv_0": {"kernel": …}}}`` → ``{"params/Conv_0/kernel": …}``.

    Parameters
    ----------
    variables : mapping
        Nested dicts of arrays (any leaf type), e.g. what ``Module.init`` returns.
    prefix : str
        Prepended to every name (used in recursion).

    Returns
    -------
    dict of str to leaf
        The leaves keyed by their ``/``-joined path, in iteration order.
    """
    flat: dict[str, Any] = {}
    for key, value in variables.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_variables(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten_variables(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_variables`: ``/``-joined names → nested dicts."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _shape(flat_in: int, channels: int, spatial: tuple[int, int] | None) -> tuple[int, int, int]:
    """(C, H, W) of the activations that the first dense layer flattens."""
    if spatial is not None:
        H, W = (int(s) for s in spatial)
        channels = channels or flat_in // max(H * W, 1)
    else:
        H = W = math.isqrt(flat_in // max(channels, 1))
    if H * W * channels != flat_in or not channels:
        raise ValueError(
            f"the first dense layer takes {flat_in} inputs, which is not {channels} channels "
            f"times a square {H}x{W}; pass spatial=(H, W)"
        )
    return channels, H, W


def _to_flax_layout(
    layer: str, kind: str, t: torch.Tensor, channels: int, spatial: tuple[int, int] | None
) -> torch.Tensor:
    """One torch tensor in the Flax layout (still a torch tensor)."""
    if kind == "bias":
        return t
    if t.dim() == 4:  # OIHW -> HWIO
        return t.permute(2, 3, 1, 0)
    if layer == _FLATTEN_INPUT:
        out, flat_in = t.shape
        C, H, W = _shape(flat_in, channels, spatial)
        return t.reshape(out, C, H, W).permute(2, 3, 1, 0).reshape(flat_in, out)
    return t.T


def _to_torch_layout(
    layer: str, kind: str, t: torch.Tensor, channels: int, spatial: tuple[int, int] | None
) -> torch.Tensor:
    """One Flax-layout tensor (as torch) in the PyTorch layout."""
    if kind == "bias":
        return t
    if t.dim() == 4:  # HWIO -> OIHW
        return t.permute(3, 2, 0, 1)
    if layer == _FLATTEN_INPUT:
        flat_in, out = t.shape
        C, H, W = _shape(flat_in, channels, spatial)
        return t.reshape(H, W, C, out).permute(3, 2, 0, 1).reshape(out, flat_in)
    return t.T


def _torch_tensor(x: Any) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))


def _convert_to_flax(
    tensors: Mapping[str, Any], spatial: tuple[int, int] | None
) -> dict[str, torch.Tensor]:
    """Torch-keyed tensors → Flax-flat-named torch tensors in the Flax layout."""
    unknown = sorted(set(tensors) - {f"{i}.{k}" for i in LAYERS for k in _SUFFIX})
    if unknown:
        raise KeyError(f"not a lossmap CNN state dict / direction: unexpected keys {unknown}")
    last_conv = next((k for k in tensors if LAYERS[k.split(".")[0]] == _LAST_CONV), None)
    channels = _torch_tensor(tensors[last_conv]).shape[0] if last_conv else 0
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        index, kind = key.split(".")
        layer = LAYERS[index]
        t = _to_flax_layout(layer, kind, _torch_tensor(value), channels, spatial)
        out[f"params/{layer}/{_SUFFIX[kind]}"] = t.contiguous()
    return out


def _convert_to_torch(
    flat: Mapping[str, Any], spatial: tuple[int, int] | None
) -> dict[str, torch.Tensor]:
    """Flax-flat-named tensors → torch-keyed tensors in the PyTorch layout."""
    back = {
        f"params/{layer}/{s}": (i, k) for i, layer in LAYERS.items() for k, s in _SUFFIX.items()
    }
    unknown = sorted(set(flat) - set(back))
    if unknown:
        raise KeyError(f"not the Flax CNN's variables / direction: unexpected names {unknown}")
    last = next((n for n in flat if n.startswith(f"params/{_LAST_CONV}/")), None)
    channels = _torch_tensor(flat[last]).shape[-1] if last else 0
    out: dict[str, torch.Tensor] = {}
    for name, value in flat.items():
        index, kind = back[name]
        t = _to_torch_layout(LAYERS[index], kind, _torch_tensor(value), channels, spatial)
        out[f"{index}.{kind}"] = t.contiguous()
    return out


def torch_to_flax(
    state_dict: Mapping[str, torch.Tensor], *, spatial: tuple[int, int] | None = None
) -> dict[str, Any]:
    """PyTorch CNN weights → Flax CNN variables (exact).

    Parameters
    ----------
    state_dict : mapping of str to torch.Tensor
        ``fashion_cnn().state_dict()`` or ``digits_cnn().state_dict()`` (keys
        ``0.weight`` … ``10.bias``).
    spatial : (int, int), optional
        (H, W) of the last conv stage's output (7, 7 for 28x28 images); default:
        inferred, assuming square images.

    Returns
    -------
    dict
        ``{"params": {"Conv_0": {"kernel": jax.Array, "bias": …}, …}}``, ready
        for ``CNN().apply(variables, x)``; same dtype as the input tensors.

    Examples
    --------
    >>> from lossmap.models import fashion_cnn
    >>> v = torch_to_flax(fashion_cnn().state_dict())
    >>> v["params"]["Dense_0"]["kernel"].shape
    (1568, 64)
    """
    flat = _convert_to_flax(state_dict, spatial)
    return unflatten_variables({n: jnp.asarray(t.numpy()) for n, t in flat.items()})


def flax_to_torch(
    variables: Mapping[str, Any], *, spatial: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Flax CNN variables → PyTorch CNN state dict (exact).

    Parameters
    ----------
    variables : mapping
        Nested ``{"params": {...}}`` (as :func:`lossmap.jax.cnn.init` returns) or
        already flat ``{"params/Conv_0/kernel": …}``; leaves jax/NumPy arrays or
        torch tensors.
    spatial : (int, int), optional
        As in :func:`torch_to_flax`.

    Returns
    -------
    dict of str to torch.Tensor
        CPU tensors keyed ``0.weight`` … ``10.bias``, for ``load_state_dict``.
    """
    return _convert_to_torch(flatten_variables(variables), spatial)


def direction_to_flax(
    direction: Mapping[str, torch.Tensor], *, spatial: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """A direction keyed by PyTorch names → the same direction keyed by Flax flattened names.

    Parameters
    ----------
    direction : lossmap.Direction or mapping of str to torch.Tensor
        Keyed like the PyTorch CNN's parameters (``0.weight`` …); a subset of
        the keys is fine.
    spatial : (int, int), optional
        As in :func:`torch_to_flax`; needed only for a direction without
        ``3.weight`` whose images are not square.

    Returns
    -------
    dict of str to torch.Tensor
        ``{"params/Conv_0/kernel": tensor (Flax layout), …}``; wrap it in
        ``lossmap.Direction(d, meta=direction.meta)`` to keep the metadata.
        Norms, filter norms (torch row i = Flax slice i of the last axis) and
        inner products are unchanged.
    """
    return _convert_to_flax(direction, spatial)


def direction_to_torch(
    direction: Mapping[str, Any], *, spatial: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """A direction keyed by Flax flattened names → the same direction keyed by PyTorch names.

    Parameters
    ----------
    direction : lossmap.Direction or mapping
        Keyed ``"params/Conv_0/kernel"`` … (tensors or arrays in the Flax layout).
    spatial : (int, int), optional
        As in :func:`torch_to_flax`.

    Returns
    -------
    dict of str to torch.Tensor
        ``{"0.weight": tensor (PyTorch layout), …}``; the inverse of
        :func:`direction_to_flax`.
    """
    return _convert_to_torch(direction, spatial)
