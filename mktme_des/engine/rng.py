"""Seeded random streams, one per component.

Each component asks for its stream by name. The stream is derived from the run seed and a
hash of the name with :class:`numpy.random.SeedSequence`, so adding a component, or asking in
a different order, never shifts any other component's numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np


def name_key(name: str) -> list[int]:
    """A stable 128-bit spawn key for ``name`` (independent of Python's hash seed)."""
    digest = hashlib.sha256(name.encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


class Streams:
    """Factory of independent, reproducible generators keyed by component name."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._cache: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        """The generator for ``name``; the same object on every call within a run."""
        gen = self._cache.get(name)
        if gen is None:
            ss = np.random.SeedSequence(self.seed, spawn_key=name_key(name))
            gen = self._cache[name] = np.random.Generator(np.random.PCG64(ss))
        return gen

    def randbytes(self, name: str, n: int) -> bytes:
        """``n`` random bytes from the stream ``name``."""
        return self.get(name).bytes(n)
