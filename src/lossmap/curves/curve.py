"""The :class:`Curve` type: a path through parameter space given by control points.

A curve is ``state(t) = Σ_j basis_j(t) · θ_j`` for ``t ∈ [0, 1]``, with control
points ``θ_0 … θ_m`` (dicts ``name -> tensor`` keyed like
``model.named_parameters()``) and one of two bases:

- ``"bezier"``: the Bernstein polynomials ``C(m, j) t^j (1 − t)^(m − j)``
  (Garipov et al. 2018);
- ``"polychain"``: hat functions on knots ``0 = t_0 < … < t_m = 1`` (equally
  spaced unless given): the polygonal chain through the control points
  (Garipov et al. 2018; the elastic band of Draxler et al. 2018).

``t = 0`` and ``t = 1`` are the endpoints exactly (bit for bit), and so is a
polychain at any of its knots. Only parameters are interpolated; buffers
(BatchNorm running statistics) are not part of a curve and are recomputed at
each point when a path is scanned with ``bn="recompute"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import params as P
from ..errors import InputError, InputTypeError, MissingFileError
from ..files import write_atomic
from .basis import KINDS, basis_matrix, check_knots, combine

FORMAT = "lossmap.curve/1"  # the safetensors metadata key and the version of its layout
_KEY = "lossmap_curve"


def _point(obj: Any, *, what: str) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters of a model or of a dict of tensors."""
    if isinstance(obj, nn.Module):
        src = P.parameters_of(obj)
    elif isinstance(obj, Mapping):
        src = dict(obj)
    else:
        raise InputTypeError(
            f"{what} is a {type(obj).__name__}; pass an nn.Module or a dict name -> tensor"
        )
    out = {}
    for name, t in src.items():
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(f"{what} entry {name!r} is a {type(t).__name__}, not a tensor")
        if not t.is_floating_point():
            raise InputError(
                f"{what} entry {name!r} has dtype {t.dtype}; a curve moves floating-point "
                "parameters only (drop buffers such as num_batches_tracked)"
            )
        out[name] = t.detach().to("cpu", copy=True).contiguous()
    if not out:
        raise InputError(f"{what} has no tensors: pass a model or its named_parameters()")
    return out


class Curve:
    """A path through parameter space: ``state(t) = Σ_j basis_j(t) · θ_j``, t ∈ [0, 1].

    Parameters
    ----------
    control_points : sequence of dict[str, Tensor] or nn.Module
        ``θ_0 … θ_m`` (m >= 1), each over the same names and shapes (those of
        ``model.named_parameters()``). Copied to the CPU; the dtype is kept.
        ``θ_0`` and ``θ_m`` are the endpoints, the others the bends.
    kind : {"bezier", "polychain"}
        Bernstein polynomials, or hat functions on ``knots`` (a polygonal chain).
    knots : sequence of float, optional
        Polychain only: where each control point sits, rising strictly from 0 to
        1 (default equally spaced, ``t_j = j / m``).
    meta : dict, optional
        How the curve was made (JSON-serializable); saved with it.

    Notes
    -----
    Only parameters are interpolated. Buffers (BatchNorm running statistics)
    are not part of a curve: scan a curve with ``bn="recompute"`` to re-estimate
    them at every point (the model's own buffers are used otherwise).

    Examples
    --------
    >>> import torch
    >>> a, b = {"w": torch.zeros(2)}, {"w": torch.ones(2)}
    >>> c = Curve([a, {"w": torch.tensor([2.0, 0.0])}, b], kind="bezier")
    >>> c.state(0.5)["w"]
    tensor([1.2500, 0.2500])
    >>> c.basis([0.0, 0.5, 1.0])
    array([[1.  , 0.  , 0.  ],
           [0.25, 0.5 , 0.25],
           [0.  , 0.  , 1.  ]])
    >>> torch.equal(c.state(1.0)["w"], b["w"])
    True
    """

    def __init__(
        self,
        control_points: Sequence[Mapping[str, torch.Tensor] | nn.Module],
        kind: str = "bezier",
        *,
        knots: Sequence[float] | None = None,
        meta: dict | None = None,
    ) -> None:
        if kind not in KINDS:
            raise InputError(f"kind={kind!r} is not a curve kind: use 'bezier' or 'polychain'")
        if isinstance(control_points, (Mapping, nn.Module)) or not isinstance(
            control_points, Sequence
        ):
            raise InputTypeError(
                "control_points must be a list of dicts (or models), one per control point, "
                f"got {type(control_points).__name__}"
            )
        if len(control_points) < 2:
            raise InputError(
                f"a curve needs at least 2 control points (the endpoints), got "
                f"{len(control_points)}"
            )
        pts = [_point(p, what=f"control point {j}") for j, p in enumerate(control_points)]
        for j, p in enumerate(pts[1:], start=1):
            P.check_same_layout(pts[0], p, what=f"control point {j}",
                                ref_what="control point 0")
            for name, t in pts[0].items():
                if p[name].dtype != t.dtype:
                    raise InputError(
                        f"control point {j} has dtype {p[name].dtype} for {name!r} but control "
                        f"point 0 has {t.dtype}: convert both models to one dtype"
                    )
        if kind == "bezier" and knots is not None:
            raise InputError("knots are for kind='polychain'; a Bézier curve has none: drop them")
        self._points = pts
        self._kind = kind
        self._knots = check_knots(knots, len(pts) - 1)
        self._meta = dict(meta or {})
        try:
            json.dumps(self._meta)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"meta must be JSON-serializable ({exc}): store plain values"
            ) from None

    # -- construction -------------------------------------------------------
    @classmethod
    def line(cls, model_a: Mapping[str, torch.Tensor] | nn.Module,
             model_b: Mapping[str, torch.Tensor] | nn.Module) -> Curve:
        """The straight path from ``model_a`` (t = 0) to ``model_b`` (t = 1).

        A polychain with two control points and no bend.

        Examples
        --------
        >>> import torch
        >>> c = Curve.line({"w": torch.zeros(1)}, {"w": torch.full((1,), 4.0)})
        >>> c.state(0.25)["w"], c.kind, c.bends
        (tensor([1.]), 'polychain', 0)
        """
        return cls([model_a, model_b], kind="polychain", meta={"made_by": "line"})

    # -- properties ----------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"bezier"`` or ``"polychain"``."""
        return self._kind

    @property
    def knots(self) -> np.ndarray:
        """Where each control point sits (polychain); ``j / m`` for a Bézier curve (a copy)."""
        return self._knots.copy()

    @property
    def names(self) -> list[str]:
        """The parameter names, in ``named_parameters()`` order."""
        return list(self._points[0])

    @property
    def meta(self) -> dict:
        """How the curve was made (a copy)."""
        return dict(self._meta)

    @property
    def bends(self) -> int:
        """The number of control points between the endpoints (m − 1)."""
        return len(self._points) - 2

    @property
    def control_points(self) -> list[dict[str, torch.Tensor]]:
        """Copies of ``θ_0 … θ_m``."""
        return [{k: v.clone() for k, v in p.items()} for p in self._points]

    @property
    def endpoints(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Copies of ``θ_0`` and ``θ_m``."""
        return self.state(0.0), self.state(1.0)

    def with_meta(self, **extra: Any) -> Curve:
        """The same curve with ``extra`` added to its :attr:`meta` (JSON-serializable values).

        Examples
        --------
        >>> import torch
        >>> Curve.line({"w": torch.zeros(1)}, {"w": torch.ones(1)}).with_meta(note="x").meta
        {'made_by': 'line', 'note': 'x'}
        """
        return Curve(self._points, self._kind,
                     knots=self._knots.tolist() if self._kind == "polychain" else None,
                     meta={**self._meta, **extra})

    def __len__(self) -> int:
        return len(self._points)

    def __repr__(self) -> str:
        n = P.numel(self._points[0])
        return (f"Curve({self._kind}, {len(self._points)} control points, {len(self.names)} "
                f"tensors, {n:,} values each)")

    # -- evaluation ----------------------------------------------------------
    def basis(self, t: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """The weight of each control point at each ``t``: shape (len(t), m + 1), rows sum to 1.

        Beyond [0, 1] a Bézier curve's polynomials and a polychain's end
        segments extend as they are.
        """
        return basis_matrix(self._kind, t, self._knots)

    def coefficients(self, t: float | Sequence[float] | np.ndarray) -> np.ndarray:
        """The coefficients of :meth:`directions` at each ``t``: ``basis(t)[:, 1:]``."""
        return self.basis(t)[:, 1:]

    def state(self, t: float) -> dict[str, torch.Tensor]:
        """The parameters at ``t``: ``Σ_j basis_j(t) θ_j`` (new CPU tensors, the points' dtype).

        ``t = 0`` and ``t = 1`` (and a polychain's knots) return copies of the
        control points themselves, bit for bit. Elsewhere the sum is taken in
        float64 and rounded once to the dtype.
        """
        t = float(t)
        w = self.basis(t)[0]
        hot = np.flatnonzero(w)
        if len(hot) == 1 and w[hot[0]] == 1.0:
            return {k: v.clone() for k, v in self._points[int(hot[0])].items()}
        out = {}
        for k, ref in self._points[0].items():  # one tensor at a time: float64 copies stay small
            wide = [{k: self._points[j][k].to(torch.float64)} for j in hot]
            out[k] = combine(wide, w[hot])[k].to(ref.dtype)
        return out

    def directions(self) -> tuple[dict[str, torch.Tensor], list]:
        """The curve as a centre and directions: ``(θ_0, [θ_j − θ_0 for j ≥ 1])``.

        ``state(t) = θ_0 + Σ_{j≥1} basis_j(t) · (θ_j − θ_0)``, so a scan along
        the curve evaluates the centre plus these directions with
        :meth:`coefficients` as the coordinates. The differences are taken in
        float64 and rounded once to the dtype.

        Returns
        -------
        (dict[str, Tensor], list[lossmap.Direction])
            The centre (a copy of ``θ_0``) and m directions.

        Examples
        --------
        >>> import torch
        >>> c = Curve.line({"w": torch.zeros(2)}, {"w": torch.ones(2)})
        >>> centre, dirs = c.directions()
        >>> centre["w"], dirs[0]["w"], c.coefficients([0.5])
        (tensor([0., 0.]), tensor([1., 1.]), array([[0.5]]))
        """
        from ..directions.direction import Direction

        c = self._points[0]
        dirs = []
        for j, p in enumerate(self._points[1:], start=1):
            diff = {k: (p[k].to(torch.float64) - c[k].to(torch.float64)).to(c[k].dtype)
                    for k in c}
            dirs.append(Direction._adopt(diff, {"kind": "curve", "curve": self._kind,
                                                "control_point": j}))
        return {k: v.clone() for k, v in c.items()}, dirs

    # -- files ---------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the curve to a safetensors file (atomically); returns the path.

        The control points are stored as ``"<j>/<name>"`` tensors and the
        kind, knots, names and ``meta`` as JSON in the file's metadata; no
        pickle. Read it back with :meth:`Curve.load`.

        Examples
        --------
        >>> import tempfile, torch
        >>> c = Curve.line({"w": torch.zeros(2)}, {"w": torch.ones(2)})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     back = Curve.load(c.save(f"{d}/c.safetensors"))
        >>> back.kind, torch.equal(back.state(1.0)["w"], torch.ones(2))
        ('polychain', True)
        """
        from safetensors.torch import save

        tensors = {f"{j}/{k}": v for j, p in enumerate(self._points) for k, v in p.items()}
        header = {"format": FORMAT, "kind": self._kind, "knots": self._knots.tolist(),
                  "names": self.names, "points": len(self._points), "meta": self._meta}
        blob = save(tensors, metadata={_KEY: json.dumps(header)})
        path = Path(path)
        try:
            write_atomic(path, lambda tmp: Path(tmp).write_bytes(blob))
        except OSError as exc:
            raise InputError(
                f"cannot write the curve to {str(path)!r} ({exc.strerror or exc}): "
                "choose another path"
            ) from None
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Curve:
        """Read a curve written by :meth:`save`.

        Every field of the file's header is checked (its kind, control point
        count, names, knots and meta), and its names must cover every tensor
        of the file: a damaged or foreign file is one
        :class:`~lossmap.errors.InputError` naming the file and the field.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"curve file {str(path)!r} does not exist")
        try:
            blob = path.read_bytes()
            tensors = load(blob)
        except (SafetensorError, ValueError, OSError) as exc:
            raise InputError(
                f"{str(path)!r} is not a lossmap curve file ({type(exc).__name__}: {exc}): "
                "write one with Curve.save or `lossmap curve`"
            ) from None
        header = _header(path, blob)
        points = int(header["points"])
        names = header["names"]
        _check_tensors(path, tensors, names, points)
        knots = header["knots"] if header["kind"] == "polychain" else None
        try:
            return cls([{k: tensors[f"{j}/{k}"] for k in names} for j in range(points)],
                       header["kind"], knots=knots, meta=header["meta"])
        except InputError as exc:  # the points differ in shape or dtype, bad knots, …
            raise InputError(f"curve file {str(path)!r}: {exc}") from None


def _damaged(path: Path, what: str) -> InputError:
    """The error for a curve file whose header field is wrong (``what`` says which and how)."""
    return InputError(
        f"curve file {str(path)!r}: {what}; the file is damaged or was not written by "
        "Curve.save: write it again with Curve.save or `lossmap curve`"
    )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# The header's fields: (the check, what it must be).
_FIELDS: dict[str, tuple[Any, str]] = {
    "kind": (lambda v: v in KINDS, f"one of {', '.join(map(repr, KINDS))}"),
    "points": (lambda v: _is_int(v) and v >= 2, "a whole number of control points, at least 2"),
    "names": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(n, str) for n in v),
              "a non-empty list of tensor names"),
    "knots": (lambda v: isinstance(v, list) and all(_is_number(k) for k in v),
              "a list of numbers"),
    "meta": (lambda v: isinstance(v, dict), "a JSON object"),
}


def _header(path: Path, blob: bytes) -> dict[str, Any]:
    """The curve header of a safetensors file's metadata, every field checked."""
    n = int.from_bytes(blob[:8], "little")  # the safetensors header's length
    metadata = json.loads(blob[8:8 + n]).get("__metadata__") or {}  # load() checked the JSON
    if _KEY not in metadata:
        raise InputError(
            f"{str(path)!r} holds tensors but no {_KEY!r} metadata, so it is not a lossmap "
            "curve file: write one with Curve.save or `lossmap curve`"
        )
    try:
        header = json.loads(metadata[_KEY])
    except ValueError as exc:
        raise _damaged(path, f"its {_KEY!r} header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _damaged(path, f"its {_KEY!r} header is a JSON {type(header).__name__}, "
                             "not an object")
    version = header.get("format")
    if version != FORMAT:
        if isinstance(version, str) and version.startswith(FORMAT.split("/")[0] + "/"):
            raise InputError(f"{str(path)!r} has curve format {version!r}; this lossmap reads "
                             f"{FORMAT!r}: upgrade lossmap")
        raise _damaged(path, f"header field 'format' is {version!r}, not {FORMAT!r}")
    for field, (ok, want) in _FIELDS.items():
        if field == "knots" and header.get("kind") != "polychain":
            continue  # a Bézier curve has none to read
        if field not in header:
            raise _damaged(path, f"header field {field!r} is missing")
        if not ok(header[field]):
            raise _damaged(path, f"header field {field!r} is {_shown(header[field])}, "
                                 f"but must be {want}")
    names = header["names"]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise _damaged(path, f"header field 'names' lists {_listed(twice)} more than once")
    return header


def _shown(value: Any) -> str:
    """A short account of a JSON value for a message: its type and (cut) text."""
    text = json.dumps(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"a JSON {type(value).__name__} ({text})"


def _listed(names: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _check_tensors(path: Path, tensors: Mapping[str, torch.Tensor], names: list[str],
                   points: int) -> None:
    """The file holds exactly the tensors ``<j>/<name>`` that its header's names and count give."""
    if points * len(names) > len(tensors):  # checked first: a huge count builds no list
        raise _damaged(path, f"header fields 'points' ({points}) and 'names' ({len(names)}) "
                             f"give {points * len(names):,} tensors, but the file holds "
                             f"{len(tensors)}")
    want = [f"{j}/{k}" for j in range(points) for k in names]
    missing = [w for w in want if w not in tensors]
    if missing:
        raise _damaged(path, f"header fields 'names' and 'points' give tensor(s) "
                             f"{_listed(missing)} that the file does not hold")
    left_out = sorted(set(tensors) - set(want))
    if left_out:
        raise _damaged(path, f"header field 'names' leaves out tensor(s) {_listed(left_out)} "
                             "that the file holds (a curve's names cover every tensor)")
