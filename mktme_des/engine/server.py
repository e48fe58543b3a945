"""A unit that takes one job per ``interval``, reserved in any order: a pipeline stage.

Memory-controller stages learn when a job reaches them before they learn of jobs that reach
them earlier (a DRAM read's data returns at a time that depends on its bank, so reads finish
out of the order they arrived in). A next-free-time counter would then make an early job
wait behind a later one. :meth:`Stage.reserve` instead books the earliest gap long enough at
or after the job's arrival, wherever it falls among the bookings already made. Jobs presented
in time order get exactly the FIFO schedule; jobs presented out of order never overlap and
never start before they arrive, and an early job is no longer stuck behind a later one.

A stage only books; what its owner wants to know about waiting and busy time it records
itself (a DRAM access spans two stages but is one job of the DRAM's statistics).
"""

from __future__ import annotations

from bisect import bisect_right


class Stage:
    """Earliest-fit bookings of occupancies (``interval`` unless told otherwise)."""

    def __init__(self, interval: int) -> None:
        self.interval = max(1, interval)
        # Bookings never overlap, so sorted by start they are sorted by end too.
        self.starts: list[int] = []
        self.ends: list[int] = []

    def reserve(self, t: int, length: int | None = None, floor: int | None = None) -> int:
        """Book the earliest gap of ``length`` (default: the interval) at or after ``t``;
        returns its start.

        ``floor`` (default ``t``) is a time no later request will reach this stage before:
        bookings that end by then are forgotten. Callers whose requests reach the stage out
        of time order pass the arrival time of the request at the controller."""
        size = self.interval if length is None else length
        low = t if floor is None else floor
        starts, ends = self.starts, self.ends
        n = len(ends)
        if not n or t >= ends[n - 1]:  # the common case: free from t on
            s = t
            starts.append(s)
            ends.append(s + size)
        else:
            i = bisect_right(ends, t)
            s = t
            while i < n and starts[i] < s + size:
                if ends[i] > s:
                    s = ends[i]
                i += 1
            starts.insert(i, s)
            ends.insert(i, s + size)
        if n > 32 and ends[16] <= low:
            # Bookings that end before any later request can arrive are never in the way.
            cut = bisect_right(ends, low)
            del starts[:cut]
            del ends[:cut]
        return s
