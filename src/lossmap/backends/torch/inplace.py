"""ReLUs that may run in place in the evaluator's copy of the model.

An ``nn.ReLU`` inside a plain ``nn.Sequential`` whose previous module is an
``nn.Linear`` or ``nn.ConvNd`` receives a tensor that layer has just
allocated and that nothing else sees (the Sequential hands it on and drops
it), as long as nothing but Sequentials' own loops can call it: the model
and every container on the way to it are plain ``nn.Sequential`` (a custom
forward could call the ReLU module on a tensor it uses again). Overwriting
that tensor gives the same values as writing a new one, without
allocating and filling a second copy of the activations at every batch of
every point. :func:`relus_in_place` makes a structural copy of the model in
which those ReLUs are ``nn.ReLU(inplace=True)``; the user's model is not
changed. Forward hooks on either module, or global ones, keep a ReLU as it
is (a hook may keep the layer's output).
"""

from __future__ import annotations

import copy
import itertools

from torch import nn
from torch.nn.modules import module as _module

_MAKERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks)


def _plain(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def _sequentials(m: nn.Module, path: str = ""):
    """(path, module) of ``m`` and the plain Sequentials reached through plain Sequentials only."""
    if not _plain(m):
        return
    yield path, m
    for name, child in m._modules.items():
        if child is not None:
            yield from _sequentials(child, f"{path}.{name}" if path else name)


def _replaceable(seq: nn.Module) -> list[str]:
    """Names of the ReLUs of a plain Sequential that may run in place (see the module)."""
    keys = list(seq._modules)
    out = []
    for prev, name in itertools.pairwise(keys):
        a, b = seq._modules[prev], seq._modules[name]
        if (type(b) is nn.ReLU and not b.inplace and type(a) in _MAKERS
                and not _hooked(a) and not _hooked(b)):
            out.append(name)
    return out


def relus_in_place(model: nn.Module) -> tuple[nn.Module, int]:
    """A structural copy of ``model`` whose replaceable ReLUs run in place, and how many.

    Only the containers on the way to a replaced ReLU are copied (shallowly);
    parameters, buffers and every other module are shared. Where nothing is
    replaced (or global forward hooks exist), ``model`` itself is returned.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> copy_, n = relus_in_place(net)
    >>> n, copy_[1].inplace, net[1].inplace, copy_[0] is net[0]
    (1, True, False, True)
    """
    if any(getattr(_module, g, None) for g in ("_global_forward_hooks",
                                                 "_global_forward_pre_hooks")):
        return model, 0
    targets = [(path, name) for path, m in _sequentials(model) for name in _replaceable(m)]
    if not targets:
        return model, 0
    root = copy.copy(model)
    root._modules = dict(model._modules)
    copies = {"": root}

    def copied(path: str) -> nn.Module:
        if path not in copies:
            parent_path, _, name = path.rpartition(".")
            parent = copied(parent_path)
            child = copy.copy(parent._modules[name])
            child._modules = dict(child._modules)
            parent._modules[name] = child
            copies[path] = child
        return copies[path]

    for path, name in targets:
        copied(path)._modules[name] = nn.ReLU(inplace=True)
    return root, len(targets)
