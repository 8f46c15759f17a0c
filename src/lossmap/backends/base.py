"""The interface between lossmap's core and a framework (PyTorch, JAX, FSDP2-sharded PyTorch).

The core (:mod:`lossmap.scan.plan`, :mod:`lossmap.scan.api`, the direction builders)
speaks to a model only through a :class:`Backend`, found at run time by
:func:`lossmap.backends.registry.find_backend`; it never imports a backend's
module. A backend does seven things:

1. **Weights.** :meth:`Backend.state` turns a model (and an optional centre) into
   ``(params, buffers)``: CPU ``torch.Tensor`` dicts keyed by the names the
   directions use (a sharded model: its DTensors, of the full shapes). Direction
   maths, fingerprints (:meth:`Backend.centre_fingerprint`) and the store work on those.
2. **Filter axis.** :attr:`Backend.filter_axis` names the axis of a weight tensor
   that indexes its output units (0 for PyTorch, -1 for Flax kernels), for
   ``norm="filter"``.
3. **Options.** :attr:`Backend.restricted` declares the scan options it honours
   only for some values, with the reason it refuses the others;
   :meth:`Backend.check_supported` refuses them, naming the option and why.
4. **Evaluator.** :meth:`Backend.evaluator` builds an :class:`Evaluator` from a
   :class:`ResolvedScan` (a :class:`~lossmap.scan.plan.Plan`), after running the
   model and metrics on a few samples so a mismatch is named before anything
   is computed.
5. **Probe.** :meth:`Backend.probe` evaluates every variable at the centre on a
   fixed small sample: a store records it, and refuses to be resumed by a
   computation that gives other values (another model or loss setting).
6. **Round-off.** :meth:`Backend.roundoff` measures the evaluation's own
   numerical error per variable (the round-off floor the convexity verdicts
   use), or returns None where it is not measured.
7. **Slopes.** :meth:`Backend.centre_slopes` gives the slope at the centre
   along each direction with its standard error, from per-example
   derivatives, or None where it is not measured.

The plan's contents (:class:`ResolvedScan`) are declared here, where backends
read them; :class:`lossmap.scan.plan.Plan` adds the steps
that run it, so the core depends on the backends and never the other way.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from .. import params as P
from ..errors import InputError

if TYPE_CHECKING:
    from ..data.splits import Split
    from ..directions.direction import Direction
    from ..scan.options import ScanOptions
    from ..scan.spec import ScanSpec

#: How the points of a chunk run, the same words for every backend: "loop" one point
#: after another, "vmap" the chunk as one batched call, "auto" the backend's choice.
STRATEGIES = ("auto", "loop", "vmap")

#: Samples per split on which :meth:`Backend.probe` evaluates the centre.
PROBE_SAMPLES = 64


class Evaluator:
    """What the scan driver and the profile read from an evaluator (every backend's).

    Every backend's evaluator derives from this class: the annotated
    attributes are required, the optional features have their defaults here.
    """

    device: torch.device  #: where a torchrun group exchanges results
    chunk: int  #: points per :meth:`evaluate` call, at most
    timings: dict[str, float]  #: seconds per stage (data, build, first_layer, forward, …)
    batch_size: int  #: samples per forward pass
    n: list[int]  #: samples per split
    variables: list[str]  #: column names ``split_metric`` in the order :meth:`evaluate` gives
    strategy: str  #: the strategy in use: "loop" or "vmap"
    compiled: bool  #: whether points run as compiled programs (``torch.compile``, ``jax.jit``)
    precision: str  #: "full", or the autocast dtype's name
    reuses_first_layer: bool  #: whether exact first-layer reuse is active

    #: Whether :meth:`evaluate` gives standard errors (``errors=True``).
    errors: bool = False
    #: Whether every rank of a torchrun job must evaluate every point, in the same
    #: order (a sharded model: :mod:`lossmap.backends.sharded`); rank 0's results count.
    collective: bool = False

    def evaluate(self, points: np.ndarray, *, errors: bool = False) -> Any:
        """Values (K, len(variables)) float64 at K points (K, ndim).

        With ``errors=True``: ``(values, standard_errors)``, two such arrays, NaN
        where a metric has no per-example terms (or three, with the paired
        errors). An evaluator that cannot give errors has ``errors`` False and
        is never asked for them.
        """
        raise NotImplementedError

    def extra_profile(self) -> dict[str, Any]:
        """Facts of this evaluator for ``Surface.profile``, beyond :func:`profile_of`'s."""
        return {}

    def restore(self) -> None:
        """Write back whatever evaluating changed in the model (nothing, by default).

        Called once the scan ends, also after an error or Ctrl-C.
        """


@dataclass
class ResolvedScan:
    """A scan's checked, resolved inputs: what a backend reads from a plan.

    :class:`lossmap.scan.plan.Plan` is one, with the steps that run it.

    Attributes
    ----------
    backend : Backend
        The model's backend (PyTorch, sharded PyTorch or JAX), found at run time.
    model : object
        The user's model, never changed.
    loss_fn : callable
    spec : ScanSpec
        What the scan computes; stored with it and compared on resume.
    fingerprints : dict of str to str
        Hashes of the centre, directions and data splits.
    directions : list of Direction
    splits : list of Split
        The data, read once, in its fixed order (a subset when ``samples`` is set).
    metrics : dict of str to callable
        Column name → ``f(outputs, targets)`` returning the batch mean.
    params, buffers : dict of str to Tensor
        The centre's weights (CPU tensors, names as in the directions).
    options : ScanOptions
        How it runs (:class:`lossmap.scan.options.ScanOptions`).
    bn_data : Split, optional
        The samples BatchNorm statistics are re-estimated from (``bn="recompute"``).
    path : Curve, optional
        A scan along it: the grid is in t, :meth:`coefficients` maps it (lossmap.scan.path).
    """

    backend: Backend
    model: Any
    loss_fn: Callable
    spec: ScanSpec
    fingerprints: dict[str, str]
    directions: list[Direction]
    splits: list[Split]
    metrics: dict[str, Callable]
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    options: ScanOptions
    bn_data: Split | None = None
    path: Any = None  # the Curve of a path scan (lossmap.scan.path), else None

    def coefficients(self, points: Any) -> Any:
        """The directions' coefficients at grid points: the points, or along a path basis(t)[1:]."""
        if self.path is None:
            return points
        t = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, 0]
        return self.path.coefficients(t)


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
    out.update(evaluator.extra_profile())
    if seconds is not None:
        out["seconds"] = float(seconds)
    return out


class Backend(ABC):
    """One framework's way of reading a model and evaluating it at many points."""

    #: Short name, recorded in a scan's metadata ("torch", "sharded", "jax").
    name: str = ""
    #: Axis of a weight tensor that indexes its output units (``norm="filter"``).
    filter_axis: int = 0
    #: The models it scans, in a refusal's words ("for <models>").
    models: str = "this model"
    #: The scan options (``ScanOptions`` fields, ``centre``, ``path``) it honours only
    #: for some values: name -> (the values it accepts, why it refuses any other). An
    #: option not named accepts every value: the default, every option.
    restricted: ClassVar[Mapping[str, tuple[tuple[Any, ...], str]]] = {}

    @abstractmethod
    def owns(self, model: Any) -> bool:
        """Whether ``model`` is one of this backend's model forms."""

    @abstractmethod
    def state(self, model: Any, centre: Any = None) -> tuple[dict, dict]:
        """``(params, buffers)`` of the centre (default: the model's weights) as CPU tensors."""

    def centre_fingerprint(self, params: Mapping[str, Any], buffers: Mapping[str, Any]) -> str:
        """The hash a store records for the centre (:func:`lossmap.params.fingerprint`)."""
        return P.fingerprint({**params, **buffers})

    @abstractmethod
    def builtin_metrics(self) -> Mapping[str, Callable]:
        """The metrics known by name besides ``"loss"`` (``{"accuracy": fn}``)."""

    def check_supported(self, arguments: Mapping[str, Any]) -> None:
        """Refuse, naming it and why, an argument whose value :attr:`restricted` does not accept."""
        for key, (accepted, why) in self.restricted.items():
            value = arguments.get(key)
            if not any(value is v or (type(value) is type(v) and value == v) for v in accepted):
                simple = isinstance(value, (str, int, float, type(None)))
                shown = repr(value) if simple else f"<a {type(value).__name__}>"
                raise InputError(f"{key}={shown} is not supported for {self.models}: {why}")

    def check_options(self, options: ScanOptions) -> None:  # noqa: B027 (optional, no-op)
        """Refuse, naming it, a combination of options this backend cannot honour.

        What :attr:`restricted` cannot say (the default: nothing more to refuse;
        the PyTorch evaluator refuses its own combinations, compile with vmap, …).
        """

    def convert_data(self, data: Any) -> Any:
        """The user's splits in the form :func:`lossmap.data.splits.as_splits` reads."""
        return data

    def guard(self, model: Any) -> contextlib.AbstractContextManager:
        """A context in which the model may be evaluated and after which it is unchanged."""
        return contextlib.nullcontext(model)

    @abstractmethod
    def evaluator(self, plan: ResolvedScan) -> Evaluator:
        """Check the model and metrics on a few samples, then build the evaluator."""

    @abstractmethod
    def probe(self, plan: ResolvedScan, evaluator: Evaluator) -> dict[str, float]:
        """Every variable at the centre on the first :data:`PROBE_SAMPLES` samples of each split.

        Computed the same way at every run of the same plan, so that a store can
        tell a resumed scan of the same computation from another one (a model
        with the same weights but another activation, another loss setting).
        """

    def roundoff(self, plan: ResolvedScan, evaluator: Evaluator) -> dict[str, float] | None:
        """The scan's round-off floor per variable, or None: not measured (the default).

        A backend that measures it re-evaluates a few grid points (at most 5)
        with ``evaluator`` and in higher precision and returns, per variable,
        the largest difference (:mod:`lossmap.backends.torch.roundoff`).
        """
        return None

    def centre_slopes(self, plan: ResolvedScan, evaluator: Evaluator | None = None
                      ) -> dict[str, list[dict[str, float]]] | None:
        """Per variable and direction, the slope at the centre with its standard error, or None.

        ``{"train_loss": [{"slope", "se", "n"}, …one per direction], …}`` from the
        per-example directional derivatives (:mod:`lossmap.backends.torch.slopes`), for
        the metrics with per-example terms; None where not measured (the default).
        ``evaluator``: the scan's, whose batches and kept work a backend may reuse.
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
