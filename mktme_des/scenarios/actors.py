"""Kernel-level scenario actors: user processes making system calls and touching memory by
virtual address, and the administrator (hotplug, raw PCONFIG, key-table checks).

Each op leaves one log entry ``(start, end, op, keyid, pa, data, served_by, class, result)``
where ``result`` is ``ok``, an errno name, a PCONFIG status or a key-table state, and ``detail``
strings go to the actor's ``details`` list at the same index.

Each op name has one handler in :data:`HANDLERS`: a generator run inside the actor's SimPy
process that does the op and fills an :class:`Outcome`. A handler raises
:class:`~mktme_des.kernel.errno.Errno` for a failed system call; the actor records it as the
op's result.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from mktme_des.hw import ops as O
from mktme_des.hw import pconfig as pc
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.mm import PAGE
from mktme_des.scenarios import kernel_ops as K
from mktme_des.scenarios.kernel_ops import Step


@dataclass
class Actor:
    """One kernel-level actor's state while it runs: its process (None for [[system]]), the
    CPU it runs on, and the VMAs, pins and key serials its ops name."""

    plat: Any
    kernel: Any
    name: str
    cpu: int
    proc: Any
    serials: dict[str, int]  # key description -> serial, shared by every actor
    vmas: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (start, length)
    pins: dict[str, Any] = field(default_factory=dict)  # pin name -> the pinned Page

    def serial_of(self, desc: str) -> int:
        if desc not in self.serials:
            raise Errno("ENOKEY", f"no key was added as {desc!r}")
        return self.serials[desc]

    def vaddr(self, op: K.InVma | K.Clflush) -> int:
        """The virtual address an op names: its VMA's start plus its ``offset``."""
        if op.vma not in self.vmas:
            raise Errno("EFAULT", f"no VMA named {op.vma!r} in {self.name}")
        start, length = self.vmas[op.vma]
        if op.offset >= length:
            raise Errno("EFAULT", f"offset {op.offset:#x} is beyond VMA {op.vma!r}")
        return start + op.offset


@dataclass
class Outcome:
    """What an op did, for its log entry: ``op`` is the name it is logged and judged under
    (a device or direct-map read is judged like a read)."""

    op: str
    keyid: int | None = None
    pa: int | None = None
    data: bytes | None = None
    served: str | None = None
    cls: str | None = None
    result: str = "ok"
    detail: str = ""

    def read(self, entry: tuple) -> None:
        """Take a core's log entry of a read: KeyID, address, bytes, where served, class."""
        self.keyid, self.pa, self.data, self.served, self.cls = entry[3:8]


Handler = Callable[[Actor, Any, Outcome], Generator]


def kernel_actor(plat, kernel, name: str, proc, cpu: int, steps: list[Step], log: list,
                 details: list, serials: dict[str, int]):
    """SimPy process running one actor's ops in order; ``proc`` is its kernel process (None
    for the administrator, who acts on ``cpu``). (Partial-order reduction reads this frame's
    ``name``, ``steps`` and ``step``, and the lines it waits at: see
    :func:`mktme_des.scenarios.por._waits_before_op`.)"""
    env = plat.env
    actor = Actor(plat, kernel, name, cpu, proc, serials)
    for step in steps:
        op = step.op
        for after in step.after:
            yield plat.flag(after)
        if step.at_label is not None:  # a relative ``at``: after that op, plus a delay
            yield plat.board.wait(step.at_label)
        if step.at is not None and step.at > env.now:
            yield env.timeout(step.at - env.now)
        if proc is not None:
            actor.cpu = proc.cpu  # the scheduler may have moved it (its CPU went offline)
        start = env.now
        out = Outcome(op.op)
        try:
            yield from HANDLERS[op.op](actor, op, out)
        except Errno as err:
            out.result, out.detail = err.name, err.reason
        if isinstance(op, K.Page) and op.page and out.result == "ok":  # for agents' addr
            page = kernel.mm.translate(proc, actor.vaddr(op))[1] & ~(PAGE - 1)
            plat.board.pages[op.page] = page
        log.append((start, env.now, out.op, out.keyid, out.pa, out.data, out.served, out.cls,
                    out.result))
        details.append(out.detail)
        if step.label:
            plat.raise_flag(step.label, env.now)


# -- keys ----------------------------------------------------------------------------------------
def _add_key(a: Actor, op: K.AddKey, out: Outcome):
    keys = a.kernel.keys
    serial = yield from keys.add_key(a.cpu, op.key, op.options, getattr(op, "capable", True))
    a.serials[op.key] = serial
    out.keyid = keys.keys[serial].keyid
    out.detail = f"serial {serial}, KeyID {out.keyid}"


def _update_key(a: Actor, op: K.UpdateKey, out: Outcome):
    yield from a.kernel.keys.update_key(a.cpu, a.serial_of(op.key), op.options)


def _revoke(a: Actor, op: K.Revoke, out: Outcome):
    yield from a.kernel.keys.revoke(a.cpu, a.serial_of(op.key))


def _invalidate(a: Actor, op: K.Invalidate, out: Outcome):
    yield from a.kernel.keys.invalidate(a.cpu, a.serial_of(op.key))


# -- memory --------------------------------------------------------------------------------------
def _mmap(a: Actor, op: K.Mmap, out: Outcome):
    length = op.pages * PAGE
    addr = yield from a.kernel.mm.mmap(a.proc, length, not op.file_backed, op.vma)
    a.vmas[op.vma] = (addr, length)
    out.detail = f"{addr:#x}-{addr + length:#x}"


def _munmap(a: Actor, op: K.Munmap, out: Outcome):
    if op.vma not in a.vmas:
        raise Errno("EFAULT", f"no VMA named {op.vma!r} in {a.name}")
    addr, length = a.vmas[op.vma]
    if not length:
        raise Errno("EFAULT", f"offset 0x0 is beyond VMA {op.vma!r}")
    yield from a.kernel.mm.munmap(a.proc, addr, a.vmas.pop(op.vma)[1])


def _encrypt_mprotect(a: Actor, op: K.EncryptMprotect, out: Outcome):
    addr = a.vaddr(op)
    length = op.length or op.pages * PAGE or a.vmas[op.vma][1] - op.offset
    yield from a.kernel.mm.encrypt_mprotect(a.proc, addr, length, op.prot,
                                            a.serial_of(op.key))


def _access(a: Actor, op: K.Read | K.Write | K.Clflush, out: Outcome):
    """A process read, write or clflush at a virtual address: permission check, fault, then
    the core's op on the translated line."""
    mm = a.kernel.mm
    va = a.vaddr(op)
    mm.check_access(a.proc, va, write=op.op == "write")
    yield from mm.fault(a.proc, va)
    keyid, pa = mm.translate(a.proc, va)
    out.keyid, out.pa = keyid, pa
    off = pa & 63
    if op.op == "read":
        size = 64 - off if op.size is None else op.size
        if size > 64 - off:
            raise Errno("EINVAL", "a read stays within one 64-byte line")
        entry = yield from _core_op(a.plat, a.cpu, (O.READ, keyid, pa, size, None))
        out.data, out.served, out.cls = entry[5], entry[6], entry[7]
    elif op.op == "write":
        out.data = op.payload
        yield from _write(a.plat, a.kernel, a.proc, a.cpu, va, out.data)
    else:
        yield from _core_op(a.plat, a.cpu, (O.CLFLUSH, keyid, pa, None, None))


def _pin(a: Actor, op: K.Pin, out: Outcome):
    page = a.pins[op.pin] = yield from a.kernel.mm.pin(a.proc, a.vaddr(op))
    out.keyid, out.pa = page.keyid, page.pa


def _unpin(a: Actor, op: K.Unpin, out: Outcome):
    if op.pin not in a.pins:
        raise Errno("EINVAL", f"no pin named {op.pin!r} in {a.name}")
    yield from a.kernel.mm.unpin(a.cpu, a.pins.pop(op.pin))


def _device_read(a: Actor, op: K.DeviceRead, out: Outcome):
    if op.pin not in a.pins:
        raise Errno("EFAULT", f"no pinned page named {op.pin!r} in {a.name}")
    entry = yield from a.kernel.mm.device_read(a.cpu, a.pins[op.pin], op.size)
    out.read(entry)
    out.op = "read"  # judged like a read (bytes and class)


def _swap_out(a: Actor, op: K.SwapOut, out: Outcome):
    yield from a.kernel.mm.swap_out(a.proc, a.vaddr(op))


def _swap_read(a: Actor, op: K.SwapRead, out: Outcome):
    raw, out.result = a.kernel.mm.swap_read(op.slot, op.size)
    out.detail = f"slot {op.slot}: {raw.hex()}"
    yield from ()


def _direct_map_read(a: Actor, op: K.DirectMapRead, out: Outcome):
    entry = yield from a.kernel.mm.direct_map_read(a.cpu, op.keyid, op.addr, op.size)
    out.read(entry)
    out.op = "read"  # judged like a read (bytes and class)


# -- hotplug, hardware, time ---------------------------------------------------------------------
def _online(a: Actor, op: K.Online, out: Outcome):
    yield from a.kernel.hp.online_package(op.package)


def _offline(a: Actor, op: K.Offline, out: Outcome):
    yield from a.kernel.hp.offline_package(op.package)


def _offline_cpu(a: Actor, op: K.OfflineCpu, out: Outcome):
    yield from a.kernel.hp.offline_cpu(op.target)


def _online_cpu(a: Actor, op: K.OnlineCpu, out: Outcome):
    yield from a.kernel.hp.online_cpu(op.target)


def _pconfig_op(a: Actor, op: K.Pconfig, out: Outcome):
    out.result = yield from _pconfig(a.plat, a.cpu, op)
    out.keyid = op.keyid


def _keytable(a: Actor, op: K.Keytable, out: Outcome):
    out.keyid = op.keyid
    entry = a.plat.packages[op.package].mc.keys.entry(op.keyid)
    out.result, out.detail = _keytable_result(a.plat, op, entry)
    yield from ()


def _wbinvd(a: Actor, op: K.Wbinvd, out: Outcome):
    plat = a.plat
    env = plat.env
    done = plat.wbinvd(env.now, plat.cores[a.cpu].package, a.cpu)
    yield env.timeout(done - env.now)


def _compute(a: Actor, op: K.Compute, out: Outcome):
    yield a.plat.env.timeout(op.ticks)


HANDLERS: dict[str, Handler] = {
    "add_key": _add_key, "update_key": _update_key, "revoke": _revoke,
    "invalidate": _invalidate, "mmap": _mmap, "munmap": _munmap,
    "encrypt_mprotect": _encrypt_mprotect, "read": _access, "write": _access,
    "clflush": _access, "pin": _pin, "unpin": _unpin, "device_read": _device_read,
    "swap_out": _swap_out, "swap_read": _swap_read, "direct_map_read": _direct_map_read,
    "online": _online, "offline": _offline, "offline_cpu": _offline_cpu,
    "online_cpu": _online_cpu, "pconfig": _pconfig_op, "keytable": _keytable,
    "wbinvd": _wbinvd, "compute": _compute,
}
"""Each [[process]] and [[system]] op name and what runs it (kernel_ops.PROCESS_OPS and
SYSTEM_OPS declare the ops and say which actor may use which)."""
def _core_op(plat, cpu: int, op: tuple):
    log: list = []
    yield from plat.cores[cpu].run([op], log)
    return log[0]


def _write(plat, kernel, proc, cpu: int, va: int, data: bytes):
    """Store ``data`` at ``va`` line by line, faulting pages in as needed."""
    pos = 0
    while pos < len(data):
        cur = va + pos
        yield from kernel.mm.fault(proc, cur)
        keyid, pa = kernel.mm.translate(proc, cur)
        n = min(64 - (pa & 63), len(data) - pos)
        yield from _core_op(plat, cpu, (O.WRITE, keyid, pa, data[pos : pos + n], None))
        pos += n


def _pconfig(plat, cpu: int, op: K.Pconfig):
    cmd = {"SET_KEY_DIRECT": pc.SET_KEY_DIRECT, "SET_KEY_RANDOM": pc.SET_KEY_RANDOM,
           "CLEAR_KEY": pc.CLEAR_KEY, "NO_ENCRYPT": pc.NO_ENCRYPT_CMD}[op.command]
    alg_bits = pc.ALG_BITS.get(op.alg, 0)
    field1, field2 = op.fields
    prog = pc.KeyProgram(op.keyid, cmd, alg_bits, field1.ljust(64, b"\0"),
                         field2.ljust(64, b"\0"))
    try:
        status = yield plat.env.process(pc.pconfig(plat, cpu, prog))
    except pc.GeneralProtection:
        return "#GP"
    return pc.STATUS[status]


def _keytable_result(plat, op: K.Keytable, entry) -> tuple[str, str]:
    exp = op.expect
    mode = entry.mode
    detail = f"package {op.package} K{op.keyid}: {mode} (v{entry.version}, {entry.command})"
    for prefix, same in (("same-as-package-", True), ("differs-from-package-", False)):
        if exp.startswith(prefix):
            other = int(exp[len(prefix):])
            theirs = plat.packages[other].mc.keys.key(op.keyid)
            equal = theirs == plat.packages[op.package].mc.keys.key(op.keyid)
            return (exp if equal == same else f"{'differs-from' if same else 'same-as'}-package-{other}",
                    detail)
    return mode, detail
