"""``lm.sharpness``: worst-case, average-case, PAC-Bayes and random-direction sharpness."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .. import params as P
from ..analysis.finding import Evidence, SharpnessMeasure
from ..backends.torch.restore import preserved
from ..data.splits import as_split
from ..directions.direction import Direction
from ..directions.subset import Pattern, select_params, subset_meta
from ..errors import InputError, InputTypeError
from .measures import KINDS as _KINDS
from .measures import se_rule
from .objective import Objective, units_of

__all__ = ["KINDS", "sharpness"]

KINDS = ("worst", "average", "pac-bayes", "random")
NORMS = ("l2", "linf")
_LEGACY = ("epsilon", "n_directions", "n_points", "ignore")
_LEGACY_NORMS = ("unit", "filter", "layer", "model")


def _positive_int(name: str, v: Any, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise InputError(f"{name}={v!r} must be an integer >= {lo}")
    return int(v)


def _legacy_call(model, loss_fn, data, norm, seed, split, kw) -> Any:
    from .legacy import random_lines

    eps = kw.get("epsilon", "RHO")
    warnings.warn(
        "lm.sharpness(..., epsilon=, n_directions=, norm='unit'|'filter'|...) is the random-lines "
        "ε-sharpness of lossmap 0.1, which is not invariant to rescaling; write "
        f"lm.sharpness(model, loss_fn, data, rho={eps}, kind='worst') (adaptive worst-case "
        f"sharpness) or lm.sharpness(model, loss_fn, data, rho={eps}, kind='random', "
        f"draws={kw.get('n_directions', 8)}) for sampled directions",
        FutureWarning,
        stacklevel=3,
    )
    if "epsilon" not in kw:
        raise InputError(
            "the 0.1 call needs epsilon= (the ball's radius); better, pass rho= "
            "and kind= (see lm.sharpness)"
        )
    return random_lines(
        model, loss_fn, data, norm="unit" if norm == "l2" else norm, seed=seed, split=split, **kw
    )


def sharpness(
    model: Any,
    loss_fn: Callable,
    data: Any,
    *,
    rho: float | None = None,
    kind: str = "worst",
    norm: str = "l2",
    adaptive: bool = True,
    m: int | None = None,
    steps: int = 20,
    restarts: int = 1,
    params: Pattern | None = None,
    seed: int = 0,
    draws: int | None = None,
    split: str | None = None,
    samples: int | None = None,
    batch_size: int = 256,
    device: Any = None,
    **legacy: Any,
) -> Any:
    """The sharpness of the loss at the model's weights, with its standard error.

    Perturbations are ``δ = s ⊙ γ`` with ``s = |w|`` (``adaptive=True``, the
    default: invariant to rescaling layers of a ReLU net and weights BatchNorm
    follows) or ``s = 1``, and ``γ`` in the ball ``‖γ‖₂ ≤ ρ`` or the box
    ``‖γ‖∞ ≤ ρ``:

    * ``"worst"`` — ``max_γ L(w + δ) − L(w)`` by Auto-PGD ascent (``steps``
      steps, ``restarts`` random starts; Andriushchenko et al. 2023, ASAM).
      With ``m``, the m-sharpness: the mean over batches of m examples of
      each batch's own worst case.
    * ``"average"`` — ``E L(w + δ) − L(w)`` with ``γ ~ N(0, ρ² I)``
      (``draws`` draws; the norm does not apply).
    * ``"pac-bayes"`` — ``value`` is σ: the largest noise level whose
      Gaussian noise, N(0, σ²) (``adaptive=False``) or N(0, σ²w² + 10⁻⁶)
      (magnitude-aware), raises the loss by ``rho`` on average (Jiang et
      al. 2020), found by bisection. Here ``rho`` is that rise.
    * ``"random"`` — the largest rise at ``±γ`` over ``draws`` random γ on the
      sphere of radius ρ (ℓ2) or at corners of the box (ℓ∞): a lower bound of
      ``"worst"``.

    The 0.1 call ``lm.sharpness(model, loss_fn, data, epsilon=..., n_directions=...,
    n_points=..., norm="unit"|"filter"|"layer"|"model", ignore=...)`` still
    works (random lines scanned by ``lm.scan``, the old ``Sharpness``
    finding) and warns with the new call.

    Parameters
    ----------
    model : nn.Module
    loss_fn : callable
        ``loss_fn(outputs, targets)`` (or ``(outputs, batch)`` for dict batches),
        as in :func:`lossmap.scan`.
    data : split or dict of str to split
        An ``(X, y)`` pair, a loader, dict batches…; with several splits,
        ``split`` (default ``"train"``, else the first) is used.
    rho : float
        The radius of the ball or box (for ``"average"`` the noise's
        standard deviation per coordinate of γ; for ``"pac-bayes"`` the rise).
    kind : {"worst", "average", "pac-bayes", "random"}, default "worst"
    norm : {"l2", "linf"}, default "l2"
    adaptive : bool, default True
        Scale perturbations by ``|w|`` (invariant); False: plain.
    m : int, optional
        Batch size of m-sharpness (``"worst"``, ``"average"``, ``"random"``);
        None: one perturbation for the whole split.
    steps : int, default 20
        Ascent steps per start (``"worst"``).
    restarts : int, default 1
        Random starts per unit; the best counts (``"worst"``).
    params : str, list of str or callable, optional
        Only these tensors move (a glob such as ``"*lora_*"``; see
        :func:`lossmap.directions.subset.select_params`).
    seed : int, default 0
        Seeds the starts, the draws and the ``samples`` subset.
    draws : int, optional
        Monte Carlo draws: default 32 (``"average"``, ``"pac-bayes"``) or
        100 (``"random"``).
    split : str, optional
    samples : int, optional
        Use a fixed random subset of this many examples (seeded by ``seed``).
    batch_size : int, default 256
        Examples per forward pass when ``m`` is None.
    device : str or torch.device, optional
        Default: the model's.
    **legacy
        The 0.1 call's ``epsilon``, ``n_directions``, ``n_points``, ``ignore``
        and scan options.

    Returns
    -------
    SharpnessMeasure
        ``value`` (the rise; σ for ``"pac-bayes"``), ``se`` (over the m-batches,
        the draws, or the examples for one worst/random perturbation: the paired
        s.e. of its rise), ``centre_loss``, ``perturbed_loss``, ``direction``
        (δ as a :class:`~lossmap.directions.Direction` that ``lm.scan`` takes:
        α = 1 is the point found; the worst batch's with ``m``; a median draw
        for ``"average"``; None for ``"pac-bayes"``), ``gradient_evaluations``.

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> torch.manual_seed(0) and None
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> r = lm.sharpness(net, torch.nn.CrossEntropyLoss(), (X, y), rho=0.05)
    >>> r.kind, r.measure, r.value > 0, r.se > 0, r.gradient_evaluations
    ('sharpness_measure', 'worst', True, True, 21)
    >>> abs(r.value - (r.perturbed_loss - r.centre_loss)) < 1e-6, r.direction.norm() <= 0.05 + 1e-6
    (True, True)
    """
    if rho is not None and legacy:
        raise InputTypeError(
            f"lm.sharpness got {', '.join(sorted(legacy))}: with rho= those are not options "
            f"(the 0.1 call takes {', '.join(_LEGACY)} without rho); see lm.sharpness's "
            "parameters"
        )
    if legacy or norm in _LEGACY_NORMS or rho is None:
        if not legacy and norm not in _LEGACY_NORMS:
            raise InputError(
                "rho= is missing: the radius of the ball (e.g. rho=0.05), or for "
                "kind='pac-bayes' the loss rise σ is found for"
            )
        passed = {
            "samples": samples,
            "device": device,
            "batch_size": None if batch_size == 256 else batch_size,
        }
        return _legacy_call(
            model,
            loss_fn,
            data,
            norm,
            seed,
            split,
            {**{k: v for k, v in passed.items() if v is not None}, **legacy},
        )
    if kind not in KINDS:
        raise InputError(f"kind={kind!r} must be one of {', '.join(map(repr, KINDS))}")
    if norm not in NORMS:
        raise InputError(f"norm={norm!r} must be 'l2' or 'linf'")
    if kind in ("average", "pac-bayes") and norm != "l2":
        raise InputError(
            f"norm={norm!r} applies to kind='worst' and 'random'; kind={kind!r} "
            "draws Gaussian noise: leave norm out"
        )
    if not (
        isinstance(rho, (int, float))
        and not isinstance(rho, bool)
        and math.isfinite(rho)
        and rho > 0
    ):
        raise InputError(f"rho={rho!r} must be a positive number")
    if not isinstance(adaptive, bool):
        raise InputTypeError(f"adaptive={adaptive!r} must be True or False")
    steps, restarts = _positive_int("steps", steps), _positive_int("restarts", restarts)
    batch_size = _positive_int("batch_size", batch_size)
    draws = _positive_int(
        "draws",
        draws if draws is not None else (100 if kind == "random" else 32),
        2 if kind != "random" else 1,
    )
    if m is not None:
        m = _positive_int("m", m)
        if kind == "pac-bayes":
            raise InputError(
                "m= applies to kind='worst', 'average' and 'random'; PAC-Bayes σ is "
                "for the whole split: leave m out"
            )
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(
            f"model is a {type(model).__name__}; lm.sharpness takes a torch.nn.Module"
        )
    if isinstance(data, Mapping):
        split = split or ("train" if "train" in data else next(iter(data)))
        if split not in data:
            raise InputError(f"split={split!r} is not a split of data ({', '.join(data)})")
        data = data[split]
    split = split or "data"
    theta, buffers = P.resolve_centre(model, None)
    names = select_params(theta, params)
    dev = P.resolve_device(model, device)
    with preserved(model):
        s = as_split(data, split, samples=samples, seed=seed)
        kind_, units = units_of(s, m, batch_size)
        obj = Objective(
            model,
            loss_fn,
            kind_,
            units,
            names,
            theta,
            buffers,
            adaptive and kind != "pac-bayes",
            dev,
        )
        run = _KINDS[kind]
        out = run(
            obj,
            rho=rho,
            norm=norm,
            adaptive=adaptive,
            steps=steps,
            restarts=restarts,
            draws=draws,
            seed=seed,
        )
    value, se, centre, perturbed, delta, per_unit, n = out
    direction = (
        None
        if delta is None
        else Direction(
            delta,
            {
                "kind": "sharpness",
                "measure": kind,
                "rho": float(rho),
                "norm": norm,
                "adaptive": adaptive,
                **subset_meta(params, delta),
            },
        )
    )
    return SharpnessMeasure(
        variable=f"{split}_loss",
        value=float(value),
        se=None if se is None else float(se),
        resolved=None if se is None or not math.isfinite(se) else bool(abs(value) > 2 * se),
        measure=kind,
        rho=float(rho),
        norm=norm,
        adaptive=adaptive,
        m=m,
        centre_loss=centre,
        perturbed_loss=perturbed,
        direction=direction,
        units=len(per_unit),
        gradient_evaluations=obj.gradients,
        evaluations=obj.forwards,
        steps=steps if kind == "worst" else 0,
        restarts=restarts if kind == "worst" else 0,
        draws=draws if kind != "worst" else 0,
        split=split,
        per_unit=tuple(float(x) for x in per_unit[:64]),
        evidence=Evidence(
            n=n,
            split=split,
            centre_value=centre,
            se_rule=se_rule(kind, len(units)),
            dtype=str(theta[names[0]].dtype).removeprefix("torch."),  # the model's own
        ),
    )
