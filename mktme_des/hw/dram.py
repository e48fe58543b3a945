"""DRAM: sparse ciphertext storage and bank/channel timing, per memory controller.

Storage
-------
DRAM holds *ciphertext*: for every line ever written, the bytes that crossed the memory bus.
Untouched lines read as zero bytes, and cost nothing, so a 2^46-byte address space is free.

Computing AES-XTS on every access would dominate the run time, so storage is **lazy but exact**:
a line written through the memory controller is stored as ``(plaintext, key, boot_tweak)`` and
its ciphertext is computed only when somebody looks with a different key or tweak, or at the
raw bytes (an attacker, a cold-boot image). A read with the very key and tweak that wrote the
line returns the plaintext without AES: XTS decryption of XTS encryption under the same key and
tweak is the identity, so the bytes are the ones eager encryption would give. Built with
``lazy=False`` the store encrypts on every write and decrypts on every read; a test proves both
give identical bytes.

A line of a page zeroed under one key (or boot tweak) and read under another costs an XTS
encryption and a decryption (four AES calls). When a second line of such a page is read the
same way, the store computes all 64 lines of the page at once (the vectorised XTS of
:mod:`mktme_des.crypto`, the same bytes) and keeps them, a bounded number of pages, so reading
a page line by line (a kernel copying or migrating it, a tenant reading a page zeroed through
another KeyID) costs about one line's AES per page rather than per line. The page's bytes
depend only on its address and the two keys and tweaks, so they never go stale.

Timing
------
Lines interleave over ``banks``; a bank stays busy ``bank_busy_ns`` per access and a read
returns ``access_latency_ns`` after it starts; each line then occupies the data channel for
``64 / bandwidth`` ns. Requests are served first come, first served, and the time spent
waiting for a bank or the channel is accounted apart from service time.
"""

from __future__ import annotations

import numpy as np

from mktme_des.crypto import (
    line_tweak,
    line_tweaks,
    xts_decrypt,
    xts_decrypt_lines,
    xts_encrypt,
    xts_encrypt_lines,
    xts_reencrypt,
)
from mktme_des.engine.server import Stage
from mktme_des.engine.stats import ServerStat
from mktme_des.engine.time import ns

LINE = 64
PAGE = 4096
PAGE_MASK = ~(PAGE - 1)
ZERO_LINE = bytes(LINE)
RAW = -1  # writer tag of bytes put in DRAM directly, not through a memory controller
# Pages zeroed under one key whose lines a store keeps as read through another (each 4 KiB),
# and markers of pages read once that way: a bound on the cache, not a model parameter.
ZERO_VIEWS = 128


class Record:
    """What one DRAM line holds, and who put it there (for the oracle's causes)."""

    def __init__(self, plain, key, boot, cipher, writer, time, cause):
        self.plain = plain  # plaintext written through the controller, or None for raw bytes
        self.key = key  # XTS key it was written under (None: plaintext on the bus)
        self.boot = boot  # boot tweak in force at the write
        self.cipher = cipher  # ciphertext, computed on demand
        self.writer = writer  # tag of the line that was written back, or RAW
        self.time = time
        self.cause = cause  # the event that wrote it (text, or a tuple Platform.cause_text reads)


def _cipher(pa: int, rec: Record) -> bytes:
    if rec.cipher is None:
        rec.cipher = (
            rec.plain if rec.key is None else xts_encrypt(rec.key, line_tweak(pa, rec.boot), rec.plain)
        )
    return rec.cipher


class PageKeyIds:
    """The KeyID each page of a zeroed region was zeroed through: ``keyid(i)`` for the
    ``pages`` pages from the region's base on (a subclass says how they are found)."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def keyid(self, page: int) -> int:
        """The KeyID page ``page`` (0 .. pages - 1) was zeroed through."""
        raise NotImplementedError


class KeyIdTable(PageKeyIds):
    """KeyIDs held in a table, one a page (a buffer of 16-bit ints, format "H")."""

    def __init__(self, keyids) -> None:
        super().__init__(len(keyids))
        self.table = keyids  # shared, not copied

    def keyid(self, page: int) -> int:
        return self.table[page]


class ZeroedRegion:
    """Pages from ``base`` on, zeroed before anything else was written there, page ``i``
    through the key ``keys[layout.keyid(i)]`` (None: plaintext) under boot tweak ``boot``."""

    def __init__(self, base: int, layout: PageKeyIds, keys: tuple, boot: int) -> None:
        self.base = base
        self.end = base + layout.pages * PAGE
        self.layout = layout
        self.keys = keys
        self.boot = boot

    def key_at(self, pa: int):
        """The key the page holding ``pa`` (inside the region) was zeroed through."""
        return self.keys[self.layout.keyid((pa - self.base) >> 12)]


class DramStore:
    """Sparse line storage of one memory controller (addresses without KeyID bits)."""

    def __init__(self, lazy: bool = True) -> None:
        self.lazy = lazy
        self.lines: dict[int, Record] = {}
        # Pages zeroed through a KeyID (what the kernel does on allocation), kept per page
        # rather than per line: page PA -> (key, boot tweak).
        self.zeroed: dict[int, tuple[bytes | None, int]] = {}
        # Whole working sets zeroed before a run, one ZeroedRegion each: its pages' KeyIDs
        # (a layout that may compute them when asked), the key of each KeyID, the boot tweak.
        # No record per page; a page zeroed later (``zeroed``) or a line written wins.
        self.regions: list[ZeroedRegion] = []
        # (page, zeroing key, boot, reading key, boot) -> the page's bytes as read so, or
        # None when one line of it was read so (ZERO_VIEWS entries, oldest dropped first).
        self.zero_views: dict[tuple, bytes | None] = {}
        self.decrypts = 0  # AES work actually done, to show what laziness saves
        self.encrypts = 0

    def write(self, pa: int, plain: bytes, key: bytes | None, boot: int, writer: int,
              time: int, cause) -> None:
        """Store a line written through the controller under ``key`` (None: plaintext)."""
        rec = Record(bytes(plain), key, boot, None, writer, time, cause)
        if not self.lazy:
            self.encrypts += key is not None
            _cipher(pa, rec)
            rec.plain = None if key is not None else rec.plain
        self.lines[pa] = rec

    def read(self, pa: int, key: bytes | None, boot: int) -> bytes:
        """The plaintext a read through ``key`` gets: XTS-decrypt of the stored ciphertext."""
        rec = self.lines.get(pa)
        if rec is None:
            z = self.zeroed.get(pa & PAGE_MASK) if self.zeroed else None
            if z is None and self.regions:
                # The common case of a prepared working set, kept free of tuples.
                region = self._region_of(pa)
                if region is None:
                    cipher = ZERO_LINE
                else:
                    zkey = region.key_at(pa)
                    if self.lazy:
                        if zkey == key and region.boot == boot:
                            return ZERO_LINE
                        self.decrypts += key is not None
                        return self._zero_seen(pa, zkey, region.boot, key, boot)
                    cipher = self._zero_cipher(pa, (zkey, region.boot))
            elif z is None:
                cipher = ZERO_LINE
            elif self.lazy:
                if z[0] == key and z[1] == boot:
                    return ZERO_LINE
                self.decrypts += key is not None
                return self._zero_seen(pa, z[0], z[1], key, boot)
            else:
                cipher = self._zero_cipher(pa, z)
        else:
            if self.lazy and rec.plain is not None and rec.key == key and rec.boot == boot:
                return rec.plain
            cipher = _cipher(pa, rec)
        if key is None:
            return cipher
        self.decrypts += 1
        return xts_decrypt(key, line_tweak(pa, boot), cipher)

    def read_raw(self, pa: int) -> bytes:
        """The ciphertext bytes of a line, as a probe on the memory bus would see them."""
        rec = self.lines.get(pa)
        if rec is None:
            z = self.zeroed.get(pa & PAGE_MASK) if self.zeroed else None
            if z is None and self.regions:
                z = self._in_region(pa)
            if z is None:
                return ZERO_LINE
            return self._zero_seen(pa, z[0], z[1], None, 0) if self.lazy else self._zero_cipher(pa, z)
        return _cipher(pa, rec)

    def _zero_cipher(self, pa: int, z: tuple[bytes | None, int]) -> bytes:
        key, boot = z
        return ZERO_LINE if key is None else xts_encrypt(key, line_tweak(pa, boot), ZERO_LINE)

    def _zero_seen(self, pa: int, zkey: bytes | None, zboot: int, key: bytes | None,
                   boot: int) -> bytes:
        """The line at ``pa`` of a page zeroed through ``zkey`` under boot tweak ``zboot``, as
        read through ``key`` under ``boot`` (``key`` None: its ciphertext). The line alone the
        first time its page is read so; the whole page, kept, from the second time on."""
        page = pa & PAGE_MASK
        view = (page, zkey, zboot, key, boot)
        views = self.zero_views
        got = views.get(view, False)
        if got is False:
            self._keep(view, None)
            if zkey is not None and key is not None:
                return xts_reencrypt(zkey, line_tweak(pa, zboot), key, line_tweak(pa, boot),
                                     ZERO_LINE)
            cipher = self._zero_cipher(pa, (zkey, zboot))
            return cipher if key is None else xts_decrypt(key, line_tweak(pa, boot), cipher)
        if got is None:
            pas = np.arange(page, page + PAGE, LINE, dtype=np.uint64)
            lines = np.zeros((PAGE // LINE, LINE), dtype=np.uint8)
            if zkey is not None:
                lines = xts_encrypt_lines(zkey, line_tweaks(pas, zboot), lines)
            if key is not None:
                lines = xts_decrypt_lines(key, line_tweaks(pas, boot), lines)
            got = views[view] = lines.tobytes()
        off = pa - page
        return got[off : off + LINE]

    def _keep(self, view: tuple, value) -> None:
        """Enter ``view`` in ``zero_views``, dropping the oldest entry when it is full."""
        views = self.zero_views
        if len(views) >= ZERO_VIEWS:
            del views[next(iter(views))]
        views[view] = value

    def zero_page(self, page_pa: int, key: bytes | None, boot: int) -> None:
        """Record that the 4 KiB page at ``page_pa`` was zeroed through ``key`` (lazily: no
        per-line record until a line is written; reads decrypt the zero ciphertext)."""
        base = page_pa & PAGE_MASK
        if self.lines:
            for pa in range(base, base + PAGE, LINE):
                self.lines.pop(pa, None)
        self.zeroed[base] = (key, boot)

    def zero_region(self, base: int, layout: PageKeyIds, keys: list, boot: int) -> None:
        """Record that the ``layout.pages`` pages from ``base`` on were zeroed, page ``i``
        through the key ``keys[layout.keyid(i)]`` (None: plaintext), before anything else was
        written there (a workload's working set, prepared before the run)."""
        self.regions.append(ZeroedRegion(base, layout, tuple(keys), boot))

    def _region_of(self, pa: int) -> ZeroedRegion | None:
        """The zeroed region holding ``pa``, if one does."""
        for region in self.regions:
            if region.base <= pa < region.end:
                return region
        return None

    def _in_region(self, pa: int) -> tuple[bytes | None, int] | None:
        """``(key, boot)`` of the zeroed region holding ``pa``, if one does."""
        region = self._region_of(pa)
        return None if region is None else (region.key_at(pa), region.boot)

    def write_raw(self, pa: int, data: bytes, time: int, cause: str) -> None:
        """Put bytes into DRAM directly, bypassing the controller (attacker, DMA replay)."""
        self.lines[pa] = Record(None, None, 0, bytes(data), RAW, time, cause)

    def record(self, pa: int) -> Record | None:
        return self.lines.get(pa)

    def wipe(self) -> None:
        """Lose every line (power off of volatile DRAM)."""
        self.lines.clear()
        self.zeroed.clear()
        self.regions.clear()
        self.zero_views.clear()


class DramTiming:
    """Bank and channel occupancy of one memory controller.

    A bank is held ``bank_busy_ns`` by a read (``write_latency_ns`` by a write) from when the
    access starts; a read's data is ready ``access_latency_ns`` after it starts and then takes
    the data channel for one line's transfer time. Banks and the channel are booked
    earliest-fit (:class:`~mktme_des.engine.server.Stage`), so a request never waits behind
    one that reaches the same resource later.
    """

    def __init__(self, spec) -> None:
        self.read_latency = ns(spec.access_latency_ns)
        self.write_busy = ns(spec.write_latency_ns)
        self.bank_busy = ns(spec.bank_busy_ns)
        self.transfer = max(1, ns(LINE / spec.bandwidth_gbps))  # GB/s == bytes/ns
        self.banks = [Stage(self.bank_busy) for _ in range(spec.banks)]
        self.nbanks = spec.banks
        self.channel = Stage(self.transfer)
        self.stat = ServerStat()
        self.reads = 0
        self.writes = 0

    def access(self, now: int, pa: int, write: bool, floor: int = -1) -> int:
        """Book one line access arriving at ``now``; returns when its data is done.
        ``floor``: the request's arrival at the controller, when earlier than ``now``
        (negative: ``now``)."""
        low = now if floor < 0 else floor
        bank = self.banks[(pa >> 6) % self.nbanks]
        transfer = self.transfer
        if write:
            start = bank.reserve(now, self.write_busy, low)
            ready = start + self.write_busy - transfer
            self.writes += 1
        else:
            start = bank.reserve(now, -1, low)
            ready = start + self.read_latency - transfer
            self.reads += 1
        xfer = self.channel.reserve(ready, -1, low)
        done = xfer + transfer
        wait = (start - now) + (xfer - ready)
        self.stat.record(wait, done - now - wait)
        return done
