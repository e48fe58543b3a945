"""Cores: SimPy processes that execute a stream of ops against the cache hierarchy.

Time and lookahead
------------------
A core keeps a local clock ``t``. Work that changes shared state only *at* ``t`` (cache hits,
coherence among caches, flush bookkeeping) is done inline, without a SimPy event, as long as
``t`` is earlier than the next pending event of the whole simulation (``env.peek()``): no other
process can act before that event, so doing the work now is exactly the same as doing it at
``t``. This is conservative lookahead; it is what makes cache hits cheap. When ``t`` reaches
the next event, the core first waits for it (``yield env.timeout``), so every change to shared
state happens in global time order, whichever core makes it.

What costs real events is what real hardware does in the future: a request travelling to a
memory controller (one event when it arrives, where the key table is consulted, one when the
data is back), and writebacks (one event each, on arrival at the home controller).

Coherence
---------
Copies of one tag are always identical (the bytes live once per tag, in the directory), which
is what MESI/MOESI guarantee. A store invalidates every copy outside the writing core's private
caches and its package's shared cache; a read of a line cached elsewhere is served cache to
cache and leaves a dirty line dirty (the MOESI Owned state), so memory is updated only when the
last copy leaves the caches (eviction, CLFLUSH, WBINVD) or by CLWB. Nothing relates tags that
differ in their KeyID, as on real hardware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mktme_des.engine.stats import Counter, LatencyStat
from mktme_des.hw import ops as O
from mktme_des.hw.address import LINE_MASK

if TYPE_CHECKING:  # pragma: no cover
    from mktme_des.hw.platform import Platform


class Line:
    """The single coherent copy of a cached tag's bytes and its state across caches."""

    __slots__ = ("data", "dirty", "holders")

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.dirty = False
        self.holders = 0  # bit mask of the caches that hold this tag


class Core:
    """One core: its private caches, its package's shared caches and its op stream."""

    def __init__(self, plat: Platform, cpu: int, package: int, private: list, shared: list) -> None:
        self.plat = plat
        self.env = plat.env
        self.cpu = cpu
        self.package = package
        self.levels = private + shared  # nearest first
        self.own_mask = 0
        for c in self.levels:
            self.own_mask |= 1 << c.bit
        self.online = True
        self.busy_until = 0
        self.outstanding: list[int] = []  # completion times of unordered flushes
        self.served = Counter()
        self.read_lat = LatencyStat()
        self.write_lat = LatencyStat()
        self.op_counts = Counter()
        self.reads: list[dict] | None = None  # per-read log, kept when a scenario asks
        self.finished_at = 0

    # -- the process --------------------------------------------------------------------------
    def run(self, ops):
        """SimPy process executing ``ops`` (an iterable of op tuples) in program order."""
        env = self.env
        plat = self.plat
        directory = plat.directory
        shift = plat.amap.keyid_shift
        l1 = self.levels[0]
        l1_sets = l1.sets
        l1_mask = l1.mask
        l1_hit = l1.hit
        lru = l1.policy == "lru"
        foreign = ~self.own_mask
        oracle = plat.oracle
        read_hist = self.read_lat.hist
        write_hist = self.write_lat.hist
        served = self.served
        t = env.now
        for op in ops:
            code, keyid, pa, arg, at = op
            if at is not None and at > t:
                t = at
            if t > env.now and t >= env.peek():
                yield env.timeout(t - env.now)
            if code <= O.WRITE:
                off = pa & 63
                tag = (keyid << shift) | (pa & LINE_MASK)
                s = l1_sets.get((tag >> 6) & l1_mask)
                if s is not None and tag in s and (
                    code == O.READ or not (directory[tag].holders & foreign)
                ):
                    # L1 hit, and for a store the line is already exclusive: no event.
                    if lru:
                        del s[tag]
                        s[tag] = None
                    line = directory[tag]
                    served["L1"] = served.get("L1", 0) + 1
                    if code == O.READ:
                        data = bytes(line.data[off : off + arg])
                        read_hist[l1_hit] = read_hist.get(l1_hit, 0) + 1
                        t += l1_hit
                        if oracle is not None:
                            oracle.load(t, self.cpu, tag, off, data, "L1", self)
                    else:
                        line.data[off : off + len(arg)] = arg
                        line.dirty = True
                        write_hist[l1_hit] = write_hist.get(l1_hit, 0) + 1
                        t += l1_hit
                        if oracle is not None:
                            oracle.store(t, self.cpu, tag, off, arg)
                    continue
                t0 = t
                line, t, where = self._lookup(t, tag)
                if line is None:
                    # Miss in every cache: a request to the home memory controller.
                    ctrl, there, back = plat.route(self.package, pa)
                    yield env.timeout(t + there - env.now)
                    data, done = ctrl.read(env.now, tag)
                    yield env.timeout(done + back - env.now)
                    t = env.now
                    line = self._fill(t, tag, data)
                    where = "DRAM" if ctrl.package == self.package else "DRAM-remote"
                served[where] = served.get(where, 0) + 1
                if code == O.WRITE:
                    if line.holders & foreign:
                        t = self._invalidate_others(t, tag, line)
                    line.data[off : off + len(arg)] = arg
                    line.dirty = True
                    lat = t - t0
                    write_hist[lat] = write_hist.get(lat, 0) + 1
                    if oracle is not None:
                        oracle.store(t, self.cpu, tag, off, arg)
                else:
                    data = bytes(line.data[off : off + arg])
                    lat = t - t0
                    read_hist[lat] = read_hist.get(lat, 0) + 1
                    if oracle is not None:
                        oracle.load(t, self.cpu, tag, off, data, where, self)
                continue
            self.op_counts.add(O.NAMES[code])
            if code == O.COMPUTE:
                t += arg
            elif code in (O.CLFLUSH, O.CLFLUSHOPT, O.CLWB):
                tag = (keyid << shift) | (pa & LINE_MASK)
                t = self._flush_line(t, tag, code)
            elif code in (O.SFENCE, O.MFENCE):
                if self.outstanding:
                    t = max(t, max(self.outstanding))
                    self.outstanding.clear()
            elif code == O.WBINVD:
                t = plat.wbinvd(t, self.package, self.cpu)
            elif code == O.PREFETCH:
                t += plat.cycle
                tag = (keyid << shift) | (pa & LINE_MASK)
                if tag not in directory:
                    plat.prefetch(t, self, tag, pa)
            else:
                t = plat.raw_op(t, self.cpu, code, pa, arg)
        if t > env.now:
            yield env.timeout(t - env.now)
        self.finished_at = env.now

    # -- helpers (all act at local time t, in global time order) -------------------------------
    def _lookup(self, t: int, tag: int):
        """Serve ``tag`` from the caches below L1 or from another cache.

        Returns ``(line, t_done, where)``, or ``(None, t_after_miss, None)`` when no cache
        holds the tag and memory must be asked.
        """
        plat = self.plat
        levels = self.levels
        for i in range(1, len(levels)):
            c = levels[i]
            if c.lookup(tag):
                line = plat.directory[tag]
                for upper in levels[:i]:
                    self._install(t, upper, tag, line)
                return line, t + c.hit, c.name
        last = levels[-1].hit
        line = plat.directory.get(tag)
        if line is None:
            return None, t + last, None
        if line.holders & plat.package_mask[self.package]:
            where, t = "peer", t + last + plat.snoop
        else:
            where, t = "remote", t + last + plat.snoop + 2 * plat.hop
        for c in levels:
            self._install(t, c, tag, line)
        return line, t, where

    def _fill(self, t: int, tag: int, data: bytes) -> Line:
        """Install data fetched from memory; join the coherent copy if one appeared meanwhile."""
        plat = self.plat
        line = plat.directory.get(tag)
        if line is None:
            line = plat.directory[tag] = Line(data)
        for c in self.levels:
            if not (line.holders >> c.bit) & 1:
                self._install(t, c, tag, line)
        return line

    def _install(self, t: int, cache, tag: int, line: Line) -> None:
        if (line.holders >> cache.bit) & 1:
            cache.lookup(tag)
            return
        victim = cache.insert(tag)
        line.holders |= 1 << cache.bit
        if victim is not None:
            self.plat.drop(t, cache, victim, self.package, "eviction")

    def _invalidate_others(self, t: int, tag: int, line: Line) -> int:
        """Take ownership for a store: remove every copy outside this core's path."""
        plat = self.plat
        others = line.holders & ~self.own_mask
        remote = others & ~plat.package_mask[self.package]
        bit = 0
        while others:
            if others & 1:
                plat.caches[bit].remove(tag)
                plat.caches[bit].counts.add("invalidations")
            others >>= 1
            bit += 1
        line.holders &= self.own_mask
        return t + plat.snoop + (2 * plat.hop if remote else 0)

    def _flush_line(self, t: int, tag: int, code: int) -> int:
        plat = self.plat
        ordered = code == O.CLFLUSH
        t += plat.clflush_cost if ordered else plat.clflushopt_cost
        line = plat.directory.get(tag)
        if line is None:
            return t
        done = t
        name = O.NAMES[code]
        if line.dirty:
            done = plat.writeback(t, self.package, tag, bytes(line.data), f"{name} by cpu{self.cpu}")
            line.dirty = False
        if code != O.CLWB:
            plat.invalidate_everywhere(tag, line)
        if ordered:
            return done
        self.outstanding.append(done)
        return t

    def stats(self) -> dict:
        return {
            "served_by": self.served.to_dict(),
            "read_latency": self.read_lat.to_dict(),
            "write_latency": self.write_lat.to_dict(),
            "ops": self.op_counts.to_dict(),
            "finished_at_ns": self.finished_at / 1000,
        }
