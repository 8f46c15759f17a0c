"""The ``lossmap`` command line: one module per subcommand, :mod:`.main` dispatches."""

from .main import main

__all__ = ["main"]
