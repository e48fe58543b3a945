"""Errors a system call returns, as exceptions carrying the errno name and the reason."""

from __future__ import annotations


class Errno(Exception):
    """A failed system call: ``name`` is the errno (``EINVAL``), ``reason`` says why.

    A failed call changes nothing: every check runs before any state is touched.
    """

    def __init__(self, name: str, reason: str) -> None:
        # args carry both, so the exception can be re-created (SimPy re-raises it in the
        # waiting process; pickling sends it between processes).
        super().__init__(name, reason)
        self.name = name
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"
