"""The options of a scan, declared once: :class:`ScanOptions`.

Each field of :class:`ScanOptions` is a keyword option of ``lm.scan`` (and
``lm.plan_scan``) with its default, its checker (:mod:`lossmap.checks`), a
one-line help, its command-line flag, whether it is a key of a ``lossmap scan
--spec`` file, and where a scan records it (``"spec"``: part of what is
computed, in the stored spec; ``"speed"``: only how fast, in the command
record; ``"run"``: how it is shown, not recorded). Everything else is derived
from these fields: the flags and their help (:func:`lossmap.cli.options.add_scan_options`),
the spec file's keys (:class:`lossmap.cli.config.ScanConfig`), what ``lossmap
info --spec`` shows as speed-only (:mod:`lossmap.cli.specfile`), and the check at
the door (:meth:`ScanOptions.checked`).

``lm.scan`` keeps its keyword parameters written out, for IDE completion, type
hints and a docstring the documentation builder reads from the source;
``tests/test_scan_options.py`` compares their names and defaults with these
fields (and the inputs of :data:`INPUTS`), so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .. import checks as C
from ..errors import InputTypeError

#: ``lm.scan``'s other keywords: what is scanned, not how (objects the command line builds
#: its own way: entry points, direction options, checkpoint and curve files, ``-o``).
INPUTS = ("data", "directions", "grid", "centre", "metrics", "store", "meta", "path", "draws")


def about(
    *,
    help: str,
    check: Callable[[Any], Any] | None = None,
    flag: str | None = None,
    yaml: bool = True,
    record: str = "speed",
    choices: tuple | None = None,
    metavar: str | None = None,
) -> dict[str, Any]:
    """One option's metadata: its help, checker, flag, spec-file key, record and choices."""
    return {
        "help": help,
        "check": check,
        "flag": flag,
        "yaml": yaml and flag is not None,
        "record": record,
        "choices": choices,
        "metavar": metavar,
    }


def _samples(v: Any) -> int | None:
    return C.check_count(v, "samples", none="all samples")


def _batch_size(v: Any) -> int | None:
    return C.check_count(v, "batch_size", none="fitted to the memory")


def _bn_samples(v: Any) -> int:
    return C.check_count(v, "bn_samples")


@dataclass(frozen=True)
class ScanOptions:
    """How a scan runs and which samples it reads: ``lm.scan``'s keyword options.

    Built checked by :meth:`checked` at the door (``lm.scan``, ``lm.plan_scan``,
    the command line); the backends read it as ``plan.options``.

    Examples
    --------
    >>> from lossmap.scan.options import ScanOptions
    >>> ScanOptions().samples is None
    True
    >>> ScanOptions.checked({"samples": 256}).samples
    256
    """

    samples: int | None = field(
        default=None,
        metadata=about(
            check=_samples,
            flag="--samples",
            record="spec",
            metavar="N",
            help="evaluate a fixed random subset of this many samples of each split",
        ),
    )
    seed: int = field(
        default=0,
        metadata=about(
            check=lambda v: C.check_int(v, "seed", minimum=0),
            flag="--seed",
            record="spec",
            help="seed of the samples subset (on the command line also of the directions)",
        ),
    )
    device: Any = field(
        default=None,
        metadata=about(
            check=lambda v: C.check_device(v),
            flag="--device",
            help="cpu, cuda, cuda:1, … (default: the model's)",
        ),
    )
    batch_size: int | None = field(
        default=None,
        metadata=about(
            check=_batch_size,
            flag="--batch-size",
            help="evaluation batch size (default: fitted to the cache and memory)",
        ),
    )
    strategy: str = field(
        default="auto",
        metadata=about(
            check=lambda v: C.check_strategy(v),
            flag="--strategy",
            choices=tuple(C.STRATEGIES),
            help="how a chunk of points runs: a point loop or torch.func.vmap "
            "(default auto: vmap on accelerators)",
        ),
    )
    reuse_first_layer: bool = field(
        default=True,
        metadata=about(
            check=lambda v: C.check_bool(v, "reuse_first_layer"),
            flag="--no-reuse-first-layer",
            help="evaluate the first layer at every point (no exact first-layer reuse)",
        ),
    )
    bn: str = field(
        default="eval",
        metadata=about(
            check=lambda v: C.check_bn(v),
            flag="--bn",
            record="spec",
            choices=tuple(C.BN),
            help="BatchNorm: stored running statistics (eval, default) or re-estimated at every "
            "point (recompute)",
        ),
    )
    bn_samples: int = field(
        default=1024,
        metadata=about(
            check=_bn_samples,
            flag="--bn-samples",
            record="spec",
            metavar="N",
            help="with --bn recompute: samples the statistics come from (default 1024)",
        ),
    )
    bn_split: str | None = field(
        default=None,
        metadata=about(
            check=lambda v: C.check_text(v, "bn_split"),
            flag="--bn-split",
            record="spec",
            metavar="SPLIT",
            help="with --bn recompute: their split (default train, else the first)",
        ),
    )
    channels_last: bool | None = field(
        default=None,
        metadata=about(
            check=lambda v: None if v is None else C.check_bool(v, "channels_last"),
            help="image batches in channels-last layout (default: on for 4-D data and "
            "a model with Conv2d layers)"
        ),
    )
    compile: bool = field(
        default=False,
        metadata=about(
            check=lambda v: C.check_bool(v, "compile"),
            flag="--compile",
            help="evaluate each point through torch.compile (pays off on long scans)",
        ),
    )
    autocast: str | None = field(
        default=None,
        metadata=about(
            check=lambda v: C.check_autocast(v),
            flag="--autocast",
            record="spec",
            choices=tuple(a for a in C.AUTOCAST if a),
            help="forward passes under torch.autocast (for GPUs; less precise)",
        ),
    )
    progress: bool = field(
        default=True,
        metadata=about(
            check=lambda v: C.check_bool(v, "progress"),
            flag="--no-progress", yaml=False, record="run", help="hide the progress bar"
        ),
    )
    profile: bool = field(
        default=False,
        metadata=about(
            check=lambda v: C.check_bool(v, "profile"),
            flag="--profile",
            yaml=False,
            record="run",
            help="print where the time went (data, build, first layer, forward, store)",
        ),
    )

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> ScanOptions:
        """The options ``values`` gives (others: defaults), each checked once.

        Examples
        --------
        >>> ScanOptions.checked({"autocast": "bf16"}).autocast
        'bfloat16'
        >>> ScanOptions.checked({"bn": "sometimes"})
        Traceback (most recent call last):
        ...
        lossmap.errors.InputError: bn='sometimes' must be 'eval' (stored running statistics) ...
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputTypeError(
                f"unknown scan option(s) {', '.join(unknown)}: the options are "
                f"{', '.join(sorted(known))}"
            )
        clean = {}
        for key, value in values.items():
            check = known[key].metadata["check"]
            clean[key] = value if check is None else check(value)
        return cls(**clean)

    def replace(self, **changes: Any) -> ScanOptions:
        """A copy with ``changes`` (already checked by the caller)."""
        return dataclasses.replace(self, **changes)


def declared() -> tuple[dataclasses.Field, ...]:
    """The fields of :class:`ScanOptions`, in order (name, default, metadata)."""
    return fields(ScanOptions)


def yaml_keys() -> tuple[str, ...]:
    """The options that are keys of a ``lossmap scan --spec`` file."""
    return tuple(f.name for f in declared() if f.metadata["yaml"])


def speed_only() -> tuple[str, ...]:
    """The options that change only the speed (kept in the command record, not the spec)."""
    return tuple(
        f.name for f in declared() if f.metadata["record"] == "speed" and f.metadata["yaml"]
    )
