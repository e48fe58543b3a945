"""Set-associative caches: which tags a cache holds, and which it evicts.

A cache here tracks *presence* and replacement order only. The bytes of a line live once per
tag in the platform's :class:`~mktme_des.hw.coherence.Directory`: coherence keeps every copy
of one tag identical, so one copy of the bytes is exact. Tags include the KeyID bits, so
``(K1, PA)`` and ``(K2, PA)`` occupy two different ways of the same set.
"""

from __future__ import annotations

import numpy as np

from mktme_des.config.model import CacheSpec
from mktme_des.engine.stats import Counter


class Cache:
    """One cache instance (one core's private level, or one package's shared level)."""

    __slots__ = ("name", "bit", "sets", "mask", "ways", "hit", "policy", "rng", "counts",
                 "package", "core", "level")

    def __init__(self, spec: CacheSpec, name: str, bit: int, hit_ticks: int, package: int,
                 core: int | None, level: int, rng: np.random.Generator | None = None) -> None:
        self.name = name
        self.bit = bit  # this cache's bit in a Directory line's holder mask
        self.sets: dict[int, dict[int, None]] = {}  # set index -> tags, LRU first
        self.mask = spec.sets - 1
        self.ways = spec.ways
        self.hit = hit_ticks
        self.policy = spec.replacement
        self.rng = rng
        self.counts = Counter()
        self.package = package
        self.core = core
        self.level = level

    def lookup(self, tag: int) -> bool:
        """Whether ``tag`` is present; a hit becomes most recently used under LRU."""
        s = self.sets.get((tag >> 6) & self.mask)
        if s is None or tag not in s:
            return False
        if self.policy == "lru":
            del s[tag]
            s[tag] = None
        return True

    def contains(self, tag: int) -> bool:
        s = self.sets.get((tag >> 6) & self.mask)
        return s is not None and tag in s

    def insert(self, tag: int) -> int | None:
        """Install ``tag`` (absent before); returns the victim's tag when a way was taken."""
        idx = (tag >> 6) & self.mask
        s = self.sets.get(idx)
        if s is None:
            s = self.sets[idx] = {}
        victim = None
        if len(s) >= self.ways:
            if self.policy == "random":
                victim = list(s)[int(self.rng.integers(len(s)))]
            else:
                victim = next(iter(s))
            del s[victim]
        s[tag] = None
        return victim

    def remove(self, tag: int) -> bool:
        s = self.sets.get((tag >> 6) & self.mask)
        if s is not None and tag in s:
            del s[tag]
            return True
        return False

    def tags(self) -> list[int]:
        return [t for s in self.sets.values() for t in s]

    def clear(self) -> list[int]:
        tags = self.tags()
        self.sets.clear()
        return tags

    def occupancy(self) -> int:
        return sum(len(s) for s in self.sets.values())
