"""PCONFIG, leaf MKTME_KEY_PROGRAM: programming one package's key table.

Semantics (Intel MKTME specification rev 1.3 and the SDM PCONFIG page):

* The instruction acts on the key table of the package of the core that executes it, and only
  that one: software runs it once per package.
* Checks come first: the KeyID (1..min(2^keyid_bits - 1, max_keys)), the command (0..3) and
  the algorithm (one-hot ENC_ALG bits that are activated; hardware checks it for every command,
  CLEAR_KEY and NO_ENCRYPT included). With ``error_model = "rfc"`` a failed check returns
  INVALID_KEYID / INVALID_PROG_CMD / INVALID_ENC_ALG; with ``"sdm"`` (current silicon) it raises
  #GP(0) (:class:`GeneralProtection`).
* The key fields are 64 bytes; an algorithm uses the first 16 (AES-XTS-128) or 32
  (AES-XTS-256) of each, and the SDM makes the rest reserved, to be zeroed by software. With
  ``error_model = "sdm"`` a SET_KEY_DIRECT or SET_KEY_RANDOM whose reserved key bytes are not
  zero raises #GP(0); with ``"rfc"`` they are ignored (the specification's return codes have
  none for it).
* Then the key-table write lock: if another PCONFIG holds it, DEVICE_BUSY is returned at once
  and nothing changes.
* The programming takes ``pconfig.latency_ns``, during which the lock is held. SET_KEY_RANDOM
  may then fail with ENTROPY_ERROR (probability ``entropy_error_probability``, drawn from the
  package's own random stream), releasing the lock with nothing changed. Otherwise the table
  entry changes atomically at the end of the latency.
* SET_KEY_RANDOM draws fresh data and tweak keys from the hardware RNG on every execution and
  on every package, and XORs in the software entropy of KEY_FIELD_1/KEY_FIELD_2.
* Changing a key touches no cache and no TLB.
* A platform reset while the programming is in progress cuts it: the entry never changes and
  the lock is gone with the old boot (the new boot's tables start free). The process then
  returns ``RESET``, not an architectural status: the instruction never retired.
"""

from __future__ import annotations

from dataclasses import dataclass

from mktme_des.engine.recorder import Event
from mktme_des.engine.time import ns
from mktme_des.hw.keytable import KEY, NO_ENCRYPT, TME

# KEYID_CTRL commands (bits 7:0) and ENC_ALG bits (23:8), as in intel_pconfig.h.
SET_KEY_DIRECT = 0
SET_KEY_RANDOM = 1
CLEAR_KEY = 2
NO_ENCRYPT_CMD = 3
COMMANDS = {SET_KEY_DIRECT: "SET_KEY_DIRECT", SET_KEY_RANDOM: "SET_KEY_RANDOM",
            CLEAR_KEY: "CLEAR_KEY", NO_ENCRYPT_CMD: "NO_ENCRYPT"}
AES_XTS_128 = 1 << 8
AES_XTS_256 = 1 << 10
ALG_BITS = {"aes-xts-128": AES_XTS_128, "aes-xts-256": AES_XTS_256}

# Return codes in RAX.
PROG_SUCCESS = 0
INVALID_PROG_CMD = 1
ENTROPY_ERROR = 2
INVALID_KEYID = 3
INVALID_ENC_ALG = 4
DEVICE_BUSY = 5
RESET = -1  # not a return code: the platform was reset before the instruction retired
STATUS = {PROG_SUCCESS: "PROG_SUCCESS", INVALID_PROG_CMD: "INVALID_PROG_CMD",
          ENTROPY_ERROR: "ENTROPY_ERROR", INVALID_KEYID: "INVALID_KEYID",
          INVALID_ENC_ALG: "INVALID_ENC_ALG", DEVICE_BUSY: "DEVICE_BUSY", RESET: "RESET"}


class GeneralProtection(Exception):
    """#GP(0): what current silicon raises where the old specification returned 1, 3 or 4,
    or for non-zero reserved key bytes (``status`` None)."""

    def __init__(self, status: int | None, reason: str = "") -> None:
        super().__init__(status, reason)  # re-creatable from its args (SimPy re-raises so)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        if self.status is None:
            return f"#GP(0): {self.reason}"
        return f"#GP(0): PCONFIG would have returned {STATUS[self.status]}"


@dataclass(frozen=True)
class KeyProgram:
    """MKTME_KEY_PROGRAM_STRUCT: KEYID, KEYID_CTRL (command | ENC_ALG) and two key fields."""

    keyid: int
    command: int
    enc_alg: int = AES_XTS_128
    key_field_1: bytes = bytes(64)  # data key (DIRECT) or entropy (RANDOM)
    key_field_2: bytes = bytes(64)  # tweak key (DIRECT) or entropy (RANDOM)


class KeyTableLock:
    """The per-package KEY_TABLE_LOCK: taken without waiting, or DEVICE_BUSY."""

    __slots__ = ("holder",)

    def __init__(self) -> None:
        self.holder: int | None = None

    def try_acquire(self, cpu: int) -> bool:
        if self.holder is not None:
            return False
        self.holder = cpu
        return True

    def release(self) -> None:
        self.holder = None


def check(program: KeyProgram, plat) -> int:
    """The checks PCONFIG makes before touching the table; PROG_SUCCESS when they pass."""
    m = plat.model.mktme
    limit = min(plat.amap.max_keyid, m.max_keys)
    if not 1 <= program.keyid <= limit:
        return INVALID_KEYID
    if program.command not in COMMANDS:
        return INVALID_PROG_CMD
    activated = 0
    for alg in m.algorithms:
        activated |= ALG_BITS[alg]
    alg = program.enc_alg
    if alg == 0 or alg & (alg - 1) or not alg & activated:
        return INVALID_ENC_ALG
    return PROG_SUCCESS


def pconfig(plat, cpu: int, program: KeyProgram):
    """SimPy process: ``cpu`` executes PCONFIG; its value is the status code (RAX).

    Raises :class:`GeneralProtection` for a failed check under ``error_model = "sdm"``.
    """
    env = plat.env
    core = plat.cores[cpu]
    pkg = plat.packages[core.package]
    status = check(program, plat)
    plat.pconfig_log.append((env.now, cpu, core.package, program.keyid, program.command, "issued"))
    if status != PROG_SUCCESS:
        if plat.model.pconfig.error_model == "sdm":
            raise GeneralProtection(status)
        return status
    if plat.model.pconfig.error_model == "sdm" and reserved_key_bytes(program):
        raise GeneralProtection(None, "non-zero reserved bytes in the key fields")
    lock = pkg.key_lock
    if not lock.try_acquire(cpu):
        plat.recorder.count("pconfig_busy")
        return DEVICE_BUSY
    boot = plat.boots
    try:
        yield env.timeout(ns(plat.model.pconfig.latency_ns))
        if plat.boots != boot:
            plat.pconfig_log.append((env.now, cpu, core.package, program.keyid, program.command,
                                     "cut by a reset"))
            return RESET
        if program.command == SET_KEY_RANDOM:
            rng = plat.streams.get(f"entropy/pkg{core.package}")
            if rng.random() < plat.model.pconfig.entropy_error_probability:
                return ENTROPY_ERROR
        _apply(plat, core.package, program, cpu)
    finally:
        lock.release()
    return PROG_SUCCESS


def reserved_key_bytes(program: KeyProgram) -> bool:
    """True when a command that takes keys has non-zero bytes beyond the algorithm's key size
    in KEY_FIELD_1 or KEY_FIELD_2 (reserved: the SDM's PCONFIG raises #GP(0))."""
    if program.command not in (SET_KEY_DIRECT, SET_KEY_RANDOM):
        return False
    n = _key_size(program.enc_alg)
    return any(program.key_field_1[n:]) or any(program.key_field_2[n:])


def _key_size(enc_alg: int) -> int:
    return 16 if enc_alg == AES_XTS_128 else 32


def _apply(plat, package: int, program: KeyProgram, cpu: int) -> None:
    keys = plat.packages[package].mc.keys
    name = COMMANDS[program.command]
    cmd = f"PCONFIG {name} by cpu{cpu}"
    if program.command == SET_KEY_DIRECT:
        n = _key_size(program.enc_alg)
        key = program.key_field_1[:n] + program.key_field_2[:n]
        keys.set(program.keyid, KEY, key, cmd, plat.env.now)
    elif program.command == SET_KEY_RANDOM:
        n = _key_size(program.enc_alg)
        hw = plat.streams.randbytes(f"hw-rng/pkg{package}/{plat.rng_draws}", 2 * n)
        plat.rng_draws += 1
        entropy = program.key_field_1[:n] + program.key_field_2[:n]
        keys.set(program.keyid, KEY, bytes(a ^ b for a, b in zip(hw, entropy, strict=True)),
                 cmd, plat.env.now)
    elif program.command == CLEAR_KEY:
        keys.set(program.keyid, TME, None, cmd, plat.env.now)
    else:
        keys.set(program.keyid, NO_ENCRYPT, None, cmd, plat.env.now)
    plat.pconfig_log.append((plat.env.now, cpu, package, program.keyid, program.command, "applied"))
    plat.recorder.emit("events", Event(plat.env.now, f"keys/pkg{package}",
                                       f"PCONFIG {name} K{program.keyid}", None,
                                       f"by cpu{cpu}; table v{keys.entry(program.keyid).version}"))
