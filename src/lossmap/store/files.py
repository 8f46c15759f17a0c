"""The files of a store: read-only connections, publication of a new store, side files.

A store is one SQLite file ``X.lossmap``, the files SQLite keeps beside it
while it is in use (``X.lossmap-wal`` and ``-shm``; ``-journal`` in rollback
mode) and, for directions too large to keep inline, safetensors files
``X.lossmap.d<i>.<token>.safetensors``.

- **Creation is atomic.** A new store is built under a temporary name, with
  side files under names no other creation uses (the creation's random
  token), and then published by :func:`publish`: holding a lock on the folder,
  SQLite files left at the store's path by an earlier store (a killed scan
  whose store was deleted) are removed, since SQLite would replay a leftover
  write-ahead log into the new store, and the store is hard-linked into place.
  A creation that finds a store already there removes its own files.
- **Readers write nothing of their own** (:func:`connect_reader`) and read a
  store in a read-only folder: as ``mode=ro``, or as ``immutable`` where SQLite
  cannot even create its shared-memory file and no write-ahead log is pending.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError

SQLITE_SUFFIXES = ("-wal", "-shm", "-journal")
APPLICATION_ID = 0x4C4D4150  # "LMAP", in the SQLite header
_SQLITE_MAGIC = b"SQLite format 3\x00"
_READONLY, _CANTOPEN = 8, 14  # SQLite's primary result codes


def connect_reader(path: Path) -> sqlite3.Connection:
    """A connection that reads the store at ``path`` and writes nothing of its own.

    Tried in turn, the first that can read wins:

    1. a plain connection with ``query_only`` (no statement can write): where
       the folder is writable, SQLite then removes its ``-wal`` and ``-shm``
       files when the last connection closes, as after a scan, where a
       ``mode=ro`` reader would leave them behind;
    2. ``mode=ro``: a read-only store file, or SQLite files already there;
    3. ``mode=ro&immutable=1``: a read-only folder where SQLite cannot even
       create its shared-memory file, and no write-ahead log is pending (none
       can be: a writer would need to create one).

    Raises
    ------
    StoreError
        When the folder is read-only and a write-ahead log is pending, which
        SQLite can only read with the shared-memory file it cannot create.
    """
    uri = Path(path).resolve().as_uri()
    reason = None
    for target in (str(path), f"{uri}?mode=ro"):
        conn = sqlite3.connect(target, uri=target != str(path), timeout=60,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA query_only = ON")
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except Exception as exc:
            conn.close()
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (_READONLY, _CANTOPEN):
                raise  # damage, reported by the caller
            reason = exc
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"store {str(path)!r} has writes pending in {wal.name!r}, which SQLite reads only "
            f"with write access to the folder ({reason}): make the folder writable, or copy "
            "the store with its -wal file to a writable folder and read it there"
        )
    return sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", uri=True, timeout=60, isolation_level=None
    )


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (best effort: where locks are missing, none)."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):  # e.g. NFS: os.link still refuses a second store
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def publish(tmp: Path, path: Path) -> bool:
    """Link the finished store ``tmp`` to ``path`` unless a store is there already.

    Under the folder lock, so that no other creation publishes meanwhile, the
    SQLite files at ``path`` that an earlier, deleted store left are removed
    first. Returns whether this call published the store (False: another
    process was first, and ``tmp`` was not used).
    """
    with folder_lock(path.parent):
        if os.path.lexists(path):
            return False
        for suffix in SQLITE_SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{path}{suffix}")
        try:
            os.link(tmp, path)  # atomic; and fails if a lockless creation was first
        except FileExistsError:
            return False
    return True


def side_name(store: Path, index: int, token: str) -> str:
    """File name of direction ``index``'s tensors, unique to one creation (``token``)."""
    return f"{store.name}.d{index}.{token}.safetensors"


def write_side(path: Path, blob: bytes) -> None:
    """Write a side file completely (flushed to disk) before a store refers to it."""
    with open(path, "xb") as f:  # a unique name: never another creation's file
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def side_name_problem(name: object) -> str | None:
    """Why ``name`` (as read from a store) is not a plain file name beside the store, or None."""
    if not isinstance(name, str):
        return f"a {type(name).__name__} where a file name belongs"
    if name in ("", ".", "..") or "\x00" in name or "/" in name or "\\" in name:
        return f"{name!r} is not a file name beside the store"
    if Path(name).name != name:
        return f"{name!r} is not a file name beside the store"
    return None


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing lossmap store (checked from its header only).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> other = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = other.write_text("not a store")
    >>> is_store(other), is_store(other.with_name("missing.lossmap"))
    (False, False)
    """
    try:
        with open(path, "rb") as f:
            return _is_store_header(f.read(100))
    except OSError:
        return False


def _is_store_header(head: bytes) -> bool:
    return (
        len(head) == 100
        and head[:16] == _SQLITE_MAGIC
        and int.from_bytes(head[68:72], "big") == APPLICATION_ID
    )
