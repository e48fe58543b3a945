"""Kernel-level scenario actors: user processes making system calls and touching memory by
virtual address, and the administrator (hotplug, raw PCONFIG, key-table checks).

Each op leaves one log entry ``(start, end, op, keyid, pa, data, served_by, class, result)``
where ``result`` is ``ok``, an errno name, a PCONFIG status or a key-table state, and ``detail``
strings go to the actor's ``details`` list at the same index.
"""

from __future__ import annotations

from mktme_des.hw import ops as O
from mktme_des.hw import pconfig as pc
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.mm import PAGE
from mktme_des.scenarios.spec import after_labels


def kernel_actor(plat, kernel, name: str, proc, cpu: int, ops: list[dict], log: list,
                 details: list, serials: dict[str, int]):
    """SimPy process running one actor's ops in order; ``proc`` is its kernel process (None
    for the administrator, who acts on ``cpu``)."""
    env = plat.env
    vmas: dict[str, tuple[int, int]] = {}  # name -> (start, length)
    pins: dict[str, object] = {}  # pin name -> the pinned Page

    def serial_of(desc: str) -> int:
        if desc not in serials:
            raise Errno("ENOKEY", f"no key was added as {desc!r}")
        return serials[desc]

    def vaddr(op: dict) -> int:
        if op["vma"] not in vmas:
            raise Errno("EFAULT", f"no VMA named {op['vma']!r} in {name}")
        start, length = vmas[op["vma"]]
        off = op.get("offset", 0)
        if off >= length:
            raise Errno("EFAULT", f"offset {off:#x} is beyond VMA {op['vma']!r}")
        return start + off

    for op in ops:
        for after in after_labels(op):
            yield plat.flag(after)
        if op["at"] is not None and op["at"] > env.now:
            yield env.timeout(op["at"] - env.now)
        if proc is not None:
            cpu = proc.cpu  # the scheduler may have moved it (its CPU went offline)
        start = env.now
        what = op["op"]
        keyid = pa = data = served = cls = None
        result, detail = "ok", ""
        try:
            if what == "add_key":
                serial = yield from kernel.keys.add_key(cpu, op["key"], op["options"],
                                                        op.get("capable", True))
                serials[op["key"]] = serial
                keyid = kernel.keys.keys[serial].keyid
                detail = f"serial {serial}, KeyID {keyid}"
            elif what == "update_key":
                yield from kernel.keys.update_key(cpu, serial_of(op["key"]), op["options"])
            elif what == "revoke":
                yield from kernel.keys.revoke(cpu, serial_of(op["key"]))
            elif what == "invalidate":
                yield from kernel.keys.invalidate(cpu, serial_of(op["key"]))
            elif what == "mmap":
                length = op["pages"] * PAGE
                addr = yield from kernel.mm.mmap(proc, length, not op.get("file_backed", False),
                                                 op["vma"])
                vmas[op["vma"]] = (addr, length)
                detail = f"{addr:#x}-{addr + length:#x}"
            elif what == "munmap":
                addr = vaddr(op)
                yield from kernel.mm.munmap(proc, addr, vmas.pop(op["vma"])[1])
            elif what == "encrypt_mprotect":
                addr = vaddr(op)
                length = op.get("length", op.get("pages", 0) * PAGE) or \
                    vmas[op["vma"]][1] - op.get("offset", 0)
                yield from kernel.mm.encrypt_mprotect(proc, addr, length, op.get("prot", 3),
                                                      serial_of(op["key"]))
            elif what in ("read", "write", "clflush"):
                va = vaddr(op)
                kernel.mm.check_access(proc, va, write=what == "write")
                yield from kernel.mm.fault(proc, va)
                keyid, pa = kernel.mm.translate(proc, va)
                off = pa & 63
                if what == "read":
                    size = op.get("size", 64 - off)
                    if size > 64 - off:
                        raise Errno("EINVAL", "a read stays within one 64-byte line")
                    entry = yield from _core_op(plat, cpu, (O.READ, keyid, pa, size, None))
                    data, served, cls = entry[5], entry[6], entry[7]
                elif what == "write":
                    data = op["data"]
                    yield from _write(plat, kernel, proc, cpu, va, data)
                else:
                    yield from _core_op(plat, cpu, (O.CLFLUSH, keyid, pa, None, None))
            elif what == "pin":
                pins[op["pin"]] = yield from kernel.mm.pin(proc, vaddr(op))
                keyid, pa = pins[op["pin"]].keyid, pins[op["pin"]].pa
            elif what == "unpin":
                if op["pin"] not in pins:
                    raise Errno("EINVAL", f"no pin named {op['pin']!r} in {name}")
                yield from kernel.mm.unpin(cpu, pins.pop(op["pin"]))
            elif what == "device_read":
                if op["pin"] not in pins:
                    raise Errno("EFAULT", f"no pinned page named {op['pin']!r} in {name}")
                entry = yield from kernel.mm.device_read(cpu, pins[op["pin"]], op.get("size", 64))
                keyid, pa, data, served, cls = entry[3], entry[4], entry[5], entry[6], entry[7]
                what = "read"  # judged like a read (bytes and class)
            elif what == "swap_out":
                yield from kernel.mm.swap_out(proc, vaddr(op))
            elif what == "online":
                yield from kernel.hp.online_package(op["package"])
            elif what == "offline":
                yield from kernel.hp.offline_package(op["package"])
            elif what == "offline_cpu":
                yield from kernel.hp.offline_cpu(op["target"])
            elif what == "online_cpu":
                yield from kernel.hp.online_cpu(op["target"])
            elif what == "pconfig":
                result = yield from _pconfig(plat, cpu, op)
                keyid = op["keyid"]
            elif what == "keytable":
                keyid = op["keyid"]
                entry = plat.packages[op["package"]].mc.keys.entry(keyid)
                result, detail = _keytable_result(plat, op, entry)
            elif what == "direct_map_read":
                entry = yield from kernel.mm.direct_map_read(cpu, op["keyid"], op["addr"],
                                                             op.get("size", 64))
                keyid, pa, data, served, cls = entry[3], entry[4], entry[5], entry[6], entry[7]
                what = "read"  # judged like a read (bytes and class)
            elif what == "swap_read":
                raw, result = kernel.mm.swap_read(op["slot"], op.get("size", 64))
                detail = f"slot {op['slot']}: {raw.hex()}"
            elif what == "wbinvd":
                done = plat.wbinvd(env.now, plat.cores[cpu].package, cpu)
                yield env.timeout(done - env.now)
            elif what == "compute":
                yield env.timeout(op["ns"])
        except Errno as err:
            result, detail = err.name, err.reason
        log.append((start, env.now, what, keyid, pa, data, served, cls, result))
        details.append(detail)
        if op.get("label"):
            plat.raise_flag(op["label"], env.now)


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


def _pconfig(plat, cpu: int, op: dict):
    cmd = {"SET_KEY_DIRECT": pc.SET_KEY_DIRECT, "SET_KEY_RANDOM": pc.SET_KEY_RANDOM,
           "CLEAR_KEY": pc.CLEAR_KEY, "NO_ENCRYPT": pc.NO_ENCRYPT_CMD}[op["command"]]
    alg = op.get("alg", "aes-xts-128")
    alg_bits = pc.ALG_BITS.get(alg, 0)
    prog = pc.KeyProgram(op["keyid"], cmd, alg_bits, op.get("key", b"").ljust(64, b"\0"),
                         op.get("tweak", b"").ljust(64, b"\0"))
    try:
        status = yield plat.env.process(pc.pconfig(plat, cpu, prog))
    except pc.GeneralProtection:
        return "#GP"
    return pc.STATUS[status]


def _keytable_result(plat, op: dict, entry) -> tuple[str, str]:
    exp = op.get("expect", "")
    mode = entry.mode
    detail = f"package {op['package']} K{op['keyid']}: {mode} (v{entry.version}, {entry.command})"
    for prefix, same in (("same-as-package-", True), ("differs-from-package-", False)):
        if exp.startswith(prefix):
            other = int(exp[len(prefix):])
            theirs = plat.packages[other].mc.keys.key(op["keyid"])
            equal = theirs == plat.packages[op["package"]].mc.keys.key(op["keyid"])
            return (exp if equal == same else f"{'differs-from' if same else 'same-as'}-package-{other}",
                    detail)
    return mode, detail
