"""The order of events due at the same instant.

SimPy processes events due at the same time (and priority) in the order they were scheduled:
deterministic, but only one of the orders real hardware could produce when two things happen
"at once". :class:`ShuffledTies` orders each such tie by a seeded random draw instead, so a
scenario can be rerun under other same-time orders (what ``scenario explore`` varies) and any
one of them replayed exactly from its seed. Priorities are kept: an urgent event still goes
before a normal one due at the same time.
"""

from __future__ import annotations

import random
from heapq import heappush

import simpy
from simpy.events import NORMAL


class ShuffledTies(simpy.Environment):
    """A SimPy environment whose same-time, same-priority events run in a seeded random order."""

    def __init__(self, seed: int, initial_time: int = 0) -> None:
        super().__init__(initial_time)
        self._draw = random.Random(seed).random

    def schedule(self, event, priority=NORMAL, delay=0) -> None:  # noqa: ANN001 - SimPy's signature
        # The draw decides ties; the event id keeps the key unique (and the heap total).
        heappush(self._queue, (self._now + delay, priority, (self._draw(), next(self._eid)), event))


def environment(tie_seed: int = 0) -> simpy.Environment:
    """SimPy's own environment for ``tie_seed`` 0; otherwise one that shuffles ties with it."""
    return simpy.Environment() if not tie_seed else ShuffledTies(tie_seed)
