"""A package's memory controller: key table, AES-XTS engine and DRAM.

It is home for a range of physical addresses (see :class:`~mktme_des.hw.address.AddressMap`).
A line arriving here is encrypted or decrypted with the key that *this* package's key table
holds for the line's KeyID *at the moment of arrival*: a dirty line written back after its
KeyID was reprogrammed is encrypted under the new key, and one read through a KeyID whose key
differs from the one that wrote it decrypts to garbage, exactly as on real hardware.
"""

from __future__ import annotations

from mktme_des.hw.address import AddressMap
from mktme_des.hw.aes import AesEngine
from mktme_des.hw.dram import DramStore, DramTiming
from mktme_des.hw.keytable import KeyTable


class MemoryController:
    """Timing and bytes of every line access that reaches this package's DRAM."""

    def __init__(self, package: int, amap: AddressMap, keys: KeyTable, engine: AesEngine,
                 timing: DramTiming, store: DramStore, boot: list[int]) -> None:
        self.package = package
        self.amap = amap
        self.keys = keys
        self.engine = engine
        self.timing = timing
        self.store = store
        self._boot = boot  # shared one-element list: the platform's current boot tweak
        self.key_of = keys._keys  # KeyID -> effective key (the table keeps this list)
        self.pa_mask = amap.pa_mask
        self.shift = amap.keyid_shift
        self.reads = self.writes = 0

    @property
    def boot_tweak(self) -> int:
        return self._boot[0]

    def read(self, now: int, tag: int) -> tuple[bytes, int]:
        """Read the line ``tag`` arriving at ``now``: (plaintext under the current key, done)."""
        pa = tag & self.pa_mask
        key = self.key_of[tag >> self.shift]
        data = self.store.read(pa, key, self._boot[0])
        done = self.timing.access(now, pa, False)
        if key is not None:
            done = self.engine.process(done, floor=now)
        self.reads += 1
        return data, done

    def write(self, now: int, tag: int, data: bytes, cause) -> int:
        """Write the line ``tag`` arriving at ``now``; returns when DRAM has it."""
        keyid, pa = tag >> self.shift, tag & self.pa_mask
        key = self.key_of[keyid]
        self.store.write(pa, data, key, self._boot[0], tag, now, cause)
        start = self.engine.process(now) if key is not None else now
        self.writes += 1
        return self.timing.access(start, pa, True, floor=now)

    def reset_stats(self) -> None:
        """Forget the counts so far (bookings, DRAM contents and keys stay)."""
        self.reads = self.writes = 0
        self.timing.reads = self.timing.writes = 0
        self.timing.stat.reset()
        self.engine.stat.reset()
        self.store.decrypts = self.store.encrypts = 0

    def stats(self, elapsed: int) -> dict:
        return {
            "reads": self.reads,
            "writes": self.writes,
            "dram_bytes": 64 * (self.timing.reads + self.timing.writes),
            "aes_engine": self.engine.stat.to_dict(elapsed),
            "dram": self.timing.stat.to_dict(elapsed),
            "aes_lazy_decrypts": self.store.decrypts,
            "lines_stored": len(self.store.lines),
            "key_table": self.keys.to_dict(),
        }
