"""Builders shared by the test files: analytic surfaces, and a model moved along directions.

Imported as ``from helpers import …`` (pytest puts ``tests/`` on ``sys.path``, as
for ``cli_run``). A file whose tests want other defaults binds them once, e.g.
``line = functools.partial(helpers.line, lo=-0.5, hi=1.5, n=41)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lossmap.scan.spec import Axis, ScanSpec
from lossmap.surface import Surface

#: A variable's values: a function of the coordinate arrays, an array, or a number.
Values = Callable[..., Any] | np.ndarray | float


def surface(
    axes: Sequence[tuple[float, float, int]],
    values: Mapping[str, Values],
    *,
    dtype: str | None = None,
    errors: Mapping[str, Values] | None = None,
    meta: dict | None = None,
    **extra: Any,
) -> Surface:
    """A complete Surface on the grid ``axes`` (``(lo, hi, n)`` per dimension).

    ``values`` maps each variable (``"train_loss"``, ``"test_accuracy"`` …) to a
    function of the coordinate arrays (``np.meshgrid(..., indexing="ij")``, so
    ``values[i, j]`` is at ``(alpha_i, beta_j)``), an array or a number; the
    splits and metrics of the spec are read off those names, in order.
    ``errors`` is built the same way; ``extra`` goes to :class:`Surface`
    (``slopes``, ``samples``, ``roundoff`` …).
    """
    names = [name.split("_", 1) for name in values]
    splits = tuple(dict.fromkeys(split for split, _ in names))
    metrics = tuple(dict.fromkeys(metric for _, metric in names))
    kw = {} if dtype is None else {"dtype": dtype}
    spec = ScanSpec(grid=tuple(Axis(*a) for a in axes), splits=splits, metrics=metrics, **kw)
    grids = np.meshgrid(*spec.coords(), indexing="ij")

    def array(v: Values) -> np.ndarray:
        out = v(*grids) if callable(v) else v
        return np.asarray(out, dtype=np.float64) * np.ones(spec.shape)

    errs = None if errors is None else {k: array(v) for k, v in errors.items()}
    return Surface(spec, {k: array(v) for k, v in values.items()}, np.ones(spec.shape, bool),
                   meta=meta or {}, errors=errs, **extra)


def line(fn: Values, lo: float = -1.0, hi: float = 1.0, n: int = 21, **kw: Any) -> Surface:
    """A complete line with ``train_loss = fn(alpha)`` (other keywords: :func:`surface`)."""
    return surface([(lo, hi, n)], {"train_loss": fn}, **kw)


def plane(
    fn: Values,
    na: int = 21,
    nb: int = 15,
    *,
    a: tuple[float, float] = (-1.0, 1.0),
    b: tuple[float, float] = (-1.0, 1.0),
    **kw: Any,
) -> Surface:
    """A complete plane with ``train_loss = fn(A, B)`` on ``a × b`` (``na × nb`` points)."""
    return surface([(*a, na), (*b, nb)], {"train_loss": fn}, **kw)


def moved(
    model: nn.Module,
    dirs: Sequence[Mapping[str, torch.Tensor]],
    coords: Sequence[float],
    *,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """The brute-force reference's model: a deep copy (in ``dtype`` if given) whose every
    parameter is moved by ``Σ aᵢ dᵢ[name]``, one direction after the other, by hand.

    A direction that does not name a parameter leaves it alone; tied parameters appear
    once in ``named_parameters()`` and so move once. ``model`` is not changed.
    """
    m = copy.deepcopy(model)
    if dtype is not None:
        m = m.to(dtype)
    with torch.no_grad():
        for name, p in m.named_parameters():
            for a, d in zip(coords, dirs, strict=True):
                if name in d:
                    p.add_(d[name].to(p.dtype), alpha=float(a))
    return m


def tiny_gpt2() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A one-layer float64 GPT-2 from a config, 6 sequences of 5 token ids and their labels,
    two of them padded (-100) so that batches score different numbers of tokens."""
    import pytest

    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=11, n_positions=8)
    net = transformers.GPT2LMHeadModel(cfg).double().eval()
    ids = torch.randint(0, 11, (6, 5))
    labels = ids.clone()
    labels[0, 3:] = -100
    labels[4, 2:] = -100
    return net, ids, labels
