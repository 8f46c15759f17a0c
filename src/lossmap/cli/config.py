"""The command-line scan configuration: flags and YAML files share one vocabulary.

Keys (YAML) and flags (CLI) are the same names, ``batch_size`` ↔ ``--batch-size``:

model, checkpoint, data, loss, dirs, norm, ignore, orthogonal, params, grid, metrics, out,
the exclusive direction options interpolate, plane, pca, hessian_dirs, hessian_split (see
:mod:`lossmap.cli.directions`) or path (a curve file: the scan runs along it, its grid in
t), and ``lm.scan``'s options as :class:`lossmap.scan.options.ScanOptions` declares them
(samples, seed, device, batch_size, strategy, reuse_first_layer, bn, bn_samples, bn_split,
compile, autocast): their fields join :class:`ScanConfig` from that declaration, and their
values are checked once, by ``lm.scan`` (inside :func:`lossmap.checks.cli_names`, so a
message names the flag). ``lossmap info STORE --spec`` prints a stored scan in these keys.

Renamed in 0.2 (the old key still works, with a note on stderr): ``hessian`` →
``hessian_dirs``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..checks import check_int
from ..directions.random import check_ignore, check_norm
from ..errors import InputError, InputTypeError, MissingFileError
from ..scan.options import yaml_keys
from ..scan.spec import MAX_DIMS, Axis
from .options import deprecated
from .specfile import axis_text

RENAMED = {"hessian": "hessian_dirs"}  # YAML keys renamed in 0.2: old → new
# The keys whose values are text (paths, entry points, names), checked by type.
_TEXT = ("model", "data", "out", "checkpoint", "loss", "norm", "pca", "hessian_split", "path",
         "design")
PATH_GRID = "0:1:21"  # --path without --grid: t from 0 to 1


def _with_scan_options(cls: type) -> type:
    """Add ``lm.scan``'s options (:func:`lossmap.scan.options.yaml_keys`) as fields, then
    make ``cls`` a dataclass. Each defaults to None: not given, so ``lm.scan``'s default applies.
    """
    for key in yaml_keys():
        cls.__annotations__[key] = "Any"
        setattr(cls, key, None)
    return dataclass(cls)


@_with_scan_options
class ScanConfig:
    """A scan as the command line describes it (validated by :meth:`validate`)."""

    model: str | None = None  # MODULE:FUNCTION returning an nn.Module
    data: str | None = None  # MODULE:FUNCTION returning {split: data}
    out: str | None = None  # path of the store
    checkpoint: str | None = None  # centre weights; default: the model's own
    loss: str = "cross_entropy"  # cross_entropy|mse|causal_lm|masked_lm|model|MODULE:NAME
    dirs: int | None = None  # 1 = line, 2 = plane, up to 6; default 2 (1 for --interpolate)
    norm: str = "filter"
    ignore: str | None = "biasbn"
    orthogonal: bool = False
    params: str | list[str] | None = None  # glob(s): directions over these tensors only
    grid: list = field(default_factory=list)  # one LO:HI:N per direction
    metrics: list[str] = field(default_factory=lambda: ["loss", "accuracy"])
    # Directions other than random ones (at most one of the four):
    interpolate: list[str] | None = None  # checkpoints A B: the line from A to B, centre A
    plane: list[str] | None = None  # checkpoints A B C: the plane through them, centre A
    pca: str | None = None  # folder of checkpoints: the training path's PCA plane
    hessian_dirs: int | None = None  # K: top-K Hessian eigen-directions at the centre
    hessian_split: str | None = None  # the split the Hessian is of (default the first)
    path: str | None = None  # CURVE.safetensors (Curve.save): scan along it, the grid in t
    design: str | None = None  # sobol | lhs: sample `points` points in the grid's box
    points: int | None = None  # N, the number of points of a design
    draws: int | None = None  # K: repeat the line/plane over K direction draws (lm.scan(draws=))

    @classmethod
    def field_names(cls) -> list[str]:
        """The configuration keys."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> dict[str, Any]:
        """Read a YAML spec file into a dict of known keys (unknown keys are an error)."""
        import yaml

        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"spec file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
            raise InputError(
                f"spec file {str(path)!r} is not valid YAML: {problem}{where}"
            ) from None
        if not isinstance(raw, dict):
            raise InputError(f"spec file {str(path)!r} must hold a mapping of keys to values")
        raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
        for old, new in RENAMED.items():
            if old in raw:
                deprecated(f"key {old!r} of spec file {str(path)!r}", repr(new),
                           prog="lossmap scan")
                if new in raw:
                    raise InputError(f"spec file {str(path)!r} has both {old!r} and {new!r}: "
                                     f"keep {new!r} ({old!r} is its old name)")
                raw[new] = raw.pop(old)
        unknown = sorted(set(raw) - set(cls.field_names()))
        if unknown:
            raise InputError(
                f"spec file {str(path)!r} has unknown key {unknown[0]!r}: "
                f"known keys are {', '.join(cls.field_names())}"
            )
        return raw

    def _check_types(self) -> None:
        """Refuse a value of the wrong type, as a YAML file can give (``out: 123``)."""
        for key in _TEXT:
            v = getattr(self, key)
            if v is not None and not isinstance(v, str):
                raise InputTypeError(
                    f"{key} {v!r} must be text, not {type(v).__name__}: give a string "
                    f"(in a spec file, quote it: {key}: \"{v}\")"
                )
        m = self.metrics
        if not isinstance(m, str) and not (
            isinstance(m, list) and m and all(isinstance(x, str) for x in m)
        ):
            raise InputTypeError(
                f"metrics {m!r} must be names: a comma-separated string or a list, "
                "e.g. metrics: [loss, accuracy]"
            )
        if not isinstance(self.orthogonal, bool):
            raise InputTypeError(f"orthogonal {self.orthogonal!r} must be true or false")
        p = self.params
        if p is not None and not isinstance(p, str) and not (
            isinstance(p, list) and p and all(isinstance(x, str) for x in p)
        ):
            raise InputTypeError(f"params {p!r} must be a glob or a list of globs, "
                                 "e.g. params: '*lora_*'")
        if isinstance(p, list) and len(p) == 1:
            self.params = p[0]

    def validate(self) -> ScanConfig:
        """Check every field; returns self. Raises InputError naming the field and fix."""
        self._check_types()
        for key in ("model", "data", "out"):
            if not getattr(self, key):
                raise InputError(f"--{key} is required (or `{key}:` in the spec file)")
        from .directions import check_mode

        if self.path is not None:
            self._check_path()
        fitted_later = check_mode(self)  # exclusive options; their dirs and grid defaults
        self.dirs = 2 if self.dirs is None else self.dirs
        if self.dirs not in range(1, MAX_DIMS + 1) or isinstance(self.dirs, bool):
            raise InputError(f"--dirs {self.dirs!r} must be 1 (line), 2 (plane) or up to "
                             f"{MAX_DIMS} (a k-D grid)")
        check_norm(self.norm)
        self.ignore = check_ignore(self.ignore)
        if isinstance(self.grid, (str, tuple)):
            self.grid = [self.grid]
        if not isinstance(self.grid, list):
            raise InputTypeError("grid must be a list of LO:HI:N entries")
        self._check_design()
        if self.design is not None and len(self.grid) == 1:
            pass  # one box axis for every direction
        elif len(self.grid) != self.dirs and not (fitted_later and not self.grid):
            raise InputError(
                f"{len(self.grid)} --grid given for --dirs {self.dirs}: give one --grid LO:HI:N "
                "per direction, e.g. --grid -1:1:51 --grid -1:1:51"
            )
        # The grid's axes and the scan's options are checked by lm.scan, once.
        self.seed = 0 if self.seed is None else check_int(self.seed, "seed")  # directions
        if isinstance(self.metrics, str):
            self.metrics = [m.strip() for m in self.metrics.split(",") if m.strip()]
        self._check_evaluation()
        return self

    def _check_design(self) -> None:
        """``--design sobol|lhs`` goes with ``--points N`` and a box (``--grid LO:HI``)."""
        if (self.design is None) != (self.points is None):
            raise InputError("--design and --points go together: e.g. --design sobol --points 512")
        if self.design is not None and (self.path is not None or not self.grid):
            raise InputError("--design needs directions and a box: --grid LO:HI (one for all "
                             "directions or one per direction), not --path")

    def scan_grid(self) -> Any:
        """The grid ``lm.scan`` takes: the axes, or with ``--design`` a ``Design`` in the box."""
        if self.design is None:
            return self.grid
        from ..scan.design import Design

        return Design(self.design, self.points, box=self.grid, seed=self.seed)

    def _check_path(self) -> None:
        """``--path CURVE``: no other way to make directions, one grid axis in t."""
        others = [k for k in ("interpolate", "plane", "pca", "hessian_dirs", "checkpoint")
                  if getattr(self, k) is not None]
        if others:
            raise InputError(f"--path cannot be combined with --{others[0].replace('_', '-')}: "
                             "the curve gives the centre (its first control point) and the path")
        if not Path(self.path).is_file():
            raise MissingFileError(f"--path curve file {self.path!r} does not exist")
        if self.dirs not in (None, 1):
            raise InputError(f"--dirs {self.dirs!r} does not fit --path, which scans one axis (t)")
        self.dirs = 1
        self.grid = self.grid or [PATH_GRID]

    def _check_evaluation(self) -> None:
        """What ties the options together: bn_samples and bn_split go with bn recompute."""
        for key in ("bn_samples", "bn_split"):
            if getattr(self, key) is not None and self.bn != "recompute":
                raise InputError(f"--{key.replace('_', '-')} needs --bn recompute "
                                 "(`bn: recompute` in the spec file)")

    def scan_options(self) -> dict[str, Any]:
        """The options of ``lm.scan`` this configuration sets (the others: its defaults)."""
        return {k: getattr(self, k) for k in yaml_keys() if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (grid as LO:HI:N strings)."""
        d = {k: getattr(self, k) for k in self.field_names()}
        # exact (str(axis) rounds); an axis as given is recorded as given
        d["grid"] = [axis_text(g) if isinstance(g, Axis) else g for g in self.grid]
        return d
