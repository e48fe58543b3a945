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

from array import array


class Stage:
    """Earliest-fit bookings of occupancies (``interval`` unless told otherwise).

    The bookings live in two flat arrays of machine integers (their starts and ends), those
    still in the way being ``lo .. hi - 1``; forgetting old ones moves ``lo`` on. A stage books
    a few times per DRAM access, so this keeps the common case (a booking after all others)
    free of Python objects.
    """

    def __init__(self, interval: int) -> None:
        self.interval = max(1, interval)
        self.lo = self.hi = 0
        self._grow(64)

    def _grow(self, cap: int) -> None:
        """Room for ``cap`` bookings, the live ones moved to the front."""
        n = self.hi - self.lo
        starts, ends = array("q", [0]) * cap, array("q", [0]) * cap
        for i in range(n):
            starts[i] = self.starts_view[self.lo + i]
            ends[i] = self.ends_view[self.lo + i]
        self.starts_view, self.ends_view = starts, ends
        self.cap, self.lo, self.hi = cap, 0, n

    def reserve(self, t: int, length: int | None = None, floor: int | None = None) -> int:
        """Book the earliest gap of ``length`` (default: the interval) at or after ``t``;
        returns its start.

        ``floor`` (default ``t``) is a time no later request will reach this stage before:
        bookings that end by then are forgotten. Callers whose requests reach the stage out
        of time order pass the arrival time of the request at the controller."""
        size = self.interval if length is None else length
        low = t if floor is None else floor
        if self.hi == self.cap:
            self._grow(self.cap if 2 * (self.hi - self.lo) <= self.cap else 2 * self.cap)
        starts, ends = self.starts_view, self.ends_view
        lo, hi = self.lo, self.hi
        if lo == hi or t >= ends[hi - 1]:  # the common case: free from t on
            s = t
            starts[hi] = s
            ends[hi] = s + size
        else:
            i = _bisect_right(ends, lo, hi, t)
            s = t
            while i < hi and starts[i] < s + size:
                if ends[i] > s:
                    s = ends[i]
                i += 1
            j = hi
            while j > i:  # make room at i
                starts[j] = starts[j - 1]
                ends[j] = ends[j - 1]
                j -= 1
            starts[i] = s
            ends[i] = s + size
        self.hi = hi + 1
        if hi - lo > 32 and ends[lo + 16] <= low:
            # Bookings that end before any later request can arrive are never in the way.
            self.lo = _bisect_right(ends, lo, hi + 1, low)
        return s

    def bookings(self) -> list[tuple[int, int]]:
        """The bookings still kept, ``(start, end)`` in time order."""
        return [(self.starts_view[i], self.ends_view[i]) for i in range(self.lo, self.hi)]


def _bisect_right(a, lo: int, hi: int, x: int) -> int:
    """The first index in ``lo .. hi`` whose value exceeds ``x`` (``a`` sorted there)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if x < a[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo
