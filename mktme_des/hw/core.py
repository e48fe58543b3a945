"""Cores: SimPy processes that execute a stream of ops against the cache hierarchy.

Time and lookahead
------------------
A core keeps a local clock ``t``. Work that changes shared state only *at* ``t`` (cache hits,
coherence among caches, flush bookkeeping) is done inline, without a SimPy event, as long as
``t`` is earlier than the next pending event of the whole simulation (``env.peek()``): no other
process can act before that event, so doing the work now is exactly the same as doing it at
``t``. This is conservative lookahead; it is what makes cache hits cheap. When ``t`` reaches
the next event, the core first waits for it (``yield env.timeout``), so every change to shared
state happens in global time order, whichever core makes it. Under :func:`wakeup.run
<mktme_des.engine.wakeup.run>` that wait parks the op stream (:class:`OpStream`): the run loop
then makes the core's steps through cache hits and COMPUTE itself, in the same order and with
the same event ids, and hands the stream back to the generator for anything else.

What costs real events is what real hardware does in the future: a request travelling to a
memory controller (one event when it arrives, where the key table is consulted, one when the
data is back), and writebacks (one event each, on arrival at the home controller).

Coherence
---------
Copies of one tag are always identical (the bytes live once per tag, in the directory), which
is what MESI/MOESI guarantee. A store invalidates every copy outside the writing core's private
caches and its package's shared cache; a read of a line cached elsewhere is served cache to
cache and leaves a dirty line dirty (the MOESI Owned state, held by the writer's package), so
memory is updated only when the last copy leaves the caches (eviction, CLFLUSH), by the owner's
WBINVD or by CLWB. Nothing relates tags that differ in their KeyID, as on real hardware. What
happens to lines on their way to and from memory, and the order in which they arrive, is the
memory system's (:mod:`~mktme_des.hw.memsys`, whose rules this module follows).
"""

from __future__ import annotations

from functools import partial

import cython

from mktme_des.engine.stats import Counter, LatencyStat
from mktme_des.engine.wakeup import PARK, RESUME, Parked, Parking, Wakeup, parking_for, wakeup_for
from mktme_des.hw import ops as O
from mktme_des.hw.address import LINE_MASK
from mktme_des.hw.cache import Cache
from mktme_des.hw.memctrl import MemoryController
from mktme_des.hw.memsys import Line, MemorySystem
from mktme_des.oracle import Oracle

if not cython.compiled:  # compiled, they are C functions (cimported in core.pxd)
    from mktme_des.hw.memsys import copy_bytes, pass_ownership, put_bytes

NO_EVENT = 1 << 62  # the horizon when nothing is scheduled (later than any simulated time)


def _horizon(env, parking: Parking | None) -> int:
    """``env.peek()`` as an integer time: nothing else happens before it (read off SimPy's
    queue, whose entries all start with their time, without a method call, and off the
    parked streams' keys, :class:`~mktme_des.engine.wakeup.Parking`)."""
    if parking is not None:
        return parking.horizon()
    queue = env._queue
    return queue[0][0] if queue else NO_EVENT


class OpStream(Parked):
    """A running :meth:`Core.run` as a parked stream (:mod:`~mktme_des.engine.wakeup`): what
    the run loop needs to make the generator's step at a wake-up itself. While parked, ``op``
    is the op the generator stopped at (its ``at`` applied to ``t``); when handed back, the op
    to go on with at local time ``t``, or None at the end of the stream (``err``: the
    exception the stream raised, to be raised by the generator)."""

    def __init__(self, wake: Wakeup, core: Core, it, log: list | None) -> None:
        super().__init__(wake)
        self.core = core
        self.it = it
        self.op = None
        self.err = None
        l1 = core.levels[0]
        self.l1 = l1
        self.l1_lines = l1.lines
        self.l1_hit = l1.hit
        self.l1_name = l1.level_name
        self.oracle = core.mem.oracle
        self.log = log
        self.cpu = core.cpu
        self.package = core.package
        self.shift = core.amap.keyid_shift
        self.line_mask = LINE_MASK
        self.foreign = ~core.own_mask
        self.write_hist = core.write_lat.hist
        self.op_counts = core.op_counts
        self.nb = core.fill_buffers > 1
        self.READ, self.WRITE, self.COMPUTE = O.READ, O.WRITE, O.COMPUTE
        self.served_l1 = 0
        self.l1_reads = 0

    def advance(self, horizon: int) -> int:
        """The generator's step from ``op`` at ``t`` (see :meth:`Parked.advance`): the same
        code as :meth:`Core.run`'s for an L1 hit and for COMPUTE, the ops it executes without
        a wait; anything else is handed back."""
        core = self.core
        it = self.it
        l1 = self.l1
        l1_lines = self.l1_lines
        l1_hit = self.l1_hit
        l1_name = self.l1_name
        oracle = self.oracle
        log = self.log
        cpu = self.cpu
        shift = self.shift
        line_mask = self.line_mask
        foreign = self.foreign
        write_hist = self.write_hist
        READ, WRITE, COMPUTE = self.READ, self.WRITE, self.COMPUTE
        nb = self.nb
        cls = None
        op = self.op
        t = self.t
        try:
            code, keyid, pa, arg, at = op
            while True:
                if nb and core.loads_in_flight and code != READ and code != COMPUTE:
                    break  # the generator waits for the loads in flight first
                if code <= WRITE:
                    off = pa & 63
                    tag = (keyid << shift) | (pa & line_mask)
                    slot = l1.find(tag)
                    if slot < 0:
                        break
                    line = l1_lines[slot]
                    l1.touch(slot)
                    if code == READ:
                        self.served_l1 += 1
                        self.l1_reads += 1
                        t += l1_hit
                        if oracle is not None:
                            cls = oracle.load_line(t, cpu, tag, off, arg, line.data, l1_name)
                        if log is not None:
                            log.append((t - l1_hit, t, code, keyid, pa,
                                        bytes(line.data[off : off + arg]), l1_name, cls))
                    else:
                        self.served_l1 += 1
                        t0 = t
                        t += l1_hit
                        if line.holders & foreign:
                            t = core._invalidate_others(t, tag, line)
                        put_bytes(line.data, off, arg)
                        line.dirty = True
                        line.owner = self.package
                        write_hist[t - t0] = write_hist.get(t - t0, 0) + 1
                        if oracle is not None:
                            oracle.store(t, cpu, tag, off, arg)
                        if log is not None:
                            log.append((t0, t, code, keyid, pa, arg, l1_name, None))
                elif code == COMPUTE:
                    self.op_counts.add("compute")
                    t0 = t
                    t += arg
                    if log is not None:
                        log.append((t0, t, code, keyid, pa, None, None, None))
                else:
                    break
                try:
                    op = next(it)
                except StopIteration:
                    self.op = None
                    self.t = t
                    return RESUME
                code, keyid, pa, arg, at = op
                if at is not None and at > t:
                    t = at
                if t >= horizon:
                    self.op = op
                    self.t = t
                    return PARK
        except BaseException as e:  # noqa: BLE001 - raised by the generator, as it would be
            self.err = e
            op = None
        self.op = op
        self.t = t
        return RESUME


def new_line(tag: int, data: bytes) -> Line:
    """A directory line for ``tag`` holding ``data``: clean, unowned, in no cache (as
    ``Line(tag, data)``, without the call through the type; fills make one per miss)."""
    line = Line.__new__(Line)
    line.tag = tag
    line.data = copy_bytes(data)
    line.dirty = False
    line.owner = -1
    line.holders = 0
    return line


def place(mem: MemorySystem, package: int, t: int, tag: int, line: Line, path: list,
          mask: int) -> None:
    """Put ``line`` (the coherent copy of ``tag``) in each cache of ``path`` (``(cache,
    holder bit, every other bit)`` triples, whose bits together are ``mask``) that lacks it,
    evicting as replacement says; the last copy of a dirty victim is written back, and
    ownership of a dirty victim others still hold moves on (memsys rule 5)."""
    holders = line.holders
    fresh = not holders  # a line no cache holds (a fill from memory) goes into every level
    for c, bit, others in path:
        if not fresh and holders & bit:
            continue
        vline = c.insert(tag, line)
        if vline is not None:
            left = vline.holders & others
            vline.holders = left
            if not left:
                del mem.directory[vline.tag]
                if vline.dirty:
                    c.writebacks += 1
                    mem.writeback(t, package, vline.tag, bytes(vline.data), "eviction from",
                                  c.name, -1 if c.core is None else c.core)
            elif vline.dirty:
                pass_ownership(vline, mem.package_mask)
        if not fresh:
            holders |= bit
    line.holders = mask if fresh else holders


class Core:
    """One core: its private caches, its package's shared caches and its op stream.

    Its collaborators come from the platform's builder: the memory system ``mem``, its caches
    (``private`` then ``shared``, nearest first), ``routes[s]`` (the memory controller of
    the ``s``-th package with memory, the address map's slot ``s``, and the one-way latency
    there), the scenario ``board`` (flags and captures)
    and its timings in ticks (``cycle``, and the cost of issuing CLFLUSH and CLFLUSHOPT).
    """

    def __init__(self, mem: MemorySystem, cpu: int, package: int, private: list, shared: list,
                 routes: list[tuple], board, *, cycle: int, clflush_cost: int,
                 clflushopt_cost: int, fill_buffers: int = 1) -> None:
        self.mem = mem
        self.env = mem.env
        self.amap = mem.amap
        self.board = board
        self.cycle = cycle
        self.clflush_cost = clflush_cost
        self.clflushopt_cost = clflushopt_cost
        self.cpu = cpu
        self.package = package
        self.levels = private + shared  # nearest first
        self.own_mask = 0
        for c in self.levels:
            self.own_mask |= 1 << c.bit
        # Where a fill places a line (see place), and the holder bits of each first i levels.
        self.fill_path = [(c, 1 << c.bit, ~(1 << c.bit)) for c in self.levels]
        self.fill_masks = [sum(1 << c.bit for c in self.levels[:i])
                           for i in range(len(self.levels) + 1)]
        # Time to find out that no cache level holds a line: the last level's lookup.
        self.miss_cost = self.levels[-1].hit
        self.l1_bit = 1 << self.levels[0].bit
        # Load misses the core goes on under (line fill buffers), and the event the core waits
        # on when it needs one to complete.
        self.fill_buffers = fill_buffers
        self.loads_in_flight = 0
        self._freed = None
        self.online = True
        self.routes = routes
        self.outstanding: list[int] = []  # completion times of unordered flushes
        self.served: dict[str, int] = {}  # accesses by where they were served
        self.read_lat = LatencyStat()
        self.write_lat = LatencyStat()
        self.op_counts = Counter()
        # Per-op log (start, end, code, keyid, pa, data, served, class), kept when asked.
        self.log: list[tuple] | None = None
        self.finished_at = 0

    # -- the process --------------------------------------------------------------------------
    def run(self, ops, log: list | None = None, refuse_offline: bool = False):
        """SimPy process executing ``ops`` (an iterable of op tuples) in program order.

        ``log`` (default: the core's own ``log``) receives one entry per op, in program order
        (a load in flight keeps its place until it completes). Kernel code runs short op lists
        on a core with ``yield from core.run(ops, log)``: a second hardware context on the
        same core, sharing its caches.

        With ``refuse_offline`` (a scenario's ``[[cpu]]`` actor) an op due while the core is
        offline is refused, not executed: checked when the op is about to execute, after its
        ``at`` time and the waits before it, it is logged with a ninth field, ``"offline"``,
        and takes no time. Waits and label signals are never refused."""
        # C types of the loop's variables when compiled (setup.py); no effect otherwise.
        cython.declare(t=cython.longlong, horizon=cython.longlong, t0=cython.longlong,
                       code=cython.int, keyid=cython.longlong, pa=cython.longlong,
                       tag=cython.longlong, off=cython.longlong, shift=cython.int,
                       l1_hit=cython.longlong, key=object, lat=object,
                       served_l1=cython.longlong, l1_reads=cython.longlong,
                       served_dram=cython.longlong, served_remote=cython.longlong,
                       line_mask=cython.longlong, miss_cost=cython.longlong,
                       interleave=cython.longlong, nslots=cython.longlong,
                       package_bytes=cython.longlong, home=cython.longlong,
                       package=cython.longlong, arrive=cython.longlong, done=cython.longlong,
                       there=cython.longlong, READ=cython.int, WRITE=cython.int,
                       boot=cython.longlong, waited=cython.bint, merged=cython.bint, hold=cython.bint,
                       nb=cython.bint, refuse=cython.bint,
                       slot=cython.Py_ssize_t, directory=dict, read_hist=dict,
                       write_hist=dict, served=dict, pending=dict, routes=list,
                       l1_lines=list, l1=Cache, line=Line, ctrl=MemoryController, wake=Wakeup,
                       oracle=Oracle, parking=Parking, stream=OpStream)
        env = self.env
        mem = self.mem
        directory = mem.directory
        shift = self.amap.keyid_shift
        l1 = self.levels[0]
        l1_lines = l1.lines
        l1_hit = l1.hit
        l1_name = l1.level_name
        foreign = ~self.own_mask
        oracle = mem.oracle
        read_hist = self.read_lat.hist
        write_hist = self.write_lat.hist
        served = self.served
        served_l1 = l1_reads = 0  # L1-hit counters, added to the statistics at the end
        served_dram = served_remote = 0  # the same for fills from local and remote DRAM
        line_mask = LINE_MASK
        cpu = self.cpu
        log = self.log if log is None else log
        cls = None
        READ, WRITE = O.READ, O.WRITE
        miss_cost = self.miss_cost
        package = self.package
        amap = self.amap
        interleave, nslots, package_bytes = amap.interleave, amap.slots, amap.package_bytes
        routes = self.routes
        fill_path = self.fill_path
        fill_mask = self.fill_masks[-1]
        pending = mem.pending
        prefetching = mem.prefetching
        l1_bit = self.l1_bit
        nb = self.fill_buffers > 1  # non-blocking loads
        refuse = refuse_offline
        # Waits without a Timeout event, when the environment allows; one per run, as kernel
        # code may run ops on a core whose own stream is running too.
        wake = wakeup_for(env)
        # Waits at the top of the loop park the stream where they can (engine/wakeup.py):
        # the run loop then makes the steps through cache hits itself.
        parking = parking_for(env) if wake is not None else None
        it = iter(ops)
        # A stream that refuses ops while the core is offline is never parked: the run loop's
        # steps (OpStream.advance) do not look at the core's state.
        stream = OpStream(wake, self, it, log) if parking is not None and not refuse else None
        t = env.now
        horizon = _horizon(env, parking)  # nothing else happens before this time
        for op in it:
            code, keyid, pa, arg, at = op
            if at is not None and at > t:
                t = at
            if t >= horizon:
                if stream is not None and parking.usable():
                    stream.op = op
                    yield parking.park(stream, t)
                    # Handed back: the op to go on with, and the local time.
                    op = stream.op
                    t = stream.t
                    if op is None:
                        if stream.err is not None:
                            err, stream.err = stream.err, None
                            raise err
                        break
                    code, keyid, pa, arg, at = op
                else:
                    yield wake.at(t) if wake is not None else env.timeout(t - env.now)
                horizon = _horizon(env, parking)
            if nb and self.loads_in_flight and code != READ and code != O.COMPUTE:
                # Stores, flushes, fences and signals stay after the loads before them.
                yield from self._wait_loads(t, 0)
                t = env.now
                horizon = _horizon(env, parking)
            if refuse and not self.online and code != O.SIGNAL and code != O.AWAIT:
                if log is not None:
                    log.append((t, t, code, keyid, pa, None, None, None, "offline"))
                continue
            if code <= WRITE:
                off = pa & 63
                tag = (keyid << shift) | (pa & line_mask)
                slot = l1.find(tag)
                if slot >= 0:
                    line = l1_lines[slot]
                    l1.touch(slot)
                    if code == READ:
                        served_l1 += 1
                        l1_reads += 1
                        t += l1_hit
                        if oracle is not None:
                            cls = oracle.load_line(t, cpu, tag, off, arg, line.data, l1_name)
                        if log is not None:
                            log.append((t - l1_hit, t, code, keyid, pa,
                                        bytes(line.data[off : off + arg]), l1_name, cls))
                        continue
                    # A store to a line in L1: exclusive already, or the other copies are
                    # invalidated first (an upgrade: no data moves).
                    served_l1 += 1
                    t0 = t
                    t += l1_hit
                    if line.holders & foreign:
                        t = self._invalidate_others(t, tag, line)
                    put_bytes(line.data, off, arg)
                    line.dirty = True
                    line.owner = package
                    write_hist[t - t0] = write_hist.get(t - t0, 0) + 1
                    if oracle is not None:
                        oracle.store(t, cpu, tag, off, arg)
                    if log is not None:
                        log.append((t0, t, code, keyid, pa, arg, l1_name, None))
                    continue
                t0 = t
                key = tag  # the tag as a Python int, made once for the directory's lookups
                line = directory.get(key)
                if line is None and nb and code == READ:
                    if self.loads_in_flight >= self.fill_buffers:
                        yield from self._wait_loads(t, self.fill_buffers - 1)
                        t = t0 = env.now
                        horizon = _horizon(env, parking)
                        line = directory.get(key)  # it may have been fetched meanwhile
                    if line is None:
                        # The load takes a fill buffer; the core goes on after the L1 lookup.
                        self._load_under_miss(t, tag, off, arg, keyid, pa, log)
                        t += l1_hit
                        horizon = _horizon(env, parking)
                        continue
                merged = False
                if line is None and prefetching:
                    inflight = prefetching.get(tag)
                    if inflight is not None and inflight.core is self:
                        # This core's own prefetch of the line is on its way: the load waits
                        # for it, as a fill buffer merges a demand miss into a prefetch.
                        if t > env.now:
                            yield wake.at(t) if wake is not None else env.timeout(t - env.now)
                        yield inflight.event
                        t = env.now
                        horizon = _horizon(env, parking)
                        line = directory.get(key)
                        # The fill is dropped when the line was fetched meanwhile (by another
                        # core): the load is then served wherever the line is.
                        merged = line is not None and line.holders & l1_bit
                if merged or line is not None:
                    if merged:
                        t += l1_hit
                        where = "prefetch"
                    else:
                        line, t, where = self._lookup(t, tag, line)
                    served[where] = served.get(where, 0) + 1
                else:
                    # Miss in every cache: a request to the home memory controller. Each
                    # step is done inline when it falls before the next pending event.
                    t += miss_cost
                    home = (pa // interleave) % nslots if interleave else pa // package_bytes  # AddressMap.slot, inline
                    ctrl, there = routes[home]
                    arrive = t + there
                    # The boot the request is sent in (rule 6), read before anything else
                    # may run: only a fill that waited, or meets a writeback, needs it.
                    waited = arrive >= horizon
                    # Both waits are held with the parked streams where they can be (a key
                    # compared in machine integers; Parking.hold).
                    hold = stream is not None and parking.usable()
                    if waited:
                        boot = mem.boots
                        if hold:
                            yield parking.hold(stream, arrive)
                        else:
                            yield wake.at(arrive) if wake is not None else \
                                env.timeout(arrive - env.now)
                        horizon = _horizon(env, parking)
                    data, done = ctrl.read(arrive, tag)
                    t = done + there
                    if t >= horizon:
                        if not waited:
                            boot = mem.boots
                        if hold:
                            yield parking.hold(stream, t)
                        else:
                            yield wake.at(t) if wake is not None else env.timeout(t - env.now)
                        horizon = _horizon(env, parking)
                        waited = True
                    if waited:
                        # Others ran meanwhile: they may have cached the tag, or sent it
                        # back to memory (MemorySystem.settle_fill, rule 3).
                        line = directory.get(key)
                        if line is None:
                            data = mem.settle_fill(tag, pa & line_mask, arrive, data, boot)
                            line = directory[key] = new_line(tag, data)
                    else:
                        # Nothing ran since the lookup missed: the tag is still uncached; a
                        # writeback of it still on its way has the newest data (rule 3).
                        if pending and (pa & line_mask) in pending:
                            data = mem.settle_fill(tag, pa & line_mask, arrive, data, mem.boots)
                        line = directory[key] = new_line(tag, data)
                    place(mem, package, t, tag, line, fill_path, fill_mask)
                    # Counted in machine integers, added to the statistics at the end.
                    if ctrl.package == package:
                        where = "DRAM"
                        served_dram += 1
                    else:
                        where = "DRAM-remote"
                        served_remote += 1
                if code == WRITE:
                    if line.holders & foreign:
                        t = self._invalidate_others(t, tag, line)
                    put_bytes(line.data, off, arg)
                    line.dirty = True
                    line.owner = package
                    lat = t - t0  # boxed once, for both dict operations
                    write_hist[lat] = write_hist.get(lat, 0) + 1
                    if oracle is not None:
                        oracle.store(t, cpu, tag, off, arg)
                    if log is not None:
                        log.append((t0, t, code, keyid, pa, arg, where, None))
                else:
                    lat = t - t0
                    read_hist[lat] = read_hist.get(lat, 0) + 1
                    cls = oracle.load_line(t, cpu, tag, off, arg, line.data, where) if oracle \
                        else None
                    if log is not None:
                        log.append((t0, t, code, keyid, pa, bytes(line.data[off : off + arg]),
                                    where, cls))
                # No refresh of the horizon: a writeback scheduled above is an event no
                # earlier than it (earlier ones were delivered inline).
                continue
            if code == O.SIGNAL:
                self.board.raise_flag(arg, t)
                horizon = _horizon(env, parking)  # a waiter may now act before t
                continue
            if code == O.AWAIT or code == O.WRITE_CAPTURE:
                yield from self._scenario_op(t, code, keyid, pa, arg, log)
                t = env.now
                horizon = _horizon(env, parking)
                continue
            t0 = t
            if code == O.COMPUTE:  # the commonest, kept inline
                self.op_counts.add("compute")
                t += arg
            else:
                t = self._instruction(t, code, keyid, pa, arg)
            if log is not None:
                log.append((t0, t, code, keyid, pa, None, None, None))
            horizon = _horizon(env, parking)
        if self.loads_in_flight:
            yield from self._wait_loads(t, 0)
            t = max(t, env.now)
        if stream is not None:
            served_l1 += stream.served_l1
            l1_reads += stream.l1_reads
        if served_dram:
            served["DRAM"] = served.get("DRAM", 0) + served_dram
        if served_remote:
            served["DRAM-remote"] = served.get("DRAM-remote", 0) + served_remote
        if served_l1:
            served[l1.level_name] = served.get(l1.level_name, 0) + served_l1
        if l1_reads:
            read_hist[l1_hit] = read_hist.get(l1_hit, 0) + l1_reads
        if t > env.now:
            yield wake.at(t) if wake is not None else env.timeout(t - env.now)
        self.finished_at = env.now

    # -- instructions other than loads and stores ----------------------------------------------
    def _instruction(self, t: int, code: int, keyid: int, pa: int, arg) -> int:
        """Execute a flush, fence, WBINVD or prefetch at local time ``t``;
        returns when the core may go on."""
        self.op_counts.add(O.NAMES[code])
        if code in (O.CLFLUSH, O.CLFLUSHOPT, O.CLWB):
            return self._flush_line(t, (keyid << self.amap.keyid_shift) | (pa & LINE_MASK), code)
        if code in (O.SFENCE, O.MFENCE):
            if self.outstanding:
                t = max(t, max(self.outstanding))
                self.outstanding.clear()
            return t
        if code == O.WBINVD:
            return self.mem.wbinvd(t, self.package, self.cpu)
        if code == O.PREFETCH:
            t += self.cycle
            tag = (keyid << self.amap.keyid_shift) | (pa & LINE_MASK)
            if tag not in self.mem.directory:
                self.mem.prefetch(t, self, tag, pa)
            return t
        # Raw DRAM access is not an instruction: see Platform.start_agent.
        raise ValueError(f"{O.NAMES[code]} is not a core operation")

    def _scenario_op(self, t: int, code: int, keyid: int, pa: int, arg, log: list | None):
        """A scenario's wait for a label (AWAIT) or store of captured bytes (WRITE_CAPTURE),
        from local time ``t``; the core goes on at ``env.now``."""
        env = self.env
        if t > env.now:
            yield env.timeout(t - env.now)
        if code == O.AWAIT:
            yield self.board.wait(arg)
            return
        data = self.board.captured(arg, pa)
        yield from self.run([(O.WRITE, keyid, pa, data, None)], log)

    # -- load misses in flight (fill_buffers > 1) ---------------------------------------------
    def _load_under_miss(self, t: int, tag: int, off: int, n: int, keyid: int, pa: int,
                         log: list | None) -> None:
        """Send a load that missed every cache on its way without blocking the core: it joins
        the fill of its line already in flight, or starts one, and completes when the line
        arrives (:meth:`_load_done`)."""
        mem = self.mem
        inflight = mem.prefetching.get(tag)
        issued = inflight is None
        if issued:
            mem.prefetch(t, self, tag, pa)
            inflight = mem.prefetching[tag]
        self.loads_in_flight += 1
        entry = None
        if log is not None:  # the log stays in program order: the load's entry is kept now
            entry = len(log)
            log.append(None)
        inflight.waiting.append(partial(self._load_done, t, tag, off, n, keyid, pa, log, entry,
                                   issued))

    def _load_done(self, t0: int, tag: int, off: int, n: int, keyid: int, pa: int,
                   log: list | None, entry: int | None, issued: bool) -> None:
        """The line of a load in flight arrived: the load reads it now, as it is now. An
        offline core installs nothing (memory-system rule 7): its load takes the coherent copy
        a cache holds, or memory as it is."""
        t = self.env.now
        line = self.mem.directory.get(tag)  # just installed, or cached by another core meanwhile
        dram = "DRAM" if self.amap.home(pa) == self.package else "DRAM-remote"
        if not self.online:
            where = dram if line is None else "remote"
            image = self.mem.memory_now(tag, pa) if line is None else line.data
        else:
            if line is None:
                # Not installed (the fill was cut by a reset): the load misses again, served
                # from memory as it is now.
                line = self._fill(t, tag, self.mem.memory_now(tag, pa))
            if not line.holders & self.l1_bit:
                line, t, where = self._lookup(t, tag, line)
            elif not issued:
                where = "fill-buffer"  # the line was already on its way for this core
            else:
                where = dram
            image = line.data
        self.served[where] = self.served.get(where, 0) + 1
        self.read_lat.record(t - t0)
        data = bytes(image[off : off + n])
        oracle = self.mem.oracle
        cls = oracle.load(t, self.cpu, tag, off, data, where) if oracle is not None else None
        if log is not None:
            log[entry] = (t0, t, O.READ, keyid, pa, data, where, cls)
        self.loads_in_flight -= 1
        freed = self._freed
        if freed is not None:
            self._freed = None
            freed.succeed()

    def _wait_loads(self, t: int, limit: int):
        """Wait, from local time ``t``, until at most ``limit`` loads are in flight."""
        env = self.env
        if t > env.now:
            yield env.timeout(t - env.now)
        while self.loads_in_flight > limit:
            self._freed = env.event()
            yield self._freed

    # -- helpers (all act at local time t, in global time order) -------------------------------
    def _lookup(self, t: int, tag: int, line: Line):
        """Serve ``tag``, which some cache holds, from this core's levels below L1 or from
        another cache. Returns ``(line, t_done, where)``."""
        holders = line.holders
        levels = self.levels
        for i in range(1, len(levels)):
            c = levels[i]
            if holders >> c.bit & 1:
                c.lookup(tag)
                place(self.mem, self.package, t, tag, line, self.fill_path[:i],
                      self.fill_masks[i])
                return line, t + c.hit, c.level_name
        mem = self.mem
        if holders & mem.package_mask[self.package]:
            where, t = "peer", t + self.miss_cost + mem.snoop
        else:
            where, t = "remote", t + self.miss_cost + mem.snoop + 2 * mem.hop
        place(self.mem, self.package, t, tag, line, self.fill_path, self.fill_masks[-1])
        return line, t, where

    def _fill(self, t: int, tag: int, data: bytes) -> Line:
        """Install data fetched from memory in every level of this core's path (joining the
        coherent copy if one appeared meanwhile)."""
        directory = self.mem.directory
        line = directory.get(tag)
        if line is None:
            line = directory[tag] = new_line(tag, data)
        place(self.mem, self.package, t, tag, line, self.fill_path, self.fill_masks[-1])
        return line

    def _invalidate_others(self, t: int, tag: int, line: Line) -> int:
        """Take ownership for a store: remove every copy outside this core's path."""
        mem = self.mem
        others = line.holders & ~self.own_mask
        remote = others & ~mem.package_mask[self.package]
        bit = 0
        while others:
            if others & 1:
                mem.caches[bit].remove(tag)
                mem.caches[bit].invalidations += 1
            others >>= 1
            bit += 1
        line.holders &= self.own_mask
        return t + mem.snoop + (2 * mem.hop if remote else 0)

    def _flush_line(self, t: int, tag: int, code: int) -> int:
        mem = self.mem
        ordered = code == O.CLFLUSH
        t += self.clflush_cost if ordered else self.clflushopt_cost
        line = mem.directory.get(tag)
        if line is None:
            return t
        done = t
        name = O.NAMES[code]
        if line.dirty:
            done = mem.writeback(t, self.package, tag, bytes(line.data), f"{name} by",
                                 f"cpu{self.cpu}", self.cpu)
            line.dirty = False
            line.owner = -1
        if code != O.CLWB:
            mem.invalidate_everywhere(tag, line)
        if ordered:
            return done
        self.outstanding.append(done)
        return t

    def reset_stats(self) -> None:
        """Forget the counts so far, in place (a running ``run`` holds them)."""
        self.served.clear()
        self.read_lat.hist.clear()
        self.write_lat.hist.clear()
        self.op_counts.clear()

    def stats(self) -> dict:
        return {
            "served_by": dict(sorted(self.served.items())),
            "read_latency": self.read_lat.to_dict(),
            "write_latency": self.write_lat.to_dict(),
            "ops": self.op_counts.to_dict(),
            "finished_at_ns": self.finished_at / 1000,
        }
