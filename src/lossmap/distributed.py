"""Many processes or machines through ``torch.distributed`` (launched by ``torchrun``).

Inside a torchrun job, :func:`lossmap.scan.api` shards each round of grid points
across the ranks, gathers the results on rank 0, which alone writes the
store (a store never has two writers), and hands every rank the same
Surface. A restarted job resumes from the store. Backend: NCCL when the
evaluation device is a GPU, gloo otherwise.

Restarts inside the job (``torchrun --max-restarts N``): torchrun's agent
keeps one key-value store (``MASTER_ADDR:MASTER_PORT``) for the whole job and
hands it to every attempt, and ``init_process_group("env://")`` puts each
attempt's keys under the same names. The workers of a restarted attempt then
read the dead workers' addresses (gloo: "Connection refused" in
``connectFullMesh``; NCCL: a stale unique id). So under the agent's store
each attempt forms its group in a namespace of its own, agreed on by a short
handshake (:func:`_attempt_store`) rather than taken from
``TORCHELASTIC_RESTART_COUNT``, which each node's agent counts for itself
and which differs between nodes after a membership change.
"""

from __future__ import annotations

import atexit
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout


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

    def first_difference(self, facts: Mapping[str, str]) -> tuple[int, str, str, str] | None:
        """Where some rank's ``facts`` differ from rank 0's, the same answer on every rank.

        Collective (one ``all_gather``): every rank calls it with facts it
        believes every rank shares (fingerprints of the data, directions,
        centre; the scan's settings). Returns ``(rank, key, rank 0's value, that
        rank's value)`` for the lowest such rank and the first such key (a key
        one rank lacks has the value ``"(none)"``), or None where all agree.
        """
        every = self.all_gather(dict(facts))
        for rank, theirs in enumerate(every[1:], start=1):
            for key in [*every[0], *(k for k in theirs if k not in every[0])]:
                ours, other = every[0].get(key, "(none)"), theirs.get(key, "(none)")
                if ours != other:
                    return rank, key, ours, other
        return None


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _attempt_store(rank: int, world: int, timeout: timedelta) -> dist.Store:
    """A namespace of torchrun's agent store that no earlier attempt of this job wrote.

    Rank 0 draws a fresh name. Every other rank posts a fresh random token and
    waits for the name under a key made of that token (no earlier attempt can
    have written it), then acknowledges under the new name; rank 0 answers
    every token it sees until all ranks have acknowledged, so a stale token
    left by a killed worker costs nothing.
    """
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent = dist.TCPStore(addr, port, is_master=False, timeout=timeout)
    hs = dist.PrefixStore("lossmap/attempt", agent)
    if rank == 0:
        name = uuid.uuid4().hex
        answered: dict[int, bytes] = {}
        waiting = set(range(1, world))
        deadline = time.monotonic() + timeout.total_seconds()
        while waiting:
            for r in sorted(waiting):
                if hs.check([f"hello/{r}"]):
                    token = hs.get(f"hello/{r}")
                    if answered.get(r) != token:
                        hs.set(f"welcome/{token.decode()}", name)
                        answered[r] = token
                if hs.check([f"{name}/ack/{r}"]):
                    waiting.discard(r)
            if waiting:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"lossmap: ranks {sorted(waiting)} did not join within {timeout}"
                    )
                time.sleep(0.02)
    else:
        token = uuid.uuid4().hex
        hs.set(f"hello/{rank}", token)
        name = hs.get(f"welcome/{token}").decode()  # waits (up to timeout) for rank 0
        hs.set(f"{name}/ack/{rank}", "1")
    return dist.PrefixStore(f"lossmap/attempt/{name}", agent)


def _init(backend: str) -> None:
    """``init_process_group`` from torchrun's environment, restart-safe under its agent."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != str(True):
        dist.init_process_group(backend=backend)  # env://: rank 0 hosts a fresh store
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    store = _attempt_store(rank, world, default_pg_timeout)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)


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
        _init(backend)
        atexit.register(_shutdown)  # we made it, we end it (gloo aborts at exit otherwise)
    if dist.get_world_size() == 1:
        return None
    return Group(dist.get_rank(), dist.get_world_size())
