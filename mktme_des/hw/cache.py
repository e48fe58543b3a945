"""Set-associative caches: which tags a cache holds, and which it evicts.

A cache here tracks *presence* and replacement order only. The bytes of a line live once per
tag in the platform's directory (:class:`~mktme_des.hw.core.Line`): coherence keeps every copy
of one tag identical, so one copy of the bytes is exact. Tags include the KeyID bits, so
``(K1, PA)`` and ``(K2, PA)`` occupy two different ways of the same set.

Each set is ``ways`` consecutive slots of flat arrays (the tags, and the directory line each
tag stands for), used as a ring: from the set's ``head`` on, its lines in replacement order,
least recently used (LRU) or oldest (FIFO) first. Flat arrays keep a set's tags together in
memory and, compiled, make a lookup a short scan of machine integers; the ring makes the
common replacements (a full set giving up its first line, an LRU hit on it) a move of the
head instead of a shift of the set.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import numpy as np

from mktme_des.config.model import CacheSpec

if TYPE_CHECKING:  # pragma: no cover
    from mktme_des.hw.memsys import Line

EMPTY = -1  # the tag of an unused slot (real tags are never negative)


class Cache:
    """One cache instance (one core's private level, or one package's shared level)."""

    def __init__(self, spec: CacheSpec, name: str, bit: int, hit_ticks: int, package: int,
                 core: int | None, level: int, rng: np.random.Generator | None = None) -> None:
        self.name = name
        self.level_name = spec.name
        self.bit = bit  # this cache's bit in a directory line's holder mask
        self.nsets = spec.sets
        self.mask = spec.sets - 1
        self.ways = spec.ways
        self.tag_slots = array("q", [EMPTY]) * (spec.sets * spec.ways)
        self.tag_view = self.tag_slots  # the typed view the compiled code indexes
        self.lines: list = [None] * (spec.sets * spec.ways)
        # Per set, side by side (one memory access finds both): how many lines it holds, and
        # the offset of its first line.
        self.set_meta = array("q", [0]) * (2 * spec.sets)
        self.meta = self.set_meta
        self.hit = hit_ticks
        self.policy = spec.replacement
        self.lru = spec.replacement == "lru"
        self.random = spec.replacement == "random"
        self.rng = rng
        self.evictions = self.writebacks = self.invalidations = 0
        self.package = package
        self.core = core
        self.level = level

    def find(self, tag: int) -> int:
        """The slot holding ``tag``, or -1 (unused slots hold no tag, so all are scanned)."""
        base = ((tag >> 6) & self.mask) * self.ways
        tags = self.tag_view
        for i in range(base, base + self.ways):
            if tags[i] == tag:
                return i
        return -1

    def _slot(self, si: int, pos: int) -> int:
        """The slot of set ``si``'s line at ``pos`` in replacement order."""
        off = self.meta[2 * si + 1] + pos
        if off >= self.ways:
            off -= self.ways
        return si * self.ways + off

    def _close(self, si: int, pos: int, end: int) -> None:
        """Move the lines at ``pos + 1 .. end`` of set ``si`` one place forward."""
        tags = self.tag_view
        lines = self.lines
        dst = self._slot(si, pos)
        for p in range(pos + 1, end + 1):
            src = self._slot(si, p)
            tags[dst] = tags[src]
            lines[dst] = lines[src]
            dst = src

    def touch(self, slot: int) -> None:
        """A hit in ``slot``: under LRU the line becomes the most recently used of its set."""
        if not self.lru:
            return
        si = slot // self.ways
        n = self.meta[2 * si]
        pos = slot - si * self.ways - self.meta[2 * si + 1]
        if pos < 0:
            pos += self.ways
        if pos == n - 1:
            return
        if pos == 0 and n == self.ways:
            self._advance(si)  # the full ring turns: its first line becomes its last
            return
        tag = self.tag_view[slot]
        line = self.lines[slot]
        self._close(si, pos, n - 1)
        last = self._slot(si, n - 1)
        self.tag_view[last] = tag
        self.lines[last] = line

    def _advance(self, si: int) -> None:
        h = self.meta[2 * si + 1] + 1
        self.meta[2 * si + 1] = 0 if h == self.ways else h

    def insert(self, tag: int, line: Line) -> Line | None:
        """Put ``tag`` (standing for ``line``) in its set as the most recent; when the set is
        full the replacement policy's victim leaves it first and is returned."""
        si = (tag >> 6) & self.mask
        n = self.meta[2 * si]
        victim = None
        if n < self.ways:
            slot = self._slot(si, n)
            self.meta[2 * si] = n + 1
        else:
            # LRU and FIFO keep the set in replacement order: the victim is the first line.
            k = int(self.rng.integers(n)) if self.random else 0
            self.evictions += 1
            victim = self.lines[self._slot(si, k)]
            if k == 0:
                slot = self._slot(si, 0)
                self._advance(si)  # the new line takes the victim's slot, now the last
            else:
                self._close(si, k, n - 1)
                slot = self._slot(si, n - 1)
        self.tag_view[slot] = tag
        self.lines[slot] = line
        return victim

    def remove_slot(self, slot: int) -> None:
        """Take the line in ``slot`` out of its set, the later lines moving up."""
        si = slot // self.ways
        n = self.meta[2 * si]
        pos = slot - si * self.ways - self.meta[2 * si + 1]
        if pos < 0:
            pos += self.ways
        if pos == 0:
            self._advance(si)
        else:
            self._close(si, pos, n - 1)
            slot = self._slot(si, n - 1)
        self.tag_view[slot] = EMPTY
        self.lines[slot] = None
        self.meta[2 * si] = n - 1

    def lookup(self, tag: int) -> bool:
        """Whether ``tag`` is present; a hit becomes most recently used under LRU."""
        slot = self.find(tag)
        if slot < 0:
            return False
        self.touch(slot)
        return True

    def contains(self, tag: int) -> bool:
        return self.find(tag) >= 0

    def remove(self, tag: int) -> bool:
        slot = self.find(tag)
        if slot < 0:
            return False
        self.remove_slot(slot)
        return True

    def set_tags(self, index: int) -> list[int]:
        """The tags of set ``index``, in replacement order."""
        return [self.tag_slots[self._slot(index, p)] for p in range(self.set_meta[2 * index])]

    def tags(self) -> list[int]:
        """Every tag held, set by set, each set in replacement order."""
        out = []
        for si in range(self.nsets):
            for pos in range(self.meta[2 * si]):
                out.append(self.tag_view[self._slot(si, pos)])
        return out

    def clear(self) -> list[int]:
        """Drop every line (as WBINVD does); returns the tags that were held."""
        tags = self.tags()
        for si in range(self.nsets):
            if self.meta[2 * si]:
                base = si * self.ways
                for i in range(base, base + self.ways):
                    self.tag_view[i] = EMPTY
                    self.lines[i] = None
                self.meta[2 * si] = 0
            self.meta[2 * si + 1] = 0
        return tags

    def occupancy(self) -> int:
        return sum(self.set_meta[0::2])

    def reset_counts(self) -> None:
        self.evictions = self.writebacks = self.invalidations = 0

    def counts(self) -> dict[str, int]:
        return {"evictions": self.evictions, "writebacks": self.writebacks,
                "invalidations": self.invalidations}
