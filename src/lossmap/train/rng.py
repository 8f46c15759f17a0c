"""The seeded global RNG that :func:`lossmap.train.train` runs its epochs under."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generator(s) for the block, then restore the caller's state.

    Dropout and other random layers draw from the global generator of the
    device they run on, which cannot be swapped for a private one. Forking
    makes their masks a function of ``seed`` while leaving the caller's global
    RNG state exactly as it was. On CUDA the device's generator is forked and
    seeded too; on other accelerators only the CPU generator is.
    """
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"):
            torch.default_generator.manual_seed(seed)
            torch.cuda.default_generators[index].manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
