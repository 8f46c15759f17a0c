"""Seeded scopes of torch's global RNG that leave the caller's RNG state as it was.

Some randomness cannot take a private ``torch.Generator``: a layer's default
initialisation (``nn.Linear.reset_parameters``) and dropout masks draw from the
global generator of the device they run on. :func:`seeded_rng` forks that
generator (``torch.random.fork_rng``), seeds the fork and restores the caller's
state on exit, so the draws inside are a function of the seed alone and nothing
outside changes. The model builders of :mod:`lossmap.models` build under it
when given ``seed``, and :func:`lossmap.train.train` runs its epochs under it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .errors import InputError, InputTypeError

__all__ = ["check_seed", "seeded_rng"]


def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` if it is an int >= 0, else raise a message naming the rule.

    Parameters
    ----------
    seed : Any
        The value to check.
    name : str
        The argument's name, for the message.

    Returns
    -------
    int
        ``seed``.

    Raises
    ------
    InputTypeError
        If ``seed`` is not an int (a bool is not).
    InputError
        If ``seed`` is negative.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputTypeError(f"`{name}`={seed!r} must be an int >= 0 (or None)")
    if seed < 0:
        raise InputError(f"`{name}`={seed} must be >= 0, e.g. 0")
    return seed


@contextmanager
def seeded_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed torch's global generator(s) for the block, then restore the caller's state.

    Parameters
    ----------
    seed : int
        The seed, >= 0.
    device : torch.device or str, optional
        The device whose draws must follow the seed (default: torch's default
        device, where new tensors are made). The CPU generator is always forked
        and seeded; on CUDA the device's generator is too; on other
        accelerators only the CPU generator is.

    Examples
    --------
    >>> import torch
    >>> state = torch.get_rng_state()
    >>> with seeded_rng(3):
    ...     a = torch.rand(2)
    >>> with seeded_rng(3):
    ...     b = torch.rand(2)
    >>> torch.equal(a, b), torch.equal(torch.get_rng_state(), state)
    (True, True)
    """
    seed = check_seed(seed)
    device = torch.get_default_device() if device is None else torch.device(device)
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
