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
        self.cap = 1024  # room before the kept bookings are moved to the front
        self.starts = array("q", [0]) * self.cap
        self.ends = array("q", [0]) * self.cap
        self.starts_view, self.ends_view = self.starts, self.ends

    def _make_room(self) -> None:
        """The arrays are full up to their end: move the kept bookings to the front, in
        arrays twice as long when they fill half."""
        n = self.hi - self.lo
        if 2 * n > self.cap:
            self.cap *= 2
        starts, ends = array("q", [0]) * self.cap, array("q", [0]) * self.cap
        starts[:n] = self.starts[self.lo : self.hi]
        ends[:n] = self.ends[self.lo : self.hi]
        self.starts, self.ends = starts, ends
        self.starts_view, self.ends_view = starts, ends
        self.lo, self.hi = 0, n

    def reserve(self, t: int, length: int = -1, floor: int = -1) -> int:
        """Book the earliest gap of ``length`` (default, or negative: the interval) at or
        after ``t``; returns its start.

        ``floor`` (default, or negative: ``t``) is a time no later request will reach this
        stage before:
        bookings that end by then are forgotten. Callers whose requests reach the stage out
        of time order pass the arrival time of the request at the controller."""
        # Machine integers with negative for "not given", not None: no boxing when compiled.
        size = self.interval if length < 0 else length
        low = t if floor < 0 else floor
        if self.hi == self.cap:
            self._make_room()
        lo, hi = self.lo, self.hi
        if lo == hi or t >= self.ends_view[hi - 1]:  # the common case: free from t on
            s = t
            self.starts_view[hi] = s
            self.ends_view[hi] = s + size
        else:
            i = self._first_ending_after(lo, hi, t)
            s = t
            while i < hi and self.starts_view[i] < s + size:
                if self.ends_view[i] > s:
                    s = self.ends_view[i]
                i += 1
            j = hi
            while j > i:  # make room at i
                self.starts_view[j] = self.starts_view[j - 1]
                self.ends_view[j] = self.ends_view[j - 1]
                j -= 1
            self.starts_view[i] = s
            self.ends_view[i] = s + size
        self.hi = hi + 1
        if hi - lo > 32 and self.ends_view[lo + 16] <= low:
            # Bookings that end before any later request can arrive are never in the way.
            self.lo = self._first_ending_after(lo, hi + 1, low)
        return s

    def _first_ending_after(self, lo: int, hi: int, x: int) -> int:
        """The first booking in ``lo .. hi - 1`` that ends after ``x`` (``hi`` if none):
        bisection, the ends being sorted."""
        while lo < hi:
            mid = (lo + hi) // 2
            if x < self.ends_view[mid]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def bookings(self) -> list[tuple[int, int]]:
        """The bookings still kept, ``(start, end)`` in time order."""
        return [(self.starts_view[i], self.ends_view[i]) for i in range(self.lo, self.hi)]

