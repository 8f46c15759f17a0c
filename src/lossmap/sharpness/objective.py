"""The loss at perturbed weights, unit by unit: what every sharpness measure evaluates.

A perturbation is written ``δ = s ⊙ γ``: ``γ`` lives in the standard ℓ2 ball
or ℓ∞ box, ``s = |w|`` for the adaptive measures (Kwon et al. 2021;
Andriushchenko et al. 2023) and ``s = 1`` otherwise. Only the tensors chosen
by ``params=`` move; the model is called through ``functional_call`` with
tensors of our own (the user's tensors are never written), in eval mode,
inside :func:`lossmap.backends.torch.restore.preserved`.

A *unit* is the data one perturbation is sought for: the whole split
(``m=None``), or one batch of ``m`` examples (m-sharpness). A unit's loss is
``Σt / Σc`` over its chunks, with the per-example totals and counts of
:mod:`lossmap.backends.torch.metrics` (token losses count tokens, class
weights count as in their mean), so a dict batch of a language model is
read exactly as :func:`lossmap.scan` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..backends.torch.metrics import batch_stats, centre_terms, metric_terms, per_example
from ..backends.torch.structured import accepted, call_at, metric_input, to_device
from ..data.batches import Batches, rows_of
from ..errors import InputError
from ..stats import finish, finish_paired

Gamma = dict[str, torch.Tensor]


def units_of(split: Any, m: int | None, batch_size: int) -> tuple[str, list[list[Any]]]:
    """``(kind, units)``: each unit a list of batches (chunks) evaluated together.

    ``m=None``: one unit, the whole split in chunks of ``batch_size`` (a
    :class:`~lossmap.data.batches.Batches` split in its own batches). With
    ``m``: (X, y) data cut into batches of ``m`` examples, in order (the last
    one may be smaller).
    """
    if isinstance(split, Batches):
        if m is not None:
            raise InputError(
                f"m={m} regroups (X, y) data into batches of m examples, but split "
                f"{split.name!r} is kept as its own batches (dicts, several inputs or padding): "
                "pass batches of m examples each and m=None, or (X, y) tensors"
            )
        return split.kind, [list(split)]
    pairs = list(zip(split.X.split(m or batch_size), split.y.split(m or batch_size), strict=True))
    return "tuple", [[p] for p in pairs] if m else [pairs]


class Objective:
    """``L_u(w + s ⊙ γ)`` for each unit ``u``, with its gradient in γ; counts what it runs.

    Parameters
    ----------
    model : nn.Module
    loss_fn : callable
    kind : {"tuple", "dict"}
    units : list of list of batches
    names : list of str
        The tensors that move.
    params, buffers : dict of str to Tensor
        The centre.
    adaptive : bool
        ``s = |w|`` (True) or 1.
    device : torch.device
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable,
        kind: str,
        units: list[list[Any]],
        names: list[str],
        params: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        adaptive: bool,
        device: torch.device,
    ):
        self.model, self.kind, self.units, self.names = model, kind, units, names
        self.device = device
        self.keys = accepted(model) if kind == "dict" else None
        self.metric = loss_fn if kind == "dict" else (per_example(loss_fn) or loss_fn)
        self.centre = {k: params[k].detach().to(device) for k in names}
        self.fixed = {
            k: v.detach().to(device)
            for k, v in {**params, **buffers}.items()
            if k not in self.centre
        }
        self.scale = {
            k: (w.abs() if adaptive else torch.ones_like(w)) for k, w in self.centre.items()
        }
        self.gradients = 0  # forward + backward passes over a unit
        self.forwards = 0  # forward passes over a unit
        self._centre_terms: list[list[torch.Tensor]] | None = None

    # -- vectors γ -------------------------------------------------------------------------
    def zeros(self, n: int) -> Gamma:
        """``n`` zero perturbations, stacked: name -> (n, *shape)."""
        return {
            k: torch.zeros((n, *w.shape), dtype=w.dtype, device=self.device)
            for k, w in self.centre.items()
        }

    def delta(self, gamma: Gamma) -> dict[str, torch.Tensor]:
        """The perturbation ``s ⊙ γ`` of one γ (unstacked), on the CPU."""
        return {k: (self.scale[k] * gamma[k]).detach().cpu() for k in self.names}

    def _state(self, gamma: Gamma | None) -> dict[str, torch.Tensor]:
        if gamma is None:
            return {**self.fixed, **self.centre}
        return {**self.fixed, **{k: w + self.scale[k] * gamma[k] for k, w in self.centre.items()}}

    def _result(self, state: Mapping[str, torch.Tensor], batch: Any) -> tuple[Any, int]:
        batch = to_device(batch, self.device)
        out = call_at(self.model, state, batch, self.kind, self.keys)
        return self.metric(out, metric_input(batch, self.kind)), rows_of(batch)

    # -- evaluation ------------------------------------------------------------------------
    def loss(
        self, u: int, gamma: Gamma | None = None, *, grad: bool = False
    ) -> tuple[float, Gamma | None]:
        """Unit ``u``'s loss at ``w + s ⊙ γ`` (float64) and, with ``grad``, its gradient in γ."""
        if grad:
            gamma = {k: v.detach().requires_grad_(True) for k, v in gamma.items()}
            self.gradients += 1
        else:
            self.forwards += 1
        total = count = 0.0
        g = {k: torch.zeros_like(v) for k, v in gamma.items()} if grad else None
        with torch.enable_grad() if grad else torch.no_grad():
            for batch in self.units[u]:
                result, rows = self._result(self._state(gamma), batch)
                t, c, _ = metric_terms(result, rows, self.device)
                if grad:
                    parts = torch.autograd.grad(
                        t.sum(), [gamma[k] for k in self.names], allow_unused=True
                    )
                    for k, p in zip(self.names, parts, strict=True):
                        if p is not None:
                            g[k] += p
                total += float(t.sum().detach())
                count += float(c.sum())
        if grad:
            g = {k: v / count for k, v in g.items()}
        return total / count, g

    def paired(self, u: int, gamma: Gamma) -> tuple[float, float, int]:
        """``(loss at γ, s.e. of its difference from the centre's, examples)`` on unit ``u``.

        The standard error is the paired one over the unit's examples
        (:func:`lossmap.stats.finish_paired`); NaN where the loss has no
        per-example terms.
        """
        if self._centre_terms is None:
            self._centre_terms = [[] for _ in self.units]
        if not self._centre_terms[u]:
            with torch.no_grad():
                for batch in self.units[u]:
                    result, rows = self._result(self._state(None), batch)
                    self._centre_terms[u].append(centre_terms(result, rows, self.device)[:-2])
            self.forwards += 1
        sums = []
        with torch.no_grad():
            for batch, centre in zip(self.units[u], self._centre_terms[u], strict=True):
                result, rows = self._result(self._state(gamma), batch)
                sums.append(batch_stats(result, rows, self.device, centre).cpu().numpy())
        self.forwards += 1
        s = np.sum(sums, axis=0)
        value, _ = finish(s)
        return float(value), float(finish_paired(s)), int(s[5])
