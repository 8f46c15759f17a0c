"""Parameter subsets: which tensors a direction moves, chosen by name.

A subset is given as ``params=``: a glob pattern matched against each tensor
name with :func:`fnmatch.fnmatchcase` (``"*lora_*"``, ``"transformer.h.0.*"``,
``"*.attn.*"``), a list of such patterns (a name matching any of them is
kept), or a callable ``name -> bool``. A direction over a subset simply has
no entry for the other tensors, and a scan moves only the tensors that
appear in some direction: the rest stay bit-identical to the centre.

The subset is recorded in the direction's ``meta["params"]`` (the pattern as
text, and the number of tensors and values chosen), which a scan keeps in its
spec: ``Surface.spec.directions`` and ``lossmap info`` show it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InputError, InputTypeError

#: How many parameter names an error lists when a pattern matches none.
SHOWN = 6

Pattern = str | Sequence[str] | Callable[[str], bool]


def pattern_text(params: Pattern) -> str | list[str]:
    """The pattern as stored in ``meta["params"]["pattern"]``: text, a list of text.

    A callable is recorded by its name (``"callable:is_attention"``): it
    cannot be stored, so a scan of it cannot be repeated from the record.

    Examples
    --------
    >>> pattern_text("*lora_*"), pattern_text(["a.*", "b.*"])
    ('*lora_*', ['a.*', 'b.*'])
    >>> pattern_text(lambda name: True)
    'callable:<lambda>'
    """
    if isinstance(params, str):
        return params
    if callable(params):
        return f"callable:{getattr(params, '__qualname__', type(params).__name__)}"
    return [str(p) for p in params]


def _matcher(params: Pattern) -> Callable[[str], bool]:
    """A function name -> bool for a checked pattern."""
    if isinstance(params, str):
        return lambda name: fnmatch.fnmatchcase(name, params)
    if callable(params):
        return lambda name: bool(params(name))
    if isinstance(params, Sequence) and params and all(isinstance(p, str) for p in params):
        pats = list(params)
        return lambda name: any(fnmatch.fnmatchcase(name, p) for p in pats)
    raise InputTypeError(
        f"params={params!r} must be a glob pattern such as '*lora_*', a non-empty list of "
        "patterns, or a callable name -> bool"
    )


def select_params(names: Sequence[str] | Mapping[str, Any], params: Pattern | None) -> list[str]:
    """The names (in their given order) that ``params`` chooses; all of them for None.

    Parameters
    ----------
    names : sequence of str or mapping
        The tensor names (a state dict's keys will do).
    params : str, list of str, callable or None
        A glob, a list of globs (any may match), or ``name -> bool``.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        The pattern chooses no tensor; the message lists a few names.

    Examples
    --------
    >>> names = ["h.0.attn.weight", "h.0.mlp.weight", "h.1.attn.weight", "head.weight"]
    >>> select_params(names, "*.attn.*")
    ['h.0.attn.weight', 'h.1.attn.weight']
    >>> select_params(names, ["h.0.*", "head.*"])
    ['h.0.attn.weight', 'h.0.mlp.weight', 'head.weight']
    >>> select_params(names, lambda n: n.startswith("h.1"))
    ['h.1.attn.weight']
    """
    names = list(names)
    if params is None:
        return names
    match = _matcher(params)
    chosen = [n for n in names if match(n)]
    if not chosen:
        shown = ", ".join(names[:SHOWN]) + (f", … ({len(names)} in all)"
                                             if len(names) > SHOWN else "")
        raise InputError(
            f"params={pattern_text(params)!r} matches none of the model's parameter names "
            f"({shown or 'none'}): give a glob such as '*lora_*' or 'transformer.h.0.*' "
            "(matched with fnmatch against the whole name)"
        )
    return chosen


def subset_meta(params: Pattern | None, state: Mapping[str, Any]) -> dict:
    """``{"params": {...}}`` for a direction's meta (empty without a subset).

    ``state`` is the direction's tensors (or the centre's chosen tensors).
    """
    if params is None:
        return {}
    return {"params": {"pattern": pattern_text(params), "tensors": len(state),
                       "values": int(sum(t.numel() for t in state.values()))}}
