"""Principal directions of a training trajectory, and the path projected on them.

Following Li et al. (2018), the matrix is M = [θ₀ − θ_T, …, θ_{T−1} − θ_T]
(parameters only, no mean-centering); its top right-singular directions span
the plane that best holds the path. lossmap never forms the T×p matrix twice:
it accumulates the T×T Gram matrix G = M Mᵀ tensor by tensor (reading one
tensor of every checkpoint at a time from safetensors files), takes G's
eigenvectors, and builds each direction uᵢ = Mᵀvᵢ / √λᵢ the same way. Memory
is T × (largest tensor), not T × p.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import params as P
from ..errors import InputError, InputTypeError, MissingFileError
from .direction import Direction
from .result import Directions

Step = str | os.PathLike | dict


def _recording(folder: Path):
    """The index of a folder written by ``lm.TrajectoryRecorder`` or a callback, else None."""
    from ..callbacks.index import INDEX_NAME, read_trajectory

    return read_trajectory(folder) if (folder / INDEX_NAME).exists() else None


def checkpoints_in(folder: str | os.PathLike) -> list[Path]:
    """The checkpoints of a folder: a recording's steps in step order (its index), else
    the ``.safetensors`` (else ``.pt``/``.pth``) files in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"checkpoint folder {str(folder)!r} does not exist")
    recording = _recording(folder)
    files = recording.files if recording is not None else sorted(
        folder.glob("*.safetensors")
    ) or sorted([*folder.glob("*.pt"), *folder.glob("*.pth")])
    if len(files) < 3:
        raise InputError(
            f"checkpoint folder {str(folder)!r} holds {len(files)} checkpoints; a trajectory "
            "needs at least 3 (the trainer saves one per epoch)"
        )
    return files


def _reader(step: Step) -> Callable[[str], torch.Tensor]:
    """A function name → tensor for one step, loading lazily where the format allows."""
    if isinstance(step, dict):
        return lambda name: step[name].detach()
    path = Path(step)
    if not path.exists():
        raise MissingFileError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        def read(name: str) -> torch.Tensor:
            with safe_open(str(path), framework="pt") as f:
                return f.get_tensor(name)

        return read
    state = P.load_checkpoint(path)
    return lambda name: state[name]


def _names(reference: Step | nn.Module) -> dict[str, torch.Size]:
    if isinstance(reference, nn.Module):
        return {k: p.shape for k, p in reference.named_parameters()}
    if isinstance(reference, dict):
        params = P.split_state(reference)[0]
    else:
        params = P.split_state(P.load_checkpoint(reference))[0]
    return {k: v.shape for k, v in params.items()}


def pca_directions(
    trajectory: Sequence[Step] | str | os.PathLike,
    n: int = 2,
    *,
    final: Step | None = None,
    model: nn.Module | None = None,
) -> Directions:
    """Top ``n`` principal directions of a trajectory around its final point.

    Parameters
    ----------
    trajectory : list of state dicts or checkpoint paths, or a folder
        The steps θ₀ … θ_T in order (a folder: its checkpoints in name order,
        or the steps of a ``lm.TrajectoryRecorder`` folder in step order).
    n : int, default 2
        Number of directions.
    final : state dict or path, optional
        The point the path is taken relative to; default the last step.
    model : nn.Module, optional
        Names which tensors are parameters (default: those a recorder's index
        names, else guessed from the state, normalization buffers excluded).

    Returns
    -------
    Directions
        ``n`` unit-norm, mutually orthogonal directions, which ``lm.scan``
        takes as they are; ``.explained_variance_ratio`` (ndarray, shape
        (n,)) is each one's share of the path's variance, also in each
        direction's ``meta``. (Unpacking it into two names, ``dirs, ratio``,
        the 0.1 form, still gives those two with a DeprecationWarning, also
        for ``n=2``: index the directions, ``dirs[0]``, ``dirs[1]``.)
    """
    steps = (
        checkpoints_in(trajectory)
        if isinstance(trajectory, (str, os.PathLike))
        else list(trajectory)
    )
    if not isinstance(steps, list) or len(steps) < 2:
        raise InputError("a trajectory needs at least 2 steps besides the final point")
    final = steps[-1] if final is None else final
    others = steps[:-1] if final is steps[-1] else steps
    if not 1 <= n <= len(others):
        raise InputError(f"n={n} must be between 1 and the number of steps ({len(others)})")
    names = _names(model if model is not None else final)
    if model is None and isinstance(trajectory, (str, os.PathLike)):
        recording = _recording(Path(trajectory))  # it names the parameters; buffers are out
        if recording is not None:
            names = {k: v for k, v in names.items() if k in recording.parameters}
    readers = [_reader(s) for s in others]
    read_final = _reader(final)
    T = len(readers)
    G = np.zeros((T, T))
    for name, shape in names.items():
        M = _block(readers, read_final, name, shape)  # (T, numel) float64
        G += (M @ M.T).numpy()
    lam, V = np.linalg.eigh(G)
    order = np.argsort(lam)[::-1]
    lam, V = np.clip(lam[order], 0.0, None), V[:, order]
    if lam[n - 1] <= 0:
        raise InputError("the trajectory does not move in that many independent directions")
    ratio = lam[:n] / lam.sum()
    coef = torch.from_numpy(V[:, :n] / np.sqrt(lam[:n]))  # (T, n)
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for name, shape in names.items():
        M = _block(readers, read_final, name, shape)
        U = coef.T @ M  # (n, numel)
        dtype = read_final(name).dtype
        for i in range(n):
            out[i][name] = U[i].reshape(shape).to(dtype)
    dirs = [Direction(out[i], meta={"kind": "pca", "index": i,
                                    "explained_variance_ratio": float(ratio[i])})
            for i in range(n)]
    return Directions(dirs, {"explained_variance_ratio": ratio}, legacy=((dirs, ratio), (
        "unpacking lm.pca_directions(...) into (directions, ratio) is deprecated: it returns "
        "the directions, which lm.scan takes as they are; the ratio is "
        "result.explained_variance_ratio. Write `dirs = lm.pca_directions(...)` and index "
        "it (dirs[0], dirs[1])")))


def _block(readers, read_final, name: str, shape) -> torch.Tensor:
    """Rows θ_t[name] − θ_final[name], float64, shape (T, numel)."""
    try:
        last = read_final(name).double().reshape(-1)
        rows = [r(name).double().reshape(-1) - last for r in readers]
    except KeyError:
        raise InputError(
            f"a checkpoint of the trajectory has no tensor {name!r}: all steps "
            "must come from the same model"
        ) from None
    if any(r.numel() != int(np.prod(shape)) for r in rows):
        raise InputError(f"tensor {name!r} changes shape along the trajectory")
    return torch.stack(rows)


def project(
    trajectory: Sequence[Step] | str | os.PathLike,
    directions: Sequence[Direction],
    *,
    final: Step | None = None,
) -> np.ndarray:
    """Least-squares coordinates of every step in the plane of ``directions`` around ``final``.

    Returns an array of shape (T, len(directions)); the final point is at 0.
    """
    steps = (
        checkpoints_in(trajectory)
        if isinstance(trajectory, (str, os.PathLike))
        else list(trajectory)
    )
    if not steps:
        raise InputError("the trajectory is empty")
    final = steps[-1] if final is None else final
    if not all(isinstance(d, Direction) for d in directions):
        raise InputTypeError("directions must be lm.Direction objects")
    names = list(directions[0])
    D = torch.stack([torch.cat([d[k].double().reshape(-1) for k in names]) for d in directions])
    gram = D @ D.T  # (n, n): exact least squares even for non-orthogonal directions
    read_final = _reader(final)
    last = torch.cat([read_final(k).double().reshape(-1) for k in names])
    coords = []
    for s in steps:
        read = _reader(s)
        delta = torch.cat([read(k).double().reshape(-1) for k in names]) - last
        coords.append(torch.linalg.solve(gram, D @ delta).numpy())
    return np.asarray(coords)


def fitted_grid(coords: np.ndarray, *, margin: float = 0.25, n: int = 31) -> list[tuple]:
    """Grid axes covering the projected path with a margin (a fraction of its span)."""
    axes = []
    for col in np.asarray(coords, dtype=np.float64).T:
        lo, hi = float(col.min()), float(col.max())
        span = max(hi - lo, 1e-12)
        axes.append((lo - margin * span, hi + margin * span, n))
    return axes
