"""Simulated time.

The SimPy clock counts integer **picoseconds**. Integers make same-time events exact (a
writeback and a PCONFIG scheduled for the same instant really tie, and their order is the
deterministic SimPy event order), and picoseconds resolve a 5 GHz cycle. Every user-facing
number is in nanoseconds.
"""

from __future__ import annotations

PS_PER_NS = 1000
MAX_NS = 1e12
"""The longest time any user-given duration or instant may name: 10^12 ns (1,000 s of
simulated time). In ticks that is 10^15, far inside the 64-bit integers the compiled hot path
adds times in, so sums of many such times cannot overflow either."""
TIME_UNITS_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9, "cycles": 10.0}
"""Nanoseconds per unit of every time-like unit a schema field may carry (a cycle at the
slowest clock a model may have, 0.1 GHz, is 10 ns): a field in one of these units is bounded
by :data:`MAX_NS` unless it declares a tighter bound."""


def max_in(unit: str) -> float:
    """:data:`MAX_NS` expressed in ``unit`` (one of :data:`TIME_UNITS_NS`)."""
    return MAX_NS / TIME_UNITS_NS[unit]


def ns(value: float) -> int:
    """Nanoseconds to clock ticks (picoseconds), rounded to the nearest tick."""
    return int(round(value * PS_PER_NS))


def to_ns(ticks: int) -> float:
    """Clock ticks (picoseconds) to nanoseconds."""
    return ticks / PS_PER_NS
