"""The index of a recorded trajectory: which steps, in which files, with which training loss.

A recording folder holds one ``step_NNNNNN.safetensors`` per recorded step and
``trajectory.json``, the index, written (atomically) after each step file::

    {"format": "lossmap-trajectory", "version": 1, "keep": "parameters",
     "parameters": ["fc.weight", ...], "steps": [0, 10, ...],
     "loss": [null, 2.31, ...], "files": ["step_000000.safetensors", ...]}

The index, not the file names, gives the order (names sort in step order up
to step 999,999 only), and a step file that the index does not list (a write
cut short) is not part of the trajectory. ``parameters`` names the parameters
of the model (``named_parameters()``), so that tensors recorded with
``keep="state"`` (buffers) are left out of PCA. JSON has no NaN: a loss that was
not given or not finite is ``null``, read back as NaN.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

from ..errors import MissingFileError, StoreError

INDEX_NAME = "trajectory.json"
INDEX_FORMAT = "lossmap-trajectory"
INDEX_VERSION = 1
STEP_FILE = re.compile(r"step_\d{6,}\.safetensors")


def step_file(step: int) -> str:
    """The file name of a step: ``step_000123.safetensors`` (at least six digits).

    Examples
    --------
    >>> step_file(123)
    'step_000123.safetensors'
    """
    return f"step_{step:06d}.safetensors"


class RecordedTrajectory(NamedTuple):
    """A recording read back by :func:`read_trajectory`."""

    #: The recorded steps, increasing.
    steps: list[int]
    #: The training loss at each step (NaN where none was given).
    losses: list[float]
    #: The safetensors file of each step, in step order.
    files: list[Path]
    #: The parameter names (``named_parameters()``) of the recorded model.
    parameters: list[str]
    #: ``"parameters"`` (parameters only) or ``"state"`` (the whole state dict).
    keep: str


def read_trajectory(folder: str | os.PathLike) -> RecordedTrajectory:
    """Read the index of a folder written by :class:`~lossmap.TrajectoryRecorder`.

    Parameters
    ----------
    folder : str or path
        The recorder's ``out`` folder.

    Returns
    -------
    RecordedTrajectory
        ``steps``, ``losses`` (NaN where none was recorded), ``files`` (in step
        order), ``parameters`` and ``keep``.

    Raises
    ------
    MissingFileError
        The folder or its ``trajectory.json`` does not exist, or a listed step file is gone.
    StoreError
        The index is not a lossmap trajectory index, or is damaged.

    Examples
    --------
    >>> import torch
    >>> import lossmap as lm
    >>> from lossmap.callbacks import read_trajectory
    >>> rec = lm.TrajectoryRecorder("read_example")
    >>> model = torch.nn.Linear(2, 1)
    >>> for step, loss in [(0, 1.5), (1, 0.75)]:
    ...     _ = rec.record(model, step, loss)
    >>> t = read_trajectory("read_example")
    >>> t.steps, t.losses, [f.name for f in t.files]
    ([0, 1], [1.5, 0.75], ['step_000000.safetensors', 'step_000001.safetensors'])
    """
    folder = Path(folder)
    path = folder / INDEX_NAME
    if not path.is_file():
        what = "does not exist" if not folder.is_dir() else f"has no {INDEX_NAME}"
        raise MissingFileError(
            f"trajectory folder {str(folder)!r} {what}: pass the `out` folder of a "
            "TrajectoryRecorder or a lossmap training callback"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{str(path)!r} cannot be read ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != INDEX_FORMAT:
        raise StoreError(f"{str(path)!r} is not a lossmap trajectory index")
    if raw.get("version") != INDEX_VERSION:
        raise StoreError(
            f"{str(path)!r} has layout version {raw.get('version')!r}; this lossmap reads "
            f"version {INDEX_VERSION}: use the lossmap version that wrote it"
        )
    columns = [raw.get(k) for k in ("steps", "loss", "files", "parameters")]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns[:3]}) != 1:
        raise StoreError(
            f"{str(path)!r} is damaged: steps, loss and files must be lists of one length"
        )
    steps, losses, names, parameters = columns
    if any(type(s) is not int for s in steps) or steps != sorted(set(steps)):
        raise StoreError(f"{str(path)!r} is damaged: its steps are not increasing integers")
    files = []
    for name in names:
        if not isinstance(name, str) or not STEP_FILE.fullmatch(name):
            raise StoreError(f"{str(path)!r} lists {name!r}, which is not a step file name")
        files.append(folder / name)
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise MissingFileError(
            f"trajectory {str(folder)!r} lacks {len(missing)} of its step files, e.g. "
            f"{missing[0].name!r}: were they moved or deleted?"
        )
    return RecordedTrajectory(
        steps=[int(s) for s in steps],
        losses=[math.nan if v is None else float(v) for v in losses],
        files=files,
        parameters=[str(p) for p in parameters],
        keep=str(raw.get("keep", "parameters")),
    )

