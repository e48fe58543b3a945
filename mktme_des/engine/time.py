"""Simulated time.

The SimPy clock counts integer **picoseconds**. Integers make same-time events exact (a
writeback and a PCONFIG scheduled for the same instant really tie, and their order is the
deterministic SimPy event order), and picoseconds resolve a 5 GHz cycle. Every user-facing
number is in nanoseconds.
"""

from __future__ import annotations

PS_PER_NS = 1000


def ns(value: float) -> int:
    """Nanoseconds to clock ticks (picoseconds), rounded to the nearest tick."""
    return int(round(value * PS_PER_NS))


def to_ns(ticks: int) -> float:
    """Clock ticks (picoseconds) to nanoseconds."""
    return ticks / PS_PER_NS
