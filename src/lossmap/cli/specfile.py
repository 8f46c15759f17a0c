"""The YAML spec of a stored scan: ``lossmap info STORE --spec``.

The printed file uses the keys ``lossmap scan --spec FILE`` reads (see
:mod:`lossmap.cli.config`), so ``lossmap scan --spec`` of it resumes the scan
into the same store, or reproduces it into a new one when ``out`` is changed.
What the numbers depend on comes from the stored spec (grid, samples, seed,
metrics, precision, BatchNorm mode, how the directions were made); the entry
points (``model``, ``data``, ``loss``, ``checkpoint``) and the checkpoint files
of ``--interpolate``, ``--plane``, ``--pca`` come from the record ``lossmap
scan`` keeps with the scan (``Surface.meta["command"]``). What cannot be
written as keys is said in a YAML comment.
"""

from __future__ import annotations

import os
from typing import Any

from ..scan.options import declared, speed_only
from ..scan.spec import Axis, ScanSpec

MODES = ("interpolate", "plane", "pca", "hessian_dirs")  # as in lossmap.cli.directions
CLI_METRICS = ("loss", "accuracy")


def _number(x: float) -> str:
    """``x`` as short as it reads back exactly: ``-1`` or ``-0.2857142857142857``."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


def axis_text(axis: Axis) -> str:
    """One grid axis as ``LO:HI:N``, exact (``str(axis)`` rounds to 6 digits).

    Examples
    --------
    >>> axis_text(Axis(-1.0, 1.0, 51)), axis_text(Axis(-2 / 7, 9 / 7, 12))
    ('-1:1:51', '-0.2857142857142857:1.2857142857142858:12')
    """
    return f"{_number(axis.lo)}:{_number(axis.hi)}:{axis.n}"


def _command(meta: dict) -> dict[str, Any]:
    """The ``lossmap scan`` record of a scan (empty when it was made in Python)."""
    cmd = meta.get("command")
    if not isinstance(cmd, dict):
        return {}
    cmd = dict(cmd)
    if "hessian" in cmd and "hessian_dirs" not in cmd:  # recorded by lossmap 0.1
        cmd["hessian_dirs"] = cmd.pop("hessian")
    return cmd


def _directions(spec: ScanSpec, cmd: dict, notes: list[str]) -> dict[str, Any]:
    """The direction keys: a mode of the command, or random directions by their settings."""
    if spec.path is not None:  # along a curve: its file, if `lossmap scan --path` recorded it
        if cmd.get("path") is not None:
            return {"path": cmd["path"]}
        notes.append("path: the curve was given in Python; save it with Curve.save and add "
                     "path: FILE")
        return {}
    mode = next((m for m in MODES if cmd.get(m) is not None), None)
    if mode is not None:
        keys: dict[str, Any] = {mode: cmd[mode]}
        if mode in ("pca", "hessian_dirs"):
            keys["dirs"] = len(spec.grid)
        if mode == "hessian_dirs" and cmd.get("hessian_split"):
            keys["hessian_split"] = cmd["hessian_split"]
        if cmd.get("params") is not None:
            keys["params"] = cmd["params"]
        return keys
    metas = list(spec.directions)
    settings = {(m.get("kind"), m.get("norm"), m.get("ignore"), m.get("seed"),
                 bool(m.get("orthogonal")), repr((m.get("params") or {}).get("pattern")))
                for m in metas}
    pattern = (metas[0].get("params") or {}).get("pattern") if metas else None
    if len(settings) == 1 and len(metas) == len(spec.grid) and not (
        isinstance(pattern, str) and pattern.startswith("callable:")
    ):
        kind, norm, ignore, seed, orthogonal, _ = settings.pop()
        if kind == "random" and seed == spec.seed:
            keys = {"dirs": len(metas), "norm": norm, "ignore": ignore or "none"}
            return {**keys, **({"orthogonal": True} if orthogonal else {}),
                    **({"params": pattern} if pattern is not None else {})}
    kinds = ", ".join(sorted({str(m.get("kind", "unknown")) for m in metas})) or "unknown"
    notes.append(
        f"directions: {kinds} directions made in Python cannot be given as keys (no file "
        "of them is recorded); the store holds them: "
        "lm.scan(..., directions=lm.load_directions(STORE)) reuses them"
    )
    return {}


def spec_keys(spec: ScanSpec, meta: dict, out: str) -> tuple[dict[str, Any], list[str]]:
    """The ``lossmap scan`` keys of a stored scan, and the notes for what they cannot say.

    Parameters
    ----------
    spec : ScanSpec
        The stored spec.
    meta : dict
        The scan's annotations (``Surface.meta``); ``meta["command"]`` is the
        record ``lossmap scan`` keeps.
    out : str
        The store's path (the ``out`` key).

    Returns
    -------
    keys : dict
        In the order of the flags; JSON/YAML-ready.
    notes : list of str
        One line per thing the keys cannot express (printed as comments).
    """
    cmd, notes = _command(meta), []
    keys: dict[str, Any] = {}
    if cmd:
        keys.update({k: cmd[k] for k in ("model", "checkpoint", "data", "loss")
                     if cmd.get(k) is not None})
    else:
        notes.append("model, data, loss: this scan was not made by `lossmap scan`, so its "
                     "entry points are not recorded: add model: MODULE:FUNCTION and "
                     "data: MODULE:FUNCTION (and loss: unless cross_entropy)")
    keys.update(_directions(spec, cmd, notes))
    keys["grid"] = [axis_text(a) for a in spec.grid]
    if spec.design is not None:  # a sampled design: the grid is its box, LO:HI per direction
        keys["grid"] = [":".join(axis_text(a).split(":")[:2]) for a in spec.grid]
        keys["design"], keys["points"] = spec.design["kind"], spec.design["points"]
        if spec.design["seed"] != spec.seed:
            notes.append(f"design: its seed {spec.design['seed']} is not the scan's seed "
                         f"{spec.seed}; the command line draws both from --seed")
    if spec.samples is not None:
        keys["samples"] = spec.samples
    keys["seed"] = spec.seed
    keys["metrics"] = list(spec.metrics)
    other = [m for m in spec.metrics if m not in CLI_METRICS]
    if other:
        notes.append(f"metrics: {', '.join(other)} are metric functions of the Python API, "
                     "not names the command line knows")
    if spec.autocast:
        keys["autocast"] = spec.autocast
    if spec.bn != "eval":
        keys.update(bn=spec.bn, bn_split=spec.bn_split, bn_samples=spec.bn_samples)
    if spec.dtype != "float32":
        notes.append(f"dtype: the scan ran in {spec.dtype}; the command line scans the model "
                     "in the dtype its --model function returns")
    keys["out"] = out
    return keys, notes


def stored_spec_yaml(path: str | os.PathLike) -> str:
    """The YAML text ``lossmap info STORE --spec`` prints (see the module docstring)."""
    import yaml

    from ..surface import load

    surf = load(path)
    keys, notes = spec_keys(surf.spec, surf.meta, str(path))
    cmd = _command(surf.meta)
    head = [f"# lossmap scan --spec FILE resumes {str(path)!r} (change `out` for a new store)"]
    if cmd:
        head.append("# paths are as `lossmap scan` was given them (relative to where it ran)")
    head += [f"# {n}" for n in notes]
    body = yaml.safe_dump(keys, sort_keys=False, default_flow_style=None, allow_unicode=True)
    defaults = {f.name: f.default for f in declared()}
    speed = {k: cmd[k] for k in speed_only() if cmd.get(k) not in (None, defaults[k])}
    tail = []
    if speed:  # recorded, but not part of the spec: shown, not set
        tail.append("# speed only, not part of the spec (uncomment to use):")
        tail += [f"# {line}" for line in yaml.safe_dump(speed, sort_keys=False).splitlines()]
    return "".join(f"{line}\n" for line in head) + body + "".join(f"{line}\n" for line in tail)
