"""Parameter groups for per-block spectra: by layer, by tensor, by regular expression."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError, InputTypeError


def _matching(pattern: Any, names: Sequence[str], label: str) -> list[str]:
    if isinstance(pattern, (list, tuple)) and all(isinstance(p, str) for p in pattern):
        unknown = [p for p in pattern if p not in names]
        if unknown:
            raise InputError(
                f"block {label!r} names {unknown[0]!r}, which is not among the "
                "operator's parameters (operator.names)"
            )
        return [n for n in names if n in set(pattern)]
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise InputTypeError(
            f"block {label!r}: {pattern!r} is neither a list of parameter names "
            f"nor a regular expression ({exc})"
        ) from None
    found = [n for n in names if rx.search(n)]
    if not found:
        raise InputError(
            f"block {label!r}: {pattern!r} matches no parameter of the operator "
            f"(names look like {', '.join(names[:4])})"
        )
    return found


def group_names(by: Any, names: Sequence[str]) -> dict[str, list[str]]:
    """Block label -> its parameter names, in model order (see ``CurvatureOperator.blocks``).

    Examples
    --------
    >>> group_names("layer", ["fc1.weight", "fc1.bias", "fc2.weight"])
    {'fc1': ['fc1.weight', 'fc1.bias'], 'fc2': ['fc2.weight']}
    >>> group_names({"first": r"^fc1\\."}, ["fc1.weight", "fc1.bias", "fc2.weight"])
    {'first': ['fc1.weight', 'fc1.bias']}
    """
    names = list(names)
    if by == "layer":
        out: dict[str, list[str]] = {}
        for n in names:
            out.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(n)
        return out
    if by == "parameter":
        return {n: [n] for n in names}
    if isinstance(by, Mapping):
        return {str(label): _matching(p, names, str(label)) for label, p in by.items()}
    if isinstance(by, (str, re.Pattern)):
        by = [by]
    if isinstance(by, (list, tuple)):
        return {getattr(p, "pattern", p): _matching(p, names, getattr(p, "pattern", p)) for p in by}
    raise InputTypeError(
        f"by={by!r} must be 'layer', 'parameter', a regular expression, a "
        "list of them, or a dict of label to names or regular expression"
    )
