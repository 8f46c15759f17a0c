"""The record of a scan along a path: what :attr:`lossmap.scan.spec.ScanSpec.path` holds, in words.

A scan along a :class:`~lossmap.curves.Curve` (``lm.scan(path=curve)``) has
one grid dimension, ``t``, and records its curve in the spec as
``{"kind", "control_points", "knots" (polychain only), "fingerprints"}``, one
fingerprint per control point, so that a resumed store checks that it is the
same curve and names the control point that differs. The scan itself is
:mod:`lossmap.scan.path`.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError

PATH_DIM = "t"  # the one dimension of a scan along a Curve
PATH_KINDS = ("bezier", "polychain")


def check_path(path: Any, naxes: int) -> dict:
    """The path record of a spec, checked; ``naxes`` is the number of grid axes (must be 1).

    Examples
    --------
    >>> check_path({"kind": "bezier", "control_points": 3}, 1)["kind"]
    'bezier'
    >>> check_path({"kind": "spline", "control_points": 3}, 1)
    Traceback (most recent call last):
    ...
    lossmap.errors.InputError: path={'kind': 'spline', 'control_points': 3} must be a dict ...
    """
    if not isinstance(path, dict) or path.get("kind") not in PATH_KINDS:
        raise InputError(f"path={path!r} must be a dict with 'kind' one of "
                         f"{', '.join(PATH_KINDS)} (made by lm.scan(path=curve))")
    n = path.get("control_points")
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise InputError(f"path control_points={n!r} must be an integer >= 2")
    if naxes != 1:
        raise InputError(f"a scan along a path has one grid axis (t), got {naxes}")
    return plain(dict(path))


def path_text(path: dict | None) -> str:
    """How a path record reads: ``"bezier, 1 bend"``; ``"none"`` for a line or plane.

    Examples
    --------
    >>> path_text({"kind": "bezier", "control_points": 3})
    'bezier, 1 bend'
    >>> path_text({"kind": "polychain", "control_points": 4, "knots": [0, 0.25, 0.5, 1]})
    'polychain, 2 bends, knots 0, 0.25, 0.5, 1'
    """
    if path is None:
        return "none"
    bends = int(path["control_points"]) - 2
    text = f"{path['kind']}, {bends} bend{'' if bends == 1 else 's'}"
    if path.get("knots") is not None and path["kind"] == "polychain":
        text += ", knots " + ", ".join(f"{float(k):g}" for k in path["knots"])
    return text


def path_differences(stored: dict | None, now: dict | None) -> list[str]:
    """What differs between a stored path record and a new one, in words (empty if equal).

    Examples
    --------
    >>> a = {"kind": "bezier", "control_points": 3, "fingerprints": ["x", "y", "z"]}
    >>> path_differences(a, {**a, "fingerprints": ["x", "Y", "z"]})
    ['path: control point 1 (a bend) differs']
    >>> path_differences(a, None)
    ['path bezier, 1 bend stored vs none now']
    """
    if stored == now:
        return []
    shape = ("kind", "control_points", "knots")
    if stored is None or now is None or any(stored.get(k) != now.get(k) for k in shape):
        return [f"path {path_text(stored)} stored vs {path_text(now)} now"]
    fa, fb = stored.get("fingerprints") or [], now.get("fingerprints") or []
    last = int(now["control_points"]) - 1
    out = [f"path: control point {j} ({'an endpoint' if j in (0, last) else 'a bend'}) differs"
           for j in range(max(len(fa), len(fb)))
           if (fa[j] if j < len(fa) else None) != (fb[j] if j < len(fb) else None)]
    return out or [f"path {stored!r} stored vs {now!r} now"]


def plain(x: Any) -> Any:
    """``x`` with every tuple, at any depth, made a list (what a JSON round trip gives)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x
