"""Seeded training that records a trajectory (θ0, θ̂, one checkpoint per epoch, history).

* :mod:`.trainer` — :func:`train`.  :mod:`.result` — :class:`TrainResult`, :func:`load_run`.
* :mod:`.checks` — argument checks.  :mod:`.evaluation` — the per-epoch loss and accuracy.
* :mod:`.files` — the run folder, written atomically, refused when it holds files.
  The seeded scope of the dropout masks is :func:`lossmap.seeding.seeded_rng`.
"""

from .result import HISTORY_KEYS, TrainResult, load_run
from .trainer import train

__all__ = ["HISTORY_KEYS", "TrainResult", "load_run", "train"]
