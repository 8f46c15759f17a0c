"""Running the ``lossmap`` command line in-process, for tests (faster than a subprocess)."""

from __future__ import annotations

import pytest

from lossmap.cli import main


def run_cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    """The CLI in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
