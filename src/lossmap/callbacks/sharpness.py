"""Sharpness during training (edge of stability): λmax every k steps against 2/η.

:class:`SharpnessRecorder` measures the top Hessian eigenvalue λmax of the
loss on a fixed measurement split at chosen steps of a training loop, and
for Adam-type optimizers the preconditioned λmax(P^-1/2 H P^-1/2) with
P = √v̂ + ε from the optimizer's state (``exp_avg_sq``, bias-corrected).
Gradient descent with step η is stable along a direction of curvature λ only
while λ < 2/η (Cohen et al., ICLR 2021); adaptive methods reach the same edge
in the preconditioned curvature (Cohen et al., 2022).

Each measurement is a Lanczos run (:mod:`lossmap.callbacks.topeig`) started
from the previous step's top eigenvector, so a logged step costs a few
Hessian-vector products once the curvature moves slowly; the products each
step took are recorded. Training is left exactly as it was: the model's
weights, buffers, modes and gradients are not changed, and every random
generator the measurement could draw from (torch's CPU and the model's
device, Python's, NumPy's, the data loader's own) is restored.

The Hugging Face and Lightning callbacks (``SharpnessCallback`` in
:mod:`.huggingface` and :mod:`.lightning`) only decide when to call it.
:func:`lossmap.plot.eos.plot_eos` draws the file it writes.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, InputTypeError
from ..files import json_safe, write_json
from ..version import __version__
from .optimizer_state import adam_preconditioner, learning_rate
from .recorder import _loss_value, check_every
from .topeig import top_eigenpair

FORMAT = "lossmap-sharpness"
VERSION = 1
COLUMNS = (
    "steps", "loss", "lr", "two_over_lr", "threshold", "lambda_max", "hvps", "residual",
    "preconditioned_lambda_max", "preconditioned_hvps", "preconditioned_residual",
)  # fmt: skip


class SharpnessRecorder:
    """Record λmax (and Adam's preconditioned λmax) every ``every`` steps of a training loop.

    ``rec(model, step, optimizer, loss)`` measures at the model's current
    weights on ``every``-th call and rewrites ``out`` (JSON, one list per
    quantity, read by :func:`lossmap.plot.eos.plot_eos` and :func:`read_sharpness`).

    Parameters
    ----------
    out : str or path
        The JSON file to write (its folder is created). An existing file is
        refused unless ``overwrite``.
    loss_fn : callable or None
        ``loss_fn(outputs, targets)`` returning the batch mean, as for
        :func:`lossmap.curvature_operator` (None: the model's own ``outputs.loss``).
    data : (X, y) tuple, DataLoader, iterable of batches or dict batches
        The measurement split: H is of the mean loss over all of it (a fixed
        batch of a few hundred samples is usual). It is read at each
        measurement.
    every : int, default 10
        Measure on the 1st, (every+1)-th, … call (``force=True``: any call).
    preconditioned : bool or "auto", default "auto"
        Also measure λmax(P^-1/2 H P^-1/2) with P = √v̂ + ε from the
        optimizer's ``exp_avg_sq`` ("auto": when the optimizer keeps one,
        i.e. Adam, AdamW, …; before its first step there is no v̂ and the value
        is left empty).
    params : list of str, str (regex) or None
        Measure the Hessian with respect to these parameters only.
    tol : float, default 1e-3
        Lanczos stops when ‖Hx − λx‖ ≤ tol·|λ| (λ's relative error is then
        about tol²·λ/gap).
    max_hvps : int, default 50
        At most this many Hessian-vector products per measurement (Lanczos
        keeps as many vectors of the parameters' size).
    jitter : float, default 0.1
        Each warm start is the previous top eigenvector plus this much of a
        fresh random unit vector, so that a direction that has overtaken it
        (eigenvalues crossing, common at the edge of stability) is still found;
        0 starts from the previous vector alone (fewest products: one on a
        quadratic).
    seed : int, default 0
        Seeds the start vectors (a generator of its own).
    dtype : torch.dtype, optional
        Compute the products in this dtype (default the parameters').
    overwrite : bool, default False

    Notes
    -----
    The learning rate η is the optimizer's (all parameter groups measured
    must share it; a scheduler's current value is read at each step).
    ``threshold`` is the stability edge with momentum β: (2 + 2β)/η for SGD
    with momentum and (2 + 2β₁)/((1 − β₁)η) for Adam (38/η at β₁ = 0.9, to
    compare with the preconditioned λmax); without momentum it is 2/η.

    Examples
    --------
    >>> import torch
    >>> import lossmap as lm
    >>> from lossmap.callbacks.sharpness import SharpnessRecorder, read_sharpness
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    >>> X, y = torch.randn(64, 3), torch.randn(64, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> loss_fn = torch.nn.MSELoss()
    >>> rec = SharpnessRecorder("sharpness.json", loss_fn, (X, y), every=5)
    >>> for step in range(11):
    ...     loss = loss_fn(model(X), y)
    ...     _ = rec(model, step, opt, loss)  # λmax at the weights `loss` was computed at
    ...     opt.zero_grad(); loss.backward(); opt.step()
    >>> r = read_sharpness("sharpness.json")
    >>> r["steps"], r["two_over_lr"]
    ([0, 5, 10], [20.0, 20.0, 20.0])
    >>> r["hvps"][1] < r["hvps"][0]  # warm-started from step 0's eigenvector
    True
    """

    def __init__(
        self,
        out: str | os.PathLike,
        loss_fn: Callable | None,
        data: Any,
        *,
        every: int = 10,
        preconditioned: bool | str = "auto",
        params: Any = None,
        tol: float = 1e-3,
        max_hvps: int = 50,
        jitter: float = 0.1,
        seed: int = 0,
        dtype: torch.dtype | None = None,
        overwrite: bool = False,
    ) -> None:
        self.out = Path(out)
        if self.out.is_dir():
            raise InputError(f"out={str(self.out)!r} is a folder: name a .json file to write")
        if self.out.exists() and not overwrite:
            raise InputError(
                f"{str(self.out)!r} exists: pass overwrite=True to replace it, or another file"
            )
        if preconditioned not in (True, False, "auto"):
            raise InputError(f"preconditioned={preconditioned!r} must be True, False or 'auto'")
        if not (isinstance(tol, float) and 0 < tol < 1):
            raise InputError(f"tol={tol!r} must be a float between 0 and 1, e.g. 1e-3")
        if not (isinstance(jitter, int | float) and 0 <= jitter <= 1):
            raise InputError(f"jitter={jitter!r} must be a number from 0 to 1, e.g. 0.1")
        self.jitter = float(jitter)
        self._generator = torch.Generator().manual_seed(seed)
        self.every = check_every(every, "every")
        self.max_hvps = check_every(max_hvps, "max_hvps")
        self.loss_fn, self.data, self.params = loss_fn, data, params
        self.preconditioned, self.tol, self.seed, self.dtype = preconditioned, tol, seed, dtype
        self._calls = 0
        self._vectors: dict[str, torch.Tensor] = {}  # the last top eigenvectors (warm starts)
        self.records: dict[str, list] = {c: [] for c in COLUMNS}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def __call__(
        self,
        model: nn.Module,
        step: int,
        optimizer: torch.optim.Optimizer,
        loss: float | torch.Tensor | None = None,
    ) -> dict[str, Any] | None:
        """``rec(model, step, optimizer, loss)`` is :meth:`record`."""
        return self.record(model, step, optimizer, loss)

    def record(
        self,
        model: nn.Module,
        step: int,
        optimizer: torch.optim.Optimizer,
        loss: float | torch.Tensor | None = None,
        *,
        force: bool = False,
    ) -> dict[str, Any] | None:
        """Measure λmax at the model's current weights (every ``every``-th call, or ``force``).

        Parameters
        ----------
        model : nn.Module
            The model being trained; read, never changed.
        step : int
            The training step, stored with the values.
        optimizer : torch.optim.Optimizer
            Its learning rate gives 2/η; Adam's state gives P.
        loss : float or 0-d tensor, optional
            The training loss at this step, stored with it.
        force : bool, default False

        Returns
        -------
        dict or None
            This step's values (the file's columns, one value each), or None
            when the call was skipped.
        """
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model is a {type(model).__name__}, not a torch nn.Module")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise InputTypeError(
                f"optimizer is a {type(optimizer).__name__}: pass the torch optimizer that "
                "trains the model (its learning rate gives 2/η)"
            )
        call, self._calls = self._calls, self._calls + 1
        if call % self.every and not force:
            return None
        row = self._measure(model, optimizer)
        row = {"steps": int(step), "loss": _loss_value(loss), **row}
        for c in COLUMNS:
            self.records[c].append(row[c])
        self._write()
        return row

    def _measure(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        from ..curvature import curvature_operator

        device = next(model.parameters()).device
        with untouched_random_state(self.data, device):
            op = curvature_operator(model, self.loss_fn, self.data, params=self.params,
                                    dtype=self.dtype)  # fmt: skip
            lr, threshold = learning_rate(optimizer, model, op.names)
            hv = lambda v: op.matmat(v[None])[0]  # noqa: E731
            top = self._top("hessian", hv, op.dim)
            row = {"lr": lr, "two_over_lr": 2.0 / lr if lr else math.inf, "threshold": threshold}
            row.update(lambda_max=top.value, hvps=top.products, residual=top.residual)
            pre = None
            if self.preconditioned:
                p = adam_preconditioner(optimizer, model, op.names, required=self.preconditioned)
                if p is not None:
                    s = p.rsqrt()
                    pre = self._top("preconditioned", lambda v: s * hv(s * v), op.dim)
        row["preconditioned_lambda_max"] = pre.value if pre else float("nan")
        row["preconditioned_hvps"] = pre.products if pre else 0
        row["preconditioned_residual"] = pre.residual if pre else float("nan")
        return row

    def _top(self, which: str, matvec: Callable, dim: int):
        start = self._vectors.get(which)
        fresh = torch.randn(dim, dtype=torch.float64, generator=self._generator)
        if start is None or start.numel() != dim:
            start = fresh
        elif self.jitter:
            start = start + self.jitter * fresh / fresh.norm()
        top = top_eigenpair(matvec, start, tol=self.tol, max_products=self.max_hvps)
        self._vectors[which] = top.vector
        return top

    def _write(self) -> None:
        write_json(
            self.out,
            {"format": FORMAT, "version": VERSION, "lossmap": __version__, "every": self.every,
             "tol": self.tol, **{c: json_safe(v) for c, v in self.records.items()}},
        )  # fmt: skip


def read_sharpness(path: str | os.PathLike) -> dict[str, list]:
    """The columns of a file written by :class:`SharpnessRecorder` (None → NaN).

    Parameters
    ----------
    path : str or path

    Returns
    -------
    dict of str to list
        ``steps``, ``lambda_max``, ``two_over_lr``, ``threshold``, ``hvps``,
        ``preconditioned_lambda_max``, … one entry per measured step.

    Examples
    --------
    >>> import torch
    >>> from lossmap.callbacks import SharpnessRecorder, read_sharpness
    >>> model = torch.nn.Linear(2, 1, bias=False)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.5)
    >>> rec = SharpnessRecorder("eos.json", torch.nn.MSELoss(), (torch.eye(2), torch.ones(2, 1)))
    >>> _ = rec(model, 0, opt)
    >>> r = read_sharpness("eos.json")
    >>> r["steps"], r["two_over_lr"], round(r["lambda_max"][0], 6)  # H = (2/N)·XᵀX = I
    ([0], [4.0], 1.0)
    """
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(
            f"no sharpness file at {str(path)!r}: pass the out= of the recorder"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} is not a lossmap sharpness file (format {FORMAT!r})")
    nan = float("nan")
    return {c: [nan if v is None else v for v in data.get(c, [])] for c in COLUMNS}


# -- the random state -----------------------------------------------------------------------


@contextmanager
def untouched_random_state(data: Any, device: torch.device) -> Iterator[None]:
    """Restore every generator a measurement could draw from: torch's (CPU and ``device``),
    Python's, NumPy's, and a DataLoader's own (``generator``, ``sampler.generator``)."""
    py, npy = random.getstate(), np.random.get_state()
    own = [
        getattr(data, "generator", None),
        getattr(getattr(data, "sampler", None), "generator", None),
    ]
    gens = [(g, g.get_state()) for g in own if isinstance(g, torch.Generator)]
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        for g, state in gens:
            g.set_state(state)
