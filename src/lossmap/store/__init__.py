"""The store: one SQLite file per scan (WAL), resumable, with many readers and writers.

* :mod:`.database` — :class:`Store`: open read-only, create or resume, write points.
* :mod:`.contents` — what a store holds (spec, fingerprints, probe, directions, user
  metadata), written at creation and validated when read.
* :mod:`.files` — read-only connections, atomic publication, side files of large directions.
"""

from .database import Store
from .files import is_store

__all__ = ["Store", "is_store"]
