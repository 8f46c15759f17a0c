"""How ``lossmap scan`` makes its directions: random, or from models, a trajectory, the Hessian.

Each way returns the centre, the directions, and the annotations stored with
the scan (``Surface.meta``); where the grid has a natural default it is set:

* ``--interpolate A B`` — the line from A to B, centred on A (α = 0 is A,
  α = 1 is B); default grid ``-0.5:1.5:41``. ``meta["models"]``: their α.
* ``--plane A B C`` — the plane through three models, centred on A;
  ``meta["models"]`` holds each model's exact (α, β); the default grid covers
  the three with a margin of a quarter of their span, 0 and 1 on it.
* ``--pca DIR`` — the trajectory's principal directions around its final
  checkpoint (the centre); ``meta["path"]`` is every checkpoint projected,
  ``meta["explained_variance_ratio"]``; the default grid is fitted to the path.
* ``--hessian-dirs K`` — the top-K Hessian eigenpairs at the centre (``--checkpoint``
  or the model's weights), of the first split or ``--hessian-split``; the first
  1 or 2 (``--dirs``) are scanned, all K eigenvalues are in ``meta["hessian"]``.
  The eigen-directions are unit vectors: ``--grid`` is in parameter units.

A, B, C and the files of DIR are ``.safetensors`` or torch state-dict files of
``--model``. The options are exclusive; ``--norm``, ``--ignore`` and
``--orthogonal`` apply to random directions only. ``--params PATTERN`` (a glob
on parameter names, repeatable) restricts random directions, ``--interpolate``
and ``--plane`` to the matching tensors; the scan leaves the others at the centre.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, InputTypeError, MissingFileError

MODES = ("interpolate", "plane", "pca", "hessian_dirs")
COUNTS = {"interpolate": 2, "plane": 3}  # checkpoint files each takes
INTERPOLATION_GRID = "-0.5:1.5:41"
POINTS = 41  # points along each axis of a fitted default grid
MARGIN = 0.25  # of the span of the models or the path, on each side


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_mode(cfg: Any) -> bool:
    """Check the direction options of a ScanConfig and set the ``dirs`` (and grid) defaults.

    Parameters
    ----------
    cfg : ScanConfig
        Changed in place: ``dirs`` (when None), ``grid`` (``--interpolate``
        without ``--grid``), and the file lists as strings.

    Returns
    -------
    bool
        True when the grid is fitted later, by :func:`build_directions`
        (``--plane`` or ``--pca`` without ``--grid``).
    """
    given = [m for m in MODES if getattr(cfg, m, None) is not None]
    if len(given) > 1:
        raise InputError(
            f"{_flag(given[0])} and {_flag(given[1])} cannot be combined: choose one way to "
            "make the directions"
        )
    mode = given[0] if given else None
    if cfg.hessian_split is not None and mode != "hessian_dirs":
        raise InputError("--hessian-split needs --hessian-dirs K")
    if getattr(cfg, "params", None) is not None and mode in ("pca", "hessian_dirs"):
        raise InputError(f"--params cannot be combined with {_flag(mode)}: it restricts random "
                         "directions, --interpolate and --plane")
    if mode is None:
        return False
    if mode in COUNTS:
        files = getattr(cfg, mode)
        if isinstance(files, (str, Path)) or not isinstance(files, (list, tuple)):
            raise InputTypeError(f"{_flag(mode)} takes {COUNTS[mode]} checkpoint files")
        if len(files) != COUNTS[mode]:
            names = " ".join("ABC"[: COUNTS[mode]])
            raise InputError(
                f"{_flag(mode)} takes {COUNTS[mode]} checkpoint files ({names}), got {len(files)}"
            )
        for f in files:
            if not Path(str(f)).is_file():
                raise MissingFileError(f"{_flag(mode)} checkpoint {str(f)!r} does not exist")
        setattr(cfg, mode, [str(f) for f in files])
    if mode == "pca" and not Path(str(cfg.pca)).is_dir():
        raise MissingFileError(f"--pca checkpoint folder {str(cfg.pca)!r} does not exist")
    k = cfg.hessian_dirs
    if mode == "hessian_dirs" and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        raise InputError(f"--hessian-dirs {k!r} must be an integer K >= 1")
    if mode != "hessian_dirs" and cfg.checkpoint:
        centre = "A" if mode in COUNTS else "the final checkpoint"
        raise InputError(
            f"--checkpoint cannot be combined with {_flag(mode)}: the centre is {centre}"
        )
    if cfg.dirs is None:
        cfg.dirs = 1 if mode == "interpolate" or (mode == "hessian_dirs" and k == 1) else 2
    fixed = {"interpolate": 1, "plane": 2}.get(mode)
    if fixed is not None and cfg.dirs != fixed:
        raise InputError(f"--dirs {cfg.dirs} does not fit {_flag(mode)}, which makes {fixed}")
    if mode == "hessian_dirs" and isinstance(cfg.dirs, int) and cfg.dirs > k:
        raise InputError(f"--dirs {cfg.dirs} needs --hessian-dirs K >= {cfg.dirs} "
                         "eigen-directions")
    if mode == "interpolate" and not cfg.grid:
        cfg.grid = [INTERPOLATION_GRID]
    return mode in ("plane", "pca") and not cfg.grid


def load_model(text: str) -> Any:
    """The model returned by the ``--model`` entry point: an nn.Module or a JAX model."""
    from ..backends.registry import find_backend
    from .entry import call_entry

    model = call_entry(text, what="--model")
    if find_backend(model) is None:
        raise InputTypeError(
            f"--model {text!r} returned a {type(model).__name__}, not a torch.nn.Module "
            "(nor a JAX model: lossmap.jax.JaxModel, (linen.Module, variables), nnx.Module)"
        )
    return model


TOKEN_LOSSES = {"causal_lm": "causal_lm_loss", "masked_lm": "masked_lm_loss"}


def load_loss(text: str, *, model: Any = None, own_loss: bool = False) -> Any:
    """``cross_entropy``, ``mse``, ``causal_lm``, ``masked_lm``, ``model``, or ``MODULE:NAME``.

    ``cross_entropy`` and ``mse`` mean the loss of ``model``'s backend (PyTorch's
    by default); ``causal_lm`` and ``masked_lm`` the token losses of
    :mod:`lossmap.metrics` (for dict batches); ``model`` the model's own
    ``outputs.loss`` (None; where ``own_loss`` allows it). A class is instantiated.
    """
    from ..backends.registry import backend_named, find_backend
    from .entry import load_entry

    if text in TOKEN_LOSSES:
        from .. import metrics

        return getattr(metrics, TOKEN_LOSSES[text])
    if text == "model":
        if not own_loss:
            raise InputError("--loss model (the model's own outputs.loss) is for lossmap scan "
                             "with dict batches; name a loss here, e.g. --loss causal_lm")
        return None
    if text in ("cross_entropy", "mse"):
        return (find_backend(model) or backend_named("torch")).loss(text)
    loss_fn = load_entry(text, what="--loss")
    if isinstance(loss_fn, type):  # a loss class such as torch.nn:L1Loss
        try:
            loss_fn = loss_fn()
        except Exception as exc:
            raise InputTypeError(
                f"--loss {text!r} is a class that cannot be built without arguments "
                f"({type(exc).__name__}: {exc}); name a function or an instance"
            ) from None
    if not callable(loss_fn):
        raise InputTypeError(
            f"--loss {text!r} is a {type(loss_fn).__name__}, not a function or a loss class: "
            "name one as MODULE:NAME (e.g. torch.nn:L1Loss), or use cross_entropy or mse"
        )
    return loss_fn


def checkpoint_of(model: torch.nn.Module, path: str | Path, *, what: str,
                  trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A checkpoint's state, checked against ``model`` (errors name ``what`` and the file)."""
    from ..backends.registry import backend_for
    from ..params import load_checkpoint

    state = load_checkpoint(path, trust_pickle=trust_pickle)
    try:  # for a JAX model: a flat name -> array file of its weights
        backend_for(model).state(model, state)
    except InputError as exc:
        raise InputError(f"{what} {str(path)!r}: {exc}") from None
    return state


def nice_axis(lo: float, hi: float, *, margin: float = MARGIN, points: int = POINTS) -> tuple:
    """An axis over [lo, hi] widened by ``margin`` of the span, on a step 1/m (0 and 1 on it).

    Parameters
    ----------
    lo, hi : float
        The range to cover (the models' coordinates).
    margin : float, default 0.25
        Added on each side, as a fraction of ``hi - lo``.
    points : int, default 41
        About this many points.

    Returns
    -------
    tuple
        ``(lo, hi, n)`` with ``lo`` and ``hi`` multiples of 1/m, so every
        multiple of 1/m in range (0 and 1 among them) is a grid point.

    Examples
    --------
    >>> nice_axis(0.0, 1.0, points=11)  # step 1/7
    (-0.2857142857142857, 1.2857142857142858, 12)
    """
    span = max(hi - lo, 1e-12)
    lo, hi = lo - margin * span, hi + margin * span
    m = max(1, round((points - 1) / (hi - lo)))  # grid points per unit of α
    lo, hi = math.floor(lo * m) / m, math.ceil(hi * m) / m
    return (lo, hi, round((hi - lo) * m) + 1)


def _random(cfg: Any, model: Any, trust_pickle: bool) -> tuple:
    from ..backends.registry import backend_for
    from ..directions.random import random_directions

    backend_for(model, what="--model")  # refuses a model no backend runs
    centre = (checkpoint_of(model, cfg.checkpoint, what="--checkpoint", trust_pickle=trust_pickle)
              if cfg.checkpoint else None)
    # The model names the tensors (in its order: the draw follows it) and their layer types
    # (norm="filter" units); a checkpoint gives the values.
    dirs = random_directions(model, cfg.dirs, norm=cfg.norm, ignore=cfg.ignore, seed=cfg.seed,
                             orthogonal=bool(cfg.orthogonal), params=getattr(cfg, "params", None),
                             centre=centre)
    return centre, dirs, {}


def _trajectory(folder: Path) -> list[Path]:
    from ..directions.trajectory import checkpoints_in

    sub = folder / "checkpoints"  # a trainer's output folder holds them there
    if not any(folder.glob("*.safetensors")) and sub.is_dir():
        folder = sub
    return checkpoints_in(folder)


def build_directions(cfg: Any, model: torch.nn.Module, loss_fn: Any, data: Any, *,
                     trust_pickle: bool = False) -> tuple[Any, list, dict]:
    """The centre, directions and annotations of a scan, for a validated ScanConfig.

    Parameters
    ----------
    cfg : ScanConfig
        Validated; its ``grid`` is filled when empty (``--plane``, ``--pca``).
    model : nn.Module
        The ``--model``; checkpoints are checked against it.
    loss_fn : callable
        The loss (used by ``--hessian-dirs``).
    data : dict of str to split
        The ``--data`` splits (used by ``--hessian-dirs``).
    trust_pickle : bool, default False
        Allow checkpoints that need pickle.

    Returns
    -------
    centre : dict of str to Tensor or None
        The centre state (None: the model's own weights).
    directions : list of Direction
        One or two.
    meta : dict
        JSON-ready annotations for ``lm.scan(meta=...)``: ``models``,
        ``path``, ``explained_variance_ratio``, ``hessian``… (empty for random directions).
    """
    from ..directions.between import interpolation, plane
    from ..directions.trajectory import fitted_grid, pca_directions, project
    from ..scan.spec import check_axis

    kw = {"trust_pickle": trust_pickle}
    if not isinstance(model, torch.nn.Module) and (cfg.pca is not None
                                                   or cfg.hessian_dirs is not None):
        raise InputError("--pca and --hessian-dirs work on PyTorch models; for a JAX model use "
                         "random directions, --interpolate or --plane")
    if cfg.interpolate is not None:
        a, b = (checkpoint_of(model, p, what=f"--interpolate {n}", **kw)
                for n, p in zip("AB", cfg.interpolate, strict=True))
        files = dict(zip("ab", cfg.interpolate, strict=True))
        d = interpolation(a, b, params=getattr(cfg, "params", None))
        return a, [d], {"models": {"a": [0.0], "b": [1.0]}, "model_files": files}
    if cfg.plane is not None:
        a, b, c = (checkpoint_of(model, p, what=f"--plane {n}", **kw)
                   for n, p in zip("ABC", cfg.plane, strict=True))
        d1, d2 = found = plane(a, b, c, params=getattr(cfg, "params", None))
        coords = found.coords
        xy = np.asarray(list(coords.values()))  # (3, 2)
        if not cfg.grid:
            cfg.grid = [check_axis(nice_axis(float(xy[:, i].min()), float(xy[:, i].max())))
                        for i in (0, 1)]
        meta = {"models": {k: list(v) for k, v in coords.items()},
                "model_files": dict(zip("abc", cfg.plane, strict=True))}
        return a, [d1, d2], meta
    if cfg.pca is not None:
        files = _trajectory(Path(cfg.pca))
        final = checkpoint_of(model, files[-1], what="--pca final checkpoint", **kw)
        dirs = pca_directions(files, cfg.dirs, model=model)
        ratio = dirs.explained_variance_ratio
        path = project(files, dirs)  # (T, dirs); the final checkpoint at 0
        if not cfg.grid:
            cfg.grid = [check_axis(g) for g in fitted_grid(path, margin=MARGIN, n=POINTS)]
        meta = {"path": path.tolist(), "explained_variance_ratio": ratio.tolist(),
                "trajectory": [str(f) for f in files]}
        return final, dirs, meta
    if cfg.hessian_dirs is not None:
        return _hessian(cfg, model, loss_fn, data, trust_pickle)
    return _random(cfg, model, trust_pickle)


def _hessian(cfg: Any, model: torch.nn.Module, loss_fn: Any, data: Any,
             trust_pickle: bool) -> tuple:
    from ..curvature.api import curvature_operator

    centre = (checkpoint_of(model, cfg.checkpoint, what="--checkpoint", trust_pickle=trust_pickle)
              if cfg.checkpoint else None)
    if not isinstance(data, dict) or not data:
        raise InputTypeError("--data must return a dict of splits {name: (X, y) | DataLoader}")
    split = cfg.hessian_split or next(iter(data))
    if split not in data:
        raise InputError(
            f"--hessian-split {split!r} is not a split of --data ({', '.join(map(str, data))})"
        )
    op = curvature_operator(
        model, loss_fn, {split: data[split]}, centre=centre, samples=cfg.samples,
        seed=cfg.seed, device=cfg.device, batch_size=cfg.batch_size,
    )  # fmt: skip
    if cfg.hessian_dirs >= op.dim:
        raise InputError(f"--hessian-dirs {cfg.hessian_dirs}: n={cfg.hessian_dirs} must be < the "
                         f"number of parameters ({op.dim}); lower it")
    dirs = op.eigenpairs(cfg.hessian_dirs, seed=cfg.seed)
    meta = {"hessian": {"eigenvalues": dirs.eigenvalues.tolist(), "k": cfg.hessian_dirs,
                        "split": split, "which": "largest", "products": dirs[0].meta["products"]}}
    return centre, dirs[: cfg.dirs], meta
