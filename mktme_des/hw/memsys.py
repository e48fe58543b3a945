"""The memory system: which caches hold each line, and every writeback and fill in flight.

Cores serve their own cache hits inline (:mod:`~mktme_des.hw.core`); everything that moves a
line between a cache and a memory controller, or between packages, goes through here. Lines in
flight are named records: a :class:`Writeback` on its way to its home controller, a
:class:`Fill` on its way back to a core. The bytes of a cached tag live once, in its
:class:`Line` of the directory (coherence keeps every copy of one tag identical).

Ordering rules
--------------
Each rule has a property test in ``tests/test_memsys.py`` (named in brackets) over random
programs of several cores on several packages, beside the example tests.

1. **Key at arrival.** A writeback is encrypted with the key its home controller holds for its
   KeyID at the writeback's *own* arrival. No other traffic moves that arrival, earlier or
   later: not a read of an alias of the same PA, not a fill of the same tag that takes its
   data [``test_rule1_key_at_own_arrival``].
2. **Same-tag order.** Writebacks of one tag are applied at the home in the order they left the
   caches: one that arrives after a later-sent writeback of the same tag was applied is
   dropped, traced as superseded (the directory at the home orders them). Writebacks of
   different tags, the aliases of one PA under other KeyIDs included, are never ordered
   against one another and never affect one another: whichever arrives last is in DRAM
   [``test_rule2_same_tag_order``].
3. **Coherent fills.** A fill of tag ``T`` installs ``T``'s newest data: that of the latest
   writeback of ``T`` still in flight, or of one that reached DRAM after the request read
   memory; otherwise what the controller read. Taking a writeback's data does not apply it:
   it still reaches DRAM at its own arrival (rule 1) [``test_rule3_fills_are_coherent``].
4. **Other tags see DRAM.** A read of ``(K9, PA)`` sees DRAM as it is when the read reaches
   the controller; a writeback of ``(K1, PA)`` still in flight is invisible to it. Adding reads
   of other tags therefore changes no other read's bytes and no DRAM byte
   [``test_rule4_unrelated_reads_change_nothing``].
5. **Ownership.** A dirty line has one owner package: that of the core that last stored to it
   (a store leaves copies only in the writer's package). Copies other packages read are
   shared. When the owner's last copy leaves while others hold the line, ownership passes to
   a remaining holder. WBINVD on a package writes back the dirty lines it owns, or whose last
   copy it held; a shared copy is dropped without a writeback
   [``test_rule5_wbinvd_writes_back_owned_lines_only``].
6. **A reset is a clean cut.** :meth:`MemorySystem.reset` with ``flush`` (an orderly reset):
   the writebacks in flight reach DRAM first, in the order they left, under the pre-reset keys
   and tweak, and so does every dirty cached line. Without ``flush`` (power lost) they are
   lost. Either way none arrives in the new boot, and a fill in flight installs the line as
   memory holds it after the reset. A PCONFIG in progress never lands
   (:mod:`~mktme_des.hw.pconfig`) [``test_rule6_reset_is_a_clean_cut``].
7. **Offline.** Taking a package offline writes back its dirty lines and drops every line its
   caches hold, as the WBINVD in Linux's CPU-offline path (``native_play_dead``) does, and
   takes WBINVD's time. An offline package's caches hold nothing and serve nothing: a fill in
   flight to one of its cores is not installed [``test_rule7_offline_package_holds_nothing``].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cython

from mktme_des.engine.recorder import Event, Recorder
from mktme_des.engine.wakeup import horizon
from mktme_des.hw.address import LINE_MASK

if TYPE_CHECKING:  # pragma: no cover
    from mktme_des.hw.cache import Cache
    from mktme_des.hw.memctrl import MemoryController

# What became of a writeback.
IN_FLIGHT, APPLIED, SUPERSEDED, LOST = 0, 1, 2, 3


@cython.no_gc  # holds no container, so it is never part of a cycle: the collector skips it
@cython.cclass
class Line:
    """The single coherent copy of a cached tag's bytes and its state across caches (its C
    fields are declared in ``memsys.pxd``)."""

    def __init__(self, tag: int, data: bytes) -> None:
        self.tag = tag
        self.data = bytearray(data)
        self.dirty = False
        self.owner = -1  # the package holding it dirty (rule 5), or -1
        self.holders = 0  # a bit per cache that holds this tag (may pass 64 bits)


if not cython.compiled:  # C functions cimported in memsys.pxd, used only when compiled
    PyByteArray_FromStringAndSize = PyByteArray_AS_STRING = PyBytes_AS_STRING = memcpy = None


def copy_bytes(data: bytes) -> bytearray:
    """``bytearray(data)``: a line's own copy of its bytes (made in C from bytes when
    compiled, not through bytearray's constructor)."""
    if cython.compiled and type(data) is bytes:
        return PyByteArray_FromStringAndSize(data, len(data))
    return bytearray(data)


def put_bytes(data: bytearray, off: int, arg: bytes) -> None:
    """A store's bytes into a line: ``data[off : off + len(arg)] = arg`` (copied in C when
    compiled; a store never crosses its line, so the line keeps its length)."""
    n = len(arg)
    if cython.compiled and type(arg) is bytes and off + n <= len(data):
        memcpy(PyByteArray_AS_STRING(data) + off, PyBytes_AS_STRING(arg), n)
    else:
        data[off : off + n] = arg


def pass_ownership(line: Line, package_mask: list) -> None:
    """Rule 5 for a dirty ``line`` some cache left: if its owner package holds no copy any
    more, the first package that does (``package_mask[p]``: the holder bits of package ``p``'s
    caches) owns it now. A C function when compiled: fills call it on every dirty victim."""
    if line.owner >= 0 and line.holders & package_mask[line.owner]:
        return
    for p in range(len(package_mask)):
        if line.holders & package_mask[p]:
            line.owner = p
            return


class Writeback:
    """A dirty line on its way from a package's caches to its home memory controller.

    ``seq`` orders writebacks as they left the caches (cores act in global time order, so
    issue order is departure order). It is also the DRAM record's cause while it is there.
    """

    __slots__ = ("seq", "tag", "data", "package", "cpu", "sent", "arrival", "why", "where",
                 "state", "key")

    def __init__(self, seq: int, tag: int, data: bytes, package: int, cpu: int, sent: int,
                 arrival: int, why: str, where: str) -> None:
        self.seq = seq
        self.tag = tag
        self.data = data
        self.package = package  # where it left from
        self.cpu = cpu  # the CPU whose flush or private cache sent it, or -1
        self.sent = sent
        self.arrival = arrival
        self.why = why  # "eviction from", "CLWB by", ...
        self.where = where  # a cache's name, or "cpuN"
        self.state = IN_FLIGHT
        self.key = None  # the XTS key it was written under, once applied (None: plaintext)

    @property
    def origin(self) -> tuple[str, int] | None:
        """``(actor, time)`` of what sent it, when a CPU did (its flush, or its private
        cache's eviction)."""
        return None if self.cpu < 0 else (f"cpu{self.cpu}", self.sent)


class Fill:
    """A line on its way from memory to a core's caches (a prefetch, or load misses in flight):
    loads waiting on it run, in order, the moment it is installed."""

    __slots__ = ("tag", "pa", "core", "event", "waiting", "boot")

    def __init__(self, tag: int, pa: int, core, event, boot: int) -> None:
        self.tag = tag
        self.pa = pa
        self.core = core
        self.event = event  # succeeds when the line is installed (a merged demand miss waits)
        self.waiting: list = []
        self.boot = boot  # the boot it was sent in (rule 6)


class MemorySystem:
    """The directory, writebacks and fills in flight, and the operations that move lines
    (see the module docstring for the ordering rules).

    ``controllers[p]`` is package ``p``'s memory controller; ``caches`` every cache, indexed
    by its holder bit; ``package_mask[p]`` the mask of package ``p``'s caches.
    """

    def __init__(self, env, amap, controllers: list[MemoryController], caches: list[Cache],
                 mesh: int, hop: int, snoop: int, wbinvd_line: int,
                 recorder: Recorder | None = None) -> None:
        self.env = env
        self.recorder = recorder if recorder is not None else Recorder()
        self.channels = self.recorder.channels
        self.amap = amap
        self.controllers = controllers
        self.caches = caches
        self.mesh, self.hop, self.snoop = mesh, hop, snoop
        self.wbinvd_line = wbinvd_line
        self.package_mask: list[int] = [0] * len(controllers)
        for c in caches:
            self.package_mask[c.package] |= 1 << c.bit
        self.directory: dict[int, Line] = {}
        self.pending: dict[int, list[Writeback]] = {}  # line PA -> writebacks in flight there
        self.landed: dict[int, Writeback] = {}  # tag -> its last writeback applied (rule 2)
        self.prefetching: dict[int, Fill] = {}  # tag -> its fill in flight
        self.writebacks = 0  # sent since the statistics were reset
        self.sent = 0  # sequence of every writeback ever sent
        self.superseded = 0
        self.boots = 0
        self.oracle = None
        self.describe = amap.describe

    # -- routes ----------------------------------------------------------------------------------
    def route(self, package: int, pa: int) -> tuple[MemoryController, int]:
        """Home controller of ``pa`` and the one-way latency there from ``package``."""
        home = self.amap.home(pa)
        return self.controllers[home], self.mesh + (self.hop if home != package else 0)

    def later(self, when: int, fn, *args) -> None:
        """Call ``fn(*args)`` at absolute time ``when`` (an event with a callback)."""
        ev = self.env.timeout(when - self.env.now)
        ev.callbacks.append(lambda _ev: fn(*args))

    # -- writebacks (rules 1, 2) -----------------------------------------------------------------
    def writeback(self, t: int, package: int, tag: int, data: bytes, why: str,
                  where: str = "", cpu: int = -1) -> int:
        """Send a dirty line from ``package`` at ``t`` to its home; returns its arrival time.
        ``why`` and ``where`` say what sent it ("eviction from", "L2/cpu3"), ``cpu`` which
        CPU's flush or private cache did (-1: none)."""
        pa = tag & self.amap.pa_mask
        mc, there = self.route(package, pa)
        arrival = t + there
        self.writebacks += 1
        self.sent += 1
        wb = Writeback(self.sent, tag, data, package, cpu, t, arrival, why, where)
        if arrival < horizon(self.env):
            # Nothing else happens before it arrives (parked streams included): apply it
            # now (exact lookahead).
            self._arrive(mc, wb)
        else:
            self.pending.setdefault(pa, []).append(wb)
            self.later(arrival, self._arrive_pending, mc, wb)
        return arrival

    def _arrive_pending(self, mc: MemoryController, wb: Writeback) -> None:
        if wb.state != IN_FLIGHT:
            return  # drained or lost at a reset
        pa = wb.tag & self.amap.pa_mask
        waiting = self.pending[pa]
        waiting.remove(wb)
        if not waiting:
            del self.pending[pa]
        self._arrive(mc, wb)

    def _arrive(self, mc: MemoryController, wb: Writeback) -> None:
        """``wb`` reaches its home at ``wb.arrival``: it is written under the key in force
        now, unless a later-sent writeback of its tag is in DRAM already."""
        channels = self.channels
        if channels["writebacks"] is not None:
            channels["writebacks"].append(wb)
        last = self.landed.get(wb.tag)
        if last is not None and last.seq > wb.seq:
            wb.state = SUPERSEDED
            self.superseded += 1
            if channels["events"] is not None:
                channels["events"].append(Event(
                    wb.arrival, f"mc{mc.package}", "writeback superseded", wb.tag,
                    f"{self.cause_text(wb)}; a copy of the line that left the caches later is "
                    "in DRAM", wb.origin))
            return
        wb.state = APPLIED
        wb.key = mc.key_of[wb.tag >> self.amap.keyid_shift]
        self.landed[wb.tag] = wb
        mc.write(wb.arrival, wb.tag, wb.data, wb)
        if channels["events"] is not None:
            keyid = wb.tag >> self.amap.keyid_shift
            entry = mc.keys.entry(keyid)
            channels["events"].append(Event(
                wb.arrival, f"mc{mc.package}", "writeback arrives", wb.tag,
                f"{self.cause_text(wb)}; encrypted with K{keyid} {entry.mode} v{entry.version}",
                wb.origin))

    def cause_text(self, cause) -> str:
        """Human text of a DRAM record's cause: a :class:`Writeback`, or text."""
        if not isinstance(cause, Writeback):
            return cause
        from mktme_des.engine.time import to_ns

        return (f"writeback of {self.describe(cause.tag)} ({cause.why} {cause.where}) "
                f"at t={to_ns(cause.sent):g} ns")

    # -- fills (rules 3, 4, 6) -------------------------------------------------------------------
    def settle_fill(self, tag: int, pa: int, asked: int, data: bytes, boot: int) -> bytes:
        """The bytes a fill of ``tag`` installs, memory having been read at ``asked`` (in boot
        ``boot``) and returned ``data``: rules 3 and 6. The caller has checked that no cache
        holds ``tag``."""
        if boot != self.boots:
            return self.memory_now(tag, pa)  # sent before a reset
        last = self.landed.get(tag)
        # Candidates: the newest writeback of the tag in flight, unless one sent later is in
        # DRAM already (it will be superseded), and one that landed after memory was read.
        floor = -1 if last is None else last.seq
        newest = last if last is not None and last.arrival >= asked else None
        for wb in self.pending.get(pa, ()):
            if wb.tag == tag and wb.seq > floor and (newest is None or wb.seq > newest.seq):
                newest = wb
        return data if newest is None else newest.data

    def memory_now(self, tag: int, pa: int) -> bytes:
        """What a read of ``tag`` (line ``pa``) gets from its home's DRAM now, untimed: for a
        load whose fill was cut (a reset, an offline core) and is served from memory as it is."""
        mc = self.controllers[self.amap.home(pa)]
        return mc.store.read(pa & LINE_MASK, mc.key_of[tag >> self.amap.keyid_shift],
                             mc.boot_tweak)

    def prefetch(self, t: int, core, tag: int, pa: int) -> None:
        """A speculative fill of ``tag`` into ``core``'s caches; the line arrives clean. A load
        of ``tag`` by the same core while it is on its way waits for it (a merged miss), and
        a second prefetch of it is dropped.

        The fill is also how a core keeps load misses in flight (``[core] fill_buffers``): the
        loads waiting on it are the calls in its ``waiting`` list, made the moment the line is
        installed (or found fetched by another core meanwhile), before anything else runs."""
        if tag in self.prefetching:
            return
        pa &= LINE_MASK
        mc, there = self.route(core.package, pa)
        fill = self.prefetching[tag] = Fill(tag, pa, core, self.env.event(), self.boots)

        def at_controller() -> None:
            data, done = mc.read(self.env.now, tag)
            self.later(done + there, arrived, data, self.env.now)

        def arrived(data: bytes, asked: int) -> None:
            if tag not in self.directory and core.online:
                core._fill(self.env.now, tag, self.settle_fill(tag, pa, asked, data, fill.boot))
            del self.prefetching[tag]
            for load in fill.waiting:
                load()
            fill.event.succeed()

        self.later(t + core.miss_cost + there, at_controller)

    # -- invalidation, eviction and whole-cache flushes (rules 5, 7) -----------------------------
    def invalidate_everywhere(self, tag: int, line: Line) -> None:
        """Drop ``tag`` from every cache (its data is not written back here)."""
        holders, bit = line.holders, 0
        while holders:
            if holders & 1:
                self.caches[bit].remove(tag)
            holders >>= 1
            bit += 1
        line.holders = 0
        del self.directory[tag]

    def pass_ownership(self, line: Line) -> None:
        """The owner's last copy of dirty ``line`` left while others hold it: a remaining
        holder's package owns it now (rule 5)."""
        pass_ownership(line, self.package_mask)

    def evict(self, t: int, tag: int, why: str = "capacity eviction") -> int | None:
        """Hardware drops ``tag`` from every cache at ``t`` (as replacement would), writing
        it back when dirty; returns the writeback's arrival time, or None."""
        line = self.directory.get(tag)
        if line is None:
            return None
        package = line.owner if line.owner >= 0 else next(
            c.package for c in self.caches if (line.holders >> c.bit) & 1)
        self.invalidate_everywhere(tag, line)
        if line.dirty:
            return self.writeback(t, package, tag, bytes(line.data), why, "")
        return None

    def wbinvd(self, t: int, package: int, cpu: int = -1, why: str = "wbinvd by") -> int:
        """WBINVD by ``cpu`` (-1: none named) on ``package``: drop every line its caches hold,
        writing back the dirty lines it owns or held the last copy of (rule 5).

        It walks every way of every set of the package's caches (``wbinvd_line`` each,
        whether the way holds a line or not), so its cost grows with the cache size, not with
        what is dirty; dirty lines are sent to memory as the walk reaches them, and the
        instruction completes when the walk is over and the last writeback has arrived.
        """
        tags: set[int] = set()
        capacity = 0
        directory = self.directory
        for c in self.caches:
            if c.package != package:
                continue
            capacity += c.nsets * c.ways
            for tag in c.clear():
                tags.add(tag)
                directory[tag].holders &= ~(1 << c.bit)
        step = self.wbinvd_line * capacity // max(1, len(tags)) if tags else 0
        where = f"cpu{cpu}" if cpu >= 0 else f"pkg{package}"
        done = t + capacity * self.wbinvd_line
        for i, tag in enumerate(sorted(tags)):
            line = directory[tag]
            if line.dirty:
                if line.owner == package or line.holders == 0:
                    arrival = self.writeback(t + i * step, package, tag, bytes(line.data),
                                             why, where, cpu)
                    line.dirty = False
                    line.owner = -1
                    done = max(done, arrival)
                else:
                    self.pass_ownership(line)
            if line.holders == 0:
                del directory[tag]
        return done

    def offline(self, t: int, package: int) -> int:
        """Package ``package`` goes offline at ``t`` (rule 7): its caches are written back and
        emptied as by WBINVD; returns when that is done."""
        return self.wbinvd(t, package, -1, "offline of")

    # -- reset (rule 6) ----------------------------------------------------------------------------
    def reset(self, now: int, flush: bool) -> None:
        """The platform resets at ``now`` (before its key tables and tweak change): see rule 6."""
        waiting = sorted((wb for wbs in self.pending.values() for wb in wbs),
                         key=lambda wb: wb.seq)
        self.pending.clear()
        for wb in waiting:
            if flush:
                wb.arrival = now
                self._arrive(self.controllers[self.amap.home(wb.tag & self.amap.pa_mask)], wb)
            else:
                wb.state = LOST
                self.recorder.emit("writebacks", wb)
                self.recorder.emit("events", Event(
                    now, "platform", "writeback lost", wb.tag,
                    f"{self.cause_text(wb)}; in flight at the reset", wb.origin))
        for tag, line in sorted(self.directory.items()):
            if flush and line.dirty:
                self.sent += 1
                wb = Writeback(self.sent, tag, bytes(line.data), max(line.owner, 0), -1, now,
                               now, "shutdown", "flush")
                self._arrive(self.controllers[self.amap.home(tag & self.amap.pa_mask)], wb)
        for c in self.caches:
            c.clear()
        self.directory.clear()
        self.landed.clear()
        self.boots += 1
