"""Kill a scan process hard once its store holds some points (the SIGKILL resume tests).

Imported as ``from killing import …`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest


def committed(path: Path) -> int | None:
    """Rows in the points table, read-only; None while the store is absent or busy."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            return conn.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # 'database is locked', or the tables are not there yet
        return None


def kill_when_committed(
    proc: subprocess.Popen, store: Path, count: int, timeout: float = 90.0
) -> None:
    """SIGKILL ``proc`` once ``store`` holds ``count`` points; fail if it exits or stalls first.

    ``proc`` must have been started with ``stderr=subprocess.PIPE``; it is reaped here.
    """
    try:
        deadline = time.monotonic() + timeout
        while (n := committed(store)) is None or n < count:
            if proc.poll() is not None:
                pytest.fail(
                    f"the scan exited ({proc.returncode}) with {n} points committed: "
                    f"{proc.stderr.read().decode()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"the scan committed {n} points in {timeout:g} s")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stderr.close()
