"""The interface between lossmap's core and a framework (PyTorch, JAX).

The core (:mod:`lossmap.scan.plan`, :mod:`lossmap.scan.api`, the direction builders)
speaks to a model only through a :class:`Backend`, found at run time by
:func:`lossmap.backends.registry.find_backend`; it never imports a backend's
module. A backend does six things:

1. **Weights.** :meth:`Backend.state` turns a model (and an optional centre) into
   ``(params, buffers)``: CPU ``torch.Tensor`` dicts keyed by the names the
   directions use. Direction maths, fingerprints and the store work on those.
2. **Filter axis.** :attr:`Backend.filter_axis` names the axis of a weight tensor
   that indexes its output units (0 for PyTorch, -1 for Flax kernels), for
   ``norm="filter"``.
3. **Evaluator.** :meth:`Backend.evaluator` builds an object with the
   :class:`Evaluator` attributes from a :class:`~lossmap.scan.plan.Plan`, after
   running the model and metrics on a few samples so a mismatch is named
   before anything is computed.
4. **Probe.** :meth:`Backend.probe` evaluates every variable at the centre on a
   fixed small sample: a store records it, and refuses to be resumed by a
   computation that gives other values (another model or loss setting).
5. **Round-off.** :meth:`Backend.roundoff` measures the evaluation's own
   numerical error per variable (the round-off floor the convexity verdicts
   use), or returns None where it is not measured.
6. **Slopes.** :meth:`Backend.centre_slopes` gives the slope at the centre
   along each direction with its standard error, from per-example
   derivatives, or None where it is not measured.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import InputError

#: How the points of a chunk run, the same words for every backend: "loop" one point
#: after another, "vmap" the chunk as one batched call, "auto" the backend's choice.
STRATEGIES = ("auto", "loop", "vmap")

#: Samples per split on which :meth:`Backend.probe` evaluates the centre.
PROBE_SAMPLES = 64


class Evaluator(Protocol):
    """What the scan driver and the profile read from an evaluator (every backend's)."""

    device: torch.device  #: where a torchrun group exchanges results
    chunk: int  #: points per :meth:`evaluate` call, at most
    timings: dict[str, float]  #: seconds per stage (data, build, first_layer, forward, …)
    batch_size: int  #: samples per forward pass
    n: list[int]  #: samples per split

    @property
    def variables(self) -> list[str]:
        """Column names ``split_metric`` in the order :meth:`evaluate` returns them."""

    @property
    def strategy(self) -> str:
        """The strategy in use: "loop" or "vmap"."""

    @property
    def compiled(self) -> bool:
        """Whether points run as compiled programs (``torch.compile``, ``jax.jit``)."""

    @property
    def precision(self) -> str:
        """"full", or the autocast dtype's name."""

    @property
    def reuses_first_layer(self) -> bool:
        """Whether exact first-layer reuse is active."""

    def evaluate(self, points: np.ndarray, *, errors: bool = False) -> Any:
        """Values (K, len(variables)) float64 at K points (K, ndim).

        With ``errors=True``: ``(values, standard_errors)``, two such arrays, NaN
        where a metric has no per-example terms. An evaluator that cannot give
        errors has ``errors`` False and is never asked for them.
        """


class ScanOptions(Protocol):
    """The speed options a backend reads (:class:`lossmap.scan.plan.ScanOptions`)."""

    device: Any
    batch_size: int | None
    strategy: str
    reuse_first_layer: bool
    channels_last: bool | None
    compile: bool
    autocast: str | None
    bn: str


class Plan(Protocol):
    """What a backend reads from a scan's plan (:class:`lossmap.scan.plan.Plan`).

    Declared here, not imported, so that backends depend on this interface
    only and the plan module can depend on the backends.
    """

    model: Any
    options: ScanOptions
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    directions: list
    splits: list
    metrics: dict[str, Callable]
    bn_data: Any
    spec: Any

    def coefficients(self, points: Any) -> Any:
        """The evaluator's coefficients at grid points (a path scan maps t; else the same)."""


def profile_of(evaluator: Evaluator, seconds: float | None = None) -> dict[str, Any]:
    """The evaluator's plan and timings as a JSON-ready dict (``Surface.profile``)."""
    out: dict[str, Any] = {
        "strategy": evaluator.strategy,
        "reuses_first_layer": evaluator.reuses_first_layer,
        "chunk": evaluator.chunk,
        "batch_size": min(evaluator.batch_size, max(evaluator.n)),
        "compiled": evaluator.compiled,
        "precision": evaluator.precision,
        "timings": {k: float(v) for k, v in evaluator.timings.items()},
    }
    out.update(getattr(evaluator, "extra_profile", dict)())
    if seconds is not None:
        out["seconds"] = float(seconds)
    return out


class Backend(ABC):
    """One framework's way of reading a model and evaluating it at many points."""

    #: Short name, recorded in a scan's metadata ("torch", "jax").
    name: str = ""
    #: Axis of a weight tensor that indexes its output units (``norm="filter"``).
    filter_axis: int = 0

    @abstractmethod
    def owns(self, model: Any) -> bool:
        """Whether ``model`` is one of this backend's model forms."""

    @abstractmethod
    def state(self, model: Any, centre: Any = None) -> tuple[dict, dict]:
        """``(params, buffers)`` of the centre (default: the model's weights) as CPU tensors."""

    @abstractmethod
    def builtin_metrics(self) -> Mapping[str, Callable]:
        """The metrics known by name besides ``"loss"`` (``{"accuracy": fn}``)."""

    @abstractmethod
    def check_options(self, options: ScanOptions) -> None:
        """Refuse, naming it, an option this backend cannot honour (never drop it silently)."""

    def convert_data(self, data: Any) -> Any:
        """The user's splits in the form :func:`lossmap.data.splits.as_splits` reads."""
        return data

    def guard(self, model: Any) -> contextlib.AbstractContextManager:
        """A context in which the model may be evaluated and after which it is unchanged."""
        return contextlib.nullcontext(model)

    @abstractmethod
    def evaluator(self, plan: Plan) -> Evaluator:
        """Check the model and metrics on a few samples, then build the evaluator."""

    @abstractmethod
    def probe(self, plan: Plan, evaluator: Evaluator) -> dict[str, float]:
        """Every variable at the centre on the first :data:`PROBE_SAMPLES` samples of each split.

        Computed the same way at every run of the same plan, so that a store can
        tell a resumed scan of the same computation from another one (a model
        with the same weights but another activation, another loss setting).
        """

    def roundoff(self, plan: Plan, evaluator: Evaluator) -> dict[str, float] | None:
        """The scan's round-off floor per variable, or None: not measured (the default).

        A backend that measures it re-evaluates a few grid points (at most 5)
        with ``evaluator`` and in higher precision and returns, per variable,
        the largest difference (:mod:`lossmap.backends.torch.roundoff`).
        """
        return None

    def centre_slopes(self, plan: Plan) -> dict[str, list[dict[str, float]]] | None:
        """Per variable and direction, the slope at the centre with its standard error, or None.

        ``{"train_loss": [{"slope", "se", "n"}, …one per direction], …}`` from the
        per-example directional derivatives (:mod:`lossmap.backends.torch.slopes`), for
        the metrics with per-example terms; None where not measured (the default).
        """
        return None

    def loss(self, name: str) -> Callable:
        """The loss the command line's ``--loss cross_entropy`` / ``mse`` means here."""
        raise InputError(f"--loss {name!r} has no built-in meaning for the {self.name} backend")


def check_strategy(strategy: Any) -> str:
    """``strategy`` if it is one of :data:`STRATEGIES`, else an error naming them."""
    if strategy not in STRATEGIES:
        raise InputError(f"strategy={strategy!r} must be one of {', '.join(STRATEGIES)} "
                         "('loop': points one after another, 'vmap': a chunk in one call)")
    return strategy

