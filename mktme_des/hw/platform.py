"""The platform: every component of a model, wired together on one SimPy clock.

Data flows one way: a :class:`~mktme_des.config.model.Model` becomes packages (cores, caches,
a memory controller with its key table, AES engine and DRAM), cores execute op streams, and
what happens is counted in statistics and checked by the oracle.
"""

from __future__ import annotations

from collections.abc import Iterable

import simpy

from mktme_des.config.model import Model
from mktme_des.engine.rng import Streams
from mktme_des.engine.ties import environment
from mktme_des.engine.time import ns, to_ns
from mktme_des.hw import ops as O
from mktme_des.hw.address import LINE_MASK, AddressMap
from mktme_des.hw.aes import AesEngine
from mktme_des.hw.cache import Cache
from mktme_des.hw.core import Core, Line
from mktme_des.hw.dram import DramStore, DramTiming
from mktme_des.hw.keytable import KEY, NO_ENCRYPT, TME, KeyTable
from mktme_des.hw.memctrl import MemoryController
from mktme_des.hw.pconfig import KeyTableLock


def _origin(cause) -> tuple[str, int] | None:
    """The CPU whose flush or eviction sent a writeback, and when: ``("cpu3", t)``."""
    if isinstance(cause, str):
        return None
    _kind, _tag, t, _why, where = cause
    cpu = where.rpartition("/")[2]  # "cpu3" (a flush) or "L2/cpu3" (a private cache's victim)
    return (cpu, t) if cpu.startswith("cpu") else None


class Package:
    """One CPU package: its cores, shared caches and memory controller."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.cores: list[Core] = []
        self.shared: list[Cache] = []
        self.caches: list[Cache] = []  # every cache in the package, private ones included
        self.mc: MemoryController | None = None
        self.key_lock = KeyTableLock()
        self.online = True


class Platform:
    """A simulated machine built from ``model``, seeded with ``seed``.

    ``oracle`` (optional) is told of every load, store and DRAM write; ``lazy_dram=False``
    makes DRAM encrypt eagerly (slow, for tests that prove laziness changes nothing);
    ``tie_seed`` other than 0 shuffles the order of same-time events with that seed, and
    ``tie_choices`` dictates it (:mod:`mktme_des.engine.ties`).
    """

    def __init__(self, model: Model, seed: int = 0, oracle=None, lazy_dram: bool = True,
                 tie_seed: int = 0, tie_choices: list[int] | None = None) -> None:
        self.model = model
        self.seed = seed
        self.env = environment(tie_seed, tie_choices)
        self.streams = Streams(seed)
        self.amap = AddressMap(model)
        self.oracle = oracle
        self.cycle = max(1, ns(1.0 / model.platform.frequency_ghz))
        ic = model.interconnect
        self.mesh, self.hop, self.snoop = ns(ic.mesh_latency_ns), ns(ic.socket_hop_ns), ns(ic.snoop_latency_ns)
        self.clflush_cost = model.flush.clflush_cycles * self.cycle
        self.clflushopt_cost = model.flush.clflushopt_cycles * self.cycle
        self.wbinvd_line = ns(model.flush.wbinvd_line_ns)
        self.boots = 0
        self._boot = [self._new_boot_tweak()]
        self.directory: dict[int, Line] = {}
        self.caches: list[Cache] = []
        self.packages: list[Package] = []
        self.cores: list[Core] = []
        self.package_mask: list[int] = []
        self.writebacks = 0
        self.pending: dict[int, list] = {}  # line PA -> writebacks on their way there
        self.prefetching: dict[int, tuple] = {}  # tag -> (fill event, core): prefetches in flight
        self.rng_draws = 0
        self.pconfig_log: list[tuple] = []  # (time, cpu, package, keyid, command, what)
        self.counts: dict[str, int] = {}
        self.measured_from = 0  # statistics count from this time (see reset_stats)
        # Platform event log, kept when asked: (time, actor, what, tag, detail[, origin]),
        # origin being (actor, time) of what caused it (a writeback: the flush or eviction).
        self.events: list[tuple] | None = None
        self.captures: dict[str, bytes] = {}  # bytes agents captured, by label
        self.flags: dict[str, simpy.Event] = {}  # happens-before labels (see flag)
        self._lazy = lazy_dram
        self._build()
        if oracle is not None:
            oracle.attach(self)

    # -- construction --------------------------------------------------------------------------
    def _new_boot_tweak(self) -> int:
        if self.model.mktme.boot_tweak == "stable":
            return 0
        return int.from_bytes(self.streams.randbytes(f"boot-tweak/{self.boots}", 16), "little")

    def _cache(self, spec, name, package, core, level) -> Cache:
        bit = len(self.caches)
        hit = spec.hit_latency_cycles * self.cycle
        c = Cache(spec, name, bit, hit, package, core, level, self.streams.get(f"cache/{name}"))
        self.caches.append(c)
        return c

    def _build(self) -> None:
        m = self.model
        cpp = m.topology.cores_per_package
        for p in range(m.topology.packages):
            pkg = Package(p)
            pkg.shared = [
                self._cache(spec, f"{spec.name}/pkg{p}", p, None, i)
                for i, spec in enumerate(m.cache) if spec.scope == "package"
            ]
            for i in range(cpp):
                cpu = p * cpp + i
                private = [
                    self._cache(spec, f"{spec.name}/cpu{cpu}", p, cpu, lvl)
                    for lvl, spec in enumerate(m.cache) if spec.scope == "core"
                ]
                core = Core(self, cpu, p, private, pkg.shared)
                pkg.cores.append(core)
                self.cores.append(core)
            pkg.caches = [c for c in self.caches if c.package == p]
            keys = KeyTable(p, self.amap.max_keyid, self.streams.randbytes(f"tme-key/pkg{p}/boot0", 32),
                            m.mktme.tme_bypass)
            pkg.mc = MemoryController(
                p, self.amap, keys,
                AesEngine(m.mktme.aes_latency_ns, m.mktme.aes_pipelined, m.mktme.aes_lines_per_ns),
                DramTiming(m.dram), DramStore(lazy=self._lazy), self._boot,
            )
            self.packages.append(pkg)
        for pkg in self.packages:
            mask = 0
            for c in pkg.caches:
                mask |= 1 << c.bit
            self.package_mask.append(mask)

    # -- memory system services used by cores -----------------------------------------------
    @property
    def boot_tweak(self) -> int:
        return self._boot[0]

    def mc_for(self, pa: int) -> MemoryController:
        return self.packages[self.amap.home(pa)].mc

    def route(self, package: int, pa: int) -> tuple[MemoryController, int, int]:
        """Home controller of ``pa`` and the one-way latencies there and back from ``package``."""
        home = self.amap.home(pa)
        lat = self.mesh + (self.hop if home != package else 0)
        return self.packages[home].mc, lat, lat

    def later(self, when: int, fn, *args) -> None:
        """Call ``fn(*args)`` at absolute time ``when`` (an event with a callback)."""
        ev = self.env.timeout(when - self.env.now)
        ev.callbacks.append(lambda _ev: fn(*args))

    def writeback(self, t: int, package: int, tag: int, data: bytes, why: str, where: str = "") -> int:
        """Send a dirty line from ``package`` at ``t`` to its home; returns its arrival time.

        The line is encrypted with the key the home package holds when it *arrives*.
        """
        pa = tag & self.amap.pa_mask
        mc, there, _ = self.route(package, pa)
        arrival = t + there
        self.writebacks += 1
        cause = ("writeback", tag, t, why, where)  # formatted only if someone reports it
        if arrival < self.env.peek():
            # Nothing else happens before it arrives: deliver it now (exact lookahead).
            self._arrive(mc, tag, data, cause, arrival)
        else:
            entry = [mc, tag, data, cause, arrival, False]
            self.pending.setdefault(pa, []).append(entry)
            self.later(arrival, self._arrive_pending, pa, entry)
        return arrival

    def _arrive_pending(self, pa: int, entry: list) -> None:
        if entry[5]:
            return  # a read already pulled it in
        entry[5] = True
        waiting = self.pending[pa]
        waiting.remove(entry)
        if not waiting:
            del self.pending[pa]
        self._arrive(entry[0], entry[1], entry[2], entry[3], entry[4])

    def settle_fill(self, tag: int, pa: int, asked: int, data: bytes) -> bytes:
        """The bytes a fill of ``tag`` installs, read from memory at ``asked``.

        Coherence orders a fill after the stores that other cores made to the same tag while
        the request was on its way: when the tag's newer data left the caches meanwhile
        (a writeback still in flight, or one that reached DRAM after ``asked``), the fill
        takes that data, as a directory or a snoop of the writeback buffer would give it.

        A writeback whose data a fill takes is ordered, at the home controller, before the
        fill (with the writebacks to the line sent before it): it reaches DRAM now. Otherwise
        it could land after a newer copy of the line, written back later from nearer to the
        home, and put the old bytes back.
        """
        waiting = self.pending.get(pa, [])
        for i in range(len(waiting) - 1, -1, -1):
            entry = waiting[i]
            if entry[1] == tag:
                self._deliver(waiting[: i + 1], self.env.now)
                del waiting[: i + 1]
                if not waiting:
                    del self.pending[pa]
                return entry[2]
        mc = self.mc_for(pa)
        rec = mc.store.lines.get(pa)
        if rec is not None and rec.writer == tag and rec.time > asked:
            return mc.store.read(pa, mc.keys.key(tag >> self.amap.keyid_shift), self.boot_tweak)
        return data

    def deliver_pending(self, pa: int, now: int) -> None:
        """A read reaching ``pa``'s controller at ``now`` is ordered after the writebacks to
        ``pa`` already on their way (the dirty data is in the memory system, in no cache):
        they are applied first, with the key in force now."""
        self._deliver(self.pending.pop(pa, ()), now)

    def _deliver(self, entries, now: int) -> None:
        """Apply writebacks taken out of ``pending`` (which holds only those not yet applied)
        at ``now``, marking them so their scheduled arrival does nothing."""
        for entry in entries:
            entry[5] = True
            self._arrive(entry[0], entry[1], entry[2], entry[3], now)

    def _arrive(self, mc: MemoryController, tag: int, data: bytes, cause: tuple, when: int) -> None:
        rec = mc.store.lines.get(tag & self.amap.pa_mask)
        if (rec is not None and rec.writer == tag and not isinstance(rec.cause, str)
                and rec.cause[2] > cause[2]):
            # A copy of this tag that left the caches later is in DRAM already (it came from
            # nearer the home). Coherence orders the two at the home: the older is not written.
            if self.events is not None:
                self.events.append((when, f"mc{mc.package}", "writeback superseded", tag,
                                    f"{self.cause_text(cause)}; a newer copy is in DRAM",
                                    _origin(cause)))
            return
        mc.write(when, tag, data, cause)
        if self.events is not None:
            keyid = tag >> self.amap.keyid_shift
            entry = mc.keys.entry(keyid)
            self.events.append((when, f"mc{mc.package}", "writeback arrives", tag,
                                f"{self.cause_text(cause)}; encrypted with K{keyid} "
                                f"{entry.mode} v{entry.version}", _origin(cause)))

    def invalidate_everywhere(self, tag: int, line: Line) -> None:
        holders, bit = line.holders, 0
        while holders:
            if holders & 1:
                self.caches[bit].remove(tag)
            holders >>= 1
            bit += 1
        line.holders = 0
        del self.directory[tag]

    def evict(self, t: int, tag: int, why: str = "capacity eviction") -> int | None:
        """Hardware drops ``tag`` from every cache at ``t`` (as replacement would), writing
        it back when dirty; returns the writeback's arrival time, or None."""
        line = self.directory.get(tag)
        if line is None:
            return None
        package = next(c.package for c in self.caches if (line.holders >> c.bit) & 1)
        self.invalidate_everywhere(tag, line)
        if line.dirty:
            return self.writeback(t, package, tag, bytes(line.data), why, "")
        return None

    def wbinvd(self, t: int, package: int, cpu: int) -> int:
        """WBINVD on ``package``: write back every dirty line its caches hold, drop them all.

        It walks every way of every set of the package's caches (``wbinvd_line_ns`` each,
        whether the way holds a line or not), so its cost grows with the cache size, not with
        what is dirty; dirty lines are sent to memory as the walk reaches them, and the
        instruction completes when the walk is over and the last writeback has arrived.
        """
        pkg = self.packages[package]
        tags: set[int] = set()
        for c in pkg.caches:
            for tag in c.clear():
                tags.add(tag)
                self.directory[tag].holders &= ~(1 << c.bit)
        capacity = sum(c.nsets * c.ways for c in pkg.caches)
        step = self.wbinvd_line * capacity // max(1, len(tags)) if tags else 0
        done = t + capacity * self.wbinvd_line
        for i, tag in enumerate(sorted(tags)):
            line = self.directory[tag]
            if line.dirty:
                arrival = self.writeback(t + i * step, package, tag, bytes(line.data),
                                         "wbinvd by", f"cpu{cpu}")
                line.dirty = False
                done = max(done, arrival)
            if line.holders == 0:
                del self.directory[tag]
        return done

    def prefetch(self, t: int, core: Core, tag: int, pa: int) -> None:
        """A speculative fill of ``tag`` into ``core``'s caches; the line arrives clean. A load
        of ``tag`` by the same core while it is on its way waits for it (a merged miss), and
        a second prefetch of it is dropped.

        The fill is also how a core keeps load misses in flight (``[core] fill_buffers``): the
        loads waiting on it are the calls in the entry's list, made the moment the line is
        installed (or found fetched by another core meanwhile), before anything else runs."""
        if tag in self.prefetching:
            return
        mc, there, back = self.route(core.package, pa)
        arrived = self.env.event()
        waiting: list = []
        self.prefetching[tag] = (arrived, core, waiting)

        def at_controller() -> None:
            if self.pending:
                self.deliver_pending(pa & LINE_MASK, self.env.now)
            data, done = mc.read(self.env.now, tag)
            self.later(done + back, fill, data, self.env.now)

        def fill(data: bytes, asked: int) -> None:
            if tag not in self.directory:
                core._fill(self.env.now, tag, self.settle_fill(tag, pa & LINE_MASK, asked, data))
            del self.prefetching[tag]
            for load in waiting:
                load()
            arrived.succeed()

        self.later(t + core.levels[-1].hit + there, at_controller)

    def agent(self, name: str, ops: Iterable[tuple], log: list | None = None):
        """SimPy process of an agent outside the CPUs (a bus probe, a DMA engine, an attacker
        with a DRAM interposer, the firmware): raw reads, writes and copies of DRAM, direct
        key-table setup and reboots, each at its ``at`` time, bypassing caches. Each waits for
        its time with a real event, so everything the cores do is ordered against it exactly.

        ``log`` receives one entry per op: ``(start, end, code, keyid, pa, data, None, class)``.
        """
        env = self.env
        captures = self.captures
        for code, keyid, pa, arg, at in ops:
            if code == O.AWAIT:
                yield self.flag(arg)
                continue
            if code == O.SIGNAL:
                self.raise_flag(arg, env.now)
                continue
            if at is not None and at > env.now:
                yield env.timeout(at - env.now)
            t = env.now
            data = cls = None
            if code == O.RAW_READ:
                size, label = arg if isinstance(arg, tuple) else (arg, "")
                data = self.dram_read(pa, size)
                if self.oracle is not None:
                    cls = self.oracle.raw_class(pa, data)
                if label:
                    captures[label] = data
            elif code == O.RAW_WRITE:
                data = captures[arg[1]] if isinstance(arg, tuple) else arg
                self.dram_write(pa, data, t, f"raw DRAM write by {name} at t={to_ns(t):g} ns")
            elif code == O.RAW_COPY:
                dst, size = arg
                data = self.dram_read(pa, size)
                self.dram_write(dst, data, t,
                                f"raw DRAM copy by {name} from {pa:#x} at t={to_ns(t):g} ns")
            elif code == O.COMPUTE:
                yield env.timeout(arg)
            elif code == "set_key":
                mode, key, packages = arg
                self.program(keyid, mode, key, packages or None, command=f"set_key by {name}")
            elif code == "reboot":
                self.reboot(*arg)
            else:
                raise ValueError(f"{code} is not a DRAM agent operation")
            if log is not None:
                log.append((t, env.now, code, keyid, pa, data, None, cls))

    def captured(self, arg: tuple, pa: int) -> bytes:
        """The bytes a WRITE_CAPTURE op stores: a capture, or its XTS preimage under a key."""
        from mktme_des.crypto import line_tweak, xts_decrypt

        label, key = arg
        if label not in self.captures:
            raise ValueError(f"nothing was captured as {label!r} before it was used")
        data = self.captures[label]
        if key is not None:
            data = xts_decrypt(key, line_tweak(pa & LINE_MASK, self.boot_tweak), data)
        return data

    def flag(self, label: str) -> simpy.Event:
        """The event of the op labelled ``label`` completing: an actor waits on it to run
        after that op (a scenario's ``after``), whatever the timing."""
        ev = self.flags.get(label)
        if ev is None:
            ev = self.flags[label] = self.env.event()
        return ev

    def raise_flag(self, label: str, t: int) -> None:
        """The op labelled ``label`` completed at ``t`` (the actor's local time)."""
        ev = self.flag(label)
        if t > self.env.now:
            self.later(t, ev.succeed)
        else:
            ev.succeed()

    def start_agent(self, name: str, ops: Iterable[tuple], log: list | None = None):
        return self.env.process(self.agent(name, ops, log))

    # -- the raw DRAM view -----------------------------------------------------------------------
    def dram_read(self, pa: int, size: int) -> bytes:
        """The bytes in DRAM at ``pa`` (ciphertext for encrypted lines), any alignment."""
        out = bytearray()
        end = pa + size
        line = pa & LINE_MASK
        while line < end:
            raw = self.mc_for(line).store.read_raw(line)
            out += raw[max(pa - line, 0) : min(end - line, 64)]
            line += 64
        return bytes(out)

    def dram_write(self, pa: int, data: bytes, t: int | None = None, cause: str = "raw DRAM write") -> None:
        """Overwrite DRAM bytes at ``pa`` directly (partial lines keep their other bytes)."""
        t = self.env.now if t is None else t
        end = pa + len(data)
        line = pa & LINE_MASK
        while line < end:
            store = self.mc_for(line).store
            raw = bytearray(store.read_raw(line))
            lo, hi = max(pa - line, 0), min(end - line, 64)
            raw[lo:hi] = data[line + lo - pa : line + hi - pa]
            store.write_raw(line, bytes(raw), t, cause)
            if self.oracle is not None:
                self.oracle.raw_write(t, line)
            line += 64

    # -- key tables (hardware state; the kernel programs them through PCONFIG) ----------------
    def set_key(self, keyid: int, mode: str, key: bytes | None = None,
                packages: Iterable[int] | None = None, command: str = "setup") -> None:
        """Install a key directly in key tables (scenario setup, before any software runs)."""
        if mode not in (TME, KEY, NO_ENCRYPT):
            raise ValueError(f"unknown key mode {mode!r}")
        for p in self.packages if packages is None else [self.packages[i] for i in packages]:
            p.mc.keys.set(keyid, mode, key, command, self.env.now)

    def program(self, keyid: int, mode: str, key: bytes | None = None,
                packages: Iterable[int] | None = None, command: str = "setup") -> None:
        """Program ``keyid`` on ``packages`` (all by default). ``mode`` is ``key`` (the given
        key, or one drawn from the seed, the same on every package), ``random`` (a fresh
        hardware-generated key per package and per call, like KEYID_SET_KEY_RANDOM),
        ``no-encrypt`` or ``tme``."""
        targets = list(range(len(self.packages))) if packages is None else list(packages)
        if mode == "key" and key is None:
            key = self.random_key(f"scenario/key{keyid}")
        for p in targets:
            k = key
            if mode == "random":
                k = self.streams.randbytes(f"hw-rng/pkg{p}/{self.rng_draws}", 32)
                self.rng_draws += 1
            self.set_key(keyid, KEY if mode in ("key", "random") else mode, k, [p], command)
        if self.events is not None:
            self.events.append((self.env.now, "keys", f"program K{keyid}", None,
                                f"{mode} on packages {targets} ({command})"))

    def reboot(self, persistent: bool = False, flush: bool = True) -> None:
        """Reset the platform: caches written back (``flush``) or lost, key tables back to
        TME with new TME keys, a new boot tweak unless the model's is stable, and DRAM
        wiped unless ``persistent`` (persistent memory keeps its ciphertext)."""
        now = self.env.now
        for tag, line in sorted(self.directory.items()):
            if flush and line.dirty:
                self.mc_for(tag & self.amap.pa_mask).write(now, tag, bytes(line.data),
                                                           ("writeback", tag, now, "shutdown", "flush"))
        for c in self.caches:
            c.clear()
        self.directory.clear()
        self.boots += 1
        self._boot[0] = self._new_boot_tweak()
        for pkg in self.packages:
            pkg.mc.keys.tme_key = self.streams.randbytes(f"tme-key/pkg{pkg.index}/boot{self.boots}", 32)
            pkg.mc.keys.reset(now, f"reboot {self.boots}")
            if not persistent:
                pkg.mc.store.wipe()
        if self.oracle is not None:
            self.oracle.reboot(persistent)
        if self.events is not None:
            self.events.append((now, "platform", "reboot", None,
                                f"boot {self.boots}; DRAM {'kept' if persistent else 'wiped'}"))

    def random_key(self, name: str, size: int = 32) -> bytes:
        return self.streams.randbytes(name, size)

    def cause_text(self, cause) -> str:
        """Human text of a DRAM record's cause (kept as a tuple on the hot path)."""
        if isinstance(cause, str):
            return cause
        _kind, tag, t, why, where = cause
        return f"writeback of {self.amap.describe(tag)} ({why} {where}) at t={to_ns(t):g} ns"

    def key_of(self, keyid: int, pa: int) -> bytes | None:
        """The key the home controller of ``pa`` uses for ``keyid`` now (None: plaintext)."""
        return self.mc_for(pa).keys.key(keyid)

    # -- running -------------------------------------------------------------------------------
    def start(self, cpu: int, ops: Iterable[tuple]):
        """Start ``cpu`` executing ``ops``; returns its SimPy process."""
        return self.env.process(self.cores[cpu].run(iter(ops)))

    def run(self, until: int | None = None) -> None:
        self.env.run(until=until)

    @property
    def now_ns(self) -> float:
        return to_ns(self.env.now)

    def reset_stats(self) -> None:
        """Restart every statistic now (the end of a warm-up): counts, latencies, queueing
        and busy times count from here, and rates are over the time since. What the caches,
        DRAM and key tables hold is untouched; so is the oracle, which checks every read of
        the whole run and never forgets a violation."""
        self.measured_from = self.env.now
        self.writebacks = 0
        for core in self.cores:
            core.reset_stats()
        for cache in self.caches:
            cache.reset_counts()
        for pkg in self.packages:
            pkg.mc.reset_stats()

    def stats(self) -> dict:
        """Structured, JSON-serialisable statistics of every component (from the last
        :meth:`reset_stats`, if any)."""
        elapsed = self.env.now - self.measured_from
        cores = {f"cpu{c.cpu}": c.stats() for c in self.cores if c.op_counts or c.served}
        levels = {}
        names = [c.name for c in self.model.cache]
        totals = {}
        for c in self.cores:
            for k, v in c.served.items():
                totals[k] = totals.get(k, 0) + v
        accesses = sum(totals.values())
        remaining = accesses
        for name in names:
            hits = totals.get(name, 0)
            levels[name] = {"accesses": remaining, "hits": hits, "misses": remaining - hits,
                            "hit_rate": hits / remaining if remaining else 0.0}
            remaining -= hits
        caches = {c.name: c.counts() for c in self.caches if any(c.counts().values())}
        out = {
            "time_ns": to_ns(elapsed),
            "accesses": accesses,
            "served_by": dict(sorted(totals.items())),
            "levels": levels,
            "caches": caches,
            "writebacks": self.writebacks,
            "cores": cores,
            "memory_controllers": {f"pkg{p.index}": p.mc.stats(elapsed) for p in self.packages},
        }
        if self.measured_from:
            out["measured_from_ns"] = to_ns(self.measured_from)
        if self.oracle is not None:
            out["oracle"] = self.oracle.summary()
        return out
