"""Named tensors of one model state: extraction, checkpoints, vector maths, fingerprints.

A *state* here is a ``dict[str, Tensor]`` keyed like ``model.named_parameters()``
(and ``named_buffers()`` where buffers are meant). All functions are pure: they
never change the tensors or the model they are given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError, InputTypeError, MissingFileError

# Buffer names of torch's normalization layers; used only to tell buffers from
# parameters when the user hands us a bare state dict instead of a model.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")

StateLike = nn.Module | Mapping[str, torch.Tensor]


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached views of the model's parameters, in ``named_parameters()`` order."""
    return {name: p.detach() for name, p in model.named_parameters()}


def buffers_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached views of the model's buffers, in ``named_buffers()`` order."""
    return {name: b.detach() for name, b in model.named_buffers()}


def is_buffer_name(name: str) -> bool:
    """Whether a state-dict key names a normalization buffer (running statistics).

    JAX weights (``/``-joined pytree paths) are buffers outside the ``params``
    collection.
    """
    if "/" in name:
        return not name.startswith("params/")
    return name.rsplit(".", 1)[-1] in _BUFFER_SUFFIXES


def split_state(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Split a bare state dict into (parameters, buffers) by name and dtype.

    Floating-point tensors whose names are not normalization buffers count as
    parameters. Pass a model instead of a state dict to avoid the guess.
    """
    params, buffers = {}, {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(
                f"state entry {name!r} is a {type(t).__name__}, not a tensor: "
                "pass model.state_dict() or a dict of tensors"
            )
        if t.is_floating_point() and not is_buffer_name(name):
            params[name] = t.detach()
        else:
            buffers[name] = t.detach()
    return params, buffers


def parameter_state(model_or_state: StateLike) -> dict[str, torch.Tensor]:
    """The parameters of a model, or the parameter entries of a state dict."""
    if isinstance(model_or_state, nn.Module):
        return parameters_of(model_or_state)
    if isinstance(model_or_state, Mapping):
        params, _ = split_state(model_or_state)
        if not params:
            raise InputError("the state has no floating-point parameter tensors")
        return params
    raise InputTypeError(
        f"expected an nn.Module or a dict of tensors, got {type(model_or_state).__name__}"
    )


def load_checkpoint(
    path: str | os.PathLike, *, trust_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """Load a state dict from a ``.safetensors`` file or a torch file, without pickle.

    Torch files are read with ``torch.load(weights_only=True)``; a file that
    needs full unpickling (which can run arbitrary code) is refused unless
    ``trust_pickle=True`` says you trust its source. A dict that
    wraps the state under ``"state_dict"``, ``"model_state_dict"`` or ``"model"``
    is unwrapped.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"checkpoint {str(path)!r} does not exist: check the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError, OSError
            raise InputError(
                f"checkpoint {str(path)!r} is not a readable safetensors file ({exc}): "
                "check that the file is complete, or re-save it"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError here
        text = str(exc)
        if "weights_only" in text or "Unpickl" in type(exc).__name__:
            raise InputError(
                f"checkpoint {str(path)!r} needs pickle to load, which can run arbitrary "
                "code; lossmap loads with weights_only=True. Re-save it as "
                "torch.save(model.state_dict(), path) or as .safetensors, or, if you trust "
                "its source, pass --trust-pickle (trust_pickle=True)"
            ) from None
        raise InputError(
            f"checkpoint {str(path)!r} cannot be read: {text.splitlines()[0]}"
        ) from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(
            f"checkpoint {str(path)!r} does not hold a state dict of tensors: "
            "save model.state_dict()"
        )
    return dict(obj)


def check_same_layout(
    reference: Mapping[str, torch.Tensor],
    other: Mapping[str, torch.Tensor],
    *,
    what: str,
    ref_what: str = "the model",
    allow_extra: Iterable[str] = (),
    allow_missing: bool = False,
) -> None:
    """Raise if ``other`` does not have exactly the names and shapes of ``reference``.

    ``allow_extra`` lists names ``other`` may hold beyond ``reference`` (buffers);
    ``allow_missing`` lets ``other`` cover only some of ``reference``'s names
    (a direction over a parameter subset).
    """
    extra_ok = set(allow_extra)
    missing = [] if allow_missing else [n for n in reference if n not in other]
    unexpected = [n for n in other if n not in reference and n not in extra_ok]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"has no tensor for {missing[0]!r}")
        if unexpected:
            parts.append(f"has a tensor {unexpected[0]!r} that {ref_what} lacks")
        raise InputError(
            f"{what} {' and '.join(parts)} ({ref_what} has {len(reference)} parameter tensors, "
            f"{what} has {len([n for n in other if n not in extra_ok or n in reference])}): "
            f"{what} was made for another model"
        )
    for name, t in reference.items():
        if name in other and tuple(other[name].shape) != tuple(t.shape):
            raise InputError(
                f"{what} has shape {tuple(other[name].shape)} for {name!r} but {ref_what} has "
                f"{tuple(t.shape)}: {what} was made for another model"
            )


def fingerprint(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in sorted name order (hex, 16 chars)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")  # no copy
    return h.hexdigest()[:16]


def dot(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Inner product of two states over their common names, accumulated in float64."""
    return float(sum((a[n].double() * b[n].double()).sum() for n in a if n in b))


def norm(a: Mapping[str, torch.Tensor]) -> float:
    """Euclidean norm of a state as one long vector (float64)."""
    return dot(a, a) ** 0.5


def numel(a: Mapping[str, torch.Tensor]) -> int:
    """Total number of scalars in a state."""
    return sum(t.numel() for t in a.values())


def resolve_centre(model: nn.Module, centre: Any) -> tuple[dict, dict]:
    """The centre's (parameters, buffers), checked against the model's layout.

    ``centre`` is None (the model's own tensors), a state dict, a model, or a
    checkpoint path. Parameters come back in the model's order, as detached
    tensors that may share memory with their source: never write into them.
    """
    params, buffers = parameters_of(model), buffers_of(model)
    if centre is None:  # views: lossmap never writes into them
        return params, buffers
    if isinstance(centre, (str, os.PathLike)):
        state = load_checkpoint(centre)
        what = f"checkpoint {str(centre)!r}"
    elif isinstance(centre, nn.Module):
        state = {**parameters_of(centre), **buffers_of(centre)}
        what = "the centre model"
    elif isinstance(centre, Mapping):
        state = dict(centre)
        what = "the centre state"
    else:
        raise InputTypeError(
            f"centre is a {type(centre).__name__}; pass None (the model's weights), a state "
            "dict, a model, or a checkpoint path"
        )
    state = _fold_aliases(model, state, what)
    c_params = {k: v for k, v in state.items() if k in params}
    check_same_layout(
        params,
        c_params | {k: v for k, v in state.items() if k not in params and k not in buffers},
        what=what,
    )
    c_buffers = {k: state.get(k, v).detach() for k, v in buffers.items()}
    for k, v in c_buffers.items():
        if v.shape != buffers[k].shape:
            raise InputError(
                f"{what} has shape {tuple(v.shape)} for buffer {k!r} but the model has "
                f"{tuple(buffers[k].shape)}: {what} was made for another model"
            )
    for k, v in c_params.items():
        if v.dtype != params[k].dtype:
            c_params[k] = v.to(params[k].dtype)
    # In the model's parameter order (a checkpoint may list them sorted).
    return {k: c_params[k].detach() for k in params}, c_buffers


def _fold_aliases(model: nn.Module, state: dict, what: str) -> dict:
    """A state whose tied-tensor aliases (``dec.weight`` = ``enc.weight``) are folded into
    the name ``named_parameters()`` keeps; refused where two aliases disagree."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    named = (*model.named_parameters(remove_duplicate=False),
             *model.named_buffers(remove_duplicate=False))
    for name, t in named:
        kept = first.setdefault(id(t), name)
        if kept != name:
            aliases[name] = kept
    if not aliases.keys() & state.keys():
        return state
    state = dict(state)
    for alias, kept in aliases.items():
        if alias not in state:
            continue
        v = state.pop(alias)
        if kept in state and not torch.equal(v, state[kept]):
            raise InputError(
                f"{what} has different values for {alias!r} and {kept!r}, which are one tied "
                "tensor in the model: it was not saved from this model"
            )
        state.setdefault(kept, v)
    return state


def resolve_device(model: nn.Module, device: Any) -> torch.device:
    """``device`` checked (it must exist here), or the model's own device if None."""
    if device is not None:
        if not isinstance(device, str | torch.device):
            raise InputTypeError(f"device={device!r} must be a str or torch.device, e.g. 'cpu'")
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(
                f"device {device!r} is not a torch device, e.g. 'cpu' or 'cuda:0'"
            ) from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} asked for, but this torch sees no CUDA device: "
                "use device='cpu' or install a CUDA build of torch"
            )
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise InputError(
                f"device {device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")
