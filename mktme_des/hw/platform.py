"""The platform: every component of a model, wired together on one SimPy clock.

Data flows one way: a :class:`~mktme_des.config.model.Model` becomes packages (caches, a memory
controller with its key table, AES engine and DRAM), the memory system joining them
(:mod:`~mktme_des.hw.memsys`) and cores with their routes; cores execute op streams, components
report to the recorder (:mod:`~mktme_des.engine.recorder`), what happens is counted in
statistics and checked by the oracle. The platform builds all this and is its facade: keys,
reset, the raw DRAM view, agents outside the CPUs (:mod:`~mktme_des.hw.agent`), statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import simpy

from mktme_des.config.model import Model
from mktme_des.engine import wakeup
from mktme_des.engine.recorder import Event, Recorder
from mktme_des.engine.rng import Streams
from mktme_des.engine.ties import environment
from mktme_des.engine.time import ns, to_ns
from mktme_des.hw.address import LINE_MASK, AddressMap
from mktme_des.hw.aes import AesEngine
from mktme_des.hw.agent import dram_agent
from mktme_des.hw.board import Board
from mktme_des.hw.cache import Cache
from mktme_des.hw.core import Core
from mktme_des.hw.dram import DramStore, DramTiming
from mktme_des.hw.keytable import KEY, NO_ENCRYPT, TME, KeyTable
from mktme_des.hw.memctrl import MemoryController
from mktme_des.hw.memsys import MemorySystem
from mktme_des.hw.pconfig import KeyTableLock


class Package:
    """One CPU package: its cores, shared caches and memory controller. A package without
    memory (``has_memory`` false) keeps its controller and key table, which PCONFIG programs
    like any other, but no address is homed there (``config/model.py``, MemorySpec)."""

    def __init__(self, index: int, mc: MemoryController, shared: list[Cache],
                 caches: list[Cache]) -> None:
        self.index = index
        self.mc = mc
        self.shared = shared
        self.caches = caches  # every cache in the package, private ones included
        self.cores: list[Core] = []  # added as they are built
        self.key_lock = KeyTableLock()
        self.online = True
        self.has_memory = True  # set by the platform from the model


class Platform:
    """A simulated machine built from ``model``, seeded with ``seed``: the builder of its
    components and their facade (keys, reset, the raw DRAM view, statistics).

    ``oracle`` (optional) is told of every load, store and DRAM write; ``lazy_dram=False``
    makes DRAM encrypt eagerly (slow, for tests that prove laziness changes nothing);
    ``tie_seed`` other than 0 shuffles the order of same-time events with that seed, and
    ``tie_choices`` dictates it (:mod:`mktme_des.engine.ties`); ``env``, when given, is the
    environment to build on (one that orders ties its own way, as an explorer's).
    """

    def __init__(self, model: Model, seed: int = 0, oracle=None, lazy_dram: bool = True,
                 tie_seed: int = 0, tie_choices: list[int] | None = None,
                 env=None) -> None:
        self.model = model
        self.seed = seed
        self.env = environment(tie_seed, tie_choices) if env is None else env
        self.streams = Streams(seed)
        self.amap = AddressMap(model)
        self.cycle = max(1, ns(1.0 / model.platform.frequency_ghz))
        self._boot = [self._new_boot_tweak(0)]
        self.board = Board(self.env)
        self.board.boot_tweak = lambda: self._boot[0]
        self.captures = self.board.captures  # bytes agents captured, by label
        self.caches: list[Cache] = []
        self.packages: list[Package] = []
        self.cores: list[Core] = []
        self.rng_draws = 0
        self.recorder = Recorder()  # what components report (engine/recorder.py)
        self.measured_from = 0  # statistics count from this time (see reset_stats)
        self._lazy = lazy_dram
        self._build()
        self.oracle = oracle
        if oracle is not None:
            oracle.attach(self)

    # -- construction --------------------------------------------------------------------------
    def _new_boot_tweak(self, boot: int) -> int:
        if self.model.mktme.boot_tweak == "stable":
            return 0
        return int.from_bytes(self.streams.randbytes(f"boot-tweak/{boot}", 16), "little")

    def _cache(self, spec, name, package, core, level) -> Cache:
        bit = len(self.caches)
        hit = spec.hit_latency_cycles * self.cycle
        c = Cache(spec, name, bit, hit, package, core, level, self.streams.get(f"cache/{name}"))
        self.caches.append(c)
        return c

    def _build(self) -> None:
        """Caches and memory controllers first, then the memory system joining them, then
        the cores with their routes to every controller."""
        m = self.model
        cpp = m.topology.cores_per_package
        private: dict[int, list[Cache]] = {}
        for p in range(m.topology.packages):
            shared = [
                self._cache(spec, f"{spec.name}/pkg{p}", p, None, i)
                for i, spec in enumerate(m.cache) if spec.scope == "package"
            ]
            for cpu in range(p * cpp, (p + 1) * cpp):
                private[cpu] = [
                    self._cache(spec, f"{spec.name}/cpu{cpu}", p, cpu, lvl)
                    for lvl, spec in enumerate(m.cache) if spec.scope == "core"
                ]
            keys = KeyTable(p, self.amap.max_keyid, self.streams.randbytes(f"tme-key/pkg{p}/boot0", 32),
                            m.mktme.tme_bypass)
            mc = MemoryController(
                p, self.amap, keys,
                AesEngine(m.mktme.aes_latency_ns, m.mktme.aes_pipelined, m.aes_lines_per_ns),
                DramTiming(m.dram), DramStore(lazy=self._lazy), self._boot,
            )
            self.packages.append(Package(p, mc, shared,
                                         [c for c in self.caches if c.package == p]))
            self.packages[-1].has_memory = self.amap.has_memory(p)
        ic = m.interconnect
        mesh, hop = ns(ic.mesh_latency_ns), ns(ic.socket_hop_ns)
        self.mem = MemorySystem(self.env, self.amap, [p.mc for p in self.packages], self.caches,
                                mesh, hop, ns(ic.snoop_latency_ns), ns(m.flush.wbinvd_line_ns),
                                self.recorder)
        for pkg in self.packages:
            p = pkg.index
            # routes[slot]: the controller of the slot-th package with memory (AddressMap).
            routes = [(q.mc, mesh + (hop if q.index != p else 0))
                      for q in (self.packages[h] for h in self.amap.homes)]
            for cpu in range(p * cpp, (p + 1) * cpp):
                core = Core(self.mem, cpu, p, private[cpu], pkg.shared, routes, self.board,
                            cycle=self.cycle,
                            clflush_cost=m.flush.clflush_cycles * self.cycle,
                            clflushopt_cost=m.flush.clflushopt_cycles * self.cycle,
                            fill_buffers=m.core.fill_buffers)
                pkg.cores.append(core)
                self.cores.append(core)

    # -- what the memory system and the board hold, for components and tools -------------------
    @property
    def oracle(self):
        return self.mem.oracle

    @oracle.setter
    def oracle(self, oracle) -> None:
        self.mem.oracle = oracle

    @property
    def events(self) -> list[Event] | None:
        """The recorder's ``events`` channel, when kept (``recorder.keep("events")``)."""
        return self.recorder.kept("events")

    @property
    def pconfig_log(self) -> list[tuple]:
        """The recorder's ``pconfig`` channel: ``(time, cpu, package, keyid, command, what)``."""
        return self.recorder["pconfig"]

    @property
    def directory(self) -> dict:
        return self.mem.directory

    @property
    def writebacks(self) -> int:
        return self.mem.writebacks

    @property
    def package_mask(self) -> list[int]:
        return self.mem.package_mask

    @property
    def boots(self) -> int:
        """Resets so far (the memory system counts them: its fills know their boot)."""
        return self.mem.boots

    @property
    def boot_tweak(self) -> int:
        return self._boot[0]

    def mc_for(self, pa: int) -> MemoryController:
        return self.packages[self.amap.home(pa)].mc

    def later(self, when: int, fn, *args) -> None:
        """Call ``fn(*args)`` at absolute time ``when`` (an event with a callback)."""
        self.mem.later(when, fn, *args)

    def evict(self, t: int, tag: int, why: str = "capacity eviction") -> int | None:
        """Hardware drops ``tag`` from every cache at ``t`` (:meth:`MemorySystem.evict`)."""
        return self.mem.evict(t, tag, why)

    def wbinvd(self, t: int, package: int, cpu: int) -> int:
        """WBINVD by ``cpu`` on ``package`` at ``t``; returns when it completes
        (:meth:`MemorySystem.wbinvd`)."""
        return self.mem.wbinvd(t, package, cpu)

    def offline_caches(self, t: int, package: int) -> int:
        """``package`` goes offline at ``t``: its caches are written back and emptied
        (memory-system rule 7); returns when that is done."""
        return self.mem.offline(t, package)

    def flag(self, label: str) -> simpy.Event:
        return self.board.flag(label)

    def raise_flag(self, label: str, t: int) -> None:
        self.board.raise_flag(label, t)

    def captured(self, arg: tuple, pa: int) -> bytes:
        return self.board.captured(arg, pa)

    def start_agent(self, name: str, ops: Iterable[tuple], log: list | None = None):
        """Start an agent outside the CPUs (:func:`mktme_des.hw.agent.dram_agent`)."""
        return self.env.process(dram_agent(self, name, ops, log))

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
        self.recorder.emit("events", Event(self.env.now, "keys", f"program K{keyid}", None,
                                           f"{mode} on packages {targets} ({command})"))

    def reboot(self, persistent: bool = False, flush: bool = True) -> None:
        """Reset the platform: a clean cut (memory-system rule 6). With ``flush`` (an orderly
        reset) the writebacks in flight and then every dirty cached line reach DRAM first,
        under the pre-reset keys and tweak; without it they are lost. Then the caches are
        empty, the key tables back to TME with new TME keys and free key-table locks (a
        PCONFIG in progress never lands), the boot tweak new unless the model's is stable,
        and DRAM wiped unless ``persistent`` (persistent memory keeps its ciphertext)."""
        now = self.env.now
        self.mem.reset(now, flush)  # counts the boot
        self._boot[0] = self._new_boot_tweak(self.boots)
        for pkg in self.packages:
            pkg.mc.keys.tme_key = self.streams.randbytes(f"tme-key/pkg{pkg.index}/boot{self.boots}", 32)
            pkg.mc.keys.reset(now, f"reboot {self.boots}")
            pkg.key_lock = KeyTableLock()
            if not persistent:
                pkg.mc.store.wipe()
        if self.oracle is not None:
            self.oracle.reboot(persistent)
        self.recorder.emit("events", Event(now, "platform", "reboot", None,
                                           f"boot {self.boots}; DRAM "
                                           f"{'kept' if persistent else 'wiped'}"))

    def random_key(self, name: str, size: int = 32) -> bytes:
        return self.streams.randbytes(name, size)

    def cause_text(self, cause) -> str:
        """Human text of a DRAM record's cause (:meth:`MemorySystem.cause_text`)."""
        return self.mem.cause_text(cause)

    def key_of(self, keyid: int, pa: int) -> bytes | None:
        """The key the home controller of ``pa`` uses for ``keyid`` now (None: plaintext)."""
        return self.mc_for(pa).keys.key(keyid)

    # -- running -------------------------------------------------------------------------------
    def start(self, cpu: int, ops: Iterable[tuple], refuse_offline: bool = False):
        """Start ``cpu`` executing ``ops``; returns its SimPy process. ``refuse_offline``: see
        :meth:`~mktme_des.hw.core.Core.run`."""
        return wakeup.start(self.env, self.cores[cpu].run(iter(ops), None, refuse_offline))

    def run(self, until: int | None = None) -> None:
        if until is None:
            wakeup.run(self.env)
        else:
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
        self.mem.writebacks = 0
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
        if self.recorder.counts:
            out["counts"] = dict(sorted(self.recorder.counts.items()))  # e.g. pconfig_busy
        if self.mem.superseded:
            out["writebacks_superseded"] = self.mem.superseded
        if self.measured_from:
            out["measured_from_ns"] = to_ns(self.measured_from)
        if self.oracle is not None:
            out["oracle"] = self.oracle.summary()
        return out
