"""Files lossmap writes outside a store: atomic writes, and the output folder it claims.

Every file is written under a temporary name beside its destination
(``.name.tmp<pid>``) and renamed into place, so a reader never sees half a
file. JSON holds no NaN (:func:`json_safe`), and tensors are stored as
safetensors, never pickled.

An :class:`OutputFolder` describes the files one writer keeps in a folder
(a training run: ``train.json``, ``checkpoints/epoch_NNN.safetensors`` …; a
recorded trajectory: ``trajectory.json``, ``step_NNNNNN.safetensors``) and
applies lossmap's one rule for a folder that is not empty: refuse it, naming
what it holds, unless ``overwrite``; then delete only the writer's own files.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    import torch

# The temporary name of an atomic write cut short (write_atomic): ".train.json.tmp123".
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.tmp\d+")


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path`` (same folder, so atomic).

    Parameters
    ----------
    path : Path
        The file to write; its folder must exist.
    write : callable
        ``write(tmp_path_str)`` writes the whole file at the temporary path.

    Examples
    --------
    >>> from pathlib import Path
    >>> write_atomic(Path("atomic_example.txt"), lambda tmp: Path(tmp).write_text("done"))
    >>> Path("atomic_example.txt").read_text()
    'done'
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, obj: Mapping[str, Any], *, default: Callable | None = None) -> None:
    """Write ``obj`` as indented JSON, atomically; NaN and inf are refused (see :func:`json_safe`).

    Parameters
    ----------
    path : Path
        The file to write.
    obj : mapping
        JSON-serialisable contents.
    default : callable, optional
        ``json.dump``'s ``default``, for values JSON has no type for.
    """

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=False, default=default)
            f.write("\n")

    write_atomic(path, write)


def write_state(
    path: Path, state: Mapping[str, torch.Tensor], meta: Mapping[str, str]
) -> None:
    """Write tensors as one safetensors file (never a pickle), atomically.

    Parameters
    ----------
    path : Path
        The file to write.
    state : mapping of str to torch.Tensor
        Contiguous tensors (see :func:`cpu_copies`).
    meta : mapping of str to str
        Stored in the file's header.
    """
    from safetensors.torch import save

    blob = save(dict(state), metadata=dict(meta))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    write_atomic(path, write)


def cpu_copies(items: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of ``(name, tensor)`` pairs (copied also when already on the CPU)."""
    return {name: t.detach().to("cpu", copy=True).contiguous() for name, t in items}


def json_safe(values: list) -> list:
    """NaN/inf → None, since JSON has no such numbers (readers turn None back into NaN).

    Examples
    --------
    >>> json_safe([1.0, float("nan"), 2, float("inf")])
    [1.0, None, 2, None]
    """
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]


@dataclass(frozen=True)
class OutputFolder:
    """The files one lossmap writer keeps in its output folder, and how messages name them.

    The writer's own files are ``files`` at the top of the folder and the
    files matching ``numbered`` inside ``subfolder`` (at the top when
    ``subfolder`` is None), as plain files (not links), and the temporaries of
    an interrupted write of either. Everything else is the user's.

    Parameters
    ----------
    what : str
        What the folder holds, for messages: ``"run"``, ``"recording"``.
    files : tuple of str
        The fixed file names, in the order messages list them.
    numbered : re.Pattern
        The names of the numbered files (checkpoints, steps).
    numbered_word : str
        One numbered file, for messages: ``"checkpoint"``, ``"step file"``.
    subfolder : str or None
        The folder of the numbered files, or None for the top.
    out_hint : str
        The way to name another folder: ``"`out` / --out"``.
    overwrite_hint : str
        The way to pass overwrite: ``"overwrite=True / --overwrite"``.
    """

    what: str
    files: tuple[str, ...]
    numbered: re.Pattern[str]
    numbered_word: str
    subfolder: str | None = None
    out_hint: str = "`out`"
    overwrite_hint: str = "overwrite=True"

    def _owns(self, relative: Path) -> bool:
        """Whether the writer writes at ``relative`` (a path inside the folder)."""
        *parents, name = relative.parts
        if not parents and name in self.files:
            return True
        home = [self.subfolder] if self.subfolder else []
        return parents == home and self.numbered.fullmatch(name) is not None

    def _is_ours(self, out: Path, entry: Path) -> bool:
        """A plain file (not a link) at a path of the writer's, or its temporary."""
        leftover = _LEFTOVER.fullmatch(entry.name)
        name = leftover["name"] if leftover else entry.name
        relative = entry.parent.relative_to(out) / name
        return entry.is_file() and not entry.is_symlink() and self._owns(relative)

    def entries(self, out: Path) -> tuple[list[Path], list[Path]]:
        """(the writer's own files, every other entry) in ``out``, which may not exist."""
        ours: list[Path] = []
        other: list[Path] = []
        if not out.is_dir():
            return ours, other
        for entry in sorted(out.iterdir()):
            if entry.name == self.subfolder and entry.is_dir() and not entry.is_symlink():
                for inner in sorted(entry.iterdir()):
                    (ours if self._is_ours(out, inner) else other).append(inner)
            else:
                (ours if self._is_ours(out, entry) else other).append(entry)
        return ours, other

    def describe(self, out: Path, entries: list[Path], limit: int = 6) -> str:
        """``"train.json, theta_hat.safetensors, 26 checkpoints"``: entries relative to ``out``."""
        where = out / self.subfolder if self.subfolder else out
        numbered = [p for p in entries if p.parent == where and self.numbered.fullmatch(p.name)]
        rest = [
            p.relative_to(out).as_posix() + ("/" if p.is_dir() else "")
            for p in entries
            if p not in numbered
        ]
        order = {name: i for i, name in enumerate(self.files)}
        rest.sort(key=lambda n: (order.get(n, len(order)), n))
        shown = rest[:limit] + ([f"{len(rest) - limit} more"] if len(rest) > limit else [])
        if numbered:
            shown.append(f"{len(numbered)} {self.numbered_word}{'s' if len(numbered) > 1 else ''}")
        return ", ".join(shown)

    def check(self, out: Path, overwrite: bool) -> None:
        """Refuse a folder that is not empty, unless ``overwrite``; deletes nothing.

        With ``overwrite``, refuses only what stands where the writer writes (a
        folder or link named as one of its files).

        Raises
        ------
        InputError
            Naming what the folder holds and the way out.
        """
        ours, other = self.entries(out)
        if overwrite:
            blocking = [
                p
                for p in other
                if self._owns(p.relative_to(out)) or p.relative_to(out).as_posix() == self.subfolder
            ]
            if blocking:
                plain = ", ".join(self.files)
                plain += " must be plain files" if len(self.files) > 1 else " must be a plain file"
                if self.subfolder:
                    plain += f", {self.subfolder} a folder"
                raise InputError(
                    f"{out} holds {self.describe(out, blocking)} where the {self.what} writes "
                    f"its own files ({plain}): move them away or choose another {self.out_hint}"
                )
            return
        if ours and not other:
            raise InputError(
                f"{out} holds another {self.what} ({self.describe(out, ours)}): pass "
                f"{self.overwrite_hint} to replace it, or choose another {self.out_hint}"
            )
        if other:
            also = f", and another {self.what} ({self.describe(out, ours)})" if ours else ""
            raise InputError(
                f"{out} holds files that are not a lossmap {self.what} "
                f"({self.describe(out, other)}){also}: choose an empty or new folder for "
                f"{self.out_hint}, or pass {self.overwrite_hint} to write the {self.what} there "
                f"(a {self.what}'s own files are replaced, others kept)"
            )

    def clear(self, out: Path) -> None:
        """Delete the writer's own files in ``out`` (see :meth:`entries`), and nothing else."""
        for path in self.entries(out)[0]:
            path.unlink(missing_ok=True)
