"""``lm.curvature_operator``: the Hessian, GGN, Fisher or empirical Fisher of a model's loss.

One object, built once from a model, a loss, one split and a kind, with
matrix-vector products, extreme eigenpairs (directions ``lm.scan`` takes),
trace and diagonal estimates with standard errors, the spectral density
(stochastic Lanczos quadrature) and per-block spectra. The matrix is never
formed. Every call runs the model under lossmap's guard (evaluation mode,
the user's module restored exactly, after an error or Ctrl-C too) through
``functional_call`` on a copy of the centre.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import params as P
from ..backends.torch.restore import preserved
from ..directions.direction import Direction, as_direction
from ..directions.result import Directions
from ..errors import InputError
from .blocks import group_names
from .eigen import eigenpairs, linear_operator
from .engine import Engine
from .spectrum import MAX_BLOCK, broaden, nodes_weights

BLOCK_BUDGET = 256 * 1024**2  # bytes of float64 probes and products per pass


class CurvatureOperator:
    """A curvature matrix C of the mean loss over one split; see :func:`curvature_operator`.

    Attributes
    ----------
    kind : str
        ``"hessian"``, ``"ggn"``, ``"fisher"`` or ``"empirical_fisher"``.
    names : list of str
        The parameters C is taken with respect to, in model order.
    dim : int
        Their total number of entries (C is dim × dim).
    products : int
        Matrix-vector products computed so far (each a pass over the split).

    Examples
    --------
    >>> import torch, lossmap as lm
    >>> net = torch.nn.Linear(2, 1, bias=False).double()
    >>> X = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    >>> H = lm.curvature_operator(net, torch.nn.MSELoss(), (X, torch.zeros(2, 1).double()))
    >>> H.to_dense()  # 2/N · XᵀX
    tensor([[1., 0.],
            [0., 9.]], dtype=torch.float64)
    >>> H.quadratic({"weight": torch.tensor([[0.0, 1.0]])})
    9.0
    """

    def __init__(self, model: nn.Module, engine: Engine, meta: dict):
        self.model, self._engine, self._meta = model, engine, meta
        self.kind: str = engine.kind
        self.names: list[str] = list(engine.names)
        self.dim: int = engine.n

    @property
    def products(self) -> int:
        return self._engine.products

    def __repr__(self) -> str:
        return (
            f"CurvatureOperator(kind={self.kind!r}, dim={self.dim}, "
            f"params={len(self.names)} tensors, samples={self._engine.n_samples})"
        )

    # -- products -----------------------------------------------------------------
    def _vector(self, direction: Any, what: str) -> torch.Tensor:
        d = as_direction(direction, name=what)
        e = self._engine
        buffers = {k for k, _ in self.model.named_buffers()}
        P.check_same_layout(
            e.leaves, d, what=what, allow_extra=(set(e.param_dtypes) | buffers) - set(e.names)
        )
        return e.flatten({k: d[k] for k in e.names})

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """C·vᵣ for every row of a flat float64 tensor V (m, dim); returns (m, dim) float64.

        The rows share one forward (and first backward) per batch.
        """
        V = torch.as_tensor(V, dtype=torch.float64)
        if V.dim() != 2 or V.shape[1] != self.dim:
            raise InputError(
                f"V has shape {tuple(V.shape)}; pass (m, {self.dim}) flat vectors "
                "in the order of operator.names"
            )
        with preserved(self.model):
            return self._engine.apply(V.to(self._engine.device)).cpu()

    def matvec(self, direction: Direction | Mapping[str, torch.Tensor]) -> Direction:
        """C·d for a direction keyed like ``model.named_parameters()``.

        Parameters
        ----------
        direction : Direction or dict of str to Tensor
            d; entries for buffers or parameters outside ``params`` are ignored.

        Returns
        -------
        Direction
            C·d over all model parameters (zeros outside ``params``), in the
            parameters' dtype; the batch sum is accumulated in float64.
        """
        v = self._vector(direction, "direction")
        cv = self.matmat(v[None])[0]
        return self._engine.direction(cv, {"kind": self.kind, "product": "matvec"})

    def quadratic(self, direction: Direction | Mapping[str, torch.Tensor]) -> float:
        """dᵀCd / ‖d‖²: the curvature along a nonzero direction (only its parameter entries)."""
        d = self._vector(direction, "direction")
        nn2 = float(d @ d)
        if nn2 == 0.0:
            raise InputError(
                "the direction is zero on the parameters: curvature needs a nonzero direction"
            )
        return float(d @ self.matmat(d[None])[0].to(d)) / nn2

    def to_dense(self) -> torch.Tensor:
        """The whole matrix (dim, dim) in float64, from products on the identity basis.

        For tiny models and tests only: it costs dim products and dim² memory.
        """
        if self.dim > 20_000:
            raise InputError(
                f"to_dense() would form a {self.dim} × {self.dim} matrix; use "
                "products, eigenpairs or trace for a model this size"
            )
        return self.matmat(torch.eye(self.dim, dtype=torch.float64))

    def to_scipy(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` on flat float64 NumPy vectors.

        Its products run under the model guard, like every method here.
        """
        inner = linear_operator(self._engine)
        from scipy.sparse.linalg import LinearOperator

        def mm(X: np.ndarray) -> np.ndarray:
            with preserved(self.model):
                return inner.matmat(np.asarray(X).reshape(self.dim, -1))

        return LinearOperator(
            (self.dim, self.dim),
            matvec=lambda x: mm(x).reshape(-1),
            matmat=mm,
            rmatvec=lambda x: mm(x).reshape(-1),
            dtype=np.float64,
        )

    # -- spectra ----------------------------------------------------------------------
    def eigenpairs(
        self,
        k: int = 1,
        which: str = "largest",
        *,
        tol: float = 1e-6,
        seed: int = 0,
        maxiter: int = 100,
        ncv: int | None = None,
        _name: str = "k",
    ) -> Directions:
        """The ``k`` extreme eigenvalues and their eigenvectors, as directions ``lm.scan`` takes.

        Implicitly restarted Lanczos (ARPACK, ``scipy.sparse.linalg.eigsh``).

        Parameters
        ----------
        k : int, default 1
            Number of eigenpairs (< dim).
        which : {"largest", "smallest", "magnitude"}, default "largest"
            Largest or smallest algebraic eigenvalues (the sharpest directions;
            the most negative curvature, a saddle's escape), or the largest in
            absolute value.
        tol : float, default 1e-6
            Relative accuracy of the eigenvalues (ARPACK's; 0: machine precision).
            For small eigenvalues of a float32 model pass ``dtype=torch.float64``
            when building the operator.
        seed : int, default 0
            Seed of the start vector.
        maxiter : int, default 100
            ARPACK restarts allowed, each about ``ncv - k`` products.
        ncv : int, optional
            Lanczos vectors kept (scipy's default max(2k + 1, 20)).

        Returns
        -------
        Directions
            ``k`` unit eigenvectors over all model parameters (zeros outside
            ``params``), sorted from the extreme inwards; each ``meta`` holds
            ``kind``, ``index``, ``eigenvalue``, ``which``, ``params``,
            ``products``; ``.eigenvalues`` is an ndarray (k,).
        """
        with preserved(self.model):
            return eigenpairs(
                self._engine,
                k,
                which=which,
                tol=tol,
                seed=seed,
                maxiter=maxiter,
                ncv=ncv,
                meta=dict(self._meta),
                name=_name,
            )

    def nodes_weights(
        self, *, n_lanczos: int = 80, probes: int = 10, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stochastic Lanczos quadrature: nodes (M,) and weights (M,) summing to 1.

        ``n_lanczos`` steps (products) per probe, ``probes`` Rademacher probes;
        Σ wᵢ θᵢᵖ estimates tr(Cᵖ)/dim, exactly in expectation for p < 2·n_lanczos.
        """
        with preserved(self.model):
            return nodes_weights(self._engine, n_lanczos=n_lanczos, probes=probes, seed=seed)

    def density(
        self,
        *,
        n_lanczos: int = 80,
        probes: int = 10,
        seed: int = 0,
        grid: np.ndarray | None = None,
        sigma: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The spectral density by stochastic Lanczos quadrature, Gaussian-broadened.

        Parameters
        ----------
        n_lanczos, probes, seed
            As in :meth:`nodes_weights`.
        grid, sigma
            As in :func:`lossmap.broaden` (default: 1000 points, σ = 1 % of the range).

        Returns
        -------
        grid, density : ndarray, ndarray
            The eigenvalue axis and the normalized density (integrates to 1).
        """
        nodes, weights = self.nodes_weights(n_lanczos=n_lanczos, probes=probes, seed=seed)
        return broaden(nodes, weights, grid=grid, sigma=sigma)

    def trace(self, method: str = "hutchinson", *, probes: int = 100, seed: int = 0) -> Any:
        """An estimate of tr(C) with its standard error.

        Parameters
        ----------
        method : {"hutchinson", "hutch++", "xtrace"}, default "hutchinson"
            The estimator (:mod:`lossmap.curvature.estimators`).
        probes : int, default 100
            Matrix-vector products the estimator may spend.
        seed : int, default 0
            Seed of the probes.

        Returns
        -------
        Finding
            ``.value`` the estimate, ``.se`` its standard error.
        """
        from .estimators import trace_estimate

        return self._estimate(trace_estimate, method, probes, seed)

    def diagonal(self, method: str = "hutchinson", *, probes: int = 100, seed: int = 0) -> Any:
        """An estimate of diag(C) with its standard errors (see :meth:`trace`).

        Parameters
        ----------
        method : {"hutchinson", "xdiag"}, default "hutchinson"
        probes : int, default 100
        seed : int, default 0

        Returns
        -------
        Finding
            ``.value`` the diagonal (flat, in the order of :attr:`names`), ``.se``.
        """
        from .estimators import diagonal_estimate

        return self._estimate(diagonal_estimate, method, probes, seed)

    def _estimate(self, estimator: Callable, method: str, probes: int, seed: int) -> Any:
        """Run a :mod:`.estimators` function on this operator's flat products, guarded."""
        with preserved(self.model):
            return estimator(
                self._flat_matvec,
                self.dim,
                method=method,
                probes=probes,
                seed=seed,
                dtype=torch.float64,
                device=self._engine.device,
                block_size=self._block(),
            )

    def _block(self) -> int:
        """Probes per pass over the data: up to 16, within 256 MiB of float64 vectors."""
        return max(1, min(MAX_BLOCK, BLOCK_BUDGET // (16 * self.dim)))

    def _flat_matvec(self, V: torch.Tensor) -> torch.Tensor:
        """C·V for flat vectors: (dim,) -> (dim,), or columns (dim, m) -> (dim, m)."""
        V = torch.as_tensor(V).to(self._engine.device, torch.float64)
        if V.dim() == 1:
            return self._engine.apply(V[None])[0]
        return self._engine.apply(V.T.contiguous()).T

    # -- per block --------------------------------------------------------------------
    def block(self, params: Any) -> CurvatureOperator:
        """The diagonal block of C for a subset of this operator's parameters (same data)."""
        e = self._engine.restricted(params)
        return CurvatureOperator(self.model, e, {**self._meta, "params": list(e.names)})

    def blocks(
        self,
        by: Any = "layer",
        *,
        k: int = 1,
        which: str = "largest",
        tol: float = 1e-6,
        seed: int = 0,
        maxiter: int = 100,
    ) -> dict[str, Directions]:
        """The extreme eigenpairs of every diagonal block of C, in one call.

        Parameters
        ----------
        by : "layer", "parameter", str, list or dict, default "layer"
            The blocks: ``"layer"`` groups parameters by their module (the
            name up to the last dot: ``fc1.weight`` and ``fc1.bias``);
            ``"parameter"`` makes each tensor its own block; a regular
            expression or a list of them makes one block per expression
            (the names it matches); a dict maps a label to a list of names
            or a regular expression.
        k, which, tol, seed, maxiter
            As in :meth:`eigenpairs` (k is capped at each block's size − 1).

        Returns
        -------
        dict of str to Directions
            Per block label, its eigenvectors (zeros outside the block, ready
            for ``lm.scan``) with ``meta["block"]`` and ``meta["eigenvalue"]``.
        """
        out = {}
        for label, names in group_names(by, self.names).items():
            sub = self.block(names)
            sub._meta["block"] = label
            if sub.dim == 1:  # a one-entry block: its curvature is its single entry
                e = torch.ones(1, dtype=torch.float64)
                val = float(sub.matmat(e[None])[0, 0])
                meta = {**sub._meta, "index": 0, "eigenvalue": val, "which": which}
                out[label] = Directions(
                    [sub._engine.direction(e, meta)],
                    {"eigenvalues": np.array([val]), "which": which},
                )
                continue
            out[label] = sub.eigenpairs(
                min(k, sub.dim - 1), which, tol=tol, seed=seed, maxiter=maxiter
            )
        return out
