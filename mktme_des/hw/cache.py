"""Set-associative caches: which tags a cache holds, and which it evicts.

A cache here tracks *presence* and replacement order only. The bytes of a line live once per
tag in the platform's :class:`~mktme_des.hw.coherence.Directory`: coherence keeps every copy
of one tag identical, so one copy of the bytes is exact. Tags include the KeyID bits, so
``(K1, PA)`` and ``(K2, PA)`` occupy two different ways of the same set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mktme_des.config.model import CacheSpec

if TYPE_CHECKING:  # pragma: no cover
    from mktme_des.hw.core import Line


class Cache:
    """One cache instance (one core's private level, or one package's shared level)."""

    def __init__(self, spec: CacheSpec, name: str, bit: int, hit_ticks: int, package: int,
                 core: int | None, level: int, rng: np.random.Generator | None = None) -> None:
        self.name = name
        self.level_name = spec.name
        self.bit = bit  # this cache's bit in a Directory line's holder mask
        # One dict per set (tag -> its Directory line, least recently used first), allocated
        # up front: indexing a list is the cheapest lookup on the hot path, and a hit or a
        # victim finds its line without a second lookup in the directory.
        self.sets: list[dict[int, Line]] = [{} for _ in range(spec.sets)]
        self.mask = spec.sets - 1
        self.ways = spec.ways
        self.hit = hit_ticks
        self.policy = spec.replacement
        self.rng = rng
        self.evictions = self.writebacks = self.invalidations = 0
        self.package = package
        self.core = core
        self.level = level

    def lookup(self, tag: int) -> bool:
        """Whether ``tag`` is present; a hit becomes most recently used under LRU."""
        s = self.sets[(tag >> 6) & self.mask]
        if tag not in s:
            return False
        if self.policy == "lru":
            s[tag] = s.pop(tag)
        return True

    def contains(self, tag: int) -> bool:
        return tag in self.sets[(tag >> 6) & self.mask]

    def victim(self, s: dict[int, Line]) -> int:
        """The tag a full set gives up: least recently used (LRU), oldest (FIFO) or random.

        Sets keep insertion order and LRU hits re-insert, so the first tag is the LRU/FIFO one.
        """
        if self.policy == "random":
            return list(s)[int(self.rng.integers(len(s)))]
        for tag in s:
            return tag
        raise ValueError("victim of an empty set")

    def reset_counts(self) -> None:
        self.evictions = self.writebacks = self.invalidations = 0

    def counts(self) -> dict[str, int]:
        return {"evictions": self.evictions, "writebacks": self.writebacks,
                "invalidations": self.invalidations}

    def remove(self, tag: int) -> bool:
        s = self.sets[(tag >> 6) & self.mask]
        if tag in s:
            del s[tag]
            return True
        return False

    def tags(self) -> list[int]:
        return [t for s in self.sets for t in s]

    def clear(self) -> list[int]:
        tags = self.tags()
        for s in self.sets:
            s.clear()
        return tags

    def occupancy(self) -> int:
        return sum(len(s) for s in self.sets)
