"""Physical addresses, KeyIDs and home memory controllers.

Inside the SoC the KeyID is part of the physical address: it occupies the top ``keyid_bits``
bits below ``physical_address_bits`` (MK_TME_KEYID_BITS, counted down from MAX_PA). A cache
line's *tag* is that full address, line aligned, so ``(K1, PA)`` and ``(K2, PA)`` are two
unrelated lines to every cache. Outside the SoC the KeyID is dropped: DRAM, the home memory
controller and the AES-XTS tweak see only ``PA``.

Physical memory covers the packages that have memory (``Model.memory_homes``), in package
order, each with ``package_bytes``: the *slot* of an address (``pa // package_bytes``, or
``(pa // interleave) % slots`` when interleaved) is its rank among them, and its home is the
package in that slot. A package without memory is home for no address.
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
        self.homes: tuple[int, ...] = model.memory_homes  # slot -> package with memory
        self.slots = len(self.homes)
        self.package_bytes = model.package_bytes
        self.interleave = model.memory.interleave_bytes

    def tag(self, keyid: int, pa: int) -> int:
        """The cache tag of the line holding ``pa`` accessed through ``keyid``."""
        return (keyid << self.keyid_shift) | (pa & LINE_MASK)

    def split(self, tag: int) -> tuple[int, int]:
        """``(keyid, line_pa)`` of a tag."""
        return tag >> self.keyid_shift, tag & self.pa_mask

    def slot(self, pa: int) -> int:
        """The rank of ``pa``'s home among the packages with memory."""
        if self.interleave:
            return (pa // self.interleave) % self.slots
        return pa // self.package_bytes

    def home(self, pa: int) -> int:
        """The package whose memory controller owns ``pa``."""
        return self.homes[self.slot(pa)]

    def has_memory(self, package: int) -> bool:
        return package in self.homes

    def nearest_home(self, package: int) -> int:
        """``package`` if it has memory, else the next package (cyclically) that has: where
        a memory-less node's local allocations go."""
        for i in range(self.packages):
            p = (package + i) % self.packages
            if p in self.homes:
                return p
        raise ValueError("no package has memory")  # the model's check forbids it

    def range_start(self, package: int) -> int:
        """Where ``package``'s range starts without interleaving (it must have memory): its
        slot times ``package_bytes``."""
        return self.homes.index(package) * self.package_bytes

    def valid_pa(self, pa: int) -> bool:
        return 0 <= pa < self.memory_bytes

    def valid_keyid(self, keyid: int) -> bool:
        return 0 <= keyid <= self.max_keyid

    def describe(self, tag: int) -> str:
        keyid, pa = self.split(tag)
        return f"(K{keyid}, {pa:#x})"
