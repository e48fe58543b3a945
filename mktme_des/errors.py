"""Errors raised for user mistakes.

Every error a user can cause by writing a bad file or a bad command line is one of these. The
CLI turns them into a one-line message and exit status 2, never a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in user input: the message says what is wrong and what is allowed."""


class ConfigError(UserError):
    """A bad value in a model, scenario or experiment file.

    ``file`` is the path as the user gave it, ``field`` a dotted path into the document
    (``cache[1].ways``), ``reason`` what is wrong and what is allowed.
    """

    def __init__(self, file: str, field: str, reason: str) -> None:
        super().__init__(str(file), field, reason)  # re-creatable from args (pickling)
        self.file = str(file)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.reason}"


class TraceError(UserError):
    """A malformed memory-trace file: names the file, the line number and the reason."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(str(file), line, reason)  # re-creatable from args (pickling)
        self.file = str(file)
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"
