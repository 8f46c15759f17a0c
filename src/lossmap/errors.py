"""Exceptions raised for bad input.

Every error lossmap raises for something the user can fix derives from
:class:`LossmapError`; the command line prints its message on one line and
exits with status 2. Each also derives from the built-in class a Python user
expects (``ValueError`` for a wrong value, ``TypeError`` for a wrong type,
``FileNotFoundError`` for a missing file), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class LossmapError(Exception):
    """Base class of the errors that name a problem and its fix."""


class InputError(LossmapError, ValueError):
    """A value the user passed breaks a rule (range, shape, name, content)."""


class InputTypeError(LossmapError, TypeError):
    """An argument has the wrong type."""


class MissingFileError(LossmapError, FileNotFoundError):
    """A file the user named does not exist."""


class StoreError(LossmapError, ValueError):
    """A store cannot be used: not a lossmap store, corrupt, or made for another scan."""
