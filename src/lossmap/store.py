"""The store: one SQLite file per scan, committed point by point, resumable.

Layout (format 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)   spec, fingerprints, versions (JSON)
    directions(idx INTEGER PRIMARY KEY, data BLOB, file TEXT, sha TEXT)
    points(idx INTEGER PRIMARY KEY, alpha REAL, [beta REAL,] <variables> REAL,
           seconds REAL, finished REAL)

A row in ``points`` means the point is finished; a NULL value there is a
non-finite result that SQLite cannot hold (NaN). The file's header carries the
application id ``LMAP``, so a file that is not a lossmap store is recognized
from its first 100 bytes and never opened for writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .directions.direction import Direction
from .errors import MissingFileError, StoreError
from .spec import ScanSpec
from .version import __version__

APPLICATION_ID = 0x4C4D4150  # "LMAP"
_SQLITE_MAGIC = b"SQLite format 3\x00"
# Directions larger than this go to a safetensors file beside the store.
INLINE_LIMIT = 256 * 1024**2


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing lossmap store (checked from its header only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError:
        return False
    return (
        len(head) == 100
        and head[:16] == _SQLITE_MAGIC
        and int.from_bytes(head[68:72], "big") == APPLICATION_ID
    )


class Store:
    """An open scan store. Use :meth:`create_or_resume` or :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self.spec = ScanSpec.from_dict(json.loads(self._meta("spec")))
        self.fingerprints: dict[str, str] = json.loads(self._meta("fingerprints"))
        self.coord_cols = list(self.spec.dims)
        self.var_cols = list(self.spec.variables)
        cols = {r[1] for r in conn.execute("PRAGMA table_info(points)")}
        missing = [c for c in (*self.coord_cols, *self.var_cols) if c not in cols]
        if missing:
            raise ValueError(f"the spec names a column {missing[0]!r} the points table lacks")
        top = conn.execute("SELECT MAX(idx), MIN(idx) FROM points").fetchone()
        size = math.prod(self.spec.shape)
        if top[0] is not None and (top[0] >= size or top[1] < 0):
            raise ValueError(f"a point index {top[0]} lies outside the {size}-point grid")

    # -- opening -----------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        # WAL + NORMAL: a committed point survives a killed process; commits stay cheap.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        """Open an existing store (to read, or to resume after checks)."""
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"store {str(path)!r} does not exist: check the path")
        if not is_store(path):
            raise StoreError(
                f"{str(path)!r} is not a lossmap store (no lossmap header): "
                "pass the .lossmap file a scan wrote"
            )
        try:
            conn = cls._connect(path)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            return cls(path, conn)
        except (sqlite3.DatabaseError, LookupError, ValueError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"store {str(path)!r} is damaged ({exc}); it was left untouched: "
                "restore it from a backup or scan again to a new path"
            ) from None

    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike,
        spec: ScanSpec,
        fingerprints: dict[str, str],
        directions: Sequence[Direction],
        extra_meta: dict | None = None,
    ) -> Store:
        """Create a new store, or reopen one made by the very same scan.

        A store made by a different scan (spec or any fingerprint differs) is
        refused with the differences named; a file that is not a lossmap store
        is refused and left untouched.
        """
        path = Path(path)
        if path.exists():
            store = cls.open(path)
            store.check_same(spec, fingerprints)
            return store
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        conn = cls._connect(tmp)
        try:
            cls._initialize(conn, tmp, path, spec, fingerprints, directions, extra_meta or {})
            conn.close()
            try:
                os.link(tmp, path)  # atomic, and fails if another process created it first
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        except BaseException:
            conn.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        store = cls.open(path)
        store.check_same(spec, fingerprints)
        return store

    @staticmethod
    def _initialize(conn, tmp, final, spec, fingerprints, directions, extra_meta) -> None:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE directions(idx INTEGER PRIMARY KEY, data BLOB, "
            "file TEXT, sha TEXT NOT NULL)"
        )
        cols = ", ".join(f"{_q(c)} REAL" for c in (*spec.dims, *spec.variables))
        conn.execute(
            f"CREATE TABLE points(idx INTEGER PRIMARY KEY, {cols}, seconds REAL, finished REAL)"
        )
        meta = {
            "spec": spec.to_json(),
            "fingerprints": json.dumps(fingerprints, sort_keys=True),
            "lossmap_version": json.dumps(__version__),
            "torch_version": json.dumps(torch.__version__),
            "created": json.dumps(time.time()),
            **{k: json.dumps(v) for k, v in extra_meta.items()},
        }
        conn.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        from safetensors.torch import save

        for i, d in enumerate(directions):
            blob = save(dict(d.items()), metadata={"lossmap": json.dumps(d.meta)})
            sha = hashlib.sha256(blob).hexdigest()
            if len(blob) <= INLINE_LIMIT:
                conn.execute("INSERT INTO directions VALUES (?, ?, NULL, ?)", (i, blob, sha))
            else:
                side = final.with_name(f"{final.name}.d{i}.safetensors")
                side.write_bytes(blob)
                conn.execute("INSERT INTO directions VALUES (?, NULL, ?, ?)", (i, side.name, sha))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")

    # -- checks ------------------------------------------------------------
    def _meta(self, key: str) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return row[0]

    def meta(self, key: str, default=None):
        """A stored metadata value (decoded JSON), or ``default``."""
        try:
            return json.loads(self._meta(key))
        except KeyError:
            return default

    def annotations(self) -> dict:
        """Every metadata entry besides spec and fingerprints (versions, command, paths…)."""
        rows = self.conn.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows if k not in ("spec", "fingerprints")}

    def check_same(self, spec: ScanSpec, fingerprints: dict[str, str]) -> None:
        """Raise StoreError naming every difference between this store and a new scan."""
        diffs = spec.differences(self.spec)
        labels = {"centre": "the centre weights", "spec": None}
        for key, value in fingerprints.items():
            if key == "spec":
                continue
            if self.fingerprints.get(key) != value:
                what = labels.get(key) or (
                    f"direction {key[4:]}"
                    if key.startswith("dir_")
                    else f"the data of split {key[5:]!r}"
                    if key.startswith("data_")
                    else key
                )
                diffs.append(f"{what} differ{'s' if not what.endswith('weights') else ''}")
        if diffs:
            raise StoreError(
                f"store {str(self.path)!r} holds a different scan ({'; '.join(diffs)}): "
                "choose another output path, or delete the store to start over"
            )

    # -- points ------------------------------------------------------------
    def done(self) -> set[int]:
        """Flat indices of the finished points."""
        return {r[0] for r in self.conn.execute("SELECT idx FROM points")}

    def write(self, rows: Iterable[tuple[int, Sequence[float], Sequence[float], float]]) -> int:
        """Insert finished points ``(idx, coords, values, seconds)`` in one transaction.

        A point that is already stored is kept (first writer wins). Returns the
        number of rows written.
        """
        cols = ["idx", *self.coord_cols, *self.var_cols, "seconds", "finished"]
        sql = (
            f"INSERT OR IGNORE INTO points ({', '.join(_q(c) for c in cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})"
        )
        now = time.time()
        data = [
            (
                int(i),
                *map(float, coords),
                *(None if math.isnan(v) else float(v) for v in values),
                float(s),
                now,
            )
            for i, coords, values, s in rows
        ]
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            cur = self.conn.executemany(sql, data)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                kept = self.conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
                raise StoreError(
                    f"cannot write to store {str(self.path)!r} ({exc}); the {kept} finished "
                    "points are kept: free disk space (or fix access) and run the same scan "
                    "again to resume"
                ) from None
            raise
        return cur.rowcount

    def rows(self) -> tuple[list[int], list[list[float]]]:
        """All finished points: flat indices and values (NaN for NULL)."""
        cur = self.conn.execute(
            f"SELECT idx, {', '.join(_q(c) for c in self.var_cols)} FROM points ORDER BY idx"
        )
        idx, vals = [], []
        for r in cur:
            idx.append(r[0])
            vals.append([math.nan if v is None else v for v in r[1:]])
        return idx, vals

    def directions(self) -> list[Direction]:
        """The directions the scan used, verified against their stored hash."""
        from safetensors.torch import load

        out = []
        for idx, blob, file, sha in self.conn.execute(
            "SELECT idx, data, file, sha FROM directions ORDER BY idx"
        ):
            if blob is None:
                side = self.path.with_name(file)
                if not side.exists():
                    raise StoreError(
                        f"direction {idx} of {str(self.path)!r} lives in {str(side)!r}, which is "
                        "missing: keep that file beside the store"
                    )
                blob = side.read_bytes()
            if hashlib.sha256(blob).hexdigest() != sha:
                raise StoreError(
                    f"direction {idx} of {str(self.path)!r} is corrupt (hash mismatch)"
                )
            meta = json.loads(_safetensors_meta(blob).get("lossmap", "{}"))
            out.append(Direction(load(blob), meta))
        return out

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _safetensors_meta(blob: bytes) -> dict:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8 : 8 + n]).get("__metadata__", {}) or {}
