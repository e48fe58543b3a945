"""The ops of kernel-level scenario actors, ``[[process]]`` and ``[[system]]``, declared.

Each op is a schema section (:mod:`mktme_des.config.schema`): its fields, their types, bounds
and documentation are declared with :func:`~mktme_des.config.schema.param`, so a misspelt
field, a wrong type or a negative count is refused, with file and field, by the schema itself.
``at``, ``label`` and ``after``, which every actor's ops share, are checked by
:mod:`mktme_des.scenarios.spec`; so are the rules that need the model (a package or KeyID of
this machine, a read within one cache line) and each op's allowed expectations
(:meth:`KernelOp.check_model`, :meth:`Judged.check_expect`).

:data:`PROCESS_OPS` and :data:`SYSTEM_OPS` say which actor may use which op;
:data:`mktme_des.scenarios.actors.HANDLERS` says what each does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mktme_des.config.schema import Context, Section, param

PAGE_BYTES = 4096
ERRNOS = ("ok", "EINVAL", "EACCES", "ENOKEY", "EKEYREVOKED", "EBUSY", "EPERM", "ENOMEM",
          "EFAULT")
"""What a system call may be expected to return."""
PCONFIG_RESULTS = ("PROG_SUCCESS", "INVALID_PROG_CMD", "ENTROPY_ERROR", "INVALID_KEYID",
                   "INVALID_ENC_ALG", "DEVICE_BUSY", "#GP", "RESET")
KEYTABLE_STATES = ("key", "tme", "no-encrypt")
PCONFIG_COMMANDS = ("SET_KEY_DIRECT", "SET_KEY_RANDOM", "CLEAR_KEY", "NO_ENCRYPT")
OFFLINE = "offline"
"""The result of a [[cpu]] op due while its core is offline (checked after its waits): it is
not executed and takes no time, and fails the scenario. Kernel-level actors are never refused
so: a task on a CPU going offline is moved to another by the scheduler (a [[process]] when the
offline completes, as the model's hotplug does; a [[system]] actor runs where it was put)."""
BLOCKED = "blocked"
"""The expectation of a [[process]] or [[system]] op that must not complete before the run
ends (it waits for ever: a KeyID never freed, a lock never released)."""


@dataclass(frozen=True, kw_only=True)
class KernelOp(Section):
    """A kernel-level op: its name. Subclasses declare the rest."""

    op: str = param(doc="the op's name")

    def check_model(self, model, ctx: Context) -> None:
        """Refuse values this model has no room for (default: none)."""


@dataclass(frozen=True, kw_only=True)
class Judged(KernelOp):
    """An op whose outcome a scenario may name and expect. By default the expectation is an
    errno (:data:`ERRNOS`); ``blocked`` is allowed for every such op."""

    expect: str = param("", doc="what the op must return: an errno, or blocked")
    name: str = param("", doc="what the verdict calls the op")

    EXPECTS: ClassVar[str] = "errno"  # errno, read, swap, pconfig or keytable

    def check_expect(self, ctx: Context) -> None:
        """Refuse an expectation this op cannot have (reads are checked in spec.py)."""
        exp = self.expect
        if not exp or exp == BLOCKED or self.EXPECTS == "read":
            return
        if self.EXPECTS == "swap" and exp not in ("plaintext", "opaque"):
            raise ctx.error("expect", f"{exp!r}: a swap read is expected to be plaintext "
                            "(what the page's user stored) or opaque")
        if self.EXPECTS == "pconfig" and exp != "ok" and exp not in PCONFIG_RESULTS:
            raise ctx.error("expect", f"{exp!r} is not one of ok, {', '.join(PCONFIG_RESULTS)}")
        if self.EXPECTS == "keytable" and exp not in KEYTABLE_STATES and \
                not exp.startswith(("same-as-package-", "differs-from-package-")):
            raise ctx.error("expect", f"{exp!r}: use key, tme, no-encrypt, "
                            "same-as-package-N or differs-from-package-N")
        if self.EXPECTS == "errno" and exp not in ERRNOS:
            raise ctx.error("expect", f"{exp!r} is not one of {', '.join(ERRNOS)}")


@dataclass(frozen=True, kw_only=True)
class ReadLike(Judged):
    """An op that returns bytes: judged like a CPU read (hex bytes, ``not:HEX`` or a class),
    and by where it was served and which other read returned the same bytes."""

    served_by: str = param("", doc="where the read must be served: a cache level of the "
                           "model, peer, remote, DRAM, DRAM-remote, prefetch or fill-buffer")
    same_as: str = param("", doc="the label of a read whose bytes this one must equal")
    differs_from: str = param("", doc="the label of a read whose bytes this one must not "
                              "equal")

    EXPECTS: ClassVar[str] = "read"


def _package(model, value: int, ctx: Context, field: str = "package") -> None:
    if not 0 <= value < model.topology.packages:
        raise ctx.error(field, f"package {value} does not exist")


# -- keys ------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Keyed(Judged):
    key: str = param(doc="the key's description (a name given at add_key, not key material)")


@dataclass(frozen=True, kw_only=True)
class AddKey(Keyed):
    """``add_key("mktme", key, options)``; the serial is kept under ``key``."""

    options: str = param(doc="the payload: type=cpu|user|clear|no-encrypt, algorithm=..., "
                         "and for a user key key= and tweak= (hex)")
    expect_keyid: int | None = param(None, doc="the KeyID add_key must allocate")

    def check_model(self, model, ctx: Context) -> None:
        if self.expect_keyid is None:
            return
        top = min(model.mktme.max_keys, (1 << model.mktme.keyid_bits) - 1)
        if not 1 <= self.expect_keyid <= top:
            raise ctx.error("expect_keyid", f"{self.expect_keyid} is not a KeyID add_key can "
                            f"allocate (1..{top})")
        if self.expect not in ("", "ok"):
            raise ctx.error("expect_keyid", "a KeyID is allocated only when add_key succeeds, "
                            f"but expect is {self.expect!r}")


@dataclass(frozen=True, kw_only=True)
class ProcessAddKey(AddKey):
    capable: bool = param(True, doc="the caller has CAP_SYS_ADMIN")


@dataclass(frozen=True, kw_only=True)
class UpdateKey(Keyed):
    options: str = param(doc="the new payload, as for add_key")


@dataclass(frozen=True, kw_only=True)
class Revoke(Keyed):
    """``keyctl revoke``: the KeyID is held until the garbage collector destroys the key."""


@dataclass(frozen=True, kw_only=True)
class Invalidate(Keyed):
    """``keyctl invalidate``: the KeyID is free at once."""


# -- memory ----------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Mmap(Judged):
    vma: str = param(doc="a name for the mapping")
    pages: int = param(doc="its length in 4 KiB pages", min=0)
    file_backed: bool = param(False, doc="a file mapping (encrypt_mprotect refuses it)")


@dataclass(frozen=True, kw_only=True)
class Munmap(Judged):
    vma: str = param(doc="the mapping to unmap")


@dataclass(frozen=True, kw_only=True)
class InVma(Judged):
    """An op at an address of one of the actor's mappings."""

    vma: str = param(doc="the mapping")
    offset: int = param(0, doc="bytes from the mapping's start", min=0)


@dataclass(frozen=True, kw_only=True)
class EncryptMprotect(InVma):
    key: str = param(doc="the key's description")
    pages: int = param(0, doc="pages to protect (0: to the end, unless length is given)",
                       min=0)
    length: int = param(0, doc="bytes to protect (0: see pages)", min=0)
    prot: int = param(3, doc="PROT_ bits: 1 read, 2 write", min=0)


@dataclass(frozen=True, kw_only=True)
class Page(InVma):
    """An op that may name the physical page it reaches, for agents' ``addr``."""

    page: str = param("", doc="a name for the physical page (agents' addr = \"NAME\")")


@dataclass(frozen=True, kw_only=True)
class Read(Page, ReadLike):
    """A load at a virtual address, within one 64-byte line."""

    size: int | None = param(None, doc="bytes (default: to the end of the line)", min=0)

    def check_model(self, model, ctx: Context) -> None:
        off = self.offset & 63
        size = 64 - off if self.size is None else self.size
        if not 1 <= size <= 64 - off:
            raise ctx.error("size", f"{size} bytes at line offset {off} cross the 64-byte "
                            f"line; allowed 1..{64 - off}")


@dataclass(frozen=True, kw_only=True)
class Write(Page):
    data: str = param(doc="hex bytes, at most one page")

    @property
    def payload(self) -> bytes:
        return bytes.fromhex(self.data)


@dataclass(frozen=True, kw_only=True)
class Clflush(KernelOp):
    vma: str = param(doc="the mapping")
    offset: int = param(0, doc="bytes from the mapping's start", min=0)


@dataclass(frozen=True, kw_only=True)
class SwapOut(InVma):
    """The kernel writes the page to swap (through the direct map) and frees its frame."""


@dataclass(frozen=True, kw_only=True)
class Pin(Page):
    """``get_user_pages``: the page outlives its VMA until unpinned."""

    pin: str = param(doc="a name for the pinned page")


@dataclass(frozen=True, kw_only=True)
class Unpin(Judged):
    pin: str = param(doc="the pinned page")


@dataclass(frozen=True, kw_only=True)
class DeviceRead(ReadLike):
    """A device reads a pinned page's first line (DMA through the page's KeyID)."""

    pin: str = param(doc="the pinned page")
    size: int = param(64, doc="bytes", min=0)

    def check_model(self, model, ctx: Context) -> None:
        if not 1 <= self.size <= 64:
            raise ctx.error("size", f"{self.size}: a device read is 1..64 bytes of the "
                            "page's first line")


@dataclass(frozen=True, kw_only=True)
class Compute(KernelOp):
    ns: float = param(doc="time spent", unit="ns", min=0.0)

    @property
    def ticks(self) -> int:
        from mktme_des.engine.time import ns

        return ns(self.ns)


# -- hotplug, hardware -----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PackageOp(Judged):
    package: int = param(doc="the package", min=0)

    def check_model(self, model, ctx: Context) -> None:
        _package(model, self.package, ctx)


@dataclass(frozen=True, kw_only=True)
class Online(PackageOp):
    """Bring a package and its CPUs online (its key table is programmed afresh)."""


@dataclass(frozen=True, kw_only=True)
class Offline(PackageOp):
    """Take a package offline (memory hot-remove if the policy migrates)."""


@dataclass(frozen=True, kw_only=True)
class CpuOp(Judged):
    target: int = param(doc="the CPU", min=0)


@dataclass(frozen=True, kw_only=True)
class OfflineCpu(CpuOp):
    """Take one CPU offline."""


@dataclass(frozen=True, kw_only=True)
class OnlineCpu(CpuOp):
    """Bring one CPU back online."""


@dataclass(frozen=True, kw_only=True)
class Pconfig(Judged):
    """PCONFIG on the actor's CPU (its package only). ``key`` is spelt as ``[[keys]]``
    spells it (data key then tweak key); ``key_field`` and ``tweak_field`` are the
    instruction's raw 64-byte fields (see spec.py's ``_pconfig_keys``)."""

    keyid: int = param(doc="the KeyID to program", min=0)
    command: str = param(doc="the PCONFIG command", choices=PCONFIG_COMMANDS)
    alg: str = param("aes-xts-128", doc="the algorithm asked for (aes-xts-128, aes-xts-256, "
                     "or any other name to see PCONFIG refuse it)")
    key: str = param("", doc="hex: the data key then the tweak key")
    key_field: str = param("", doc="hex: KEY_FIELD_1 as given, at most 64 bytes")
    tweak_field: str = param("", doc="hex: KEY_FIELD_2 as given, at most 64 bytes")
    tweak: str = param("", doc="refused: a tweak key is part of key")

    EXPECTS: ClassVar[str] = "pconfig"

    @property
    def fields(self) -> tuple[bytes, bytes]:
        """KEY_FIELD_1 and KEY_FIELD_2 as given (zero-padded when programmed): ``key``'s
        halves, or ``key_field`` and ``tweak_field``."""
        if self.key:
            key = bytes.fromhex(self.key)
            return key[: len(key) // 2], key[len(key) // 2 :]
        return bytes.fromhex(self.key_field), bytes.fromhex(self.tweak_field)


@dataclass(frozen=True, kw_only=True)
class Keytable(Judged):
    """Observe a package's key-table entry (an observation: it never fails)."""

    package: int = param(doc="the package", min=0)
    keyid: int = param(doc="the KeyID", min=0)

    EXPECTS: ClassVar[str] = "keytable"

    def check_model(self, model, ctx: Context) -> None:
        from mktme_des.hw.address import AddressMap

        _package(model, self.package, ctx)
        top = AddressMap(model).max_keyid
        if not 0 <= self.keyid <= top:
            raise ctx.error("keyid", f"{self.keyid} is not a KeyID of this model (0..{top})")
        for prefix in ("same-as-package-", "differs-from-package-"):
            if self.expect.startswith(prefix):
                other = self.expect[len(prefix):]
                npk = model.topology.packages
                if not other.isdigit() or not 0 <= int(other) < npk:
                    raise ctx.error("expect", f"{self.expect!r}: package {other} does not "
                                    f"exist (packages 0..{npk - 1})")


@dataclass(frozen=True, kw_only=True)
class Wbinvd(KernelOp):
    """WBINVD on the actor's CPU: its package's caches written back and emptied."""


@dataclass(frozen=True, kw_only=True)
class SwapRead(Judged):
    """Read a swap slot as someone holding the swap device would."""

    slot: int = param(doc="the swap slot", min=0)
    size: int = param(64, doc="bytes", min=0)

    EXPECTS: ClassVar[str] = "swap"

    def check_model(self, model, ctx: Context) -> None:
        if not 1 <= self.size <= PAGE_BYTES:
            raise ctx.error("size", f"{self.size}: a swap read is 1..4096 bytes of one slot")


@dataclass(frozen=True, kw_only=True)
class DirectMapRead(ReadLike):
    """The kernel reads a physical address through the direct map of ``keyid``."""

    keyid: int = param(doc="the direct map's KeyID", min=0)
    addr: int = param(doc="the physical address", min=0)
    size: int = param(64, doc="bytes, within one 64-byte line", min=0)

    def check_model(self, model, ctx: Context) -> None:
        from mktme_des.hw.address import AddressMap

        amap = AddressMap(model)
        if not amap.valid_keyid(self.keyid):
            raise ctx.error("keyid", f"{self.keyid} is not a KeyID of this model "
                            f"(0..{amap.max_keyid})")
        if not amap.valid_pa(self.addr) or not 1 <= self.size <= 64 - (self.addr & 63):
            raise ctx.error("addr", f"{self.addr:#x}+{self.size} is outside physical memory "
                            "or crosses a 64-byte line")


KEY_OPS = {"add_key": AddKey, "update_key": UpdateKey, "revoke": Revoke,
           "invalidate": Invalidate}
PROCESS_OPS: dict[str, type[KernelOp]] = {
    **KEY_OPS, "add_key": ProcessAddKey, "mmap": Mmap, "munmap": Munmap,
    "encrypt_mprotect": EncryptMprotect, "read": Read, "write": Write, "clflush": Clflush,
    "swap_out": SwapOut, "pin": Pin, "unpin": Unpin, "device_read": DeviceRead,
    "compute": Compute,
}
"""The ops of a [[process]]: system calls and accesses by virtual address."""
SYSTEM_OPS: dict[str, type[KernelOp]] = {
    **KEY_OPS, "online": Online, "offline": Offline, "offline_cpu": OfflineCpu,
    "online_cpu": OnlineCpu, "pconfig": Pconfig, "keytable": Keytable, "wbinvd": Wbinvd,
    "swap_read": SwapRead, "direct_map_read": DirectMapRead, "compute": Compute,
}
"""The ops of a [[system]] actor: the administrator."""


@dataclass(frozen=True)
class Step:
    """A validated kernel-level op ready to run: the declared op and when it may start (its
    absolute ``at`` in ticks, its relative ``at`` as label and delay in ticks, the labels of
    its ``after``) and the label it raises when done."""

    op: KernelOp
    at: int | None
    at_label: tuple[str, int] | None
    after: list[str]
    label: str
