"""Agents outside the CPUs: a bus probe, a DMA engine, an attacker with a DRAM interposer, the
firmware. They act on DRAM and key tables directly, bypassing caches."""

from __future__ import annotations

from collections.abc import Iterable

from mktme_des.engine.time import to_ns
from mktme_des.hw import ops as O


def _decrypt(key: bytes, pa: int, data: bytes, boot_tweak: int) -> bytes:
    """``data`` read from DRAM at ``pa`` (whole lines), decrypted line by line under ``key``
    with each line's tweak."""
    from mktme_des.crypto import line_tweak, xts_decrypt

    return b"".join(xts_decrypt(key, line_tweak(pa + i, boot_tweak), data[i : i + 64])
                    for i in range(0, len(data), 64))


NO_PAGE = "no-page"
"""The result of an agent op whose ``addr`` names a process page that no op named (the process
op naming it failed): not executed, logged with this as a ninth field."""


def dram_agent(plat, name: str, ops: Iterable[tuple], log: list | None = None):
    """SimPy process of an agent outside the CPUs (a bus probe, a DMA engine, an attacker
    with a DRAM interposer, the firmware): raw reads, writes and copies of DRAM, direct
    key-table setup and reboots, each at its ``at`` time, bypassing caches. Each waits for
    its time with a real event, so everything the cores do is ordered against it exactly.

    ``log`` receives one entry per op: ``(start, end, code, keyid, pa, data, None, class)``.
    An op's ``pa`` may be ``(page name, offset)``: a process page a scenario named, looked up
    when the op runs. A raw read with a key (``arg = (size, label, key)``) logs the lines it
    read decrypted under that key and the tweak in force (the boot tweak of this boot); its
    class and any capture are of the raw bytes. An op on a page never named is not executed
    (:data:`NO_PAGE`).
    """
    env = plat.env
    captures = plat.captures
    for code, keyid, pa, arg, at in ops:
        if code == O.AWAIT:
            yield plat.board.wait(arg)
            continue
        if code == O.SIGNAL:
            plat.board.raise_flag(arg, env.now)
            continue
        if at is not None and at > env.now:
            yield env.timeout(at - env.now)
        t = env.now
        data = cls = None
        if isinstance(pa, tuple):  # a process page named by a scenario, and an offset in it
            if pa[0] not in plat.board.pages:  # the op that names it failed: nothing to read
                if log is not None:
                    log.append((t, t, code, keyid, None, None, None, None, NO_PAGE))
                continue
            pa = plat.board.pages[pa[0]] + pa[1]
        if code == O.RAW_READ:
            size, label, key = (arg + (None,))[:3] if isinstance(arg, tuple) else (arg, "", None)
            data = plat.dram_read(pa, size)
            if plat.oracle is not None:
                cls = plat.oracle.raw_class(pa, data)
            if label:
                captures[label] = data
            if key is not None:  # what a probe holding the key reads: the bytes decrypted
                data = _decrypt(key, pa, data, plat.board.boot_tweak())
        elif code == O.RAW_WRITE:
            data = captures[arg[1]] if isinstance(arg, tuple) else arg
            plat.dram_write(pa, data, t, f"raw DRAM write by {name} at t={to_ns(t):g} ns")
        elif code == O.RAW_COPY:
            dst, size = arg
            data = plat.dram_read(pa, size)
            plat.dram_write(dst, data, t,
                            f"raw DRAM copy by {name} from {pa:#x} at t={to_ns(t):g} ns")
        elif code == O.COMPUTE:
            yield env.timeout(arg)
        elif code == "set_key":
            mode, key, packages = arg
            plat.program(keyid, mode, key, packages or None, command=f"set_key by {name}")
        elif code == "reboot":
            plat.reboot(*arg)
        else:
            raise ValueError(f"{code} is not a DRAM agent operation")
        if log is not None:
            log.append((t, env.now, code, keyid, pa, data, None, cls))
