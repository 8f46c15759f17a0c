"""``lm.curvature_operator``: build a :class:`~lossmap.curvature.operator.CurvatureOperator`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .checks import check_int, check_model
from .engine import Engine
from .likelihood import FISHER_TYPES, KINDS, likelihood_of
from .operator import CurvatureOperator


def curvature_operator(
    model: nn.Module,
    loss_fn: Callable | None,
    data: Any,
    *,
    kind: str = "hessian",
    params: Any = None,
    fisher_type: str = "exact",
    mc_samples: int = 1,
    centre: Any = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    engine: str = "lossmap",
) -> CurvatureOperator:
    """The curvature of a model's mean loss over one split, as an operator.

    Parameters
    ----------
    model : nn.Module
        The network; read only (``functional_call`` on a copy of the centre),
        in evaluation mode; it comes back bit-identical.
    loss_fn : callable or None
        ``loss_fn(outputs, targets)`` returning the batch mean (a scalar), or
        ``(total, count)`` as :func:`lossmap.metrics.model_loss`; for dict
        batches it gets ``(outputs, batch)``, and None means the model's own
        ``outputs.loss`` (Hessian only). For the GGN and the Fishers it gets
        the output tensor (or ``outputs.logits``).
    data : DataLoader, (X, y) tuple, iterable of batches, dict batches, or one-entry dict
        One split, read once; C is of the exact mean over its samples.
    kind : {"hessian", "ggn", "fisher", "empirical_fisher"}, default "hessian"
        The matrix: the Hessian; the generalized Gauss–Newton Jᵀ ∇²ₒℓ J; the
        Fisher of the model's predictive distribution (needs
        ``CrossEntropyLoss`` or ``MSELoss``); the empirical Fisher, the mean
        outer product of per-example gradients.
    params : list of str, str (regex) or None, default None
        Take C with respect to these parameters only (the others stay at the
        centre): LoRA adapters (``params="lora_"``), one block.
    fisher_type : {"exact", "mc"}, default "exact"
        ``kind="fisher"``: the exact type-2 Fisher (a sum over every class,
        weighted by the model's probabilities) or a Monte Carlo estimate from
        ``mc_samples`` labels drawn from the model (seeded by ``seed``).
    mc_samples : int, default 1
        Labels drawn per example for ``fisher_type="mc"``.
    centre : None, dict, nn.Module or path, optional
        Where C is taken; default the model's current weights and buffers.
    device : str or torch.device, optional
        Default the model's device.
    batch_size : int, optional
        Default the loader's, else 1024; C does not depend on it.
    samples : int, optional
        A fixed random subset of this many samples (seeded by ``seed``).
    seed : int, default 0
        Seed of ``samples`` and of the Monte Carlo labels.
    dtype : torch.dtype, optional
        Compute in this dtype (e.g. ``torch.float64`` for small eigenvalues).
    engine : {"lossmap", "curvlinops"}, default "lossmap"
        Who computes the products: lossmap's own autograd code (any batches
        and loss), or curvlinops' operators (``(X, y)`` batches and a torch
        loss module only); the two agree to round-off. See docs/curvature.md
        for the measured speed and memory of each.

    Returns
    -------
    CurvatureOperator

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 1, bias=False).double()
    >>> X = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> H = lm.curvature_operator(net, torch.nn.MSELoss(), (X, torch.zeros(3, 1).double()))
    >>> dirs = H.eigenpairs(1)  # H = 2/N · XᵀX = diag(2/3, 8/3, 6)
    >>> round(dirs[0].meta["eigenvalue"], 6), H.dim
    (6.0, 3)
    """
    if kind not in KINDS:
        raise InputError(f"kind={kind!r} must be one of {', '.join(map(repr, KINDS))}")
    if fisher_type not in FISHER_TYPES:
        raise InputError(f"fisher_type={fisher_type!r} must be 'exact' or 'mc'")
    check_int(mc_samples, "mc_samples", minimum=1)
    if loss_fn is None:
        if kind != "hessian":
            raise InputError(
                f"kind={kind!r} needs a loss_fn of the outputs (e.g. torch.nn."
                "CrossEntropyLoss()); the model's own outputs.loss gives the Hessian"
            )
        from ..metrics import model_loss

        loss_fn = model_loss
    check_model(model, loss_fn)
    if kind == "fisher":
        likelihood_of(loss_fn)
    if engine not in ("lossmap", "curvlinops"):
        raise InputError(f"engine={engine!r} must be 'lossmap' or 'curvlinops'")
    cls = Engine
    if engine == "curvlinops":
        from .external import CurvlinopsEngine

        cls = CurvlinopsEngine
    built = cls(
        model,
        loss_fn,
        data,
        kind=kind,
        centre=centre,
        device=device,
        batch_size=batch_size,
        samples=samples,
        seed=seed,
        params=params,
        dtype=dtype,
        fisher_type=fisher_type,
        mc_samples=mc_samples,
    )
    if engine == "curvlinops":
        from .external import check_served

        check_served(loss_fn, built)
    meta = {
        "kind": kind,
        "params": None if params is None else list(built.names),
        "samples": samples,
    }
    if kind == "fisher":
        meta["fisher_type"] = fisher_type
    return CurvatureOperator(model, built, meta)
