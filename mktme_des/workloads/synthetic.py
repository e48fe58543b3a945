"""Workloads: what each core executes in a ``simulate`` run or an experiment.

A workload is a ``[workload]`` table (:class:`WorkloadSpec`): synthetic per-core streams
(sequential, strided, uniform random or Zipf-distributed over a working set, with a read/write
mix) or a valgrind lackey trace replayed on each core. Its pages are split between MKTME
KeyIDs, KeyID 0 (TME) and a no-encrypt KeyID by the given fractions, page by page, from a
seeded stream; each page's KeyID is computed when it is first needed
(:mod:`mktme_des.workloads.layout`), so a working set costs no time or memory per page.

Before the run, :func:`prepare` programs the keys and marks every page of the working set as
zeroed through its KeyID, as the kernel does when it allocates an encrypted page, so reads of
never-written data return zeros rather than the decryption of uninitialised DRAM. The cost of
that zeroing is not part of the run (it is the kernel's, and experiments on it model it
explicitly).
"""

from __future__ import annotations

import itertools
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cython
import numpy as np

from mktme_des.config.schema import Context, Section, param
from mktme_des.engine.time import ns
from mktme_des.hw import ops as O
from mktme_des.workloads.layout import KeyIdLayout

PAGE = 4096
CHUNK = 16384
SYNTHETIC_ACCESSES = 100_000  # a synthetic stream's accesses per core when none are given
DEFAULT_TRACE = "experiments/traces/kernel_mix.lackey.gz"


@dataclass(frozen=True, kw_only=True)
class WorkloadSpec(Section):
    kind: str = param("synthetic", doc="synthetic streams or a recorded trace",
                      choices=("synthetic", "lackey"))
    pattern: str = param("random", doc="synthetic address pattern",
                         choices=("sequential", "stride", "random", "zipf"))
    cores: int = param(1, doc="how many cores run the workload (cpu 0, 1, ...)", min=1, max=4096)
    spread: str = param("packages", doc="place the cores round-robin over packages, or fill "
                        "package 0 first", choices=("packages", "fill"))
    accesses: int | None = param(None, doc="memory accesses per core after the warm-up "
                                 "(default: 100000 for a synthetic stream, the whole trace for "
                                 "a lackey trace, which is cut to it when longer)", min=1)
    warmup: int = param(0, doc="accesses per core run before measurement starts: caches, "
                        "DRAM and key tables keep what they did, their statistics are "
                        "discarded (the oracle still checks every read)", min=0)
    read_fraction: float = param(0.7, doc="share of accesses that are loads", min=0.0, max=1.0)
    working_set_kib: int = param(4096, doc="bytes each core's stream touches", unit="KiB",
                                 min=4, max=64 * 1024 * 1024)
    access_bytes: int = param(8, doc="bytes per access (a power of two, at most 64)", min=1,
                              max=64)
    stride_bytes: int = param(256, doc="step of the 'stride' pattern", unit="bytes", min=1)
    zipf_alpha: float = param(1.2, doc="skew of the 'zipf' pattern", min=1.0,
                              min_exclusive=True, max=5.0)
    compute_ns: float = param(0.0, doc="work between two accesses", unit="ns", min=0.0)
    sharing: str = param("private", doc="each core its own working set, or one shared by all",
                         choices=("private", "shared"))
    placement: str = param("local", doc="working set in the core's own package's memory or "
                           "in the next package's", choices=("local", "remote"))
    mktme_fraction: float = param(1.0, doc="share of pages under MKTME KeyIDs", min=0.0, max=1.0)
    no_encrypt_fraction: float = param(0.0, doc="share of pages under a NO_ENCRYPT KeyID",
                                       min=0.0, max=1.0)
    mktme_keys: int = param(1, doc="distinct MKTME KeyIDs the encrypted pages use", min=1,
                            max=32767)
    trace: str = param(DEFAULT_TRACE, doc="lackey trace file (kind = 'lackey')")
    include_instructions: bool = param(False, doc="replay instruction fetches as loads")
    prefetch_distance: int = param(0, doc="prefetch each access this many accesses ahead (a "
                                   "stream prefetcher, or software prefetching): a load that "
                                   "finds its line still on its way waits for that fill, so up "
                                   "to this many misses overlap; 0: none", min=0, max=4096)

    def __post_init__(self) -> None:
        # A synthetic stream has no natural end: it takes the usual 100,000 accesses, and its
        # configuration (so an experiment's seeds) reads as it did when that was the default.
        if self.accesses is None and self.kind == "synthetic":
            object.__setattr__(self, "accesses", SYNTHETIC_ACCESSES)

    @property
    def per_core(self) -> int | None:
        """Accesses each core makes, warm-up included (None: the whole trace)."""
        return None if self.accesses is None else self.warmup + self.accesses

    def check(self, ctx: Context) -> None:
        if self.access_bytes & (self.access_bytes - 1):
            raise ctx.error("access_bytes", f"{self.access_bytes} is not a power of two")
        if self.mktme_fraction + self.no_encrypt_fraction > 1.0 + 1e-12:
            raise ctx.error("no_encrypt_fraction",
                            "mktme_fraction + no_encrypt_fraction must not exceed 1")
        if self.kind == "lackey" and not resolve_trace(self.trace).is_file():
            raise ctx.error("trace", f"no such trace file: {self.trace}")


def resolve_trace(path: str) -> Path:
    """The trace file ``path`` names (:func:`mktme_des.catalog.trace_path`)."""
    from mktme_des.catalog import trace_path

    return trace_path(path)


def workload_cpus(plat, spec: WorkloadSpec) -> list[int]:
    """The cpus that run the workload, in order."""
    m = plat.model.topology
    total = m.packages * m.cores_per_package
    if spec.cores > total:
        from mktme_des.errors import UserError

        raise UserError(f"workload.cores = {spec.cores} but the model has {total} cores")
    if spec.spread == "fill":
        return list(range(spec.cores))
    order = [p * m.cores_per_package + i for i in range(m.cores_per_package)
             for p in range(m.packages)]
    return order[: spec.cores]


class Region:
    """One core's (or the shared) working set: base address and its pages' KeyIDs."""

    def __init__(self, base: int, size: int, layout: KeyIdLayout) -> None:
        self.base = base
        self.size = size
        self.layout = layout


def prepare(plat, spec: WorkloadSpec, size: int | None = None) -> dict[int, Region]:
    """Program the workload's keys and lay out and zero its pages; returns cpu -> region.

    ``size`` overrides the working-set size (a trace brings its own footprint)."""
    from mktme_des.errors import UserError

    need = spec.mktme_keys + (1 if spec.no_encrypt_fraction > 0 else 0)
    encrypted = spec.mktme_fraction > 0 or spec.no_encrypt_fraction > 0
    available = plat.model.mktme.max_keys if plat.model.mktme.enabled else 0
    if encrypted and need > available:
        raise UserError(f"workload needs {need} KeyIDs but model {plat.model.platform.name} "
                        f"has {available}")
    for k in range(1, spec.mktme_keys + 1):
        if spec.mktme_fraction > 0:
            plat.set_key(k, "key", plat.random_key(f"workload/key{k}"), command="SET_KEY_DIRECT")
    noenc = spec.mktme_keys + 1
    if spec.no_encrypt_fraction > 0:
        plat.set_key(noenc, "no-encrypt", command="NO_ENCRYPT")
    cpus = workload_cpus(plat, spec)
    size = size or _region_bytes(spec)
    amap = plat.amap
    pkg_bytes = amap.package_bytes
    regions: dict[int, Region] = {}
    shared: Region | None = None
    slot = {}
    for cpu in cpus:
        pkg = plat.cores[cpu].package
        # Local: the core's package, or the nearest with memory when it has none; remote:
        # the next package with memory after that one.
        home = amap.nearest_home(pkg)
        if spec.placement == "remote":
            home = amap.nearest_home((home + 1) % amap.packages)
        if spec.sharing == "shared" and shared is not None:
            regions[cpu] = shared
            continue
        n = slot.get(home, 0)
        slot[home] = n + 1
        start = amap.range_start(home)
        base = start + (256 << 20) + n * size
        if base + size > start + pkg_bytes:
            raise UserError("workload working sets do not fit in the package's memory")
        pages = size // PAGE
        layout = KeyIdLayout(pages, spec.mktme_fraction, spec.no_encrypt_fraction,
                             spec.mktme_keys, noenc, plat.streams.get(f"workload/layout/{base:#x}"))
        region = Region(base, size, layout)
        _zero(plat, region)
        regions[cpu] = region
        if spec.sharing == "shared":
            shared = region
    return regions


def _region_bytes(spec: WorkloadSpec) -> int:
    size = spec.working_set_kib * 1024
    return -(-size // PAGE) * PAGE


def _zero(plat, region: Region) -> None:
    """Every page of ``region`` zeroed through its KeyID, recorded once per controller (each
    answers only for the addresses it is home to): setup costs no time or memory per page."""
    for pkg in plat.packages:
        if not pkg.has_memory:
            continue
        keys = pkg.mc.keys
        pkg.mc.store.zero_region(region.base, region.layout,
                                 [keys.key(k) for k in range(keys.max_keyid + 1)],
                                 plat.boot_tweak)


def synthetic_ops(spec: WorkloadSpec, cpu: int, region: Region, rng: np.random.Generator,
                  progress: list | None = None) -> Iterator[tuple]:
    """The op stream of one core, generated lazily in numpy chunks; ``progress[0]`` (when
    given) counts the accesses handed out, a chunk at a time."""
    # Ops reach the core from lists (a short run of them at a time), not one generator
    # resumption per op, which cost more than making the op.
    return itertools.chain.from_iterable(_synthetic_runs(spec, cpu, region, rng, progress))


RUN = 256  # accesses per list of ops handed to the core (fewer than the collector's threshold)


def _synthetic_runs(spec: WorkloadSpec, cpu: int, region: Region, rng: np.random.Generator,
                    progress: list | None) -> Iterator[list]:
    cython.declare(i=cython.Py_ssize_t, n=cython.Py_ssize_t, start=cython.Py_ssize_t,
                   done=cython.longlong, tag=cython.longlong, ab=cython.Py_ssize_t,
                   pas=list, writes=list, kid=list, ops=list)
    ab = spec.access_bytes
    slots = region.size // ab
    compute = ns(spec.compute_ns)
    compute_op = (O.COMPUTE, 0, 0, compute, None) if compute else None
    layout = region.layout
    base = region.base
    pack = struct.Struct("<Q").pack
    tag = cpu << 40
    perm = rng.permutation(region.size // 64) if spec.pattern == "zipf" else None
    READ, WRITE = O.READ, O.WRITE
    total = spec.per_core
    done = 0
    pos = 0
    while done < total:
        n = min(CHUNK, total - done)
        if spec.pattern == "sequential":
            off = ((pos + np.arange(n, dtype=np.int64)) % slots) * ab
            pos += n
        elif spec.pattern == "stride":
            step = max(ab, spec.stride_bytes // ab * ab)
            off = ((pos + np.arange(n, dtype=np.int64)) * step) % (slots * ab)
            off = off // ab * ab
            pos += n
        elif spec.pattern == "random":
            off = rng.integers(0, slots, n, dtype=np.int64) * ab
        else:
            rank = (rng.zipf(spec.zipf_alpha, n) - 1) % len(perm)
            line = perm[rank]
            off = line * 64 + (rng.integers(0, 64 // ab, n) * ab if ab < 64 else 0)
        writes = (rng.random(n) >= spec.read_fraction).tolist()
        kid = layout.keyids_of((off // PAGE).tolist())
        pas = (off + base).tolist()
        for start in range(0, n, RUN):
            ops = []
            for i in range(start, min(n, start + RUN)):
                if writes[i]:
                    data = pack(tag | done)
                    ops.append((WRITE, kid[i], pas[i], data if ab == 8 else (data * 8)[:ab], None))
                else:
                    ops.append((READ, kid[i], pas[i], ab, None))
                done += 1
                if compute_op is not None:
                    ops.append(compute_op)
            yield ops
        if progress is not None:
            progress[0] += n


def trace_ops(spec: WorkloadSpec, cpu: int, region: Region, trace,
              progress: list | None = None) -> Iterator[tuple]:
    """Replay a lackey trace on ``region`` (its first-touch pages shifted to the region);
    ``progress[0]`` (when given) counts the accesses handed out, a chunk at a time."""
    return itertools.chain.from_iterable(_trace_runs(spec, cpu, region, trace, progress))


def _trace_runs(spec: WorkloadSpec, cpu: int, region: Region, trace,
                progress: list | None) -> Iterator[list]:
    """:func:`trace_ops` as lists of at most :data:`RUN` accesses' ops."""
    cython.declare(i=cython.Py_ssize_t, j=cython.Py_ssize_t, n=cython.Py_ssize_t,
                   start=cython.Py_ssize_t, end=cython.Py_ssize_t, run=cython.Py_ssize_t,
                   tag=cython.longlong, pa=list, writes=list, kid=list, sizes=list, ops=list)
    pack = struct.Struct("<Q").pack
    n = len(trace) if spec.per_core is None else min(len(trace), spec.per_core)
    compute = ns(spec.compute_ns)
    compute_op = (O.COMPUTE, 0, 0, compute, None) if compute else None
    READ, WRITE = O.READ, O.WRITE
    tag = cpu << 40
    # Converted to Python values a chunk at a time: memory follows the trace's arrays (about
    # 20 bytes an access), not a Python int per access and field.
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        addrs = trace.pa[start:end].astype(np.int64) + region.base
        kid = region.layout.keyids_of(((addrs - region.base) // PAGE).tolist())
        pa = addrs.tolist()
        writes = trace.is_write[start:end].tolist()
        sizes = trace.size[start:end].tolist()
        for run in range(0, end - start, RUN):
            ops = []
            for j in range(run, min(end - start, run + RUN)):
                if writes[j]:
                    i = start + j
                    ops.append((WRITE, kid[j], pa[j], (pack(tag | i) * 8)[:sizes[j]], None))
                else:
                    ops.append((READ, kid[j], pa[j], sizes[j], None))
                if compute_op is not None:
                    ops.append(compute_op)
            yield ops
        if progress is not None:
            progress[0] += end - start


def load_trace(spec: WorkloadSpec):
    """The lackey trace a workload names, mapped by a first-touch allocator from page 0."""
    from mktme_des.workloads.lackey import read_lackey

    return read_lackey(resolve_trace(spec.trace), include_instructions=spec.include_instructions,
                       base_pa=0, limit=spec.per_core)


def start(plat, spec: WorkloadSpec, info: dict | None = None,
          progress: list | None = None) -> list[int]:
    """Prepare the platform and start every core of the workload; returns the cpus. ``info``,
    when given, receives what a trace workload read: ``trace_lines``, ``accesses`` and
    ``truncated`` (the trace has more accesses than ``warmup + accesses``), and ``total``,
    the accesses all cores will make; ``progress[0]`` counts those handed out so far.

    With a warm-up, each core runs its first ``spec.warmup`` accesses, waits until every core
    of the workload has done so, and then the platform's statistics restart
    (:meth:`~mktme_des.hw.platform.Platform.reset_stats`) for the measured accesses. The
    cores start measuring together, as a benchmark's threads would after a barrier."""
    from mktme_des.errors import UserError

    trace = None
    size = None
    if spec.kind == "lackey":
        trace = load_trace(spec)
        size = trace.pages * PAGE
        if info is not None:
            info.update(trace_lines=trace.lines_read, accesses=len(trace),
                        truncated=trace.truncated)
        if spec.warmup and len(trace) <= spec.warmup:
            raise UserError(f"workload.warmup = {spec.warmup} leaves nothing to measure of the "
                            f"{len(trace)}-access trace {spec.trace}")
    regions = prepare(plat, spec, size)
    if info is not None:
        per_core = spec.per_core
        info["total"] = len(regions) * (per_core if trace is None else
                                        len(trace) if per_core is None else
                                        min(len(trace), per_core))
    barrier = WarmupBarrier(plat, len(regions)) if spec.warmup else None
    ops_per_access = 2 if spec.compute_ns else 1
    for cpu, region in regions.items():
        if trace is not None:
            ops = trace_ops(spec, cpu, region, trace, progress)
        else:
            ops = synthetic_ops(spec, cpu, region, plat.streams.get(f"workload/cpu{cpu}"),
                                progress)
        if barrier is None:
            plat.start(cpu, prefetching(ops, spec.prefetch_distance))
        else:
            plat.env.process(_warm_then_measure(plat.cores[cpu], ops, spec.warmup * ops_per_access,
                                                barrier, spec.prefetch_distance))
    return list(regions)


def prefetching(ops: Iterator[tuple], distance: int) -> Iterator[tuple]:
    """``ops`` with a PREFETCH of each access issued ``distance`` accesses before it (the
    first ``distance`` prefetches go out at the start); other ops keep their place."""
    return _ahead(ops, distance) if distance else ops


def _ahead(ops: Iterator[tuple], distance: int) -> Iterator[tuple]:
    ahead: deque[tuple] = deque()
    accesses = 0  # accesses among the ops held back
    for op in ops:
        if op[0] <= O.WRITE:
            yield (O.PREFETCH, op[1], op[2], None, None)
            accesses += 1
        ahead.append(op)
        while accesses > distance:
            held = ahead.popleft()
            accesses -= held[0] <= O.WRITE
            yield held
    yield from ahead


class WarmupBarrier:
    """Releases the workload's cores together once each finished its warm-up, restarting the
    platform's statistics at that moment."""

    def __init__(self, plat, cores: int) -> None:
        self.plat = plat
        self.waiting = cores
        self.done = plat.env.event()

    def arrive(self):
        self.waiting -= 1
        if not self.waiting:
            self.plat.reset_stats()
            self.done.succeed()
        return self.done


def _warm_then_measure(core, ops: Iterator[tuple], warm_ops: int, barrier: WarmupBarrier,
                       distance: int):
    yield from core.run(prefetching(itertools.islice(ops, warm_ops), distance))
    yield barrier.arrive()
    yield from core.run(prefetching(ops, distance))
