"""PCONFIG (leaf MKTME_KEY_PROGRAM) as hardware: return codes, the key-table lock, timing,
per-package scope and what a key change does (and does not do) to memory and caches.

Expectations come from the semantics in ``mktme_des/hw/pconfig.py``'s docstring and from the
model parameters (``pconfig.latency_ns``, ``keyid_bits``, ``max_keys``, ``algorithms``);
expected DRAM bytes come from an independent AES-XTS (the ``cryptography`` package).
"""

from __future__ import annotations

import pytest

from mktme_des.config.model import load_model
from mktme_des.engine.time import ns
from mktme_des.hw import ops as O
from mktme_des.hw import pconfig as pc
from mktme_des.hw.keytable import KEY, NO_ENCRYPT, TME
from mktme_des.hw.platform import Platform
from tests.helpers import pattern, xts

A = 0x40_0000  # a line homed on package 0 (server-2s: 64 GiB per package)




def make(model: str = "server-2s", overrides: dict | None = None, seed: int = 7) -> Platform:
    return Platform(load_model(model, overrides), seed=seed)


def latency(plat) -> int:
    return ns(plat.model.pconfig.latency_ns)


def start(plat, cpu: int, program: pc.KeyProgram, delay: int = 0) -> dict:
    """Issue PCONFIG on ``cpu`` after ``delay`` ticks; the box gets value/error and times."""
    box: dict = {}

    def body():
        if delay:
            yield plat.env.timeout(delay)
        box["issued"] = plat.env.now
        try:
            box["value"] = yield from pc.pconfig(plat, cpu, program)
        except pc.GeneralProtection as gp:
            box["error"] = gp
        box["end"] = plat.env.now

    plat.env.process(body())
    return box


def execute(plat, cpu: int, program: pc.KeyProgram) -> dict:
    box = start(plat, cpu, program)
    plat.run()
    return box


def table(plat, package: int):
    """Everything observable about one package's key table."""
    kt = plat.packages[package].mc.keys
    return (kt.programmed(), [kt.key(k) for k in range(kt.max_keyid + 1)], kt.programs)


def tables(plat):
    return [table(plat, p) for p in range(len(plat.packages))]


def direct(keyid: int, seed: int, alg: int = pc.AES_XTS_128) -> pc.KeyProgram:
    """SET_KEY_DIRECT with key fields as software fills them: the key, then zeros."""
    n = 16 if alg == pc.AES_XTS_128 else 32
    return pc.KeyProgram(keyid, pc.SET_KEY_DIRECT, alg, pattern(seed)[:n].ljust(64, b"\0"),
                         pattern(seed + 1000)[:n].ljust(64, b"\0"))


def core_ops(plat, cpu: int, ops: list) -> list:
    log: list = []
    plat.env.process(plat.cores[cpu].run(ops, log))
    plat.run()
    return log


def write_and_flush(plat, cpu: int, keyid: int, pa: int, data: bytes) -> bytes:
    """Store ``data`` through ``keyid``, CLFLUSH it to DRAM and return the raw DRAM bytes."""
    core_ops(plat, cpu, [(O.WRITE, keyid, pa, data, None), (O.CLFLUSH, keyid, pa, None, None)])
    return plat.dram_read(pa, 64)


def programmed_base(plat) -> None:
    """Give both packages a non-trivial table so that 'unchanged' means something."""
    for cpu in (0, plat.model.topology.cores_per_package):
        for kid, seed in ((1, 1), (5, 2)):
            assert execute(plat, cpu, direct(kid, seed + cpu))["value"] == pc.PROG_SUCCESS


# -- return codes ----------------------------------------------------------------------------


def test_prog_success_installs_the_key_after_the_latency():
    plat = make()
    before = table(plat, 0)
    box = execute(plat, 0, direct(3, 11))
    assert box["value"] == pc.PROG_SUCCESS
    assert box["end"] - box["issued"] == latency(plat)
    assert table(plat, 0) != before
    assert plat.packages[0].mc.keys.mode(3) == KEY


def keyid_limit(plat) -> int:
    m = plat.model.mktme
    return min((1 << m.keyid_bits) - 1, m.max_keys)


@pytest.mark.parametrize("overrides", [None, {"mktme": {"max_keys": 40}}],
                         ids=["max_keys=2^bits-1", "max_keys-below-2^bits-1"])
def test_invalid_keyid_zero_and_above_the_limit(overrides):
    plat = make(overrides=overrides)
    programmed_base(plat)
    limit = keyid_limit(plat)
    before = tables(plat)
    for keyid in sorted({0, limit + 1, 1 << plat.model.mktme.keyid_bits}):
        for command in (pc.SET_KEY_DIRECT, pc.SET_KEY_RANDOM, pc.CLEAR_KEY, pc.NO_ENCRYPT_CMD):
            box = execute(plat, 0, pc.KeyProgram(keyid, command))
            assert box["value"] == pc.INVALID_KEYID, (keyid, command)
            assert box["end"] == box["issued"]  # a failed check costs no programming time
    assert tables(plat) == before
    # The limit itself is valid.
    assert execute(plat, 0, direct(limit, 3))["value"] == pc.PROG_SUCCESS
    assert plat.packages[0].mc.keys.mode(limit) == KEY


def test_max_keys_below_keyid_space_rejects_keyids_above_max_keys():
    plat = make(overrides={"mktme": {"max_keys": 40}})
    assert execute(plat, 0, direct(41, 1))["value"] == pc.INVALID_KEYID
    assert execute(plat, 0, direct(63, 1))["value"] == pc.INVALID_KEYID
    assert execute(plat, 0, direct(40, 1))["value"] == pc.PROG_SUCCESS


@pytest.mark.parametrize("command", [4, 7, 0xFF])
def test_invalid_prog_cmd(command):
    plat = make()
    programmed_base(plat)
    before = tables(plat)
    box = execute(plat, 0, pc.KeyProgram(1, command, pc.AES_XTS_128, pattern(1), pattern(2)))
    assert box["value"] == pc.INVALID_PROG_CMD
    assert tables(plat) == before


@pytest.mark.parametrize("alg", [0, pc.AES_XTS_128 | pc.AES_XTS_256, pc.AES_XTS_256, 1 << 9],
                         ids=["zero", "two-bits", "not-activated-256", "undefined-bit"])
@pytest.mark.parametrize("command", [pc.SET_KEY_DIRECT, pc.SET_KEY_RANDOM, pc.CLEAR_KEY,
                                     pc.NO_ENCRYPT_CMD])
def test_invalid_enc_alg_for_every_command(alg, command):
    plat = make()
    assert plat.model.mktme.algorithms == ["aes-xts-128"]
    programmed_base(plat)
    before = tables(plat)
    box = execute(plat, 0, pc.KeyProgram(1, command, alg, pattern(1), pattern(2)))
    assert box["value"] == pc.INVALID_ENC_ALG
    assert tables(plat) == before


def test_aes_xts_128_rejected_when_only_256_is_activated():
    plat = make(overrides={"mktme": {"algorithms": ["aes-xts-256"]}})
    before = tables(plat)
    assert execute(plat, 0, direct(1, 1, pc.AES_XTS_128))["value"] == pc.INVALID_ENC_ALG
    assert tables(plat) == before
    assert execute(plat, 0, direct(1, 1, pc.AES_XTS_256))["value"] == pc.PROG_SUCCESS


def test_checks_come_before_the_lock():
    """An invalid program gets its check error even while another PCONFIG holds the lock."""
    plat = make()
    first = start(plat, 0, direct(1, 1))
    bad = start(plat, 1, pc.KeyProgram(0, pc.SET_KEY_DIRECT))
    plat.run()
    assert first["value"] == pc.PROG_SUCCESS
    assert bad["value"] == pc.INVALID_KEYID


def test_device_busy_same_package_exactly_one_wins():
    plat = make()
    programmed_base(plat)
    before = table(plat, 0)
    p0, p1 = direct(7, 21), direct(7, 22)
    a = start(plat, 0, p0)
    b = start(plat, 1, p1)  # cpu1 shares package 0 with cpu0
    plat.run()
    results = sorted([a["value"], b["value"]])
    assert results == [pc.PROG_SUCCESS, pc.DEVICE_BUSY]
    loser, winner = (a, b) if a["value"] == pc.DEVICE_BUSY else (b, a)
    assert loser["issued"] == winner["issued"]  # issued at the same time
    assert loser["end"] == loser["issued"]  # and returned at once
    assert winner["end"] - winner["issued"] == latency(plat)
    kt = plat.packages[0].mc.keys
    assert kt.programs == before[2] + 1  # the table changed once
    assert plat.stats()["counts"] == {"pconfig_busy": 1}  # the refusal is counted
    assert kt.entry(7).version == 1
    won = p0 if winner is a else p1
    assert kt.key(7) == won.key_field_1[:16] + won.key_field_2[:16]
    # Nothing else in the table moved.
    after = table(plat, 0)
    assert {k: v for k, v in after[0].items() if k != 7} == before[0]


def test_device_busy_while_the_lock_is_held_for_the_whole_latency():
    plat = make()
    L = latency(plat)
    a = start(plat, 0, direct(2, 1))
    late = start(plat, 2, direct(3, 2), delay=L - 1)  # still inside cpu0's programming
    after = start(plat, 3, direct(4, 3), delay=L)  # the lock is free again
    plat.run()
    assert a["value"] == pc.PROG_SUCCESS
    assert late["value"] == pc.DEVICE_BUSY
    assert after["value"] == pc.PROG_SUCCESS
    kt = plat.packages[0].mc.keys
    assert (kt.mode(2), kt.mode(3), kt.mode(4)) == (KEY, TME, KEY)


def test_two_packages_program_in_parallel():
    plat = make()
    cpp = plat.model.topology.cores_per_package
    a = start(plat, 0, direct(7, 1))
    b = start(plat, cpp, direct(7, 2))  # first core of package 1
    plat.run()
    assert a["value"] == b["value"] == pc.PROG_SUCCESS
    assert a["end"] == b["end"] == latency(plat)
    assert plat.packages[0].mc.keys.key(7) == pattern(1)[:16] + pattern(1001)[:16]
    assert plat.packages[1].mc.keys.key(7) == pattern(2)[:16] + pattern(1002)[:16]


def test_entropy_error_leaves_table_unchanged_and_direct_is_unaffected():
    plat = make(overrides={"pconfig": {"entropy_error_probability": 1.0}})
    programmed_base(plat)
    before = tables(plat)
    for cpu in (0, plat.model.topology.cores_per_package):
        box = execute(plat, cpu, pc.KeyProgram(9, pc.SET_KEY_RANDOM))
        assert box["value"] == pc.ENTROPY_ERROR
        assert box["end"] - box["issued"] == latency(plat)  # fails at the end of programming
    assert tables(plat) == before
    # The lock was released, and SET_KEY_DIRECT, CLEAR_KEY, NO_ENCRYPT do not draw entropy.
    for command in (pc.SET_KEY_DIRECT, pc.CLEAR_KEY, pc.NO_ENCRYPT_CMD):
        prog = pc.KeyProgram(9, command, pc.AES_XTS_128, pattern(4), pattern(5))
        assert execute(plat, 0, prog)["value"] == pc.PROG_SUCCESS


@pytest.mark.parametrize(("program", "status"), [
    (pc.KeyProgram(1, 7), pc.INVALID_PROG_CMD),
    (pc.KeyProgram(0, pc.SET_KEY_DIRECT), pc.INVALID_KEYID),
    (pc.KeyProgram(64, pc.SET_KEY_DIRECT), pc.INVALID_KEYID),
    (pc.KeyProgram(1, pc.SET_KEY_DIRECT, 0), pc.INVALID_ENC_ALG),
    (pc.KeyProgram(1, pc.CLEAR_KEY, pc.AES_XTS_256), pc.INVALID_ENC_ALG),
])
def test_sdm_error_model_raises_general_protection(program, status):
    plat = make(overrides={"pconfig": {"error_model": "sdm"}})
    programmed_base(plat)
    before = tables(plat)
    box = execute(plat, 0, program)
    assert "value" not in box
    assert isinstance(box["error"], pc.GeneralProtection)
    assert box["error"].status == status
    assert tables(plat) == before


@pytest.mark.parametrize("command", [pc.SET_KEY_DIRECT, pc.SET_KEY_RANDOM])
@pytest.mark.parametrize("field", [1, 2])
def test_reserved_key_bytes(command, field):
    """Bytes beyond the algorithm's key size are reserved: #GP(0) under the SDM error model,
    ignored under the specification's (which has no return code for them)."""
    key = bytes(16) + b"\x01" + bytes(47)
    fields = (key, bytes(64)) if field == 1 else (bytes(64), key)
    program = pc.KeyProgram(1, command, pc.AES_XTS_128, *fields)
    plat = make(overrides={"pconfig": {"error_model": "sdm"}})
    programmed_base(plat)
    before = tables(plat)
    box = execute(plat, 0, program)
    assert box["error"].status is None and "reserved" in str(box["error"])
    assert tables(plat) == before
    plat = make()
    assert execute(plat, 0, program)["value"] == pc.PROG_SUCCESS


def test_sdm_error_model_still_returns_device_busy_and_entropy_error():
    plat = make(overrides={"pconfig": {"error_model": "sdm", "entropy_error_probability": 1.0}})
    before = tables(plat)
    a = start(plat, 0, pc.KeyProgram(1, pc.SET_KEY_RANDOM))
    b = start(plat, 1, direct(2, 2))
    plat.run()
    assert a.get("value") == pc.ENTROPY_ERROR and "error" not in a
    assert b.get("value") == pc.DEVICE_BUSY and "error" not in b
    assert tables(plat) == before


# -- scope, timing and effect ----------------------------------------------------------------


@pytest.mark.parametrize("package", [0, 1])
def test_acts_only_on_the_executing_cores_package(package):
    plat = make()
    cpp = plat.model.topology.cores_per_package
    other = 1 - package
    before_other = table(plat, other)
    cpu = package * cpp + 5  # not the first core: any core of the package will do
    assert execute(plat, cpu, direct(4, 4))["value"] == pc.PROG_SUCCESS
    assert plat.packages[package].mc.keys.mode(4) == KEY
    assert table(plat, other) == before_other
    assert plat.packages[other].mc.keys.mode(4) == TME


def test_change_appears_exactly_latency_after_issue():
    plat = make()
    L = latency(plat)
    issue = ns(333.0)
    before = table(plat, 0)
    box = start(plat, 3, direct(6, 6), delay=issue)
    plat.run(until=issue + L // 2)
    assert table(plat, 0) == before
    plat.run(until=issue + L - 1)
    assert table(plat, 0) == before  # one tick before the end: still the old entry
    plat.run()
    assert box["value"] == pc.PROG_SUCCESS
    assert box["issued"] == issue and box["end"] == issue + L
    entry = plat.packages[0].mc.keys.entry(6)
    assert (entry.mode, entry.time) == (KEY, issue + L)


def test_set_key_direct_encrypts_with_the_first_16_bytes_of_each_field():
    plat = make()
    assert plat.boot_tweak != 0  # per-boot tweak: it must enter the XTS tweak
    f1, f2 = pattern(31), pattern(32)  # 64 bytes each: only the first 16 may be used
    assert execute(plat, 0, pc.KeyProgram(2, pc.SET_KEY_DIRECT, pc.AES_XTS_128, f1, f2))[
        "value"] == pc.PROG_SUCCESS
    key = f1[:16] + f2[:16]
    for i, pa in enumerate((A, A + 64, A + 0x1000 + 128)):
        data = pattern(40 + i)
        raw = write_and_flush(plat, 0, 2, pa, data)
        assert raw == xts(key, pa, data, plat.boot_tweak)
        assert raw != data


def test_set_key_direct_aes_xts_256_uses_32_bytes_of_each_field():
    plat = make(overrides={"mktme": {"algorithms": ["aes-xts-128", "aes-xts-256"]}})
    f1, f2 = pattern(51), pattern(52)
    assert execute(plat, 0, pc.KeyProgram(3, pc.SET_KEY_DIRECT, pc.AES_XTS_256, f1, f2))[
        "value"] == pc.PROG_SUCCESS
    data = pattern(53)
    raw = write_and_flush(plat, 0, 3, A, data)
    assert raw == xts(f1[:32] + f2[:32], A, data, plat.boot_tweak)


def test_set_key_random_differs_between_packages_and_executions():
    plat = make()
    cpp = plat.model.topology.cores_per_package
    prog = pc.KeyProgram(5, pc.SET_KEY_RANDOM)
    a = start(plat, 0, prog)
    b = start(plat, cpp, prog)
    plat.run()
    assert a["value"] == b["value"] == pc.PROG_SUCCESS
    k0 = plat.packages[0].mc.keys.key(5)
    k1 = plat.packages[1].mc.keys.key(5)
    assert k0 is not None and k1 is not None and len(k0) == len(k1) == 32
    assert k0 != k1
    tme0 = plat.packages[0].mc.keys.key(0)
    assert k0 != tme0
    assert execute(plat, 0, prog)["value"] == pc.PROG_SUCCESS
    again = plat.packages[0].mc.keys.key(5)
    assert again != k0 and again != k1
    # The key really is in use: DRAM holds XTS under it.
    data = pattern(54)
    assert write_and_flush(plat, 0, 5, A, data) == xts(again, A, data, plat.boot_tweak)


def test_clear_key_returns_to_tme_behaviour():
    plat = make()
    data = pattern(61)
    tme_raw = write_and_flush(plat, 0, 0, A, data)  # what KeyID 0 (TME) puts in DRAM
    assert tme_raw != data
    assert execute(plat, 0, direct(4, 62))["value"] == pc.PROG_SUCCESS
    keyed_raw = write_and_flush(plat, 0, 4, A, data)
    assert keyed_raw != tme_raw
    assert execute(plat, 0, pc.KeyProgram(4, pc.CLEAR_KEY))["value"] == pc.PROG_SUCCESS
    assert plat.packages[0].mc.keys.mode(4) == TME
    assert write_and_flush(plat, 0, 4, A, data) == tme_raw


def test_no_encrypt_puts_plaintext_on_the_bus():
    plat = make()
    assert execute(plat, 0, direct(4, 63))["value"] == pc.PROG_SUCCESS
    assert execute(plat, 0, pc.KeyProgram(4, pc.NO_ENCRYPT_CMD))["value"] == pc.PROG_SUCCESS
    assert plat.packages[0].mc.keys.mode(4) == NO_ENCRYPT
    data = pattern(64)
    assert write_and_flush(plat, 0, 4, A, data) == data
    (entry,) = core_ops(plat, 1, [(O.READ, 4, A, 64, None)])
    assert entry[5] == data


@pytest.mark.parametrize("command", [pc.SET_KEY_DIRECT, pc.SET_KEY_RANDOM, pc.CLEAR_KEY,
                                     pc.NO_ENCRYPT_CMD])
def test_changing_a_key_touches_no_cache(command):
    plat = make()
    assert execute(plat, 0, direct(2, 70))["value"] == pc.PROG_SUCCESS
    data = pattern(71)
    core_ops(plat, 0, [(O.WRITE, 2, A, data, None), (O.READ, 2, A, 64, None)])
    core_ops(plat, 1, [(O.READ, 2, A + 64, 64, None)])  # a clean line too
    tag = plat.amap.tag(2, A)
    clean_tag = plat.amap.tag(2, A + 64)
    line = plat.directory[tag]
    assert line.dirty
    holders, clean_holders = line.holders, plat.directory[clean_tag].holders
    where = [c.name for c in plat.caches if c.contains(tag)]
    assert where
    writebacks = plat.writebacks
    dram_before = plat.dram_read(A, 128)
    prog = pc.KeyProgram(2, command, pc.AES_XTS_128, pattern(72), pattern(73))
    assert execute(plat, 1, prog)["value"] == pc.PROG_SUCCESS
    assert plat.packages[0].mc.keys.entry(2).version == 2  # the key did change
    line = plat.directory[tag]
    assert line.dirty and bytes(line.data) == data and line.holders == holders
    assert [c.name for c in plat.caches if c.contains(tag)] == where
    assert plat.directory[clean_tag].holders == clean_holders
    assert plat.writebacks == writebacks
    assert plat.dram_read(A, 128) == dram_before
    (entry,) = core_ops(plat, 0, [(O.READ, 2, A, 64, None)])
    assert entry[5] == data and entry[6] != "DRAM"
