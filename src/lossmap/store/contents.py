"""What a store holds: the layout written at creation, read back and validated at opening.

Layout (format 2)::

    meta(key TEXT PRIMARY KEY, value TEXT)       the store's own records (JSON): spec,
                                                 fingerprints, probe, versions, created,
                                                 roundoff (the measured round-off floor
                                                 per variable; absent before 0.2 or
                                                 where not measured), samples (split →
                                                 count), slopes (per-sample slopes at the
                                                 centre, per variable and direction)
    user_meta(key TEXT PRIMARY KEY, value TEXT)  the caller's ``meta=`` (JSON), keys as given
    directions(idx INTEGER PRIMARY KEY, data BLOB, file TEXT, sha TEXT)
    points(idx INTEGER PRIMARY KEY, alpha REAL, [beta REAL, … zeta REAL,] <variables> REAL,
           <variable>_se REAL ..., <variable>_dse REAL ..., seconds REAL, finished REAL)

The ``_se`` and ``_dse`` columns (standard errors of the value and of its
difference from the centre's, NULL where a metric has no per-example terms)
are absent in stores made before lossmap 0.2; such a store still reads and
resumes, without errors.

A row in ``points`` means the point is finished; a NULL value there is a
non-finite result that SQLite cannot hold (NaN). A direction is kept inline
(``data``) or, above :data:`INLINE_LIMIT`, in a safetensors side file
(``file``, a name beside the store); ``sha`` is the SHA-256 of its bytes. A
store of format 1 (lossmap 0.1) has no ``user_meta`` table: the caller's keys
are the keys of ``meta`` besides the store's own records, and it still reads.

Everything is validated as it is read: a store that opens but holds bad
contents (invalid JSON, a spec that is not one, fingerprints of the wrong type,
a direction file outside the folder, a missing table) is reported by
:func:`read_contents` as one line naming the damage.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..directions.direction import Direction
from ..errors import InputError, InputTypeError, StoreError
from ..scan.spec import ScanSpec
from ..version import __version__
from .files import APPLICATION_ID, side_name, side_name_problem, write_side

# Directions larger than this go to a safetensors file beside the store.
INLINE_LIMIT = 256 * 1024**2
STORE_FORMAT = 2  # 1 (lossmap 0.1): the caller's meta shares the meta table
# The store's own records (meta table); format 1 knew the first five.
RECORDS = ("spec", "fingerprints", "lossmap_version", "torch_version", "created", "probe",
           "store_format", "roundoff", "samples", "slopes")
# Records that describe how values were computed, not annotations for the reader.
MEASURED = ("samples", "slopes")


def se_columns(spec: ScanSpec) -> list[str]:
    """The error columns: each variable's standard error (``train_loss_se``), then the standard
    error of its difference from the centre (``train_loss_dse``)."""
    return [f"{v}_se" for v in spec.variables] + [f"{v}_dse" for v in spec.variables]
# A probe value agrees with the stored one within this relative tolerance.
PROBE_RTOL = 1e-4

Damaged = Callable[[str], StoreError]  # what → the error naming it


def q(name: str) -> str:
    """``name`` quoted as an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


# -- writing ----------------------------------------------------------------
def write_contents(conn: sqlite3.Connection, final: Path, token: str, spec: ScanSpec,
                   fingerprints: dict[str, str], directions: Sequence[Direction],
                   user_meta: dict, probe: dict[str, float] | None, sides: list[Path], *,
                   roundoff: dict[str, float] | None = None,
                   measured: dict[str, Any] | None = None) -> None:
    """Create the tables of a new store (at a temporary name) and fill them in one transaction.

    Side files are named for the store's final path ``final`` and this
    creation's ``token``; each is appended to ``sides`` before it is written,
    so that a failed creation can remove them.
    """
    for key in user_meta:
        if not isinstance(key, str):
            raise InputTypeError(f"meta key {key!r} is a {type(key).__name__}: use strings")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("BEGIN")
    for table in ("meta", "user_meta"):
        conn.execute(f"CREATE TABLE {table}(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE directions(idx INTEGER PRIMARY KEY, data BLOB, file TEXT, sha TEXT NOT NULL)"
    )
    clash = sorted(set(se_columns(spec)) & set(spec.variables))
    if clash:
        raise InputError(f"the variable {clash[0]!r} has the name of another variable's "
                         "standard-error column: rename the metric")
    cols = ", ".join(f"{q(c)} REAL"
                     for c in (*spec.coordinate_names, *spec.variables, *se_columns(spec)))
    conn.execute(
        f"CREATE TABLE points(idx INTEGER PRIMARY KEY, {cols}, seconds REAL, finished REAL)"
    )
    records = {
        "spec": spec.to_json(),
        "fingerprints": json.dumps(fingerprints, sort_keys=True),
        "lossmap_version": json.dumps(__version__),
        "torch_version": json.dumps(torch.__version__),
        "created": json.dumps(time.time()),
        "store_format": json.dumps(STORE_FORMAT),
    }
    if probe is not None:
        records["probe"] = json.dumps(probe, sort_keys=True)
    if roundoff is not None:
        records["roundoff"] = json.dumps(roundoff, sort_keys=True)
    for key, value in (measured or {}).items():
        if key not in MEASURED:
            raise ValueError(f"unknown measured record {key!r}")
        if value is not None:
            records[key] = json.dumps(value, sort_keys=True)
    conn.executemany("INSERT INTO meta VALUES (?, ?)", list(records.items()))
    conn.executemany(
        "INSERT INTO user_meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in user_meta.items()]
    )
    from safetensors.torch import save

    from ..directions.storage import stored_form

    for i, d in enumerate(directions):
        blob = save(*stored_form(d))  # a large random direction: its recipe, no tensors
        sha = hashlib.sha256(blob).hexdigest()
        if len(blob) <= INLINE_LIMIT:
            conn.execute("INSERT INTO directions VALUES (?, ?, NULL, ?)", (i, blob, sha))
        else:  # a name of this creation's own, published with the store
            side = final.with_name(side_name(final, i, token))
            sides.append(side)
            write_side(side, blob)
            conn.execute("INSERT INTO directions VALUES (?, NULL, ?, ?)", (i, side.name, sha))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")


# -- reading ----------------------------------------------------------------
@dataclass(frozen=True)
class Contents:
    """The records of an open store, validated."""

    spec: ScanSpec
    fingerprints: dict[str, str]
    probe: dict[str, float] | None
    records: dict[str, Any]  # the store's own records, decoded
    user: dict[str, Any]  # the caller's metadata, decoded, keys as given
    roundoff: dict[str, float] | None = None  # the measured round-off floor per variable


def read_contents(conn: sqlite3.Connection, damaged: Damaged) -> Contents:
    """Read and validate a store's records and the shape of its tables.

    Raises the error ``damaged(what)`` at the first problem. SQLite's own
    errors (a malformed page, text that is not UTF-8) pass through.
    """
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    for table in ("meta", "directions", "points"):
        if table not in tables:
            raise damaged(f"its table {table!r} is missing")
    records = _decoded(conn, "meta", damaged)
    if "user_meta" in tables:
        user = _decoded(conn, "user_meta", damaged)
    elif "store_format" in records:
        raise damaged("its table 'user_meta' is missing")
    else:  # format 1: the caller's keys are the ones besides the store's own
        user = {k: v for k, v in records.items() if k not in RECORDS[:5]}
        records = {k: v for k, v in records.items() if k in RECORDS[:5]}
    if not isinstance(records.get("spec"), dict):
        raise damaged("meta 'spec' is " + ("missing" if "spec" not in records else "no object"))
    try:
        spec = ScanSpec.from_dict(records["spec"])
    except Exception as exc:  # hostile content: any failure to read the spec is damage
        raise damaged(f"meta 'spec' is not a valid scan spec ({exc})") from None
    fps = records.get("fingerprints")
    if not isinstance(fps, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fps.items()
    ):
        raise damaged("meta 'fingerprints' is " + (
            "missing" if fps is None else "not a mapping of names to hash strings"))
    for key in ("probe", "roundoff"):
        got = records.get(key)
        if got is not None and (not isinstance(got, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in got.items()
        )):
            raise damaged(f"meta {key!r} is not a mapping of variable names to numbers")
    _check_measured(records, damaged)
    _check_tables(conn, spec, damaged)
    return Contents(spec, fps, records.get("probe"), records, user, records.get("roundoff"))


def _decoded(conn: sqlite3.Connection, table: str, damaged: Damaged) -> dict:
    """Every row of a key/value table, values decoded from JSON."""
    out, what = {}, table.replace("_", " ")
    for key, text in conn.execute(f"SELECT key, value FROM {table}"):
        if not isinstance(key, str) or not isinstance(text, str):
            bad = key if not isinstance(key, str) else text
            raise damaged(f"{what} {key!r} holds a {type(bad).__name__}, not JSON text")
        try:
            out[key] = json.loads(text)
        except ValueError as exc:
            raise damaged(f"{what} {key!r} is not valid JSON ({exc})") from None
    return out


def _check_tables(conn: sqlite3.Connection, spec: ScanSpec, damaged: Damaged) -> None:
    """The points table has the spec's columns and grid; the directions table, one per axis."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(points)")}
    missing = [c for c in (*spec.coordinate_names, *spec.variables) if c not in cols]
    if missing:
        raise damaged(f"the points table lacks the column {missing[0]!r} of the spec")
    top, low = conn.execute("SELECT MAX(idx), MIN(idx) FROM points").fetchone()
    size = math.prod(spec.shape)
    if top is not None and (top >= size or low < 0):
        raise damaged(f"a point index {top if top >= size else low} lies outside the "
                      f"{size}-point grid")
    rows = conn.execute(
        "SELECT idx, typeof(data), file, typeof(sha) FROM directions ORDER BY idx"
    ).fetchall()
    # one direction per grid axis; along a path one per control point after the first;
    # K·D for repeated draws (spec.direction_count)
    n = spec.direction_count
    if [r[0] for r in rows] != list(range(n)):
        raise damaged(f"it holds directions {[r[0] for r in rows]} for a "
                      f"{len(spec.coordinate_names)}-D grid"
                      + ("" if spec.path is None else f" along a path of {n + 1} control points"))
    for idx, kind, file, sha in rows:
        problem = (
            f"its hash is a {sha} value" if sha != "text"
            else f"its data is a {kind} value" if kind not in ("blob", "null")
            else side_name_problem(file) if kind == "null"
            else None
        )
        if problem:
            raise damaged(f"direction {idx}: {problem}")
    bad = _bad_value(conn, [*spec.variables, *[c for c in se_columns(spec) if c in cols]])
    if bad is not None:
        raise damaged(f"point {bad[0]} holds {bad[2]!r} in the column {bad[1]!r}, not a number")


def scan_differences(spec: ScanSpec, fingerprints: dict[str, str], stored: ScanSpec,
                     stored_fps: dict[str, str]) -> list[str]:
    """Every difference between a new scan and a stored one, in words."""
    diffs = spec.differences(stored)
    labels = {"centre": "the centre weights", "spec": None}
    for key, value in fingerprints.items():
        if key == "spec" or stored_fps.get(key) == value:
            continue
        what = labels.get(key) or (
            f"direction {key[4:]}" if key.startswith("dir_")
            else f"the data of split {key[5:]!r}" if key.startswith("data_")
            else key
        )
        diffs.append(f"{what} differ{'s' if not what.endswith('weights') else ''}")
    return diffs


def _check_measured(records: dict[str, Any], damaged: Damaged) -> None:
    """``samples`` maps splits to counts; ``slopes`` maps variables to lists of number dicts."""
    def number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    samples = records.get("samples")
    if samples is not None and not (isinstance(samples, dict) and all(
            isinstance(k, str) and number(v) for k, v in samples.items())):
        raise damaged("meta 'samples' is not a mapping of split names to counts")
    slopes = records.get("slopes")
    if slopes is not None and not (isinstance(slopes, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(
                isinstance(e, dict) and all(number(x) for x in e.values()) for e in v)
            for k, v in slopes.items())):
        raise damaged("meta 'slopes' is not a mapping of variable names to lists of numbers")


def _bad_value(conn: sqlite3.Connection, variables: Sequence[str]) -> tuple | None:
    """``(idx, column, value)`` of a stored value that is not a number, or None."""
    numeric = " AND ".join(f"typeof({q(c)}) IN ('real', 'integer', 'null')" for c in variables)
    names = ", ".join(q(c) for c in variables)
    row = conn.execute(f"SELECT idx, {names} FROM points WHERE NOT ({numeric}) LIMIT 1").fetchone()
    if row is None:
        return None
    return next((row[0], c, v) for c, v in zip(variables, row[1:], strict=True)
                if not isinstance(v, (int, float, type(None))))


def read_directions(conn: sqlite3.Connection, path: Path, damaged: Damaged,
                    centre: Any = None) -> list[Direction]:
    """The directions of the store at ``path``, verified against their stored hash.

    Directions kept as their recipe are drawn again around ``centre`` (without
    it they come back without tensors; see :mod:`lossmap.directions.recipe`).
    """
    from safetensors.torch import load

    from ..directions.direction import from_stored
    from ..directions.recipe import regenerate

    rows = conn.execute("SELECT idx, data, file, sha FROM directions ORDER BY idx").fetchall()
    out = []
    for idx, blob, file, sha in rows:  # names and types checked when the store opened
        if blob is None:
            side = path.with_name(file)
            try:
                blob = side.read_bytes()
            except FileNotFoundError:
                raise StoreError(
                    f"direction {idx} of {str(path)!r} lives in {str(side)!r}, which is "
                    "missing: keep that file beside the store"
                ) from None
            except OSError as exc:
                raise StoreError(
                    f"cannot read direction {idx} of {str(path)!r} from {str(side)!r} "
                    f"({exc.strerror or exc}): check its permissions"
                ) from None
        if hashlib.sha256(blob).hexdigest() != sha:
            raise StoreError(f"direction {idx} of {str(path)!r} is corrupt (hash mismatch)")
        try:
            out.append(from_stored(load(blob), _safetensors_meta(blob),
                                   where=f"direction {idx} of {str(path)!r}"))
        except StoreError:
            raise
        except Exception as exc:  # hostile content with a matching hash: damage
            raise damaged(f"direction {idx} cannot be decoded ({exc})") from None
    if centre is None:
        return out
    return regenerate(out, centre, where=f"direction {{i}} of {str(path)!r}")


def _safetensors_meta(blob: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's bytes."""
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]).get("__metadata__", {}) or {}


# -- the probe ----------------------------------------------------------------
def probe_values(probe: Any, what: str = "probe") -> dict[str, float] | None:
    """``probe`` (or a ``roundoff`` floor) as a dict of variable name to float (None stays)."""
    if probe is None:
        return None
    try:
        return {str(k): float(v) for k, v in dict(probe).items()}
    except (TypeError, ValueError):
        meaning = "their values at the centre" if what == "probe" else "their round-off floor"
        raise InputTypeError(
            f"{what}={probe!r} must map variable names to numbers ({meaning})"
        ) from None


def agree(a: float, b: float) -> bool:
    """Whether two probe values agree within :data:`PROBE_RTOL` (NaN agrees with NaN)."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    if not (math.isfinite(a) and math.isfinite(b)):  # inf against a number or NaN
        return False
    return abs(a - b) <= PROBE_RTOL * max(abs(a), abs(b), 1.0)
