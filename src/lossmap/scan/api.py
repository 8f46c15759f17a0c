"""``lm.scan``, the front door: plan the scan, run it on the model's backend, return a Surface.

Every door (the Python API, the ``lossmap`` command line, ``torchrun``) comes
through here. :func:`lossmap.scan.plan.plan_scan` checks and resolves the
arguments once, for any backend (the checkers: :mod:`lossmap.checks`);
:meth:`lossmap.scan.plan.Plan.run` builds the backend's evaluator, drives it over
the grid (:mod:`lossmap.scan.runner`) and writes the store.

The keyword options (``samples`` … ``profile``) are declared once, in
:class:`lossmap.scan.options.ScanOptions` (default, checker, help, flag, spec-file
key, record). They are written out here as well, for IDE completion, type hints
and a docstring the documentation builder reads from the source; a test
(``tests/test_scan_options.py``) compares their names and defaults with the
declaration, so they cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..directions.direction import Direction
from ..store import Store
from ..surface import Surface
from .plan import DEFAULT_METRICS, plan_scan


def scan(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    data: Mapping[str, Any],
    directions: Direction | Mapping | Sequence[Direction | Mapping] | None = None,
    grid: Any,
    centre: Any = None,
    metrics: Any = DEFAULT_METRICS,
    samples: int | None = None,
    store: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    seed: int = 0,
    strategy: str = "auto",
    reuse_first_layer: bool = True,
    bn: str = "eval",
    bn_samples: int = 1024,
    bn_split: str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    autocast: str | torch.dtype | None = None,
    profile: bool = False,
    meta: dict | None = None,
    path: Any = None,
    draws: int | None = None,
) -> Surface:
    """Evaluate loss and metrics on a line, a plane or a k-D grid in weight space, or a path.

    Each point is ``L(c + a·d1 [+ b·d2 + …])``: the exact mean over the samples of
    each split (weighted by batch sizes), in evaluation mode, without
    gradients. The model comes back bit-identical (parameters, buffers,
    train/eval mode, ``requires_grad``), also after an error or Ctrl-C. A model
    sharded with FSDP2 (``fully_shard``) is scanned inside its torchrun job,
    each rank forming its own shard (:mod:`lossmap.backends.sharded`).

    Parameters
    ----------
    model : nn.Module or JAX model
        The network; read only, through ``torch.func.functional_call``. A JAX
        model (``lossmap.jax.JaxModel``, a ``(linen.Module, variables)`` tuple
        or an ``nnx.Module``) runs on the JAX backend (:mod:`lossmap.jax`):
        same directions, store and Surface.
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning the batch mean, e.g.
        ``torch.nn.CrossEntropyLoss()``.
    data : dict of str to split
        Named splits; each a DataLoader, an ``(X, y)`` tuple of tensors, or
        an iterable of ``(X, y)`` batches. Read once and kept in memory.
    directions : Direction or list of 1 to 6 Directions
        One direction → a line (dim ``alpha``), two → a plane (``alpha``, ``beta``),
        up to six → a k-D grid (then ``gamma``, ``delta``, ``epsilon``, ``zeta``;
        ``surf.sel(gamma=0.0)`` is a plane again). Leave it out with ``path``.
    grid : list of (lo, hi, n) or "lo:hi:n", or a Design
        One axis per direction; for a line a single ``(lo, hi, n)`` also works;
        along a path one axis in t, e.g. ``(0, 1, 21)``. ``lm.design("sobol",
        points=N, box=(lo, hi))`` (or ``"lhs"``) samples N points in that box
        instead (dim ``point``; :mod:`lossmap.scan.design`). ``lm.estimate``
        takes the same arguments and says what the scan will cost.
    centre : None, dict, nn.Module or path, optional
        Centre of the slice; default the model's current weights.
    metrics : sequence, default ("loss", "accuracy")
        Names (``"loss"``, ``"accuracy"``), callables ``f(outputs, targets)``
        returning a batch mean, or a dict name → callable. With the default
        and float targets (regression), ``accuracy`` is dropped.
    samples : int, optional
        Evaluate a fixed random subset of this many samples of each split.
    store : path, optional
        SQLite store; an existing store of the same scan is resumed, one of
        another scan is refused. Without it, results live in memory only.
    device : str or torch.device, optional
        Default: the model's device.
    batch_size : int, optional
        Evaluation batch size (default: chosen so the largest layer output of a
        batch takes about 8 MB on the CPU, or with ``compile=True`` the largest
        output a compiled graph writes 16 MB; values agree to round-off).
    progress : bool, default True
        Show points done, points/s and ETA.
    seed : int, default 0
        Seed of the ``samples`` subset.
    strategy : {"auto", "loop", "vmap"}, default "auto"
        How the points of a chunk run, on every backend: one after another
        ("loop", the CPU default, faster there) or as one batched call
        ("vmap": ``torch.func.vmap`` / ``jax.vmap``, the accelerator default).
        Results agree to round-off.
    reuse_first_layer : bool, default True
        Exact first-layer reuse where it applies (detected automatically).
    bn : {"eval", "recompute"}, default "eval"
        BatchNorm at each point: the stored running statistics (the field's
        convention), or statistics re-estimated at every point from
        ``bn_samples`` fixed samples of ``bn_split`` (default ``"train"``, else
        the first split) — a more faithful surface of BN networks, at the cost
        of those extra forward passes.
    bn_samples : int, default 1024
    bn_split : str, optional
    channels_last : bool, optional
        Feed image batches in channels-last layout (default: on for 4-D data
        and a model with ``Conv2d`` layers; faster convolutions, same values
        to round-off).
    compile : bool, default False
        Evaluate each point through ``torch.compile`` (the first-layer
        combination fused with the layers after it). The compilation takes
        seconds to a minute, so it pays off on long scans; see
        ``benchmarks/RESULTS.md`` for when it was measured faster. Point loop
        (the CPU default) and ``bn="eval"`` only. Where compilation fails (no
        C++ compiler, say) the scan warns and goes on eagerly.
    autocast : {None, "bfloat16", "float16"}, default None
        Run the forward passes under ``torch.autocast`` with this dtype
        (meant for GPUs with bf16/fp16 units; bf16 keeps 8 significant bits,
        enough to blur flat regions; 4.2x slower on a CPU without bf16
        instructions, see ``benchmarks/RESULTS.md``). The reused
        first layer and all sums stay in full precision. Part of the spec: a
        store is never resumed in another precision.
    profile : bool, default False
        Print where the time went (data, parameter building, first layer,
        forward + metrics, store). The returned Surface's ``profile`` holds the
        same facts in any case.
    meta : dict, optional
        JSON-serializable annotations kept with the result (``Surface.meta``) and in
        the store, e.g. a projected training path or model coordinates.
    path : Curve or path, optional
        Scan along this :class:`~lossmap.curves.Curve` (or the file
        ``Curve.save`` wrote) instead of a line or plane: the Surface has one
        dimension, ``t``, with t = 0 and 1 the curve's endpoints; the centre
        is its first control point (no ``centre``, no ``directions``). With
        ``bn="recompute"`` the BatchNorm statistics are re-estimated at every
        t (the REPAIR-style reset). See :mod:`lossmap.scan.path`.
    draws : int, optional
        Repeat the line, plane or grid over this many draws (K ≥ 2) of the
        random directions given — the same rule and grid, draw 0 the
        directions themselves, draw k seeded by
        :func:`lossmap.scan.draws.draw_seed` (recorded in ``spec.draws``). One
        scan, one store (resumable), one Surface whose first dimension is
        ``draw``: ``surf.sel(draw=k)`` is draw k's ordinary Surface;
        ``lm.over_draws`` gives each direction-dependent number's spread over
        draws. See :mod:`lossmap.scan.draws`.

    Returns
    -------
    Surface

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> d = lm.random_direction(net, seed=0)
    >>> surf = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...                directions=d, grid=(-1, 1, 5), progress=False)
    >>> surf["train_loss"].shape
    (5,)
    """
    plan = plan_scan(
        model, loss_fn, data=data, directions=directions, grid=grid, centre=centre,
        metrics=metrics, path=path, samples=samples, seed=seed, device=device,
        batch_size=batch_size, progress=progress, strategy=strategy,
        reuse_first_layer=reuse_first_layer, bn=bn, bn_samples=bn_samples, bn_split=bn_split,
        channels_last=channels_last, compile=compile, autocast=autocast, profile=profile,
        draws=draws,
    )
    return plan.run(store=store, meta=meta)


def load_directions(path: str | os.PathLike, centre: Any = None) -> list[Direction]:
    """The directions stored with a scan.

    Parameters
    ----------
    path : str or PathLike
        The store.
    centre : nn.Module or dict of str to Tensor, optional
        The scan's centre. Needed for directions the store keeps as their
        recipe (random directions above
        :data:`lossmap.directions.storage.RECIPE_ELEMENTS` values, or made with
        ``storage="recipe"``): they are drawn again around it and checked bit
        for bit. Without it such directions come back without tensors.

    Examples
    --------
    >>> import tempfile, torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    >>> d = lm.random_direction(net, seed=0, storage="recipe")
    >>> path = tempfile.mkdtemp() + "/line.lossmap"
    >>> _ = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)}, directions=d,
    ...             grid=(-1, 1, 3), store=path, progress=False)
    >>> len(lm.load_directions(path)[0])  # kept as its recipe: no tensors without the centre
    0
    >>> lm.load_directions(path, centre=net)[0].fingerprint() == d.fingerprint()
    True
    """
    with Store.open(Path(path)) as store:
        return store.directions(centre)
