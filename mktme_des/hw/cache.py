"""Set-associative caches: which tags a cache holds, and which it evicts.

A cache here tracks *presence* and replacement order only. The bytes of a line live once per
tag in the platform's directory (:class:`~mktme_des.hw.core.Line`): coherence keeps every copy
of one tag identical, so one copy of the bytes is exact. Tags include the KeyID bits, so
``(K1, PA)`` and ``(K2, PA)`` occupy two different ways of the same set.

Each set is ``ways`` consecutive slots of flat arrays (the tags, and the directory line each
tag stands for), its used slots first and in replacement order: least recently used (LRU) or
oldest (FIFO) first. Flat arrays keep a set's tags together in memory and, compiled, make a
lookup a short scan of machine integers.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import numpy as np

from mktme_des.config.model import CacheSpec

if TYPE_CHECKING:  # pragma: no cover
    from mktme_des.hw.core import Line

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
        self.used = array("q", [0]) * spec.sets
        self.used_view = self.used
        self.hit = hit_ticks
        self.policy = spec.replacement
        self.lru = spec.replacement == "lru"
        self.rng = rng
        self.evictions = self.writebacks = self.invalidations = 0
        self.package = package
        self.core = core
        self.level = level

    def find(self, tag: int) -> int:
        """The slot holding ``tag``, or -1."""
        base = ((tag >> 6) & self.mask) * self.ways
        tags = self.tag_view
        for i in range(base, base + self.used_view[(tag >> 6) & self.mask]):
            if tags[i] == tag:
                return i
        return -1

    def touch(self, slot: int) -> None:
        """A hit in ``slot``: under LRU the line becomes the most recently used of its set."""
        if not self.lru:
            return
        si = slot // self.ways
        last = si * self.ways + self.used_view[si] - 1
        if slot == last:
            return
        tags = self.tag_view
        lines = self.lines
        tag = tags[slot]
        line = lines[slot]
        for i in range(slot, last):
            tags[i] = tags[i + 1]
            lines[i] = lines[i + 1]
        tags[last] = tag
        lines[last] = line

    def insert(self, tag: int, line: Line) -> Line | None:
        """Put ``tag`` (standing for ``line``) in its set as the most recent; when the set is
        full the replacement policy's victim leaves it first and is returned."""
        si = (tag >> 6) & self.mask
        base = si * self.ways
        n = self.used_view[si]
        tags = self.tag_view
        lines = self.lines
        victim = None
        if n >= self.ways:
            # LRU and FIFO keep the set in replacement order: the victim is the first slot.
            k = 0 if self.policy != "random" else int(self.rng.integers(n))
            victim = lines[base + k]
            for i in range(base + k, base + n - 1):
                tags[i] = tags[i + 1]
                lines[i] = lines[i + 1]
            n -= 1
            self.evictions += 1
        tags[base + n] = tag
        lines[base + n] = line
        self.used_view[si] = n + 1
        return victim

    def remove_slot(self, slot: int) -> None:
        """Take the line in ``slot`` out of its set, the later slots moving up."""
        si = slot // self.ways
        end = si * self.ways + self.used_view[si] - 1
        tags = self.tag_view
        lines = self.lines
        for i in range(slot, end):
            tags[i] = tags[i + 1]
            lines[i] = lines[i + 1]
        tags[end] = EMPTY
        lines[end] = None
        self.used_view[si] = end - si * self.ways

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
        base = index * self.ways
        return list(self.tag_slots[base : base + self.used[index]])

    def tags(self) -> list[int]:
        return [t for i in range(self.nsets) for t in self.set_tags(i)]

    def clear(self) -> list[int]:
        tags = self.tags()
        for i in range(len(self.lines)):
            self.tag_slots[i] = EMPTY
            self.lines[i] = None
        for i in range(self.nsets):
            self.used[i] = 0
        return tags

    def occupancy(self) -> int:
        return sum(self.used)

    def reset_counts(self) -> None:
        self.evictions = self.writebacks = self.invalidations = 0

    def counts(self) -> dict[str, int]:
        return {"evictions": self.evictions, "writebacks": self.writebacks,
                "invalidations": self.invalidations}
