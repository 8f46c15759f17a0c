"""One grid axis: ``n`` evenly spaced coordinates from ``lo`` to ``hi``.

A value type with no checks of its own: :func:`lossmap.checks.check_axis` makes
one from what a user gives (``(lo, hi, n)``, ``"lo:hi:n"``), and
:class:`~lossmap.scan.spec.ScanSpec` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Axis:
    """One grid axis: ``n`` evenly spaced values from ``lo`` to ``hi`` inclusive.

    Examples
    --------
    >>> Axis(-1.0, 1.0, 5).values()
    array([-1. , -0.5,  0. ,  0.5,  1. ])
    >>> str(Axis(-1.0, 1.0, 51))
    '-1:1:51'
    """

    lo: float
    hi: float
    n: int

    def values(self) -> np.ndarray:
        """The coordinates along this axis, float64, shape (n,)."""
        return np.linspace(self.lo, self.hi, self.n)

    def __str__(self) -> str:
        return f"{self.lo:g}:{self.hi:g}:{self.n}"
