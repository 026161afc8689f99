"""Errors a user can cause with data: a bad file, a missing file, values a model cannot use.

Both are :class:`~deniable.errors.DeniableError` subclasses, so the CLI prints their one line and
exits non-zero without a traceback.
"""

from __future__ import annotations

from deniable.errors import DeniableError


class DataError(DeniableError):
    """A data file or array is malformed; the message names the file (or dataset) and the fault."""


class MissingDataError(DataError):
    """An expected data file does not exist; the message names the file and how to point at it."""
