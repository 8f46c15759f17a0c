"""Progress display for long work: points done, points/s and ETA (tqdm)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def bar(total: int, *, initial: int = 0, enabled: bool = True, desc: str = "scan") -> tqdm:
    """A progress bar over grid points; disabled bars cost nothing."""
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        desc=desc,
        unit="pt",
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} points "
        "[{elapsed}<{remaining}, {rate_fmt}]",
    )
