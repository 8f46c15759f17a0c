"""What the optimizer says about the step: its learning rate, momentum and Adam's P.

Read by :class:`lossmap.callbacks.sharpness.SharpnessRecorder` at each
measured step; nothing here changes the optimizer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError


def _groups(optimizer: torch.optim.Optimizer, model: nn.Module, names: list[str]) -> list[tuple]:
    """(name, parameter, its param group) for each measured parameter."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    out = []
    for n in names:
        g = group_of.get(id(params[n]))
        if g is None:
            raise InputError(
                f"parameter {n!r} is measured but not trained by the optimizer: pass "
                "params= naming the trained parameters"
            )
        out.append((n, params[n], g))
    return out


def learning_rate(
    optimizer: torch.optim.Optimizer, model: nn.Module, names: list[str]
) -> tuple[float, float]:
    """η (shared by the measured parameters' groups) and the stability edge with momentum."""
    groups = {id(g): g for _, _, g in _groups(optimizer, model, names)}.values()
    lrs = {float(g["lr"]) for g in groups}
    if len(lrs) != 1:
        raise InputError(
            f"the measured parameters have learning rates {sorted(lrs)}: 2/η needs one; pass "
            "params= naming parameters of one group"
        )
    (lr,) = lrs
    if lr < 0:
        raise InputError(f"the optimizer's learning rate is {lr}: 2/η needs lr >= 0")
    if lr == 0:  # e.g. a schedule's last step: no edge
        return lr, math.inf
    g = next(iter(groups))
    if "betas" in g:  # Adam-type: momentum is an average, (1 − β₁) g per step
        b1 = float(g["betas"][0])
        return lr, (2 + 2 * b1) / ((1 - b1) * lr)
    beta = float(g.get("momentum", 0.0) or 0.0)
    return lr, (2 + 2 * beta) / lr


def adam_preconditioner(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    names: list[str],
    *,
    required: bool | str = "auto",
) -> torch.Tensor | None:
    """P = √v̂ + ε (flat float64, in the order of ``names``) from an Adam-type optimizer's state.

    v̂ = ``exp_avg_sq`` / (1 − β₂ᵗ) (``max_exp_avg_sq`` under amsgrad), t the
    parameter's step count. None where no parameter has a state yet (before
    the first step) or, with ``required="auto"``, where the optimizer keeps
    no ``exp_avg_sq``.
    """
    parts = []
    for _, p, g in _groups(optimizer, model, names):
        st = optimizer.state.get(p, {})
        if "exp_avg_sq" not in st:
            if required is True and "betas" not in g:
                raise InputError(
                    f"preconditioned=True needs an Adam-type optimizer (exp_avg_sq in its "
                    f"state); {type(optimizer).__name__} keeps none"
                )
            return None
        v = st["max_exp_avg_sq"] if g.get("amsgrad") else st["exp_avg_sq"]
        t = float(st["step"])
        vhat = v.detach().to("cpu", torch.float64) / (1 - float(g["betas"][1]) ** t)
        parts.append((vhat.sqrt() + float(g["eps"])).reshape(-1))
    return torch.cat(parts)
