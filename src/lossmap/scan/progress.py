"""Progress display for long work: points done, points/s and ETA (tqdm)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def bar(total: int, *, initial: int = 0, enabled: bool = True, desc: str = "scan",
        unit: str = "points") -> tqdm:
    """A progress bar over grid points (or other ``unit``s); disabled bars cost nothing."""
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        desc=desc,
        unit="pt" if unit == "points" else unit,
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit + " "
        "[{elapsed}<{remaining}, {rate_fmt}]",
    )
