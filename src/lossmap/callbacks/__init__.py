"""Record a training trajectory (θ at chosen steps, with the training loss) as you train.

* :mod:`.recorder` — :class:`TrajectoryRecorder`, for a plain training loop
  (also ``lm.TrajectoryRecorder``).
* :mod:`.index` — the folder's index, :func:`read_trajectory`.
* :mod:`.sharpness` — :class:`SharpnessRecorder`: λmax (and Adam's
  preconditioned λmax) every k steps against 2/η, the edge of stability;
  :func:`read_sharpness` reads its file.
* :mod:`.huggingface` — ``LossmapCallback`` for the Hugging Face ``Trainer``
  (``pip install lossmap[hf]``).
* :mod:`.lightning` — ``LossmapCallback`` for PyTorch Lightning
  (``pip install lossmap[lightning]``).

The last two import their framework, so they are imported by name, never here::

    from lossmap.callbacks.huggingface import LossmapCallback

Every recorder folder is read directly by ``lm.pca_directions(folder, 2)`` and
``lm.project(folder, dirs)``.
"""

from .index import read_trajectory
from .recorder import TrajectoryRecorder
from .sharpness import SharpnessRecorder, read_sharpness

__all__ = ["SharpnessRecorder", "TrajectoryRecorder", "read_sharpness", "read_trajectory"]
