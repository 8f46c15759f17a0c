"""Surface: the values of a scan on its grid, with the spec and fingerprints it came from."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .scan.spec import ScanSpec


@dataclass(frozen=True)
class Surface:
    """Result of a scan: a line, a plane, a k-D grid (k ≤ 6) or a sampled design.

    A k-D surface is sliced to the plane or line every plot and analysis
    takes with :meth:`sel` (``surf.sel(gamma=0.0)``) or :meth:`isel`.

    Attributes
    ----------
    spec : ScanSpec
        What was computed.
    values : dict of str to ndarray
        One array of shape ``spec.shape`` per variable (``train_loss``, …);
        points not computed yet are NaN.
    done : ndarray of bool, shape ``spec.shape``
        Which points are finished (a finished point may still be NaN if its
        loss was not finite).
    fingerprints : dict of str to str
        Hashes of the centre, each direction, each split's data and the spec.
    path : str or None
        The store it was read from.
    meta : dict
        Annotations stored with the scan: the lossmap and torch versions and
        the creation time, overlaid by the caller's ``lm.scan(meta=...)``
        exactly as given (the command line, a projected training path, the
        coordinates of models on a plane…). The caller's keys have their own
        namespace in the store: ``meta={"spec": ...}`` cannot touch its records.
    profile : dict or None
        How the scan that returned this Surface ran (strategy, first-layer
        reuse, batch size, compile, precision, seconds per stage); None for a
        Surface read from a store.
    roundoff : dict of str to float or None
        The scan's round-off floor per variable: the largest difference between
        the scan's own values and a float64 evaluation at a few grid points
        (:mod:`lossmap.backends.torch.roundoff`), which the convexity verdicts use.
        None where it was not measured (a store of lossmap 0.1, the JAX
        backend, a Surface built by hand): the verdicts then assume round-off
        from the dtype's eps, and say so.
    errors : dict of str to ndarray or None
        The standard error of the mean at every point, per variable (same
        shape as ``values``): the sample standard deviation of the per-sample
        values over √n. Present for metrics that yield per-sample values (torch
        losses with a ``reduction``, lossmap's built-in losses and accuracy, a
        metric returning one value per sample); a variable without them is
        absent, a point not computed is NaN. None where nothing was measured.
    paired : dict of str to ndarray or None
        The standard error of each point's difference from the centre's value
        (paired over the same samples: tight where the two values are
        correlated, as nearby points are), per variable; None where not measured.
    slopes : dict of str to list of dict, or None
        Per variable, per direction: the directional derivative at the centre
        from the per-sample directional slopes, ``{"slope", "se", "n"}``
        (:mod:`lossmap.backends.torch.slopes`). None where not measured.
    samples : dict of str to int or None
        The number of samples (or tokens, for a token metric) behind each
        split's values, which ``errors`` are computed from.
    """

    spec: ScanSpec
    values: dict[str, np.ndarray]
    done: np.ndarray
    fingerprints: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    roundoff: dict[str, float] | None = field(default=None, compare=False, repr=False)
    errors: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    paired: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    slopes: dict[str, list[dict[str, float]]] | None = field(default=None, compare=False,
                                                             repr=False)
    samples: dict[str, int] | None = field(default=None, compare=False, repr=False)

    # -- shape -------------------------------------------------------------
    @property
    def dims(self) -> tuple[str, ...]:
        """``("alpha",)`` for a line, ``("alpha", "beta")`` for a plane, then ``gamma``,
        ``delta``, ``epsilon``, ``zeta``; ``("point",)`` for a sampled design."""
        return self.spec.dims

    def points(self) -> np.ndarray:
        """The coefficients (one column per direction) of every point, shape (size, k),
        in the flat order of ``values[v].reshape(-1)``."""
        return self.spec.points()

    def sel(self, method: str | None = None, **coords: float) -> Surface:
        """The lower-dimensional surface through the given coordinate values.

        ``surf.sel(gamma=0.0)`` of a 3-D surface is the plane through the
        centre along the first two directions: the values, standard errors
        and finished points at γ = 0, as a plane scanned directly gives them.
        Values must be grid values (to 1e-9 of the axis span) unless
        ``method="nearest"``. ``meta["slice"]`` records where the slice lies;
        paired errors and slopes (both about the centre) are kept only for a
        slice through the centre.

        Examples
        --------
        >>> import torch, lossmap as lm
        >>> net = torch.nn.Linear(3, 2)
        >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
        >>> ds = lm.random_directions(net, 3, seed=0)
        >>> cube = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
        ...                directions=list(ds), grid=[(-1, 1, 3)] * 3, progress=False)
        >>> cube.dims, cube.sel(gamma=0.0).dims
        (('alpha', 'beta', 'gamma'), ('alpha', 'beta'))
        """
        from .scan.slicing import indices_of, take

        return take(self, indices_of(self, coords, method))

    def isel(self, **indices: int) -> Surface:
        """Like :meth:`sel`, by grid index: ``surf.isel(gamma=5)``."""
        from .scan.slicing import take

        return take(self, indices)

    @property
    def coords(self) -> dict[str, np.ndarray]:
        """Coordinates per dimension."""
        return dict(zip(self.dims, self.spec.coords(), strict=True))

    @property
    def complete(self) -> bool:
        """Whether every grid point is finished."""
        return bool(self.done.all())

    def se(self, variable: str) -> np.ndarray | None:
        """The standard error of ``variable`` at every point, or None where not measured."""
        self[variable]  # an unknown name is a KeyError naming the variables there are
        return None if self.errors is None else self.errors.get(variable)

    def __getitem__(self, variable: str) -> np.ndarray:
        try:
            return self.values[variable]
        except KeyError:
            raise KeyError(
                f"no variable {variable!r}; this surface has {', '.join(self.values)}"
            ) from None

    # -- analysis ------------------------------------------------------------
    def diverged(self) -> int:
        """Number of finished points where some variable is not finite."""
        stacked = np.stack(list(self.values.values()))
        return int((self.done & ~np.isfinite(stacked).all(axis=0)).sum())

    def centre_index(self) -> tuple[int, ...] | None:
        """Grid index of the centre (all coordinates 0), or None if it is not on the grid."""
        return self.spec.centre_index()

    def summary(self) -> dict[str, Any]:
        """Points done, diverged points, and per variable the centre value and grid minimum."""
        out: dict[str, Any] = {
            "points": int(self.done.size),
            "done": int(self.done.sum()),
            "diverged": self.diverged(),
        }
        centre = self.centre_index()
        for name, v in self.values.items():
            entry: dict[str, Any] = {"centre": float(v[centre]) if centre is not None else None}
            finite = np.isfinite(v)
            if finite.any():
                flat = int(np.nanargmin(np.where(finite, v, np.nan)))
                at = np.unravel_index(flat, v.shape)
                entry["min"] = float(v[at])
                entry["argmin"] = {
                    d: float(self.coords[d][i]) for d, i in zip(self.dims, at, strict=True)
                }
            out[name] = entry
        return out

    def __repr__(self) -> str:
        from .surface_html import grid_text

        grid = grid_text(self.spec)
        s = self.summary()
        state = "complete" if self.complete else f"{s['done']}/{s['points']} points"
        extra = f", {s['diverged']} diverged" if s["diverged"] else ""
        sub = next((d["params"] for d in self.spec.directions if d.get("params")), None)
        over = f" over params {sub.get('pattern')!r}" if isinstance(sub, dict) else ""
        return (
            f"Surface({self._kind()}{over} {grid}, {state}{extra}, "
            f"variables={list(self.values)})"
        )

    def _kind(self) -> str:
        """``"line"``, ``"plane"``, ``"3-D grid"``, ``"sobol design (5-D)"``, or along a path
        ``"path (bezier, 1 bend)"``."""
        if self.spec.path is not None:
            from .scan.pathspec import path_text

            return f"path ({path_text(self.spec.path)})"
        if self.spec.design is not None:
            return f"{self.spec.design['kind']} design ({len(self.spec.grid)}-D)"
        if self.spec.draws is not None:  # K draws of a line or plane (lm.scan(draws=K))
            one = {2: "line", 3: "plane"}.get(len(self.dims), f"{len(self.dims) - 1}-D grid")
            return f"{self.spec.draws['count']} draws of a {one}"
        return {1: "line", 2: "plane"}.get(len(self.dims), f"{len(self.dims)}-D grid")

    def _repr_html_(self) -> str:
        """An HTML summary for Jupyter (:func:`lossmap.surface_html.surface_html`)."""
        from .surface_html import surface_html

        return surface_html(self)

    def filled(self) -> Surface:
        """The whole picture from the points done so far (for a running or stopped scan).

        Points are visited coarse to fine, so the finished ones already cover
        the grid at a lower resolution; missing points are filled by linear
        interpolation between them (nearest point at the edges). The result has
        ``meta["partial"] = {"done": k, "points": n}`` so plots can say so.
        A complete surface is returned unchanged.
        """
        if self.complete or not self.done.any() or self.spec.design is not None:
            return self
        from scipy.interpolate import griddata

        grids = np.meshgrid(*self.spec.coords(), indexing="ij")
        pts = np.stack([g[self.done] for g in grids], axis=-1)
        want = np.stack([g.reshape(-1) for g in grids], axis=-1)
        values = {}
        for name, v in self.values.items():
            if len(self.dims) > 2:  # k-D: the nearest finished point (linear needs Qhull)
                filled = griddata(pts, v[self.done], want, method="nearest")
            elif len(self.dims) == 1 or len(pts) < 3:
                order = np.argsort(pts[:, 0])
                filled = np.interp(want[:, 0], pts[order, 0], v[self.done][order])
            else:
                try:
                    filled = griddata(pts, v[self.done], want, method="linear")
                except Exception:  # degenerate (collinear) points: nearest only
                    filled = np.full(len(want), np.nan)
                near = griddata(pts, v[self.done], want, method="nearest")
                filled = np.where(np.isnan(filled), near, filled)
            filled = filled.reshape(v.shape)
            filled[self.done] = v[self.done]  # finished points keep their exact value
            values[name] = filled
        meta = {**self.meta, "partial": {"done": int(self.done.sum()), "points": self.done.size}}
        return Surface(self.spec, values, self.done, self.fingerprints, self.path, meta,
                       roundoff=self.roundoff, errors=self.errors, paired=self.paired,
                       slopes=self.slopes,
                       samples=self.samples)

    # -- export --------------------------------------------------------------
    def to_xarray(self):
        """An ``xarray.Dataset`` with dims ``alpha`` [, ``beta``], one variable per metric.

        ``attrs`` carry the spec (JSON), the fingerprints and the store path;
        a boolean variable ``done`` marks finished points; a variable's standard
        errors, where measured, are the variable ``<name>_se`` (``<name>_dse``: of
        its difference from the centre).
        """
        import xarray as xr

        data = {name: (self.dims, v) for name, v in self.values.items()}
        data.update({f"{name}_se": (self.dims, v) for name, v in (self.errors or {}).items()})
        data.update({f"{name}_dse": (self.dims, v) for name, v in (self.paired or {}).items()})
        data["done"] = (self.dims, self.done)
        coords = dict(self.coords)
        if self.spec.design is not None:  # each point's coefficients along the directions
            pts = self.points()
            coords.update({d: (self.dims, pts[:, j])
                           for j, d in enumerate(self.spec.coordinate_names)})
        attrs = {"spec": self.spec.to_json(), "lossmap_store": self.path or ""}
        attrs.update({f"fingerprint_{k}": v for k, v in self.fingerprints.items()})
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def to_netcdf(self, path: str | os.PathLike) -> Path:
        """Write NetCDF (via xarray; the ``scipy`` engine, no extra library needed)."""
        ds = self.to_xarray()
        ds["done"] = ds["done"].astype("int8")
        ds.to_netcdf(str(path), engine="scipy")
        return Path(path)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per grid point: coordinates, ``done``, then every variable."""
        df = self.to_xarray().to_dataframe().reset_index()
        df.to_csv(str(path), index=False, float_format="%.9g")
        return Path(path)

    def to_vtk(self, path: str | os.PathLike, variable: str | None = None) -> Path:
        """Write a VTK file for ParaView: a plane as ``.vts``, a line as ``.vtp``.

        The height is ``variable`` (default the first loss variable); every
        variable is point data. Needs the ``vtk`` extra (pyevtk); see
        :func:`lossmap.plot.vtk.to_vtk` for the layout and missing points.
        """
        from .plot.vtk import to_vtk

        return to_vtk(self, path, variable)


def from_rows(spec: ScanSpec, idx: list[int], rows: list[list[float]], **kw: Any) -> Surface:
    """Assemble a Surface from flat indices and value rows (in ``spec.variables`` order).

    Longer rows hold each variable's standard error after the values, then the
    paired one: they become ``Surface.errors`` and ``Surface.paired``
    (variables whose errors are all NaN are left out).
    """
    size = math.prod(spec.shape)
    nv = len(spec.variables)
    width = len(rows[0]) if rows else nv
    flat = np.full((width, size), np.nan)
    done = np.zeros(size, dtype=bool)
    if idx:
        flat[:, idx] = np.asarray(rows, dtype=np.float64).T
        done[idx] = True
    values = {v: flat[i].reshape(spec.shape) for i, v in enumerate(spec.variables)}
    for key, block in (("errors", 1), ("paired", 2)):
        if width >= (block + 1) * nv and kw.get(key) is None:
            got = {v: flat[block * nv + i].reshape(spec.shape)
                   for i, v in enumerate(spec.variables)
                   if np.isfinite(flat[block * nv + i]).any()}
            kw[key] = got or None
    return Surface(spec, values, done.reshape(spec.shape), **kw)


def load(path: str | os.PathLike) -> Surface:
    """Load the Surface of a store (a partial store gives NaN at missing points).

    The store is opened read-only: nothing is written, and a store in a
    read-only folder reads. A store that holds bad contents raises one
    :class:`~lossmap.errors.StoreError` naming the damage. A ``.h5`` or
    ``.hdf5`` file is read as a surface file of Li et al.'s reference code
    (:func:`lossmap.interop.load_li_surface`; needs the ``li`` extra, h5py).

    Examples
    --------
    >>> surf = load("runs/plane.lossmap")  # doctest: +SKIP
    >>> surf.to_xarray()["train_loss"]     # doctest: +SKIP
    """
    from .store import Store

    if Path(path).suffix.lower() in (".h5", ".hdf5"):  # Li et al.'s files (lossmap.interop)
        from .interop.li2018_layout import read_surface

        return Surface(**read_surface(path))
    with Store.open(path) as store:
        idx, rows = store.rows(errors=True)
        return from_rows(
            store.spec,
            idx,
            rows,
            fingerprints=store.fingerprints,
            path=str(path),
            meta=store.annotations(),
            roundoff=store.roundoff,
            samples=store.samples,
            slopes=store.slopes,
        )
