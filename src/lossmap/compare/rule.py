"""Whether several surfaces were scanned by the same rule, so that one picture may compare them.

Two scans compare fairly when only the model differs: the same grid (so the
same axis ranges and points), the same direction rule (kind, normalization,
what is ignored, orthogonalization, the seed of the random draw, the
parameter subset), the same data (split, samples, subset seed, data
fingerprints), loss, dtype and BatchNorm mode. :func:`check_same_rule` says
which of these differs, between which two surfaces, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..surface import Surface

__all__ = ["RULE_KEYS", "check_same_rule"]

RULE_KEYS = ("kind", "norm", "ignore", "orthogonal", "seed", "params")
"""The keys of a direction record that are its rule (the rest, e.g. ``units``, follow a model)."""

_SETTINGS = (
    # (ScanSpec field, what it is, how to fix it)
    ("splits", "data splits", "scan every model on the same splits (data={...})"),
    ("loss", "loss functions", "scan every model with the same loss_fn"),
    ("samples", "samples per split", "scan every model with the same samples="),
    ("seed", "subset seeds", "scan every model with the same seed= (the samples drawn)"),
    ("dtype", "dtypes", "scan every model in the same dtype"),
    ("bn", "BatchNorm modes", "scan every model with the same bn="),
)


def _grid_text(surface: Surface) -> str:
    return " × ".join(f"[{a.lo:g}, {a.hi:g}] with {a.n} points" for a in surface.spec.grid)


def _rule(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in RULE_KEYS}


def _differs(what: str, a: str, b: str, va: Any, vb: Any, fix: str) -> InputError:
    return InputError(
        f"{a} and {b} were not scanned by the same rule: the {what} differ "
        f"({va} against {vb}): {fix}"
    )


def _check_pair(ref: Surface, other: Surface, a: str, b: str) -> None:
    if ref.spec.path is not None or other.spec.path is not None:
        raise InputError(
            f"{a if ref.spec.path is not None else b} is a scan along a path between models; "
            "compare lines or planes around each model (lm.scan with directions=)"
        )
    if len(ref.dims) != len(other.dims):
        kinds = ("a line", "a plane")
        raise _differs(
            "kinds of scan",
            a,
            b,
            kinds[len(ref.dims) - 1],
            kinds[len(other.dims) - 1],
            "scan every model with the same number of directions",
        )
    if tuple(ref.spec.grid) != tuple(other.spec.grid):
        raise _differs(
            "grids",
            a,
            b,
            _grid_text(ref),
            _grid_text(other),
            "scan every model with the same grid=",
        )
    subset = ref.spec.samples is not None or ref.spec.bn == "recompute"
    for name, what, fix in _SETTINGS:
        va, vb = getattr(ref.spec, name), getattr(other.spec, name)
        if va != vb and (name != "seed" or subset):  # the seed draws only subsets
            raise _differs(what, a, b, repr(va), repr(vb), fix)
    for i, (da, db) in enumerate(zip(ref.spec.directions, other.spec.directions, strict=False)):
        ra, rb = _rule(da), _rule(db)
        for k in RULE_KEYS:
            if ra[k] != rb[k]:
                word = {
                    "norm": "normalization",
                    "seed": "direction seed",
                    "kind": "direction kind",
                    "params": "parameter subset",
                }.get(k, k)
                raise _differs(
                    f"direction {i + 1} {word}s",
                    a,
                    b,
                    repr(ra[k]),
                    repr(rb[k]),
                    f"draw every model's directions by one rule "
                    f"(e.g. lm.random_directions(model, {len(ref.dims)}, norm='filter', "
                    f"seed=0) for each model)",
                )
    if len(ref.spec.directions) != len(other.spec.directions):
        raise _differs(
            "direction records",
            a,
            b,
            len(ref.spec.directions),
            len(other.spec.directions),
            "scan every model with lossmap's directions",
        )
    for key in sorted(k for k in ref.fingerprints if k.startswith("data_")):
        fa, fb = ref.fingerprints.get(key), other.fingerprints.get(key)
        if fb is not None and fa != fb:
            raise _differs(
                f"{key[5:]} data",
                a,
                b,
                f"fingerprint {fa}",
                f"fingerprint {fb}",
                "scan every model on the same data (the same tensors, in order)",
            )


def check_same_rule(surfaces: Sequence[Surface], names: Sequence[str]) -> None:
    """Raise :class:`~lossmap.errors.InputError` unless every surface was scanned like the first.

    Parameters
    ----------
    surfaces : sequence of Surface
        Two or more lines, or two or more planes.
    names : sequence of str
        Their names, for the message.

    Raises
    ------
    InputError
        Naming the first setting that differs (grid, direction rule,
        normalization, seed, data, loss, …), the two surfaces, both values
        and the fix.

    Examples
    --------
    >>> import numpy as np
    >>> from lossmap.scan.spec import ScanSpec
    >>> a = Surface(ScanSpec(grid=((-1, 1, 5),), splits=("train",), metrics=("loss",)),
    ...             {"train_loss": np.zeros(5)}, np.ones(5, bool))
    >>> b = Surface(ScanSpec(grid=((-1, 1, 7),), splits=("train",), metrics=("loss",)),
    ...             {"train_loss": np.zeros(7)}, np.ones(7, bool))
    >>> check_same_rule([a, b], ["sgd", "sam"])
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: sgd and sam were not scanned by the same rule: the grids \
differ ([-1, 1] with 5 points against [-1, 1] with 7 points): scan every model with the same grid=
    """
    for name, s in zip(names[1:], surfaces[1:], strict=True):
        _check_pair(surfaces[0], s, names[0], name)
