"""Platform models: the schema of ``models/*.toml`` and its loader.

A model describes one machine: packages and cores, the cache hierarchy, the interconnect, the
memory controllers with their DRAM and MKTME engine, PCONFIG and IPI costs. Numbers a source
gives are cited in the model files; every other number is named there as an assumption.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mktme_des import catalog
from mktme_des.config.schema import Context, Section, build, param, read_toml
from mktme_des.errors import ConfigError

LINE_BYTES = 64
ALGORITHMS = ("aes-xts-128", "aes-xts-256")


@dataclass(frozen=True, kw_only=True)
class PlatformSpec(Section):
    name: str = param(doc="short human name of the machine")
    description: str = param("", doc="what the machine is modelled on")
    frequency_ghz: float = param(doc="core clock", unit="GHz", min=0.1, max=10.0)
    physical_address_bits: int = param(
        doc="MAX_PA_WIDTH: physical-address bits, KeyID bits included", min=32, max=52
    )


@dataclass(frozen=True, kw_only=True)
class TopologySpec(Section):
    packages: int = param(doc="CPU packages (sockets)", min=1, max=16)
    cores_per_package: int = param(doc="cores in each package", min=1, max=256)


@dataclass(frozen=True, kw_only=True)
class CoreSpec(Section):
    fill_buffers: int = param(
        1, doc="load misses to memory a core keeps in flight (L1D line fill buffers); 1: a load "
        "miss blocks the core, more: later loads and computation go on under it", min=1, max=64)


@dataclass(frozen=True, kw_only=True)
class CacheSpec(Section):
    name: str = param(doc="level name, e.g. L1D")
    size_kib: int = param(doc="capacity", unit="KiB", min=1)
    ways: int = param(doc="associativity", min=1, max=64)
    line_bytes: int = param(LINE_BYTES, doc="line size; MKTME encrypts 64-byte lines", min=64, max=64)
    hit_latency_cycles: int = param(doc="load-to-use latency of a hit", unit="cycles", min=1)
    scope: str = param(doc="private to a core or shared by a package", choices=("core", "package"))
    replacement: str = param("lru", doc="replacement policy", choices=("lru", "fifo", "random"))

    @property
    def sets(self) -> int:
        return self.size_kib * 1024 // (self.ways * self.line_bytes)

    def check(self, ctx: Context) -> None:
        size = self.size_kib * 1024
        sets, rem = divmod(size, self.ways * self.line_bytes)
        if rem or sets < 1 or sets & (sets - 1):
            raise ctx.error(
                "size_kib",
                f"{self.size_kib} KiB is not sets x ways x {self.line_bytes} bytes with a "
                f"power-of-two number of sets (ways = {self.ways})",
            )


@dataclass(frozen=True, kw_only=True)
class InterconnectSpec(Section):
    mesh_latency_ns: float = param(
        doc="one way, core/LLC to the package's own memory controller or LLC slice",
        unit="ns", min=0.0,
    )
    socket_hop_ns: float = param(
        doc="one way, extra latency for crossing to another package (UPI hop)", unit="ns", min=0.0
    )
    snoop_latency_ns: float = param(
        doc="extra latency of invalidating or fetching a copy held by another core", unit="ns",
        min=0.0,
    )


@dataclass(frozen=True, kw_only=True)
class MemorySpec(Section):
    """DRAM and the physical address map.

    A package without memory (a memory-less NUMA node: no DIMMs on its channels) still has its
    memory controller, key table and AES engine: the 2019 series states that the encryption
    hardware, key tables included, "resides on each physical package" and must be programmed
    on all of them (C5, PATCHv2 39/59, CPU hotplug), and PCONFIG is package-scoped: it
    programs the executing package's table (facts 1.4). But the engine sits on the path to the
    memory bus and encrypts only the memory attached to it (facts 1.1, S1; "each package's
    engine encrypts only its own locally attached memory", facts 2.3 on patch 13), so the
    table of a package without memory never encrypts a line: its cores' loads and stores go
    over the interconnect to the home controller of the address, like any remote access. The
    address map covers the packages with memory only, in package order, each with the same
    range (``interleave_bytes`` alternates among them).

    ASSUMPTION: PCONFIG succeeds on a package without memory, as on any other (no source says
    what it does without DIMMs; were it to fail, every key broadcast of both kernel series
    would fail with ENOKEY). E16's memory-less topology rests on it."""

    gib_per_package: int | list[int] = param(
        doc="DRAM attached to each package's memory controller: one size for every package, "
        "or one entry per package, 0 for a package without memory (the others all the same "
        "size, at least one of them)", unit="GiB", min=0, max=65536)
    interleave_bytes: int = param(
        0,
        doc="0: each package with memory is home for one contiguous range; otherwise homes "
        "alternate between the packages with memory every interleave_bytes (a power of two, "
        "at least 64)",
        unit="bytes", min=0,
    )

    def check(self, ctx: Context) -> None:
        g = self.interleave_bytes
        if g and (g < LINE_BYTES or g & (g - 1)):
            raise ctx.error("interleave_bytes", f"{g} must be 0 or a power of two >= 64")
        sizes = self.gib_per_package
        if not isinstance(sizes, list):
            if sizes < 1:
                raise ctx.error("gib_per_package", f"{sizes} GiB is out of range; one size for "
                                "every package must be at least 1 (give a list with 0 for a "
                                "package without memory)")
            return
        nonzero = sorted({s for s in sizes if s})
        if not nonzero:
            raise ctx.error("gib_per_package", "at least one package must have memory")
        if len(nonzero) > 1:
            raise ctx.error("gib_per_package", f"the packages with memory have different sizes "
                            f"({', '.join(map(str, nonzero))} GiB); each must have the same, "
                            "or 0 for none")

    def package_gib(self) -> int:
        """The memory of each package that has some, in GiB."""
        sizes = self.gib_per_package
        return max(sizes) if isinstance(sizes, list) else sizes

    def homes(self, packages: int) -> tuple[int, ...]:
        """The packages with memory, in package order (the address map's order)."""
        sizes = self.gib_per_package
        if not isinstance(sizes, list):
            return tuple(range(packages))
        return tuple(p for p, s in enumerate(sizes) if s)


@dataclass(frozen=True, kw_only=True)
class DramSpec(Section):
    access_latency_ns: float = param(doc="read latency of one line, idle bank", unit="ns", min=0.0)
    write_latency_ns: float = param(doc="occupancy of a bank by a line write", unit="ns", min=0.0)
    banks: int = param(doc="independent banks per memory controller (lines interleave)", min=1,
                       max=4096)
    bank_busy_ns: float = param(doc="time a bank stays busy per access", unit="ns", min=0.0)
    bandwidth_gbps: float = param(doc="peak data bandwidth per memory controller (at least "
                                  "0.01 GB/s: a line then takes 6.4 us)", unit="GB/s",
                                  min=0.01, max=100_000.0)


@dataclass(frozen=True, kw_only=True)
class MktmeSpec(Section):
    enabled: bool = param(True, doc="TME-MK activated (false: TME only, KeyID 0 alone)")
    keyid_bits: int = param(doc="MK_TME_KEYID_BITS configured by BIOS", min=0, max=15)
    max_keys: int = param(doc="MK_TME_MAX_KEYS: usable KeyIDs, KeyID 0 excluded", min=0,
                          max=32767)
    algorithms: list[str] = param(["aes-xts-128"], doc="activated algorithms (TME_ACTIVATE[63:48])")
    tme_bypass: bool = param(False, doc="TME_ACTIVATE bit 31: KeyID 0 bypasses encryption")
    aes_latency_ns: float = param(doc="AES-XTS pipeline latency added to a read after the data "
                                  "returns (tweak computed during the DRAM access)", unit="ns",
                                  min=0.0)
    aes_pipelined: bool = param(True, doc="a new line may enter the engine before the previous "
                                "one leaves")
    aes_throughput_x_channel: float = param(1.0, doc="throughput of the pipelined engine, one "
                                            "per memory controller, as a multiple of that "
                                            "controller's channel bandwidth (dram."
                                            "bandwidth_gbps in 64-byte lines); 1.0: the engine "
                                            "keeps up with the bus", unit="x channel", min=0.001,
                                            max=1000.0)
    boot_tweak: str = param("per-boot", doc="per-boot platform value mixed into the tweak, or "
                            "'stable' (the same every boot)", choices=("per-boot", "stable"))

    def check(self, ctx: Context) -> None:
        for i, alg in enumerate(self.algorithms):
            if alg not in ALGORITHMS:
                raise ctx.error(
                    f"algorithms[{i}]",
                    f"{alg!r} is not an algorithm; choose from {', '.join(ALGORITHMS)}",
                )
        if not self.algorithms:
            raise ctx.error("algorithms", "at least one algorithm must be activated")
        if self.enabled and self.keyid_bits == 0:
            raise ctx.error("keyid_bits", "must be at least 1 when MKTME is enabled")
        if self.max_keys > (1 << self.keyid_bits) - 1:
            raise ctx.error(
                "max_keys",
                f"{self.max_keys} keys need more than keyid_bits = {self.keyid_bits} "
                f"(at most {(1 << self.keyid_bits) - 1})",
            )


@dataclass(frozen=True, kw_only=True)
class PconfigSpec(Section):
    latency_ns: float = param(doc="time one PCONFIG MKTME_KEY_PROGRAM holds the key table",
                              unit="ns", min=0.0)
    entropy_error_probability: float = param(
        0.0, doc="chance a SET_KEY_RANDOM fails with ENTROPY_ERROR", min=0.0, max=1.0
    )
    error_model: str = param(
        "rfc", doc="'rfc': codes 1, 3, 4 are returned (spec rev 1.3, RFC v2 code); "
        "'sdm': they raise #GP as current silicon does", choices=("rfc", "sdm"),
    )


@dataclass(frozen=True, kw_only=True)
class IpiSpec(Section):
    local_ns: float = param(doc="IPI send-to-handler within a package", unit="ns", min=0.0)
    remote_ns: float = param(doc="IPI send-to-handler to another package", unit="ns", min=0.0)
    send_ns: float = param(100.0, doc="the sender's cost per IPI: a broadcast sends them one "
                           "after another", unit="ns", min=0.0)


@dataclass(frozen=True, kw_only=True)
class FlushSpec(Section):
    clflush_cycles: int = param(doc="core cost of issuing a CLFLUSH of a clean or absent line",
                                unit="cycles", min=0)
    clflushopt_cycles: int = param(doc="core cost of issuing a CLFLUSHOPT/CLWB", unit="cycles",
                                   min=0)
    wbinvd_line_ns: float = param(doc="time WBINVD spends per way of every set it walks (the "
                                  "whole capacity of the package's caches)", unit="ns", min=0.0)


@dataclass(frozen=True, kw_only=True)
class Model(Section):
    platform: PlatformSpec = param(doc="the machine")
    topology: TopologySpec = param(doc="packages and cores")
    core: CoreSpec = param(CoreSpec(), doc="the cores' memory-level parallelism")
    cache: list[CacheSpec] = param(doc="cache levels, nearest the core first")
    interconnect: InterconnectSpec = param(doc="on-package and cross-package latencies")
    memory: MemorySpec = param(doc="DRAM capacity and home mapping")
    dram: DramSpec = param(doc="DRAM timing, per memory controller")
    mktme: MktmeSpec = param(doc="the memory-encryption engine")
    pconfig: PconfigSpec = param(doc="PCONFIG key programming")
    ipi: IpiSpec = param(doc="inter-processor interrupts")
    flush: FlushSpec = param(doc="cache-flush instruction costs")

    @property
    def usable_address_bits(self) -> int:
        """Physical-address bits left for memory once the KeyID bits are taken."""
        return self.platform.physical_address_bits - self.mktme.keyid_bits

    @property
    def channel_lines_per_ns(self) -> float:
        """A memory controller's channel bandwidth, in 64-byte lines per ns."""
        return self.dram.bandwidth_gbps / LINE_BYTES

    @property
    def aes_lines_per_ns(self) -> float:
        """The AES engine's throughput: ``aes_throughput_x_channel`` times the channel."""
        return self.mktme.aes_throughput_x_channel * self.channel_lines_per_ns

    @property
    def memory_homes(self) -> tuple[int, ...]:
        """The packages with memory, in the address map's order (see :class:`MemorySpec`)."""
        return self.memory.homes(self.topology.packages)

    @property
    def package_bytes(self) -> int:
        """The memory of each package that has some, in bytes."""
        return self.memory.package_gib() << 30

    @property
    def memory_bytes(self) -> int:
        return len(self.memory_homes) * self.package_bytes

    def check(self, ctx: Context) -> None:
        if not self.cache:
            raise ctx.error("cache", "at least one cache level is required")
        names = [c.name for c in self.cache]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ctx.error(f"cache[{i}].name", f"{name!r} is used by two levels")
        scopes = [c.scope for c in self.cache]
        if "package" in scopes and "core" in scopes[scopes.index("package"):]:
            i = scopes.index("core", scopes.index("package"))
            raise ctx.error(f"cache[{i}].scope",
                            "a core-private level cannot sit behind a package-shared one")
        sizes = self.memory.gib_per_package
        if isinstance(sizes, list) and len(sizes) != self.topology.packages:
            raise ctx.error("memory.gib_per_package", f"{len(sizes)} entries for "
                            f"{self.topology.packages} packages (topology.packages); give one "
                            "per package, 0 for a package without memory, or a single size")
        need = (self.memory_bytes - 1).bit_length()
        if need > self.usable_address_bits:
            raise ctx.error(
                "mktme.keyid_bits",
                f"{self.mktme.keyid_bits} KeyID bits leave {self.usable_address_bits} of "
                f"{self.platform.physical_address_bits} physical-address bits, but "
                f"{self.memory_bytes >> 30} GiB of memory needs {need}; allow at most "
                f"{self.platform.physical_address_bits - need}",
            )


MAX_EXTENDS = 8
"""How many models an ``extends`` chain may pass through."""


def load_model(name_or_path: str | Path, overrides: dict | None = None) -> Model:
    """Load and validate a model, by name (:mod:`mktme_des.catalog`) or path; ``overrides``
    is a nested dict merged over the file. Errors name the model as it was given.

    A model file may start with ``extends = "NAME"``: its tables are then merged over that
    model's (as ``overrides`` are: tables merge, anything else replaces), so a variant states
    only what differs. The chain is followed up to :data:`MAX_EXTENDS` models, never twice
    through the same file; ``extends`` is gone from the model built."""
    data = _model_data(catalog.find("model", name_or_path), [])
    if overrides:
        data = merge(data, overrides)
    return build(Model, data, Context(str(name_or_path)))


def _model_data(path: Path, chain: list[Path]) -> dict:
    """A model file's tables with its ``extends`` chain merged in (see :func:`load_model`)."""
    return resolve_extends(read_toml(path), path, chain)


def resolve_extends(data: dict, path: Path, chain: list[Path] | None = None) -> dict:
    """``data``, the tables of the model file at ``path``, with the model it ``extends`` (and
    that one's, and so on) merged under it, as :func:`load_model` reads a model file."""
    data = dict(data)
    chain = chain or []
    parent = data.pop("extends", None)
    if parent is None:
        return data
    ctx = Context(str(path))
    if not isinstance(parent, str) or not parent:
        raise ctx.error("extends", "expected the name or path of the model this one extends, "
                        f"got {parent!r}"[:200])
    chain = [*chain, path.resolve()]
    if len(chain) >= MAX_EXTENDS:
        raise ctx.error("extends", f"the chain of extended models is longer than {MAX_EXTENDS}")
    try:
        base_path = catalog.find("model", parent)
    except ConfigError as err:
        raise ctx.error("extends", str(err)) from None
    if base_path.resolve() in chain:
        raise ctx.error("extends", f"{parent!r} extends this model again (a cycle)")
    return merge(_model_data(base_path, chain), data)


def model_from_dict(data: dict, source: str = "<model>") -> Model:
    return build(Model, data, Context(source))


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: tables merge, everything else in ``over`` replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out



__all__ = ["Model", "CacheSpec", "load_model", "model_from_dict", "merge", "resolve_extends"]
