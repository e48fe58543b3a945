"""Helpers shared by the tests: an independent AES-XTS, data patterns, op constructors."""

from __future__ import annotations

import random

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mktme_des.engine.time import ns
from mktme_des.hw import ops as O


def xts(key: bytes, pa: int, data: bytes, boot: int = 0, encrypt: bool = True) -> bytes:
    """AES-XTS from the `cryptography` package with the simulator's documented tweak,
    ((pa / 64) XOR boot) as 16 little-endian bytes: the independent reference."""
    tweak = ((pa // 64) ^ boot).to_bytes(16, "little")
    c = Cipher(algorithms.AES(key), modes.XTS(tweak))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def pattern(seed: int, n: int = 64) -> bytes:
    return random.Random(seed).randbytes(n)


def us(x: float) -> int:
    return ns(1000 * x)


def R(keyid: int, pa: int, at: int | None = None, n: int = 64) -> tuple:
    return (O.READ, keyid, pa, n, at)


def W(keyid: int, pa: int, data: bytes, at: int | None = None) -> tuple:
    return (O.WRITE, keyid, pa, data, at)


def run(plat, *streams: tuple[int, list]) -> list[list]:
    """Start ``(cpu, ops)`` streams with logging, run to the end; each core's op log."""
    for cpu, _ in streams:
        plat.cores[cpu].log = []
    for cpu, ops in streams:
        plat.start(cpu, ops)
    plat.run()
    return [plat.cores[cpu].log for cpu, _ in streams]


# Small caches: a few lines share every set, so random programs evict, and WBINVD is quick.
SMALL_CACHES = {"flush": {"wbinvd_line_ns": 0.001},
                "cache": [{"name": "L1D", "size_kib": 1, "ways": 2, "hit_latency_cycles": 5,
                           "scope": "core"},
                          {"name": "L2", "size_kib": 2, "ways": 4, "hit_latency_cycles": 14,
                           "scope": "core"},
                          {"name": "LLC", "size_kib": 8, "ways": 4, "hit_latency_cycles": 50,
                           "scope": "package"}]}
