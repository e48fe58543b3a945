"""Memory management: processes, anonymous VMAs, the page allocator, page faults,
``encrypt_mprotect`` and swap, with the MKTME flush protocol.

* **Page allocator.** Per-package LIFO free lists of 4 KiB frames (hot pages are reused first,
  as with the kernel's per-CPU lists). A fault takes a frame from the faulting CPU's package,
  or from the package a process is bound to (``Process.node``, MPOL_BIND), which may have no
  online CPU. Every frame remembers the KeyID it last had.
  ``prep_encrypted_page``: allocating a frame under KeyID K != 0 first clflushes it
  (``flush_on_alloc``): through its previous KeyID when that differs (``alloc_flush =
  "last-keyid"``, the core series behind RFC v2), or always through KeyID 0 (``"keyid0"``, the
  2019 tree); then it zeroes it through K
  (``zero_on_alloc``). ``free_encrypted_page``: freeing a frame that had KeyID K != 0 clflushes
  every line through K (``flush_on_free``). KeyID-0 allocations get no flush, as in the kernel.
  With ``direct_map_isolation`` (``kernel/directmap.py``: XPFO-style unmapping with a TLB
  shootdown, or an isolated pool never in the direct map) each allocation then pays that work.
  Two ways to cheapen the protocol: ``keyid_pools`` (the per-KeyID free-page pools the
  PATCHv4 cover letter planned) frees an encrypted page unflushed into its KeyID's pool and
  flushes it only when it leaves for another KeyID; ``page_flush = "wbinvd"`` flushes all the
  pages of one fault or unmap by a WBINVD on every package (``wbinvd_all``) instead of line by
  line. A huge VMA (``mmap(huge=True)``) is faulted 2 MiB, 512 frames, at a time.
* **VMAs** carry a KeyID (in ``vm_page_prot``) and hold a reference on it.
* **encrypt_mprotect(addr, len, prot, serial)**: ``len`` page aligned (else EINVAL), ``addr``
  page aligned (EINVAL), ``prot`` only PROT_READ/WRITE/EXEC bits (EINVAL), the serial resolves to a live key (else ENOKEY), every byte of the range
  is mapped (ENOMEM) by anonymous VMAs (else EINVAL) — all checked before anything changes. Then
  VMAs are split at the range's ends, and each whose KeyID or protection changes is moved to
  the key's KeyID and ``prot`` (references moved) and has its existing pages discarded
  (MADV_DONTNEED semantics, so the old contents are gone): patch 05's mprotect_set_encrypt
  zaps whenever it runs, so a new protection with the same key discards the pages too. A VMA
  already at that KeyID and protection is left alone. New pages are allocated and zeroed
  through the new KeyID on first touch. User loads and stores obey the VMA's protection.
* **Kernel access to user pages** (zeroing, swap) goes through the direct map: one per KeyID, or
  only KeyID 0 (``direct_map = "keyid0-only"``), in which case the kernel's loads, stores and
  flushes all use KeyID 0. The oracle is told what the kernel *means* the user to see (zeros
  after allocation, the old contents after swap-in), so a direct map that cannot deliver it
  shows up as a violation.
* **Page pins** (``get_user_pages`` for direct I/O or device assignment): a pinned page holds a
  page reference, so unmapping its VMA does not free it; it is freed (and flushed) when the
  last pin is dropped. Such a page outlives its VMA, and with it the VMA's reference on its
  KeyID: with RFC v2's VMA-only refcount the KeyID can then be freed and given to a new key,
  and the pinned page's data is read under the new key. The 2019 per-page references
  (``refcount_pages``) keep the KeyID until the page is freed.
* **Migration** (memory hot-remove, when a package goes offline with ``migrate_on_offline``):
  the pages homed on the package are unmapped, so accesses to them fault and wait (migration
  entries), and one TLB shootdown lets accesses already under way finish. Each page is then
  copied through the kernel's mapping of its KeyID to a frame on another online package (a raw
  copy of the ciphertext would decrypt to garbage there: the tweak binds data to its address,
  scenario S8), mapped again, and its old frame freed with the usual flush.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mktme_des.engine.recorder import Event
from mktme_des.engine.time import ns
from mktme_des.hw import ops as O
from mktme_des.kernel.errno import Errno

PAGE = 4096
LINES = PAGE // 64
HUGE = 2 << 20  # a transparent huge page: 512 frames mapped by one fault
ZERO_LINE = bytes(64)


PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


@dataclass
class Vma:
    start: int
    end: int
    keyid: int = 0
    anonymous: bool = True
    name: str = ""
    prot: int = PROT_READ | PROT_WRITE  # mmap in this model maps read-write
    huge: bool = False  # faults map 2 MiB at a time (see MM.fault)


@dataclass
class Page:
    pa: int
    keyid: int
    pins: int = 0  # get_user_pages pins
    orphan: bool = False  # unmapped while pinned: freed when the last pin goes
    # The version of its KeyID's key-table entry on its home package when it was allocated:
    # the key its data is encrypted under (see kernel/invariants.py).
    key_version: int = -1


@dataclass
class Process:
    pid: int
    cpu: int
    vmas: list[Vma] = field(default_factory=list)
    pages: dict[int, Page] = field(default_factory=dict)  # virtual page -> frame
    # vpage -> (keyid, data, what the user had stored per line, for the oracle)
    swapped: dict[int, tuple[int, bytes, list]] = field(default_factory=dict)
    migrating: dict[int, Any] = field(default_factory=dict)  # vpage -> event: mapped again
    swap_slots: dict[int, int] = field(default_factory=dict)  # vpage -> swap device slot
    next_va: int = 0x7F00_0000_0000
    # set_mempolicy(MPOL_BIND) to one node: the package whose memory this process's pages are
    # taken from (None: the faulting CPU's package, local allocation). Binding is how a
    # process places its memory on a memory-only package (a node without CPUs).
    node: int | None = None

    def vma_at(self, va: int) -> Vma | None:
        for v in self.vmas:
            if v.start <= va < v.end:
                return v
        return None


class FrameAllocator:
    """Per-package LIFO free lists of the frames each package is home for, from a pool at
    ``base_offset`` into each memory range. A package without memory has none: allocations
    for it fall back to the next package with memory, as a memory-less node's zonelist
    starts at the nearest node with memory."""

    def __init__(self, plat, frames_per_package: int, base_offset: int = 64 << 20) -> None:
        self.plat = plat
        self.free: list[list[int]] = [[] for _ in plat.packages]
        self.total = [0] * len(plat.packages)  # frames each package is home for
        for slot in range(plat.amap.slots):
            base = slot * plat.amap.package_bytes + base_offset
            for i in range(frames_per_package):
                pa = base + i * PAGE
                self.free[plat.amap.home(pa)].append(pa)
                self.total[plat.amap.home(pa)] += 1
        for frames in self.free:
            frames.reverse()  # pop() hands out the lowest address first
        self.last_keyid: dict[int, int] = {}
        # Packages whose memory is going or gone offline: as offline_pages isolates the range
        # before migrating, nothing is allocated there (an allocation falls back to the
        # nearest other package, as the page allocator's zonelist does).
        self.isolated: set[int] = set()

        # keyid_pools: (package, KeyID) -> frames freed without a flush, LIFO; and every
        # frame freed without a flush, until an allocation flushes it or reuses its KeyID.
        self.pools: dict[tuple[int, int], list[int]] = {}
        self.unflushed: set[int] = set()

    def take(self, package: int, keyid: int = 0) -> int:
        """A free frame homed on ``package``, or on the next package with memory not
        isolated when ``package`` has none or its memory is isolated: from ``keyid``'s pool
        first, then the common list, then any other KeyID's pool (the caller flushes what
        :attr:`unflushed` marks)."""
        n = len(self.free)
        for p in [(package + i) % n for i in range(n)]:
            if p not in self.isolated and self.total[p]:
                break
        else:
            raise Errno("ENOMEM", "no package's memory is online")
        pool = self.pools.get((p, keyid)) if keyid else None
        if pool:
            return pool.pop()
        if self.free[p]:
            return self.free[p].pop()
        for (pkg, _k), frames in sorted(self.pools.items()):
            if pkg == p and frames:
                return frames.pop()
        raise Errno("ENOMEM", f"no free frame on package {p}")

    def in_use(self, package: int) -> int:
        """Frames homed on ``package`` neither on its free list nor in a KeyID's pool:
        mapped, pinned, or being allocated."""
        pooled = sum(len(f) for (pkg, _k), f in self.pools.items() if pkg == package)
        return self.total[package] - len(self.free[package]) - pooled

    def give(self, pa: int, keyid: int, pool: bool = False) -> None:
        """Free ``pa``, last used under ``keyid``; ``pool``: unflushed, into its pool."""
        self.last_keyid[pa] = keyid
        home = self.plat.amap.home(pa)
        if pool:
            self.unflushed.add(pa)
            self.pools.setdefault((home, keyid), []).append(pa)
        else:
            self.free[home].append(pa)

    def release_pool(self, keyid: int) -> None:
        """``keyid`` lost its last reference: its pooled frames join the common lists, still
        marked unflushed under it, so their next allocation flushes them."""
        for (pkg, k) in [key for key in self.pools if key[1] == keyid]:
            self.free[pkg].extend(self.pools.pop((pkg, k)))


class MM:
    def __init__(self, kernel, frames_per_package: int = 4096) -> None:
        self.k = kernel
        self.plat = kernel.plat
        self.env = kernel.env
        self.frames = FrameAllocator(self.plat, frames_per_package)
        self.procs: dict[int, Process] = {}
        self.orphans: list[Page] = []  # pinned pages whose VMA is gone, until unpinned
        self.next_pid = 100
        self.counts: dict[str, int] = {}
        # The swap device: slot -> the bytes written there. The RFC v2 kernel does not encrypt
        # swap (Hansen, Dec 4: "we wouldn't force memory to be encrypted in swap"): an MKTME
        # page is read through its KeyID's direct map, so its plaintext goes to the device.
        self.swap_device: dict[int, bytes] = {}
        self.next_slot = 0
        self.swap_exposure: dict[int, int] = {}  # KeyID -> plaintext bytes written to swap
        self.swap_intent: dict[int, list] = {}  # slot -> what the user had stored per line

    def pages_homed_on(self, package: int) -> int:
        """Allocated pages (of any process) whose frame is homed on ``package``."""
        home = self.plat.amap.home
        return sum(1 for proc in self.procs.values() for page in proc.pages.values()
                   if home(page.pa) == package)

    def _count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    # -- processes and mappings ----------------------------------------------------------------
    def spawn(self, cpu: int) -> Process:
        proc = Process(self.next_pid, cpu)
        self.procs[proc.pid] = proc
        self.next_pid += 1
        return proc

    def mmap(self, proc: Process, length: int, anonymous: bool = True, name: str = "",
             huge: bool = False):
        """Map ``length`` bytes; ``huge``: 2 MiB aligned and faulted 2 MiB at a time
        (MADV_HUGEPAGE with the huge page always available), ``length`` a multiple of 2 MiB."""
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        if length <= 0 or length % PAGE:
            raise Errno("EINVAL", f"length {length} is not a positive multiple of {PAGE}")
        if huge and length % HUGE:
            raise Errno("EINVAL", f"length {length} is not a multiple of 2 MiB")
        if huge:
            proc.next_va = -(-proc.next_va // HUGE) * HUGE
        vma = Vma(proc.next_va, proc.next_va + length, 0, anonymous, name, huge=huge)
        proc.next_va += length + PAGE  # a guard gap keeps VMAs from merging
        proc.vmas.append(vma)
        return vma.start

    def munmap(self, proc: Process, addr: int, length: int):
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        if addr % PAGE or length <= 0 or length % PAGE:
            raise Errno("EINVAL", "munmap needs a page-aligned address and length")
        end = addr + length
        self._split(proc, addr, end)
        for vma in [v for v in proc.vmas if addr <= v.start and v.end <= end]:
            yield from self._zap(proc, vma.start, vma.end)
            proc.vmas.remove(vma)
            self.k.keys.put_ref(vma.keyid)

    def _split(self, proc: Process, start: int, end: int) -> None:
        """Split VMAs so that ``start`` and ``end`` fall on VMA boundaries (vm_area_dup: the
        new piece takes a reference on the KeyID)."""
        for cut in (start, end):
            vma = proc.vma_at(cut)
            if vma is not None and vma.start < cut:
                tail = Vma(cut, vma.end, vma.keyid, vma.anonymous, vma.name, vma.prot,
                           vma.huge)
                vma.end = cut
                proc.vmas.insert(proc.vmas.index(vma) + 1, tail)
                self.k.keys.get_ref(tail.keyid)

    def _zap(self, proc: Process, start: int, end: int):
        """Discard the pages of [start, end): each frame is freed (and flushed per policy),
        except a pinned one, which lives on until its last pin is dropped. With
        ``page_flush = "wbinvd"`` the frames are freed together, after one flush."""
        batch = self.k.policy.page_flush == "wbinvd"
        freed: list[Page] = []
        for vpage in sorted(v for v in proc.pages if start <= v < end):
            page = proc.pages.pop(vpage)
            if page.pins:
                page.orphan = True
                self.orphans.append(page)
                self._count("pinned_pages_outliving_vma")
                continue
            if batch:
                freed.append(page)
            else:
                yield from self.free_page(proc.cpu, page)
        if freed:
            yield from self.free_pages(proc.cpu, freed)
        for vpage in [v for v in proc.swapped if start <= v < end]:
            del proc.swapped[vpage]
            self._free_slot(proc.swap_slots.pop(vpage))

    # -- encrypt_mprotect --------------------------------------------------------------------
    def encrypt_mprotect(self, proc: Process, addr: int, length: int, prot: int, serial: int):
        """The RFC v2 system call (see the module docstring); all-or-nothing."""
        yield self.env.timeout(ns(self.k.policy.syscall_ns))
        keys = self.k.keys
        if length % PAGE:
            raise Errno("EINVAL", f"length {length:#x} is not page aligned")
        if addr % PAGE:
            raise Errno("EINVAL", f"address {addr:#x} is not page aligned")
        if prot & ~PROT_ALL:
            raise Errno("EINVAL", f"prot {prot:#x} has bits other than PROT_READ, PROT_WRITE "
                        "and PROT_EXEC")
        keys.lookup(serial)  # ENOKEY early for a serial that never existed
        yield self.k.map_lock.acquire()
        try:
            # Under mktme_map_lock, as RFC v2 does: the key may have gone while we waited.
            key = keys.lookup(serial)
            keyid = key.keyid
            if not keyid or keys.owner[keyid] != serial:
                raise Errno("EINVAL", f"key {serial} has no KeyID")
            end = addr + length
            va = addr
            while va < end:
                vma = proc.vma_at(va)
                if vma is None:
                    raise Errno("ENOMEM", f"{va:#x} is not mapped")
                if not vma.anonymous:
                    raise Errno("EINVAL", f"VMA {vma.start:#x}-{vma.end:#x} is not anonymous")
                va = vma.end
            self._split(proc, addr, end)
            for vma in [v for v in proc.vmas if addr <= v.start and v.end <= end]:
                if vma.keyid == keyid and vma.prot == prot:
                    continue  # same flags and KeyID: mprotect_fixup does nothing
                # mprotect_set_encrypt (patch 05) zaps the range first, whenever it runs:
                # a new protection with the same key discards the pages too.
                yield from self._zap(proc, vma.start, vma.end)
                keys.put_ref(vma.keyid)
                keys.get_ref(keyid)
                vma.keyid = keyid
                vma.prot = prot
            self._count("encrypt_mprotect")
        finally:
            self.k.map_lock.release()

    # -- pages ---------------------------------------------------------------------------------
    def alloc_page(self, cpu: int, keyid: int, zero: bool = True, node: int | None = None):
        """Take a frame on package ``node`` (default: ``cpu``'s package) and prepare it for
        ``keyid`` from ``cpu``; returns the Page."""
        pages = yield from self.alloc_pages(cpu, keyid, 1, zero, node)
        return pages[0]

    def alloc_pages(self, cpu: int, keyid: int, count: int, zero: bool = True,
                    node: int | None = None):
        """Take ``count`` frames (one fault of a 2 MiB page takes 512) and prepare them for
        ``keyid``: the flushes first (per page, or one WBINVD on every package for all of
        them, ``page_flush``), then each page's zeroing; returns the Pages."""
        package = self.plat.cores[cpu].package if node is None else node
        policy = self.k.policy
        frames = [self.frames.take(package, keyid) for _ in range(count)]
        stale: list[tuple[int, int]] = []  # (frame, KeyID to flush it through)
        for pa in frames:
            last = self.frames.last_keyid.get(pa, 0)
            if pa in self.frames.unflushed:
                self.frames.unflushed.discard(pa)
                if last != keyid:  # pooled unflushed: it leaves its KeyID now
                    stale.append((pa, last))
                    continue
            if keyid and policy.flush_on_alloc:
                if policy.alloc_flush == "keyid0":
                    stale.append((pa, 0))
                elif last != keyid:
                    stale.append((pa, last))
        if stale and policy.page_flush == "wbinvd":
            yield from self.wbinvd_all(cpu)
        else:
            for pa, k in stale:
                yield from self.flush_page(cpu, pa, k)
        pages = []
        for pa in frames:
            if keyid and policy.refcount_pages:
                self.k.keys.get_ref(keyid)
            if zero and policy.zero_on_alloc:
                yield from self.kernel_write_page(cpu, pa, keyid, [ZERO_LINE] * LINES)
            if policy.direct_map_isolation != "none":
                yield from self.k.dmap.user_page_allocated(cpu)
            self._count("pages_allocated")
            home = self.plat.packages[self.plat.amap.home(pa)]
            pages.append(Page(pa, keyid, key_version=home.mc.keys.entry(keyid).version
                              if keyid else -1))
        return pages

    def free_page(self, cpu: int, page: Page):
        yield from self.free_pages(cpu, [page])

    def free_pages(self, cpu: int, pages: list[Page]):
        """Free ``pages`` (one unmap): each encrypted one flushed through its KeyID
        (``flush_on_free``), or all of them by one WBINVD on every package (``page_flush``),
        or kept unflushed in its KeyID's pool (``keyid_pools``)."""
        policy = self.k.policy
        pool = policy.keyid_pools
        flush = policy.flush_on_free and not pool
        if flush and policy.page_flush == "wbinvd" and any(p.keyid for p in pages):
            yield from self.wbinvd_all(cpu)
            flush = False
        for page in pages:
            if page.keyid and flush:
                yield from self.flush_page(cpu, page.pa, page.keyid)
            if page.keyid and policy.refcount_pages:
                self.k.keys.put_ref(page.keyid)
            self.frames.give(page.pa, page.keyid, pool=bool(page.keyid) and pool)
            self._count("pages_freed")

    def wbinvd_all(self, cpu: int):
        """WBINVD on every online package, as the kernel must for a system-wide flush:
        ``cpu`` runs it on its own package and sends an IPI (one after another,
        ``ipi.send_ns`` each, then ``ipi.remote_ns``) to the first online CPU of every other
        package, which runs it there; ``cpu`` waits for the last. The CPUs that ran it for
        the IPI owe that time (:meth:`Kernel.owed <mktme_des.kernel.kernel.Kernel.owed>`)."""
        ipi = self.plat.model.ipi
        here = self.plat.cores[cpu].package
        procs = []
        sent = 0
        for pkg in self.plat.packages:
            if pkg.index == here or not pkg.online:
                continue
            target = next((c.cpu for c in pkg.cores if c.online), None)
            if target is None:
                continue
            sent += 1
            procs.append(self.env.process(self._remote_wbinvd(
                pkg.index, target, ns(sent * ipi.send_ns + ipi.remote_ns))))
        done = self.plat.wbinvd(self.env.now, here, cpu)
        yield self.env.timeout(max(0, done - self.env.now))
        if procs:
            yield self.env.all_of(procs)
        self._count("wbinvd_all")

    def _remote_wbinvd(self, package: int, cpu: int, delay: int):
        """The IPI handler of :meth:`wbinvd_all` on ``cpu``, ``delay`` after the send."""
        yield self.env.timeout(delay)
        start = self.env.now
        done = self.plat.wbinvd(start, package, cpu)
        self.k.irq_owed[cpu] += done - start
        yield self.env.timeout(max(0, done - start))

    def _map_keyid(self, keyid: int) -> int:
        """The KeyID the kernel's direct map offers for a page of ``keyid``."""
        return keyid if self.k.policy.direct_map == "per-keyid" else 0

    def flush_page(self, cpu: int, pa: int, keyid: int):
        """clflush every line of a page through the kernel's mapping of ``keyid``."""
        k = self._map_keyid(keyid)
        ops = [(O.CLFLUSH, k, pa + i * 64, None, None) for i in range(LINES)]
        yield from self.plat.cores[cpu].run(ops, [])
        self._count("page_flushes")

    def kernel_write_page(self, cpu: int, pa: int, keyid: int, lines: list[bytes],
                          intent: list | None = None):
        """Store a page's lines through the direct map. ``intent`` (default: ``lines``) is
        what the kernel means the user, reading through ``keyid``, to see; the oracle is told
        when the direct map's KeyID is not the user's."""
        k = self._map_keyid(keyid)
        ops = [(O.WRITE, k, pa + i * 64, lines[i], None) for i in range(LINES)]
        yield from self.plat.cores[cpu].run(ops, [])
        oracle = self.plat.oracle
        if oracle is not None and k != keyid:
            intent = lines if intent is None else intent
            for i in range(LINES):
                if intent[i] is not None:
                    oracle.intend(self.plat.amap.tag(keyid, pa + i * 64), intent[i],
                                  via=self.plat.amap.tag(k, pa + i * 64))

    def kernel_read_page(self, cpu: int, pa: int, keyid: int):
        k = self._map_keyid(keyid)
        log: list = []
        ops = [(O.READ, k, pa + i * 64, 64, None) for i in range(LINES)]
        yield from self.plat.cores[cpu].run(ops, log)
        return [entry[5] for entry in log]

    def direct_map_read(self, cpu: int, keyid: int, pa: int, size: int = 64):
        """A kernel load of ``size`` bytes at physical ``pa`` through its direct map for
        ``keyid`` (``phys_to_virt`` plus that KeyID's offset): with a direct map per KeyID
        (Hansen, Dec 5) that is a decrypted view of any tenant's memory; with only KeyID 0
        the kernel sees ciphertext decrypted with the wrong key. Returns the core's log entry."""
        log: list = []
        yield from self.plat.cores[cpu].run([(O.READ, self._map_keyid(keyid), pa, size, None)],
                                            log)
        return log[0]

    # -- page pins ---------------------------------------------------------------------------
    def pin(self, proc: Process, va: int):
        """``get_user_pages`` (FOLL_PIN) of the page of ``va``, faulting it in; returns the
        Page, which stays allocated until :meth:`unpin`, even after its VMA is gone."""
        yield from self.fault(proc, va)
        page = proc.pages[va & ~(PAGE - 1)]
        page.pins += 1
        self._count("pins")
        return page

    def unpin(self, cpu: int, page: Page):
        """Drop a pin; the last pin of a page whose VMA is gone frees it."""
        if page.pins <= 0:
            raise Errno("EINVAL", f"page {page.pa:#x} is not pinned")
        page.pins -= 1
        if not page.pins and page.orphan:
            page.orphan = False
            self.orphans.remove(page)
            yield from self.free_page(cpu, page)
        else:
            yield self.env.timeout(0)

    def device_read(self, cpu: int, page: Page, size: int = 64) -> Any:
        """A direct I/O reads the first ``size`` bytes of a pinned page, as the kernel maps
        it: through the page's KeyID (per-KeyID direct map); returns the core's log entry."""
        log: list = []
        k = self._map_keyid(page.keyid)
        yield from self.plat.cores[cpu].run([(O.READ, k, page.pa, size, None)], log)
        return log[0]

    # -- user accesses -------------------------------------------------------------------------
    def check_access(self, proc: Process, va: int, write: bool) -> None:
        """A user load (``write`` False) or store at ``va`` must be allowed by its VMA's
        protection; otherwise it faults (SIGSEGV, reported as EFAULT)."""
        vma = proc.vma_at(va)
        if vma is None:
            raise Errno("EFAULT", f"{va:#x} is not mapped")
        need = PROT_WRITE if write else PROT_READ
        if not vma.prot & need:
            raise Errno("EFAULT", f"{'store to' if write else 'load from'} {va:#x}: the VMA's "
                        f"protection is {vma.prot:#x}")

    def fault(self, proc: Process, va: int):
        """Make the page of ``va`` present: a fresh zeroed page, or the swapped-out contents."""
        vma = proc.vma_at(va)
        if vma is None:
            raise Errno("EFAULT", f"{va:#x} is not mapped")
        vpage = va & ~(PAGE - 1)
        page = proc.pages.get(vpage)
        if page is not None:
            return page
        if vpage in proc.migrating:
            yield proc.migrating[vpage]
            return proc.pages[vpage]
        yield self.env.timeout(ns(self.k.policy.fault_ns))
        if vpage in proc.swapped:
            keyid, data, intent = proc.swapped.pop(vpage)
            self._free_slot(proc.swap_slots.pop(vpage))
            page = yield from self.alloc_page(proc.cpu, vma.keyid, zero=False, node=proc.node)
            lines = [data[i * 64 : (i + 1) * 64] for i in range(LINES)]
            yield from self.kernel_write_page(proc.cpu, page.pa, vma.keyid, lines, intent)
            self._count("swap_ins")
        elif vma.huge and self._huge_fits(proc, vma, vpage):
            # One fault maps the whole 2 MiB: 512 frames, flushed and zeroed together. The
            # model does not need them contiguous: what differs from 4 KiB pages is one fault
            # and one flush decision for all of them.
            base = vpage & ~(HUGE - 1)
            pages = yield from self.alloc_pages(proc.cpu, vma.keyid, HUGE // PAGE,
                                                node=proc.node)
            for i, p in enumerate(pages):
                proc.pages[base + i * PAGE] = p
            self._count("faults")
            self._count("huge_faults")
            return proc.pages[vpage]
        else:
            page = yield from self.alloc_page(proc.cpu, vma.keyid, node=proc.node)
            self._count("faults")
        proc.pages[vpage] = page
        return page

    @staticmethod
    def _huge_fits(proc: Process, vma: Vma, vpage: int) -> bool:
        """The 2 MiB block around ``vpage`` lies in ``vma`` and none of it is present."""
        base = vpage & ~(HUGE - 1)
        if base < vma.start or base + HUGE > vma.end:
            return False
        return not any(base + i * PAGE in proc.pages or base + i * PAGE in proc.swapped
                       for i in range(HUGE // PAGE))

    def translate(self, proc: Process, va: int) -> tuple[int, int]:
        vpage = va & ~(PAGE - 1)
        page = proc.pages[vpage]
        return page.keyid, page.pa + (va - vpage)

    def swap_out(self, proc: Process, va: int):
        """Write a present page to swap through the direct map and free its frame."""
        vpage = va & ~(PAGE - 1)
        page = proc.pages.get(vpage)
        if page is None:
            raise Errno("EFAULT", f"{va:#x} is not present")
        lines = yield from self.kernel_read_page(proc.cpu, page.pa, page.keyid)
        del proc.pages[vpage]
        data = b"".join(lines)
        intent = self._intent(page)
        proc.swapped[vpage] = (page.keyid, data, intent)
        slot = self.next_slot
        self.next_slot += 1
        self.swap_device[slot] = data
        self.swap_intent[slot] = intent
        proc.swap_slots[vpage] = slot
        if page.keyid and self._map_keyid(page.keyid) == page.keyid:
            self._expose(proc.cpu, page, slot, len(data))
        yield from self.free_page(proc.cpu, page)
        self._count("swap_outs")

    def _free_slot(self, slot: int) -> None:
        """A swap slot is released (swap-in or unmap); what it held is gone from the model's
        device (a real device keeps the bytes until overwritten)."""
        self.swap_device.pop(slot, None)
        self.swap_intent.pop(slot, None)

    def _expose(self, cpu: int, page: Page, slot: int, nbytes: int) -> None:
        """Record that an MKTME page left the SoC unencrypted: swap holds what the kernel read
        through the page's KeyID (its plaintext, with a per-KeyID direct map)."""
        self.swap_exposure[page.keyid] = self.swap_exposure.get(page.keyid, 0) + nbytes
        self._count("swap_plaintext_bytes", nbytes)
        self.plat.recorder.emit("events", Event(
            self.env.now, f"cpu{cpu}", "swap-out unencrypted",
            self.plat.amap.tag(page.keyid, page.pa),
            f"{nbytes} bytes of a KeyID-{page.keyid} page written to swap slot {slot} as read "
            "through the KeyID (no swap encryption)"))

    def swap_read(self, slot: int, size: int = 64) -> tuple[bytes, str]:
        """What someone with the swap device (a stolen disk, whoever administers the storage)
        reads from ``slot``, and whether it is ``"plaintext"`` (the first ``size`` bytes are
        what the page's user had stored, as far as the oracle knows it) or ``"opaque"``;
        EINVAL for a slot never written or already freed."""
        if slot not in self.swap_device:
            raise Errno("EINVAL", f"swap slot {slot} holds nothing")
        data = self.swap_device[slot][:size]
        known = [(i, line) for i, line in enumerate(self.swap_intent.get(slot, []))
                 if line is not None and i * 64 < size]
        plain = bool(known) and all(data[i * 64:(i + 1) * 64] == line[:len(data) - i * 64]
                                    for i, line in known)
        return data, "plaintext" if plain else "opaque"

    def _intent(self, page: Page) -> list:
        """What the user last stored in each line of ``page``, for the oracle: swap and
        migration promise to give it back (None where the oracle has no full line)."""
        oracle = self.plat.oracle
        return [oracle.image(self.plat.amap.tag(page.keyid, page.pa + i * 64))
                if oracle is not None else None for i in range(LINES)]

    def migrate_off(self, package: int):
        """Move every page homed on ``package`` to the other online packages, round robin,
        each copied by a CPU of its new package (see the module docstring). Raises ENOMEM,
        with the pages not yet moved mapped where they were, when the other packages run out
        of frames."""
        home = self.plat.amap.home
        moving = [(proc, vpage, page) for proc in self.procs.values()
                  for vpage, page in sorted(proc.pages.items()) if home(page.pa) == package]
        targets = [next(c.cpu for c in p.cores if c.online)
                   for p in self.plat.packages if p.online and p.index != package]
        for proc, vpage, _ in moving:
            del proc.pages[vpage]
            proc.migrating[vpage] = self.env.event()
        yield self.env.timeout(ns(self.plat.model.ipi.remote_ns))  # the TLB shootdown
        moved = 0
        try:
            for proc, vpage, page in moving:
                cpu = targets[moved % len(targets)]
                lines = yield from self.kernel_read_page(cpu, page.pa, page.keyid)
                new = yield from self.alloc_page(cpu, page.keyid, zero=False)
                yield from self.kernel_write_page(cpu, new.pa, page.keyid, lines,
                                                  self._intent(page))
                proc.pages[vpage] = new
                proc.migrating.pop(vpage).succeed()
                yield from self.free_page(cpu, page)
                moved += 1
        finally:
            for proc, vpage, page in moving[moved:]:
                if vpage in proc.migrating:
                    proc.pages[vpage] = page
                    proc.migrating.pop(vpage).succeed()
            self._count("pages_migrated", moved)
