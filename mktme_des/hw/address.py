"""Physical addresses, KeyIDs and home memory controllers.

Inside the SoC the KeyID is part of the physical address: it occupies the top ``keyid_bits``
bits below ``physical_address_bits`` (MK_TME_KEYID_BITS, counted down from MAX_PA). A cache
line's *tag* is that full address, line aligned, so ``(K1, PA)`` and ``(K2, PA)`` are two
unrelated lines to every cache. Outside the SoC the KeyID is dropped: DRAM, the home memory
controller and the AES-XTS tweak see only ``PA``.
"""

from __future__ import annotations

from mktme_des.config.model import Model

LINE = 64
LINE_MASK = ~(LINE - 1)


class AddressMap:
    """Where KeyID bits sit, which package is home for an address, and bounds checks."""

    def __init__(self, model: Model) -> None:
        self.keyid_bits = model.mktme.keyid_bits
        self.keyid_shift = model.usable_address_bits
        self.pa_mask = (1 << self.keyid_shift) - 1
        self.max_keyid = (1 << self.keyid_bits) - 1
        self.memory_bytes = model.memory_bytes
        self.packages = model.topology.packages
        self.package_bytes = model.memory.gib_per_package << 30
        self.interleave = model.memory.interleave_bytes

    def tag(self, keyid: int, pa: int) -> int:
        """The cache tag of the line holding ``pa`` accessed through ``keyid``."""
        return (keyid << self.keyid_shift) | (pa & LINE_MASK)

    def split(self, tag: int) -> tuple[int, int]:
        """``(keyid, line_pa)`` of a tag."""
        return tag >> self.keyid_shift, tag & self.pa_mask

    def home(self, pa: int) -> int:
        """The package whose memory controller owns ``pa``."""
        if self.interleave:
            return (pa // self.interleave) % self.packages
        return pa // self.package_bytes

    def valid_pa(self, pa: int) -> bool:
        return 0 <= pa < self.memory_bytes

    def valid_keyid(self, keyid: int) -> bool:
        return 0 <= keyid <= self.max_keyid

    def describe(self, tag: int) -> str:
        keyid, pa = self.split(tag)
        return f"(K{keyid}, {pa:#x})"
