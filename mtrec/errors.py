"""Errors raised by mtrec for bad user input."""

from __future__ import annotations

from typing import Any


class DataError(ValueError):
    """Bad input data; the message names the column and the first bad row (`column`, `row` keep them)."""

    def __init__(self, message: str, column: str | None = None, row: Any = None) -> None:
        super().__init__(message)
        self.column = column
        self.row = row


class UsageError(ValueError):
    """A command's inputs do not fit together (a needed option missing, options that exclude each other); the
    message names the options."""


class OptionError(UsageError, TypeError):
    """An unknown or out-of-range option of a library call (add_task's method, options, epochs, ...); also a
    TypeError, as unknown keyword arguments are."""


class OutputError(FileExistsError):
    """An output path holds something mtrec will not replace: a user's files, or a result kept unless overwrite."""
