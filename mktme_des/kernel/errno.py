"""Errors a system call returns, as exceptions carrying the errno name and the reason."""

from __future__ import annotations


class Errno(Exception):
    """A failed system call: ``name`` is the errno (``EINVAL``), ``reason`` says why.

    A failed call changes nothing: every check runs before any state is touched.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")
