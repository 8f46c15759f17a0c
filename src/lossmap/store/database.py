"""The Store: one SQLite file per scan, committed point by point, resumable.

A :class:`Store` is opened read-only (:meth:`Store.open`, which writes
nothing and works in a read-only folder) or made by a scan
(:meth:`Store.create_or_resume`): created atomically, or reopened after checks
that it holds the very same scan (spec, fingerprints) of the very same
computation (the probe: every variable at the centre on a fixed small sample).
The file's header carries the application id ``LMAP``, so a file that is not
a lossmap store is recognized from its first 100 bytes and never opened for
writing.

What the store holds and how it is validated: :mod:`lossmap.store.contents`;
how its files are created, published and opened read-only:
:mod:`lossmap.store.files`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..directions.direction import Direction
from ..errors import MissingFileError, StoreError
from ..scan.spec import ScanSpec
from .contents import (
    MEASURED,
    agree,
    probe_values,
    q,
    read_contents,
    read_directions,
    scan_differences,
    se_columns,
    write_contents,
)
from .files import _is_store_header, connect_reader, publish

_SQLITE_READONLY, _SQLITE_CANTOPEN = 8, 14  # primary result codes


def damaged(path: Path, what: str) -> StoreError:
    """The error for a store that opens but holds bad contents (``what``: the damage)."""
    what = "; ".join(ln.strip() for ln in what.splitlines() if ln.strip())  # one line
    return StoreError(
        f"store {str(path)!r} is damaged: {what}; it was left untouched: restore it from a "
        "backup, or delete it to start over"
    )


def _sqlite_says(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):  # SQLite's message quotes text that is not UTF-8
        return f"SQLite reports text that is not UTF-8 ({exc})"
    return "SQLite reports: " + str(exc).replace("*** in database main ***", "").strip()


class Store:
    """An open scan store. Use :meth:`create_or_resume` or :meth:`open`.

    Attributes
    ----------
    path : Path
    spec : ScanSpec
        What the stored scan computes.
    fingerprints : dict of str to str
        Hashes of the centre, each direction, each split's data and the spec.
    probe : dict of str to float or None
        Every variable at the centre on a fixed small sample, as recorded at
        creation (None in stores of lossmap 0.1).
    roundoff : dict of str to float or None
        The scan's measured round-off floor per variable, as recorded at
        creation (None in older stores and where it was not measured).
    writable : bool
        Whether the store was opened to write points.

    Examples
    --------
    >>> import tempfile, pathlib, torch, lossmap as lm
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "line.lossmap"
    >>> _ = lm.scan(net, torch.nn.CrossEntropyLoss(), data={"train": (X, y)},
    ...             directions=lm.random_direction(net, seed=0), grid=(-1, 1, 5), store=path,
    ...             progress=False)
    >>> lm.store.is_store(path)
    True
    >>> with Store.open(path) as store:  # read-only: writes nothing
    ...     store.spec.shape, len(store.done()), sorted(store.probe)
    ((5,), 5, ['train_accuracy', 'train_loss'])
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, writable: bool = True) -> None:
        self.path, self.conn, self.writable = path, conn, writable
        with self._reading():
            contents = read_contents(conn, self._damaged)
        self.spec = contents.spec
        self.fingerprints: dict[str, str] = contents.fingerprints
        self.probe: dict[str, float] | None = contents.probe
        self.roundoff: dict[str, float] | None = contents.roundoff
        self.samples: dict[str, int] | None = contents.records.get("samples")
        self.slopes: dict[str, list[dict]] | None = contents.records.get("slopes")
        self._records, self._user = contents.records, contents.user
        self.coord_cols = list(self.spec.coordinate_names)
        self.var_cols = list(self.spec.variables)
        with self._reading():  # a store of lossmap <= 0.2.0.dev has no standard errors
            cols = {r[1] for r in conn.execute("PRAGMA table_info(points)")}
        self.se_cols = [c for c in se_columns(self.spec) if c in cols]

    def _damaged(self, what: str) -> StoreError:
        return damaged(self.path, what)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Report what SQLite finds while reading (a malformed page, bad UTF-8) as damage."""
        try:
            yield
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise self._damaged(_sqlite_says(exc)) from None

    # -- opening -----------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """A connection that may write (creation and resume)."""
        conn = sqlite3.connect(str(path), timeout=60, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        # WAL + NORMAL: a committed point survives a killed process; commits stay cheap.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    @classmethod
    def open(cls, path: str | os.PathLike, *, write: bool = False) -> Store:
        """Open an existing store: read-only (nothing is written), or to add points.

        Parameters
        ----------
        path : str or PathLike
            The ``.lossmap`` file.
        write : bool, default False
            Open it to write points (a resume); otherwise read-only, which also
            works in a read-only folder.

        Returns
        -------
        Store
        """
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"store {str(path)!r} does not exist: check the path")
        try:
            with open(path, "rb") as f:
                head = f.read(100)
        except OSError as exc:
            raise StoreError(
                f"cannot read store {str(path)!r} ({exc.strerror or exc}): check its permissions"
            ) from None
        if not _is_store_header(head):
            raise StoreError(
                f"{str(path)!r} is not a lossmap store (no lossmap header): "
                "pass the .lossmap file a scan wrote"
            )
        conn = None
        try:
            conn = cls._connect(path) if write else connect_reader(path)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            return cls(path, conn, writable=write)
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            if conn is not None:
                conn.close()
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if write and code in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
                raise StoreError(
                    f"store {str(path)!r} cannot be written ({exc}): make it and its folder "
                    "writable to resume the scan, or scan to another path"
                ) from None
            raise damaged(path, _sqlite_says(exc)) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    @classmethod
    def create_or_resume(
        cls,
        path: str | os.PathLike,
        spec: ScanSpec,
        fingerprints: dict[str, str],
        directions: Sequence[Direction],
        extra_meta: dict | None = None,
        *,
        probe: dict[str, float] | None = None,
        roundoff: dict[str, float] | None = None,
        measured: dict[str, Any] | None = None,
    ) -> Store:
        """Create a new store, or reopen one made by the very same scan.

        Parameters
        ----------
        path : str or PathLike
            The ``.lossmap`` file.
        spec : ScanSpec
        fingerprints : dict of str to str
        directions : sequence of Direction
        extra_meta : dict, optional
            The caller's JSON-ready metadata (``lm.scan(meta=...)``), kept in its
            own table at creation: no key can touch the store's own records.
        probe : dict of str to float, optional
            Every variable at the centre on a fixed small sample. Recorded at
            creation; at resume compared with the recorded one (where both exist).
        roundoff : dict of str to float, optional
            The measured round-off floor per variable; recorded at creation only.
        measured : dict, optional
            ``samples`` (split → count) and ``slopes`` (variable → per direction
            ``{"slope", "se", "n"}``); recorded at creation only.

        Returns
        -------
        Store
            Open for writing.

        Raises
        ------
        StoreError
            A store made by a different scan (spec or any fingerprint differs)
            or by another computation (the probe differs) is refused with the
            differences named; a file that is not a lossmap store is refused
            and left untouched.
        """
        path = Path(path)
        probe, roundoff = probe_values(probe), probe_values(roundoff, "roundoff")
        if not path.exists():
            cls._create(path, spec, fingerprints, directions, extra_meta or {}, probe, roundoff,
                        measured)
        store = cls.open(path, write=True)
        try:
            store.check_same(spec, fingerprints)
            store.check_probe(probe)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _create(cls, path, spec, fingerprints, directions, user_meta, probe, roundoff,
                measured=None) -> None:
        """Build the store under a temporary name and publish it (see :mod:`.files`)."""
        token = uuid.uuid4().hex[:12]
        tmp = path.with_name(f"{path.name}.{token}.tmp")
        sides: list[Path] = []
        published, conn = False, None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = cls._connect(tmp)
            write_contents(conn, path, token, spec, fingerprints, directions, user_meta, probe,
                           sides, roundoff=roundoff, measured=measured)
            conn.close()
            published = publish(tmp, path)
        except (OSError, sqlite3.OperationalError) as exc:
            raise StoreError(
                f"cannot create store {str(path)!r} ({exc}): check that its folder can be "
                "written and has space, or choose another path"
            ) from None
        finally:
            if conn is not None:
                conn.close()
            for f in (tmp, *([] if published else sides)):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()

    # -- records -----------------------------------------------------------
    def meta(self, key: str, default: object = None) -> object:
        """The store's own record ``key`` (decoded JSON), else the caller's, else ``default``."""
        if key in self._records:
            return self._records[key]
        return self._user.get(key, default)

    def user_meta(self) -> dict:
        """The caller's metadata exactly as given at creation (``lm.scan(meta=...)``)."""
        return dict(self._user)

    def annotations(self) -> dict:
        """Versions and creation time, overlaid by the caller's metadata (keys as given)."""
        own = {k: v for k, v in self._records.items()
               if k not in ("spec", "fingerprints", "probe", "store_format", "roundoff",
                            *MEASURED)}
        return {**own, **self._user}

    # -- checks ------------------------------------------------------------
    def check_same(self, spec: ScanSpec, fingerprints: dict[str, str]) -> None:
        """Raise StoreError naming every difference between this store and a new scan."""
        diffs = scan_differences(spec, fingerprints, self.spec, self.fingerprints)
        if diffs:
            raise StoreError(
                f"store {str(self.path)!r} holds a different scan ({'; '.join(diffs)}): "
                "choose another output path, or delete the store to start over"
            )

    def check_probe(self, probe: dict[str, float] | None) -> None:
        """Raise StoreError if ``probe`` disagrees with the one recorded at creation.

        Each variable present in both must agree within ``PROBE_RTOL`` (relative,
        at least absolute for values below 1; NaN agrees with NaN). A store
        without a recorded probe (lossmap 0.1), or no ``probe``, is accepted.
        """
        if probe is None or self.probe is None:
            return
        for name, now in probe.items():
            if name in self.probe and not agree(now, self.probe[name]):
                raise StoreError(
                    f"store {str(self.path)!r} was filled by another computation: at the centre, "
                    f"{name!r} on the probe sample is {now:.6g} now but {self.probe[name]:.6g} "
                    "in the store — another model, loss setting or metric; use another store "
                    "path or delete it to start over"
                )

    # -- points ------------------------------------------------------------
    def done(self) -> set[int]:
        """Flat indices of the finished points."""
        with self._reading():
            return {r[0] for r in self.conn.execute("SELECT idx FROM points")}

    def write(self, rows: Iterable[tuple[int, Sequence[float], Sequence[float], float]]) -> int:
        """Insert finished points ``(idx, coords, values, seconds)`` in one transaction.

        ``values`` holds every variable, optionally followed by their standard
        errors (as many again; a store without error columns drops them). A
        point that is already stored is kept (first writer wins). Returns the
        number of rows written.
        """
        if not self.writable:
            raise StoreError(
                f"store {str(self.path)!r} was opened to read: open it with "
                "Store.open(path, write=True) to add points"
            )
        width = len(self.var_cols) + len(self.se_cols)  # values, then errors (NaN if none)
        cols = ["idx", *self.coord_cols, *self.var_cols, *self.se_cols, "seconds", "finished"]
        sql = (f"INSERT OR IGNORE INTO points ({', '.join(q(c) for c in cols)}) "
               f"VALUES ({', '.join('?' * len(cols))})")
        now = time.time()
        data = [(int(i), *map(float, coords),
                 *(None if math.isnan(v) else float(v)
                   for v in [*list(values)[:width], *[math.nan] * (width - len(values))]),
                 float(s), now)
                for i, coords, values, s in rows]
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

    def rows(self, *, errors: bool = False) -> tuple[list[int], list[list[float]]]:
        """All finished points: flat indices and values (NaN for NULL).

        With ``errors=True`` each row also holds the standard errors after the
        values (NaN where none was stored; a store without them gives only values).
        """
        names = ", ".join(q(c) for c in (*self.var_cols, *(self.se_cols if errors else ())))
        with self._reading():  # the values' types were checked when the store opened
            idx, vals = [], []
            for r in self.conn.execute(f"SELECT idx, {names} FROM points ORDER BY idx"):
                idx.append(r[0])
                vals.append([math.nan if v is None else float(v) for v in r[1:]])
        return idx, vals

    def directions(self, centre: Any = None) -> list[Direction]:
        """The directions the scan used, verified against their stored hash (those kept as
        their recipe drawn again around ``centre``: see :func:`lossmap.load_directions`)."""
        with self._reading():
            return read_directions(self.conn, self.path, self._damaged, centre)

    def close(self) -> None:
        """Close the connection (the file stays)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

