"""Many processes or machines through ``torch.distributed`` (launched by ``torchrun``).

Inside a torchrun job, :func:`lossmap.scan` shards each round of grid points
across the ranks, gathers the results on rank 0, which alone writes the
store (a store never has two writers), and hands every rank the same
Surface. A restarted job resumes from the store. Backend: NCCL when the
evaluation device is a GPU, gloo otherwise.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in the job."""

    rank: int
    world: int

    @property
    def is_writer(self) -> bool:
        """Rank 0 writes the store and shows progress."""
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, on every rank (one collective per round)."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) with > 1 ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device() -> torch.device | None:
    """``cuda:LOCAL_RANK`` when launched on a machine with GPUs, else None."""
    if launched() and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def group(device: torch.device) -> Group | None:
    """The job's group, initializing the default process group if needed; None if alone."""
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if not launched():
            return None
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
        atexit.register(_shutdown)  # we made it, we end it (gloo aborts at exit otherwise)
    if dist.get_world_size() == 1:
        return None
    return Group(dist.get_rank(), dist.get_world_size())
