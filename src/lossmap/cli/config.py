"""The command-line scan configuration: flags and YAML files share one vocabulary.

Keys (YAML) and flags (CLI) are the same names, ``batch_size`` ↔ ``--batch-size``:

model, checkpoint, data, loss, dirs, norm, ignore, seed, orthogonal, grid,
samples, device, batch_size, autocast, metrics, out, and the exclusive direction options
interpolate, plane, pca, hessian, hessian_split (see :mod:`lossmap.cli_directions`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..directions.random import check_ignore, check_norm
from ..errors import InputError, InputTypeError, MissingFileError
from ..spec import AUTOCAST, check_axis


@dataclass
class ScanConfig:
    """A scan as the command line describes it (validated by :meth:`validate`)."""

    model: str | None = None  # MODULE:FUNCTION returning an nn.Module
    data: str | None = None  # MODULE:FUNCTION returning {split: data}
    out: str | None = None  # path of the store
    checkpoint: str | None = None  # centre weights; default: the model's own
    loss: str = "cross_entropy"  # cross_entropy | mse | MODULE:NAME (the loss callable)
    dirs: int | None = None  # 1 = line, 2 = plane; default 2 (1 for --interpolate)
    norm: str = "filter"
    ignore: str | None = "biasbn"
    seed: int = 0  # seeds the directions and the samples subset
    orthogonal: bool = False
    grid: list = field(default_factory=list)  # one LO:HI:N per direction
    samples: int | None = None
    device: str | None = None
    batch_size: int | None = None
    autocast: str | None = None  # bfloat16 | float16: forward passes under torch.autocast
    metrics: list[str] = field(default_factory=lambda: ["loss", "accuracy"])
    # Directions other than random ones (at most one of the four):
    interpolate: list[str] | None = None  # checkpoints A B: the line from A to B, centre A
    plane: list[str] | None = None  # checkpoints A B C: the plane through them, centre A
    pca: str | None = None  # folder of checkpoints: the training path's PCA plane
    hessian: int | None = None  # K: top-K Hessian eigen-directions at the centre
    hessian_split: str | None = None  # the split the Hessian is of (default the first)

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
        unknown = sorted(set(raw) - set(cls.field_names()))
        if unknown:
            raise InputError(
                f"spec file {str(path)!r} has unknown key {unknown[0]!r}: "
                f"known keys are {', '.join(cls.field_names())}"
            )
        return raw

    def validate(self) -> ScanConfig:
        """Check every field; returns self. Raises InputError naming the field and fix."""
        for key in ("model", "data", "out"):
            if not getattr(self, key):
                raise InputError(f"--{key} is required (or `{key}:` in the spec file)")
        from .directions import check_mode

        fitted_later = check_mode(self)  # exclusive options; their dirs and grid defaults
        self.dirs = 2 if self.dirs is None else self.dirs
        if self.dirs not in (1, 2) or isinstance(self.dirs, bool):
            raise InputError(f"--dirs {self.dirs!r} must be 1 (line) or 2 (plane)")
        check_norm(self.norm)
        self.ignore = check_ignore(self.ignore)
        if isinstance(self.grid, (str, tuple)):
            self.grid = [self.grid]
        if not isinstance(self.grid, list):
            raise InputTypeError("grid must be a list of LO:HI:N entries")
        if len(self.grid) != self.dirs and not (fitted_later and not self.grid):
            raise InputError(
                f"{len(self.grid)} --grid given for --dirs {self.dirs}: give one --grid LO:HI:N "
                "per direction, e.g. --grid -1:1:51 --grid -1:1:51"
            )
        self.grid = [check_axis(g, index=i) for i, g in enumerate(self.grid)]
        for key in ("seed", "samples", "batch_size"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise InputTypeError(f"--{key.replace('_', '-')} {v!r} must be an integer")
        if self.samples is not None and self.samples < 1:
            raise InputError(f"--samples {self.samples} must be >= 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size} must be >= 1")
        if self.autocast not in AUTOCAST:
            raise InputError(f"--autocast {self.autocast!r} must be bfloat16 or float16 "
                             "(leave it out for full precision)")
        if isinstance(self.metrics, str):
            self.metrics = [m.strip() for m in self.metrics.split(",") if m.strip()]
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (grid as LO:HI:N strings)."""
        d = {k: getattr(self, k) for k in self.field_names()}
        d["grid"] = [str(g) for g in self.grid]
        return d
