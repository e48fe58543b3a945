"""The ops of hardware-level scenario actors, ``[[cpu]]`` and ``[[agent]]``, declared.

Each op is a schema section (:mod:`mktme_des.config.schema`), as the kernel-level ops of
:mod:`mktme_des.scenarios.kernel_ops` are: its fields, their types, bounds and documentation
are declared with :func:`~mktme_des.config.schema.param`, so a misspelt field, a wrong type or
a negative size is refused, with file and field, by the schema itself; so are the rules
between fields (:meth:`~mktme_des.config.schema.Section.check`). ``at``, ``label`` and
``after``, which every actor's ops share, are checked by :mod:`mktme_des.scenarios.spec`; so
are the rules that need the model (a KeyID or physical address of this machine, a read within
one cache line), hex bytes and key lengths, and whether a capture or page is made before use.

:data:`CPU_OPS` and :data:`AGENT_OPS` say which actor may use which op; spec.py turns each
into the op tuple the CPU model (:mod:`mktme_des.hw.core`) or the agent runner executes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mktme_des.config.schema import Context, Section, param

READ_CLASSES = ("expected", "zero", "stale", "plaintext", "garbage")
"""What a CPU read may be expected to return besides hex bytes (``not:HEX`` too)."""
RAW_CLASSES = ("ciphertext", "plaintext", "zero")
"""What a raw DRAM read may be expected to return besides hex bytes (``not:HEX`` too)."""
KEY_MODES = ("key", "random", "no-encrypt", "tme")
MAX_RAW_BYTES = 1 << 20
"""The most bytes one raw read or copy moves: a bound on the input file, not a hardware
figure."""


@dataclass(frozen=True, kw_only=True)
class HwOp(Section):
    """A hardware-level op: its name. Subclasses declare the rest."""

    op: str = param(doc="the op's name")

    EXPECT_CLASSES: ClassVar[tuple[str, ...]] = ()
    """The classes ``expect`` may name besides hex bytes; empty: the op has no ``expect``."""


# -- [[cpu]] ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Fence(HwOp):
    """``sfence``, ``mfence`` or ``fence``: the core's stores (and loads) ordered."""


@dataclass(frozen=True, kw_only=True)
class Wbinvd(HwOp):
    """WBINVD: the package's caches written back and emptied."""


@dataclass(frozen=True, kw_only=True)
class Compute(HwOp):
    """The core computes without touching memory (``compute``; an agent's ``wait``)."""

    ns: float = param(doc="time spent", unit="ns", min=0.0)


@dataclass(frozen=True, kw_only=True)
class LineOp(HwOp):
    """An op at a physical address through a KeyID: ``clflush``, ``clflushopt``, ``clwb``,
    ``prefetch``; the address's line is the one touched."""

    keyid: int = param(0, doc="the KeyID the address is used with", min=0)
    addr: int = param(doc="the physical address", min=0)


@dataclass(frozen=True, kw_only=True)
class CpuRead(LineOp):
    """A load within one 64-byte line, judged by ``expect`` (hex bytes, ``not:HEX`` or a
    class), where it was served and which other read returned the same bytes."""

    size: int | None = param(None, doc="bytes (default: to the end of the line)", min=0)
    expect: str = param("", doc="hex bytes, not:HEX, or expected, zero, stale, plaintext, "
                        "garbage")
    name: str = param("", doc="what the verdict calls the read")
    served_by: str = param("", doc="where the read must be served: a cache level of the "
                           "model, peer, remote, DRAM, DRAM-remote, prefetch or fill-buffer")
    same_as: str = param("", doc="the label of a read whose bytes this one must equal")
    differs_from: str = param("", doc="the label of a read whose bytes this one must not "
                              "equal")

    EXPECT_CLASSES: ClassVar[tuple[str, ...]] = READ_CLASSES


@dataclass(frozen=True, kw_only=True)
class CpuWrite(LineOp):
    """A store within one line: ``data``, or a line an agent captured (``from``) written
    back through ``keyid`` (with ``preimage_key``: the bytes that encrypt to the capture)."""

    data: str | None = param(None, doc="hex bytes, within the line (not with from)")
    from_: str | None = param(None, key="from", doc="the name of an agent's raw_read whose "
                              "line is written (a replay; not with data)")
    preimage_key: str | None = param(None, doc="hex key (data then tweak, 32 or 64 bytes): "
                                     "write what encrypts to the capture under it (with from)")
    name: str = param("", doc="a name for the write (accepted; the verdict judges reads "
                      "only)")

    def check(self, ctx: Context) -> None:
        """``data`` or ``from``, exactly one; ``preimage_key`` only with ``from``."""
        if self.data is None and self.from_ is None:
            raise ctx.error("data", "is required for op 'write' (or from, naming a capture)")
        if self.data is not None and self.from_ is not None:
            raise ctx.error("from", "give data or from, not both")
        if self.preimage_key is not None and self.from_ is None:
            raise ctx.error("preimage_key", "goes with from: the captured line it re-encrypts")


# -- [[agent]] -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RawOp(HwOp):
    """An op on DRAM itself, past the memory controller's encryption: at a physical address,
    or at ``offset`` bytes into a page a [[process]] op named (``addr = "NAME"``)."""

    addr: int | str = param(doc="the physical address, or the name of a process page",
                            min=0)
    offset: int | None = param(None, doc="bytes into the named page (with addr = \"NAME\")",
                               min=0)

    def check(self, ctx: Context) -> None:
        """A page name is not empty; ``offset`` goes with a page name only."""
        if isinstance(self.addr, str) and not self.addr:
            raise ctx.error("addr", "names a process page (its page = \"NAME\") or is a "
                            "physical address")
        if self.offset is not None and not isinstance(self.addr, str):
            raise ctx.error("offset", "goes with addr = \"PAGE\", a named process page")


@dataclass(frozen=True, kw_only=True)
class RawRead(RawOp):
    """A DRAM probe's read: the bytes as stored (with ``key``: decrypted with it)."""

    size: int = param(64, doc="bytes", min=1, max=MAX_RAW_BYTES)
    key: str | None = param(None, doc="hex key (data then tweak, 32 or 64 bytes) to decrypt "
                            "whole lines with")
    name: str = param("", doc="names the read: a capture for from, and the verdict's name")
    expect: str = param("", doc="hex bytes, not:HEX, or ciphertext, plaintext, zero")
    same_as: str = param("", doc="the label of a read whose bytes this one must equal")
    differs_from: str = param("", doc="the label of a read whose bytes this one must not "
                              "equal")

    EXPECT_CLASSES: ClassVar[tuple[str, ...]] = RAW_CLASSES


@dataclass(frozen=True, kw_only=True)
class RawWrite(RawOp):
    """An interposer's write: ``data``, or what an earlier raw_read of this agent captured."""

    data: str | None = param(None, doc="hex bytes (not with from)")
    from_: str | None = param(None, key="from", doc="the name of an earlier raw_read of this "
                              "agent whose bytes are written (a replay; not with data)")

    def check(self, ctx: Context) -> None:
        """``data`` or ``from``, exactly one (and the rules of :class:`RawOp`)."""
        super().check(ctx)
        if self.data is None and self.from_ is None:
            raise ctx.error("data", "is required for op 'raw_write' (or from, naming a "
                            "capture)")
        if self.data is not None and self.from_ is not None:
            raise ctx.error("from", "give data or from, not both")


@dataclass(frozen=True, kw_only=True)
class RawCopy(HwOp):
    """A relocation: ``size`` bytes of DRAM copied as stored from ``addr`` to ``to``."""

    addr: int | str = param(doc="the source: a physical address or the name of a process "
                            "page", min=0)
    to: int = param(doc="the destination physical address", min=0)
    size: int = param(64, doc="bytes", min=1, max=MAX_RAW_BYTES)

    def check(self, ctx: Context) -> None:
        """A page name is not empty."""
        if isinstance(self.addr, str) and not self.addr:
            raise ctx.error("addr", "names a process page (its page = \"NAME\") or is a "
                            "physical address")


@dataclass(frozen=True, kw_only=True)
class SetKey(HwOp):
    """The firmware programs a KeyID's key-table entry (as ``[[keys]]`` does before t = 0)."""

    keyid: int = param(doc="the KeyID", min=0)
    mode: str = param(doc="key: a key (random from the seed unless given); random: a "
                      "CPU-generated key, different per package; no-encrypt; tme",
                      choices=KEY_MODES)
    key: str | None = param(None, doc="hex of the data key then the tweak key (32 or 64 "
                            "bytes)")
    packages: list[int] = param([], doc="packages to program (empty: all)")


@dataclass(frozen=True, kw_only=True)
class Reboot(HwOp):
    """A platform reset (:meth:`mktme_des.hw.platform.Platform.reboot`): caches emptied, key
    tables back to TME, a new boot tweak."""

    persistent: bool = param(False, doc="persistent memory: DRAM keeps its ciphertext "
                             "(otherwise it is wiped)")
    flush: bool = param(True, doc="an orderly reset: dirty lines reach DRAM first (otherwise "
                        "they are lost)")


CPU_OPS: dict[str, type[HwOp]] = {
    "read": CpuRead, "write": CpuWrite, "clflush": LineOp, "clflushopt": LineOp,
    "clwb": LineOp, "prefetch": LineOp, "sfence": Fence, "mfence": Fence, "fence": Fence,
    "wbinvd": Wbinvd, "compute": Compute,
}
"""The ops of a [[cpu]]: accesses by physical address through a KeyID."""
AGENT_OPS: dict[str, type[HwOp]] = {
    "raw_read": RawRead, "raw_write": RawWrite, "raw_copy": RawCopy, "set_key": SetKey,
    "reboot": Reboot, "wait": Compute,
}
"""The ops of an [[agent]]: a DRAM probe, an interposer, the firmware."""
