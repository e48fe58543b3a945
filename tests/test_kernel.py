"""The kernel model: the MKTME key service (option parsing, KeyID allocation, references,
system-wide programming), memory management with ``encrypt_mprotect`` and its flush protocol,
and CPU hotplug.

Every refused operation is checked twice: for its clear error (the errno name) and for having
changed nothing (references, KeyID map, keys and serials, VMAs and pages, key tables, hotplug
state). Expectations come from the docstrings of ``mktme_des/kernel`` and ``hw/pconfig.py``,
the policies in ``models/kernel`` and the model parameters; expected DRAM bytes from an
independent AES-XTS (the ``cryptography`` package).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from mktme_des.config.model import load_model
from mktme_des.engine.time import ns, to_ns
from mktme_des.hw import ops as O
from mktme_des.hw import pconfig as pc
from mktme_des.hw.keytable import KEY, NO_ENCRYPT, TME
from mktme_des.hw.platform import Platform
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.invariants import broken_invariants
from mktme_des.kernel.kernel import Kernel
from mktme_des.kernel.mm import PAGE
from mktme_des.kernel.policy import load_policy
from mktme_des.oracle import Oracle
from tests.helpers import pattern, xts

LINES = PAGE // 64
CPU_KEY = "type=cpu algorithm=aes-xts-128"
KHEX = "00112233445566778899aabbccddeeff"
THEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
USER_KEY = f"type=user algorithm=aes-xts-128 key={KHEX} tweak={THEX}"
USER_XTS = bytes.fromhex(KHEX) + bytes.fromhex(THEX)  # data key then tweak key




class Sim:
    """A platform with an oracle and a kernel; ``call`` runs one kernel generator to the end."""

    def __init__(self, model: str = "server-2s", policy: str = "rfc-v2",
                 policy_overrides: dict | None = None, overrides: dict | None = None,
                 seed: int = 5) -> None:
        self.plat = Platform(load_model(model, overrides), seed=seed, oracle=Oracle())
        self.k = Kernel(self.plat, load_policy(policy, policy_overrides))
        self.keys = self.k.keys
        self.mm = self.k.mm

    def call(self, gen):
        box: dict = {}

        def body():
            try:
                box["value"] = yield from gen
            except Errno as err:
                box["errno"] = err

        self.plat.env.process(body())
        self.plat.run()
        if "errno" in box:
            raise box["errno"]
        return box["value"]

    def fails(self, gen, name: str) -> Errno:
        with pytest.raises(Errno) as info:
            self.call(gen)
        assert info.value.name == name, info.value
        assert info.value.reason  # a clear reason is given
        return info.value

    # -- shortcuts -----------------------------------------------------------------------------
    def add(self, desc: str, payload: str = CPU_KEY, cpu: int = 0, capable: bool = True) -> int:
        return self.call(self.keys.add_key(cpu, desc, payload, capable))

    def keyid(self, serial: int) -> int:
        return self.keys.keys[serial].keyid

    def revoke(self, serial: int, cpu: int = 0) -> None:
        self.call(self.keys.revoke(cpu, serial))

    def mmap(self, proc, pages: int, anonymous: bool = True) -> int:
        return self.call(self.mm.mmap(proc, pages * PAGE, anonymous))

    def munmap(self, proc, va: int, pages: int) -> None:
        self.call(self.mm.munmap(proc, va, pages * PAGE))

    def protect(self, proc, va: int, length: int, serial: int) -> None:
        self.call(self.mm.encrypt_mprotect(proc, va, length, 3, serial))

    def _user(self, proc, va: int, op_of):
        def gen():
            yield from self.mm.fault(proc, va)
            keyid, pa = self.mm.translate(proc, va)
            log: list = []
            yield from self.plat.cores[proc.cpu].run(op_of(keyid, pa), log)
            return log

        return self.call(gen())

    def write(self, proc, va: int, data: bytes) -> None:
        """Store ``data`` (whole lines) at page-aligned-or-line-aligned ``va`` within a page."""
        self._user(proc, va, lambda k, pa: [(O.WRITE, k, pa + i, data[i:i + 64], None)
                                            for i in range(0, len(data), 64)])

    def read(self, proc, va: int, n: int = 64) -> bytes:
        log = self._user(proc, va, lambda k, pa: [(O.READ, k, pa + i, min(64, n - i), None)
                                                  for i in range(0, n, 64)])
        return b"".join(e[5] for e in log)

    def frame(self, proc, va: int) -> tuple[int, int]:
        return self.mm.translate(proc, va)

    def page_in_dram(self, serial: int, data: bytes):
        """A process with one page under ``serial``'s key holding ``data``, its first line
        flushed to DRAM: ``(proc, va, keyid, pa)``."""
        proc = self.mm.spawn(0)
        va = self.mmap(proc, 1)
        self.protect(proc, va, PAGE, serial)
        self.write(proc, va, data)
        kid, pa = self.frame(proc, va)
        self.call(self.plat.cores[0].run([(O.CLFLUSH, kid, pa, None, None)], []))
        return proc, va, kid, pa

    def clflushes(self) -> int:
        """CLFLUSH instructions executed so far, from the cores' statistics."""
        return sum(c.stats()["ops"].get("clflush", 0) for c in self.plat.cores)

    def tags_of_page(self, keyid: int, pa: int) -> list[int]:
        amap = self.plat.amap
        return [t for t in (amap.tag(keyid, pa + i * 64) for i in range(LINES))
                if t in self.plat.directory]

    # -- the state a refused call must not change -----------------------------------------------
    def state(self, broadcasts: bool = True) -> dict:
        ks = self.keys
        out = {
            "refs": list(ks.refs),
            "owner": list(ks.owner),
            "keys": {s: (k.description, k.type, k.data_key, k.tweak_key, k.keyid, k.live)
                     for s, k in ks.keys.items()},
            "by_desc": dict(ks.by_desc),
            "next_serial": ks.next_serial,
            "user_type": set(ks.user_type),
            "types": dict(ks.types),
            "vault": dict(ks.vault),
            "tables": [(p.mc.keys.programmed(),
                        [p.mc.keys.key(i) for i in range(p.mc.keys.max_keyid + 1)])
                       for p in self.plat.packages],
            "procs": {pid: ([(v.start, v.end, v.keyid, v.anonymous) for v in pr.vmas],
                            {va: (pg.pa, pg.keyid) for va, pg in pr.pages.items()},
                            {va: s[0] for va, s in pr.swapped.items()})
                      for pid, pr in self.mm.procs.items()},
            "free": [list(f) for f in self.mm.frames.free],
            "online": [(p.online, [c.online for c in p.cores]) for p in self.plat.packages],
            "leads": self.k.lead_cpus(),
        }
        if broadcasts:
            out["broadcasts"] = len(ks.broadcasts)
        return out

    def key_in_tables(self, keyid: int) -> list:
        return [p.mc.keys.key(keyid) for p in self.plat.packages]

    def no_violations(self) -> None:
        assert self.plat.oracle.violations == []


def refs_match_vmas(sim: Sim) -> None:
    """Without page references: refs = live key + VMAs using the KeyID."""
    ks = sim.keys
    for kid in range(1, ks.nr_keyids + 1):
        key = 1 if ks.owner[kid] is not None and ks.owner[kid] in ks.keys and \
            ks.keys[ks.owner[kid]].live else 0
        vmas = sum(v.keyid == kid for p in sim.mm.procs.values() for v in p.vmas)
        assert ks.refs[kid] == key + vmas, kid


# -- add_key: option parsing -----------------------------------------------------------------

EINVAL_PAYLOADS = {
    "unknown-token": f"{CPU_KEY} color=red",
    "token-without-equals": f"{CPU_KEY} verbose",
    "repeated-type": f"type=cpu {CPU_KEY}",
    "repeated-algorithm": f"{CPU_KEY} algorithm=aes-xts-128",
    "repeated-key": f"{USER_KEY} key={KHEX}",
    "bad-type": "type=software algorithm=aes-xts-128",
    "missing-type": "algorithm=aes-xts-128",
    "user-without-key": f"type=user algorithm=aes-xts-128 tweak={THEX}",
    "user-without-tweak": f"type=user algorithm=aes-xts-128 key={KHEX}",
    "key-31-hex": f"type=user algorithm=aes-xts-128 key={KHEX[:31]} tweak={THEX}",
    "key-33-hex": f"type=user algorithm=aes-xts-128 key={KHEX}0 tweak={THEX}",
    "key-not-hex": f"type=user algorithm=aes-xts-128 key=g{KHEX[1:]} tweak={THEX}",
    "tweak-not-hex": f"type=user algorithm=aes-xts-128 key={KHEX} tweak={THEX[:-1]}z",
    "cpu-entropy-not-hex": f"{CPU_KEY} key=xyz",
    "algorithm-for-clear": "type=clear algorithm=aes-xts-128",
    "algorithm-for-no-encrypt": "type=no-encrypt algorithm=aes-xts-128",
    "key-for-clear": f"type=clear key={KHEX}",
    "tweak-for-no-encrypt": f"type=no-encrypt tweak={THEX}",
    "cpu-without-algorithm": "type=cpu",
    "user-without-algorithm": f"type=user key={KHEX} tweak={THEX}",
    "unsupported-algorithm": "type=cpu algorithm=aes-xts-256",
    "empty": "",
    "whitespace-only": "   ",
    "payload-1025-bytes": CPU_KEY.ljust(1025),
}


@pytest.mark.parametrize("payload", list(EINVAL_PAYLOADS.values()), ids=list(EINVAL_PAYLOADS))
def test_add_key_einval(payload):
    sim = Sim()
    first = sim.add("existing")
    before = sim.state()
    sim.fails(sim.keys.add_key(0, "new", payload), "EINVAL")
    assert sim.state() == before
    # The failed call consumed neither a KeyID nor a serial.
    serial = sim.add("next")
    assert serial == first + 1
    assert sim.keyid(serial) == 2


def test_add_key_einval_on_update_changes_nothing():
    """A bad payload for an existing description is refused before any reprogramming."""
    sim = Sim()
    sim.add("k")
    before = sim.state()
    sim.fails(sim.keys.add_key(0, "k", "type=cpu"), "EINVAL")
    assert sim.state() == before


def test_payload_of_exactly_1024_bytes_is_accepted():
    sim = Sim()
    payload = CPU_KEY.ljust(1024)
    assert len(payload.encode()) == 1024
    serial = sim.add("long", payload)
    assert sim.keyid(serial) == 1


@pytest.mark.parametrize(("payload", "mode"), [
    (CPU_KEY, KEY), (f"{CPU_KEY} key={KHEX} tweak={THEX}", KEY), (USER_KEY, KEY),
    ("type=clear", TME), ("type=no-encrypt", NO_ENCRYPT)])
def test_valid_payloads_program_every_package(payload, mode):
    # type=clear and type=no-encrypt program only where CLEAR/NO_ENCRYPT carry an algorithm.
    sim = Sim(policy="mktme-2019" if payload in ("type=clear", "type=no-encrypt") else "rfc-v2")
    serial = sim.add("k", payload)
    kid = sim.keyid(serial)
    assert kid == 1
    assert [p.mc.keys.mode(kid) for p in sim.plat.packages] == [mode, mode]
    assert [p.mc.keys.entry(kid).version for p in sim.plat.packages] == [1, 1]
    if "type=user" in payload:
        assert sim.key_in_tables(kid) == [USER_XTS, USER_XTS]
    elif "type=cpu" in payload:
        k0, k1 = sim.key_in_tables(kid)
        assert k0 != k1  # SET_KEY_RANDOM: a different key per package
        assert USER_XTS not in (k0, k1)  # key=/tweak= are only entropy for a cpu key


@pytest.mark.parametrize("payload", ["type=clear", "type=no-encrypt"])
@pytest.mark.parametrize("policy", ["rfc-v2", "mktme-2019"])
def test_clear_and_no_encrypt_need_an_algorithm_in_pconfig(payload, policy):
    """As posted (RFC v2) CLEAR_KEY and NO_ENCRYPT go out with ENC_ALG = 0, which PCONFIG
    rejects on every package; the 2019 tree sends an activated algorithm."""
    sim = Sim(policy=policy)
    user = sim.add("u", USER_KEY)
    kid = sim.keyid(user)
    before = sim.state(broadcasts=False)
    posted = policy == "rfc-v2"
    if posted:
        sim.fails(sim.keys.add_key(0, "k", payload), "ENOKEY")
        # Scrubbing the slot by updating to type=clear fails too: the user key stays.
        sim.fails(sim.keys.update_key(0, user, "type=clear"), "ENOKEY")
        assert sim.state(broadcasts=False) == before
        assert sim.key_in_tables(kid) == [USER_XTS, USER_XTS]
        statuses = {s for b in sim.keys.broadcasts[1:] for s in b.statuses.values()}
        assert statuses == {"INVALID_ENC_ALG"}
    else:
        serial = sim.add("k", payload)
        assert sim.keyid(serial) == kid + 1
        sim.call(sim.keys.update_key(0, user, "type=clear"))
        assert [p.mc.keys.mode(kid) for p in sim.plat.packages] == [TME, TME]


def test_add_key_eacces_without_capability():
    sim = Sim()
    sim.add("existing")
    before = sim.state()
    sim.fails(sim.keys.add_key(0, "new", CPU_KEY, capable=False), "EACCES")
    sim.fails(sim.keys.add_key(0, "existing", USER_KEY, capable=False), "EACCES")
    assert sim.state() == before


def test_enokey_when_every_keyid_is_used():
    sim = Sim("client-1s")
    m = sim.plat.model.mktme
    n = min((1 << m.keyid_bits) - 1, m.max_keys)
    assert n == 15
    serials = [sim.add(f"k{i}") for i in range(n)]
    assert [sim.keyid(s) for s in serials] == list(range(1, n + 1))  # first fit
    before = sim.state()
    sim.fails(sim.keys.add_key(0, "one-too-many", CPU_KEY), "ENOKEY")
    assert sim.state() == before
    # A freed KeyID is the one the next key gets.
    sim.revoke(serials[6])
    assert sim.keyid(sim.add("again")) == 7
    sim.fails(sim.keys.add_key(0, "still-too-many", CPU_KEY), "ENOKEY")


def test_enokey_when_programming_fails_rfc_v2_does_not_retry():
    sim = Sim(overrides={"pconfig": {"entropy_error_probability": 1.0}})
    sim.add("user-a", USER_KEY)  # SET_KEY_DIRECT draws no entropy
    before = sim.state(broadcasts=False)
    nb = len(sim.keys.broadcasts)
    sim.fails(sim.keys.add_key(0, "cpu-b", CPU_KEY), "ENOKEY")
    assert sim.state(broadcasts=False) == before
    new = sim.keys.broadcasts[nb:]
    assert len(new) == 1  # no retry
    assert new[0].statuses == {0: "ENTROPY_ERROR", 1: "ENTROPY_ERROR"}
    assert new[0].window_ns == 0.0  # nothing changed anywhere
    # The KeyID stayed free for the next add.
    assert sim.keyid(sim.add("user-c", USER_KEY.replace(KHEX, THEX))) == 2


def test_enokey_when_programming_fails_2019_retries_the_whole_broadcast():
    retries = 10
    sim = Sim(policy_overrides={"retries": retries},
              overrides={"pconfig": {"entropy_error_probability": 1.0}})
    before = sim.state(broadcasts=False)
    sim.fails(sim.keys.add_key(0, "cpu-b", CPU_KEY), "ENOKEY")
    assert sim.state(broadcasts=False) == before
    bcs = sim.keys.broadcasts
    assert len(bcs) == retries + 1
    assert [b.attempt for b in bcs] == list(range(1, retries + 2))
    assert all(b.statuses == {0: "ENTROPY_ERROR", 1: "ENTROPY_ERROR"} for b in bcs)
    # Each attempt starts when the previous one ended.
    assert all(b.start == a.end for a, b in zip(bcs, bcs[1:], strict=False))
    assert sim.keyid(sim.add("user", USER_KEY)) == 1


def _busy_package1_during_broadcast(sim: Sim) -> dict:
    """Hold package 1's key-table lock when cpu0's broadcast reaches it (after the remote IPI)."""
    plat = sim.plat
    L = ns(plat.model.pconfig.latency_ns)
    arrive = ns(sim.k.policy.syscall_ns) + ns(plat.model.ipi.remote_ns)
    box: dict = {}

    def squatter():
        yield plat.env.timeout(arrive - L // 2)
        box["status"] = yield from pc.pconfig(plat, 16, pc.KeyProgram(
            40, pc.SET_KEY_DIRECT, pc.AES_XTS_128, pattern(1), pattern(2)))

    plat.env.process(squatter())
    return box


def test_device_busy_on_one_package_fails_the_add_without_rollback():
    sim = Sim()
    box = _busy_package1_during_broadcast(sim)
    sim.fails(sim.keys.add_key(0, "k", CPU_KEY), "ENOKEY")
    assert box["status"] == pc.PROG_SUCCESS
    (bc,) = sim.keys.broadcasts
    assert bc.statuses == {0: "PROG_SUCCESS", 1: "DEVICE_BUSY"}
    # RFC v2 never rolls back: package 0 keeps the new key, package 1 does not have it.
    assert sim.plat.packages[0].mc.keys.mode(1) == KEY
    assert sim.plat.packages[1].mc.keys.mode(1) == TME
    assert sim.keys.owner[1] is None and sim.keys.refs[1] == 0
    assert sim.keys.by_desc == {}
    assert sim.keyid(sim.add("k2")) == 1


def test_device_busy_is_retried_with_retries():
    sim = Sim(policy_overrides={"retries": 10})
    _busy_package1_during_broadcast(sim)
    serial = sim.add("k")
    assert sim.keyid(serial) == 1
    assert [b.attempt for b in sim.keys.broadcasts] == [1, 2]
    assert sim.keys.broadcasts[0].statuses[1] == "DEVICE_BUSY"
    assert sim.keys.broadcasts[1].statuses == {0: "PROG_SUCCESS", 1: "PROG_SUCCESS"}
    assert [p.mc.keys.mode(1) for p in sim.plat.packages] == [KEY, KEY]


def test_first_fit_allocation_after_revoke():
    sim = Sim()
    a, b, c = sim.add("a"), sim.add("b"), sim.add("c")
    assert [sim.keyid(s) for s in (a, b, c)] == [1, 2, 3]
    sim.revoke(b)
    assert sim.keys.refs[2] == 0 and sim.keys.owner[2] is None
    # The hardware slot is not cleared when the KeyID is freed.
    assert [p.mc.keys.mode(2) for p in sim.plat.packages] == [KEY, KEY]
    d = sim.add("d")
    assert sim.keyid(d) == 2
    assert sim.keyid(sim.add("e")) == 4
    assert len({a, b, c, d}) == 4  # a reused KeyID gets a new serial


def test_same_description_updates_the_key_with_the_same_serial():
    sim = Sim()
    serial = sim.add("k", CPU_KEY)
    other = sim.add("other")
    kid = sim.keyid(serial)
    refs, next_serial = list(sim.keys.refs), sim.keys.next_serial
    versions = [p.mc.keys.entry(kid).version for p in sim.plat.packages]
    assert sim.add("k", USER_KEY) == serial
    assert sim.keyid(serial) == kid
    assert sim.keys.next_serial == next_serial
    assert sim.keys.refs == refs
    assert sim.keys.keys[serial].type == "user"
    assert kid in sim.keys.user_type
    assert sim.key_in_tables(kid) == [USER_XTS, USER_XTS]
    assert [p.mc.keys.entry(kid).version for p in sim.plat.packages] == [v + 1 for v in versions]
    assert sim.keys.broadcasts[-1].command == "SET_KEY_DIRECT"
    assert sim.keyid(other) == kid + 1


@pytest.mark.parametrize("via", ["add_key", "update_key"])
def test_update_refused_with_ebusy_while_a_vma_uses_the_keyid(via):
    sim = Sim()
    serial = sim.add("k")
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 2)
    sim.protect(proc, va, 2 * PAGE, serial)
    sim.write(proc, va, pattern(1))
    assert sim.keys.refs[sim.keyid(serial)] == 2
    before = sim.state()
    gen = (sim.keys.add_key(0, "k", USER_KEY) if via == "add_key"
           else sim.keys.update_key(0, serial, USER_KEY))
    sim.fails(gen, "EBUSY")
    assert sim.state() == before
    assert sim.read(proc, va) == pattern(1)
    # Once the VMA is gone the update goes through.
    sim.munmap(proc, va, 2)
    assert sim.add("k", USER_KEY) == serial
    assert sim.key_in_tables(sim.keyid(serial)) == [USER_XTS, USER_XTS]
    sim.no_violations()


def test_update_of_a_keyid_in_use_allowed_with_reprogram_in_use():
    sim = Sim(policy_overrides={"reprogram_in_use": True})
    serial = sim.add("k")
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 1)
    sim.protect(proc, va, PAGE, serial)
    kid = sim.keyid(serial)
    assert sim.add("k", USER_KEY) == serial
    assert sim.key_in_tables(kid) == [USER_XTS, USER_XTS]
    assert sim.keys.refs[kid] == 2


def test_update_key_of_unknown_or_revoked_serial_is_enokey():
    sim = Sim()
    serial = sim.add("k")
    sim.revoke(serial)
    before = sim.state()
    sim.fails(sim.keys.update_key(0, serial, CPU_KEY), "ENOKEY")
    sim.fails(sim.keys.update_key(0, 424242, CPU_KEY), "ENOKEY")
    sim.fails(sim.keys.revoke(0, serial), "ENOKEY")
    assert sim.state() == before


def test_revoked_keyid_is_not_reused_until_the_last_vma_is_unmapped():
    sim = Sim()
    a = sim.add("a")
    proc = sim.mm.spawn(0)
    v1, v2 = sim.mmap(proc, 1), sim.mmap(proc, 2)
    sim.protect(proc, v1, PAGE, a)
    sim.protect(proc, v2, 2 * PAGE, a)
    assert sim.keys.refs[1] == 3
    sim.revoke(a)
    assert sim.keys.refs[1] == 2
    # The key is gone at once: its serial no longer resolves.
    before = sim.state()
    sim.fails(sim.mm.encrypt_mprotect(proc, v1, PAGE, 3, a), "ENOKEY")
    assert sim.state() == before
    assert "a" not in sim.keys.by_desc
    b = sim.add("b")
    assert sim.keyid(b) == 2
    sim.munmap(proc, v1, 1)
    assert sim.keys.refs[1] == 1
    assert sim.keyid(sim.add("c")) == 3
    sim.munmap(proc, v2, 2)
    assert sim.keys.refs[1] == 0
    d = sim.add("d")
    assert sim.keyid(d) == 1
    # A new key with the old description is a new key.
    assert sim.add("a") not in (a, b, d)


@pytest.mark.parametrize("policy", ["rfc-v2", "mktme-2019"])
def test_page_references_only_with_refcount_pages(policy):
    sim = Sim(policy=policy)
    per_page = 1 if sim.k.policy.refcount_pages else 0
    assert per_page == (policy == "mktme-2019")
    serial = sim.add("k")
    kid = sim.keyid(serial)
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 3)
    sim.protect(proc, va, 3 * PAGE, serial)
    assert sim.keys.refs[kid] == 2
    sim.write(proc, va, pattern(1))
    sim.write(proc, va + PAGE, pattern(2))
    assert sim.keys.refs[kid] == 2 + 2 * per_page
    sim.call(sim.mm.swap_out(proc, va))
    assert sim.keys.refs[kid] == 2 + 1 * per_page
    assert sim.read(proc, va) == pattern(1)  # swap-in: a page again
    assert sim.keys.refs[kid] == 2 + 2 * per_page
    sim.revoke(serial)
    assert sim.keys.refs[kid] == 1 + 2 * per_page
    # A partial munmap splits the VMA (the piece takes a reference) and frees one page.
    sim.munmap(proc, va, 1)
    assert sim.keys.refs[kid] == 1 + 1 * per_page
    assert sim.keyid(sim.add("other")) != kid
    sim.munmap(proc, va + PAGE, 2)
    assert sim.keys.refs[kid] == 0
    assert sim.keyid(sim.add("again")) == kid
    sim.no_violations()


# -- encrypt_mprotect ---------------------------------------------------------------------------


def _mapped(sim: Sim, pages: int = 2):
    serial = sim.add("k")
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, pages)
    for i in range(pages):
        sim.write(proc, va + i * PAGE, pattern(100 + i))
    return serial, proc, va


@pytest.mark.parametrize(("offset", "length"), [(0, PAGE + 1), (0, 100), (0, PAGE - 64),
                                                (64, PAGE), (1, 2 * PAGE), (PAGE // 2, PAGE)],
                         ids=["len+1", "len-100", "len-short", "addr+64", "addr+1", "addr-half"])
def test_encrypt_mprotect_einval_unaligned(offset, length):
    sim = Sim()
    serial, proc, va = _mapped(sim)
    before = sim.state()
    sim.fails(sim.mm.encrypt_mprotect(proc, va + offset, length, 3, serial), "EINVAL")
    assert sim.state() == before
    assert sim.read(proc, va) == pattern(100)


def test_encrypt_mprotect_enokey_unknown_and_revoked_serial():
    sim = Sim()
    serial, proc, va = _mapped(sim)
    gone = sim.add("gone")
    sim.revoke(gone)
    before = sim.state()
    sim.fails(sim.mm.encrypt_mprotect(proc, va, PAGE, 3, 987654), "ENOKEY")
    sim.fails(sim.mm.encrypt_mprotect(proc, va, PAGE, 3, gone), "ENOKEY")
    assert sim.state() == before
    assert sim.read(proc, va) == pattern(100)


def test_encrypt_mprotect_enomem_for_an_unmapped_hole():
    sim = Sim()
    serial, proc, va = _mapped(sim)
    second = sim.mmap(proc, 2)
    assert second > va + 2 * PAGE  # a gap lies between the two VMAs
    before = sim.state()
    for start, length in ((va, second + 2 * PAGE - va),  # across the gap
                          (va + PAGE, 2 * PAGE),  # runs past the end of the first VMA
                          (va + 2 * PAGE, PAGE),  # only the gap
                          (second + 4 * PAGE, PAGE)):  # nothing at all
        sim.fails(sim.mm.encrypt_mprotect(proc, start, length, 3, serial), "ENOMEM")
    assert sim.state() == before
    assert sim.read(proc, va) == pattern(100)
    assert sim.read(proc, va + PAGE) == pattern(101)


def test_encrypt_mprotect_einval_for_a_file_backed_vma_all_or_nothing():
    sim = Sim()
    serial, proc, va = _mapped(sim, pages=3)
    other = sim.add("other")
    sim.protect(proc, va + PAGE, PAGE, other)  # three anonymous VMAs: K0 | other | K0
    sim.write(proc, va + PAGE, pattern(7))
    proc.next_va -= PAGE  # MAP_FIXED right after the anonymous VMAs: no gap
    fva = sim.mmap(proc, 2, anonymous=False)
    assert fva == va + 3 * PAGE
    before = sim.state()
    sim.fails(sim.mm.encrypt_mprotect(proc, va, 5 * PAGE, 3, serial), "EINVAL")
    sim.fails(sim.mm.encrypt_mprotect(proc, va + 2 * PAGE, 2 * PAGE, 3, serial), "EINVAL")
    sim.fails(sim.mm.encrypt_mprotect(proc, fva, PAGE, 3, serial), "EINVAL")
    assert sim.state() == before
    # The anonymous VMAs before the file mapping kept their KeyIDs and their pages.
    assert sim.read(proc, va) == pattern(100)
    assert sim.read(proc, va + PAGE) == pattern(7)
    assert sim.read(proc, va + 2 * PAGE) == pattern(102)
    refs_match_vmas(sim)
    sim.no_violations()


def test_encrypt_mprotect_splits_vmas_and_moves_references():
    sim = Sim()
    a, b = sim.add("a"), sim.add("b")
    ka, kb = sim.keyid(a), sim.keyid(b)
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 4)
    sim.protect(proc, va + PAGE, 2 * PAGE, a)
    assert [(v.start - va, v.end - va, v.keyid) for v in proc.vmas] == [
        (0, PAGE, 0), (PAGE, 3 * PAGE, ka), (3 * PAGE, 4 * PAGE, 0)]
    assert sim.keys.refs[ka] == 2
    # Re-keying part of the a-VMA splits it again; the piece moves to b.
    sim.protect(proc, va + 2 * PAGE, PAGE, b)
    assert [(v.start - va, v.end - va, v.keyid) for v in proc.vmas] == [
        (0, PAGE, 0), (PAGE, 2 * PAGE, ka), (2 * PAGE, 3 * PAGE, kb), (3 * PAGE, 4 * PAGE, 0)]
    assert (sim.keys.refs[ka], sim.keys.refs[kb]) == (2, 2)
    # The whole range to a: three VMAs move (one already had a), none is merged.
    sim.protect(proc, va, 4 * PAGE, a)
    assert [v.keyid for v in proc.vmas] == [ka] * 4
    assert (sim.keys.refs[ka], sim.keys.refs[kb]) == (5, 1)
    refs_match_vmas(sim)
    sim.munmap(proc, va, 4)
    assert (sim.keys.refs[ka], sim.keys.refs[kb]) == (1, 1)


def test_encrypt_mprotect_discards_existing_pages():
    sim = Sim()
    serial, proc, va = _mapped(sim, pages=3)
    sim.call(sim.mm.swap_out(proc, va + 2 * PAGE))
    assert sim.read(proc, va) == pattern(100)
    sim.protect(proc, va, 3 * PAGE, serial)
    assert proc.pages == {} and proc.swapped == {}
    for i in range(3):
        assert sim.read(proc, va + i * PAGE, PAGE) == bytes(PAGE)  # zeros, not the old data
    sim.no_violations()


def test_encrypt_mprotect_with_the_same_key_keeps_the_pages():
    sim = Sim()
    serial, proc, va = _mapped(sim)
    sim.protect(proc, va, 2 * PAGE, serial)
    sim.write(proc, va, pattern(9))
    sim.protect(proc, va, 2 * PAGE, serial)  # same KeyID: mprotect_fixup does nothing
    assert sim.read(proc, va) == pattern(9)
    assert sim.keys.refs[sim.keyid(serial)] == 2


def test_new_pages_are_zeroed_through_the_new_keyid():
    sim = Sim()
    serial = sim.add("u", USER_KEY)
    kid = sim.keyid(serial)
    proc = sim.mm.spawn(3)
    va = sim.mmap(proc, 1)
    sim.protect(proc, va, PAGE, serial)
    assert sim.read(proc, va + 128, 64) == bytes(64)  # first touch: a fresh page
    _, pa = sim.frame(proc, va)
    amap = sim.plat.amap
    for i in range(LINES):  # every line was stored through (K, pa) with zeros
        line = sim.plat.directory[amap.tag(kid, pa + i * 64)]
        assert bytes(line.data) == bytes(64)
    assert sim.tags_of_page(0, pa) == []
    pkg = sim.plat.cores[3].package
    done = sim.plat.wbinvd(sim.plat.env.now, pkg, 3)
    sim.plat.run(until=done + 1)
    boot = sim.plat.boot_tweak
    for i in range(LINES):
        lpa = pa + i * 64
        assert sim.plat.dram_read(lpa, 64) == xts(USER_XTS, lpa, bytes(64), boot)
    sim.no_violations()


# -- the flush protocol ---------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["rfc-v2", "unsafe-no-flush-on-free"])
def test_flush_on_free_leaves_no_dirty_line_of_the_keyid(policy):
    sim = Sim(policy=policy)
    serial = sim.add("u", USER_KEY)
    kid = sim.keyid(serial)
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 2)
    sim.protect(proc, va, 2 * PAGE, serial)
    data = [pattern(10, PAGE), pattern(11, PAGE)]
    for i in range(2):
        sim.write(proc, va + i * PAGE, data[i])
    pas = [sim.frame(proc, va + i * PAGE)[1] for i in range(2)]
    for pa in pas:
        tags = sim.tags_of_page(kid, pa)
        assert len(tags) == LINES and all(sim.plat.directory[t].dirty for t in tags)
    flushes = sim.clflushes()
    sim.munmap(proc, va, 2)
    boot = sim.plat.boot_tweak
    if sim.k.policy.flush_on_free:
        assert sim.clflushes() - flushes == 2 * LINES  # 64 CLFLUSH per freed page
        for pa, d in zip(pas, data, strict=True):
            assert sim.tags_of_page(kid, pa) == []
            for i in range(LINES):  # the dirty lines reached DRAM under the key
                lpa = pa + i * 64
                assert sim.plat.dram_read(lpa, 64) == xts(USER_XTS, lpa, d[i * 64:(i + 1) * 64],
                                                          boot)
    else:
        assert sim.clflushes() == flushes
        for pa in pas:
            tags = sim.tags_of_page(kid, pa)
            assert len(tags) == LINES and all(sim.plat.directory[t].dirty for t in tags)


@pytest.mark.parametrize("flush_on_alloc", [True, False])
def test_flush_on_alloc_flushes_through_the_previous_keyid(flush_on_alloc):
    # No flush on free, so the previous owner's dirty lines are still cached at allocation.
    sim = Sim(policy_overrides={"flush_on_free": False, "flush_on_alloc": flush_on_alloc})
    k1, k2 = sim.add("one"), sim.add("two")
    kid1, kid2 = sim.keyid(k1), sim.keyid(k2)
    p1, p2 = sim.mm.spawn(0), sim.mm.spawn(0)
    v1 = sim.mmap(p1, 1)
    sim.protect(p1, v1, PAGE, k1)
    sim.write(p1, v1, pattern(20, PAGE))
    _, pa = sim.frame(p1, v1)
    sim.munmap(p1, v1, 1)
    assert len(sim.tags_of_page(kid1, pa)) == LINES
    v2 = sim.mmap(p2, 1)
    sim.protect(p2, v2, PAGE, k2)
    flushes = sim.clflushes()
    assert sim.read(p2, v2) == bytes(64)
    assert sim.frame(p2, v2) == (kid2, pa)  # the same frame (LIFO free list)
    if flush_on_alloc:
        assert sim.clflushes() - flushes == LINES
        assert sim.tags_of_page(kid1, pa) == []
    else:
        assert sim.clflushes() == flushes
        assert len(sim.tags_of_page(kid1, pa)) == LINES
    assert len(sim.tags_of_page(kid2, pa)) == LINES  # zeroed through K2


def test_flush_on_alloc_through_keyid_0_and_not_for_keyid_0_or_the_same_keyid():
    sim = Sim()
    serial = sim.add("k")
    kid = sim.keyid(serial)
    p1, p2, p3 = sim.mm.spawn(0), sim.mm.spawn(0), sim.mm.spawn(0)
    # A plain page is freed without a flush (KeyID 0) ...
    v1 = sim.mmap(p1, 1)
    sim.write(p1, v1, pattern(30, PAGE))
    _, pa = sim.frame(p1, v1)
    flushes = sim.clflushes()
    sim.munmap(p1, v1, 1)
    assert sim.clflushes() == flushes
    assert len(sim.tags_of_page(0, pa)) == LINES
    # ... and flushed through KeyID 0 when it is next allocated for KeyID K.
    v2 = sim.mmap(p2, 1)
    sim.protect(p2, v2, PAGE, serial)
    assert sim.read(p2, v2) == bytes(64)
    assert sim.frame(p2, v2) == (kid, pa)
    assert sim.clflushes() - flushes == LINES
    assert sim.tags_of_page(0, pa) == []
    # Freed with K (flushed on free), then allocated for K again: no flush on allocation.
    flushes = sim.clflushes()
    sim.munmap(p2, v2, 1)
    assert sim.clflushes() - flushes == LINES
    flushes = sim.clflushes()
    v3 = sim.mmap(p3, 1)
    sim.protect(p3, v3, PAGE, serial)
    assert sim.read(p3, v3) == bytes(64)
    assert sim.frame(p3, v3) == (kid, pa)
    assert sim.clflushes() == flushes
    # Freed with K, allocated for KeyID 0: no flush on allocation either.
    sim.munmap(p3, v3, 1)
    flushes = sim.clflushes()
    v4 = sim.mmap(p1, 1)
    assert sim.read(p1, v4) == bytes(64)
    assert sim.frame(p1, v4) == (0, pa)
    assert sim.clflushes() == flushes
    sim.no_violations()


# -- hotplug -----------------------------------------------------------------------------------


def test_online_refused_with_eperm_when_a_user_key_is_in_use_without_savekeys():
    sim = Sim()
    sim.call(sim.k.hp.offline_package(1))
    sim.add("u", USER_KEY)
    before = sim.state()
    sim.fails(sim.k.hp.online_package(1), "EPERM")
    assert sim.state() == before
    assert not sim.plat.packages[1].online
    assert sim.plat.packages[1].mc.keys.mode(1) == TME
    # The hotplug lock was released: the next attempt is refused for the same reason, not hung.
    sim.fails(sim.k.hp.online_package(1), "EPERM")


def test_online_with_savekeys_programs_the_same_user_key():
    sim = Sim(policy_overrides={"savekeys": True})
    sim.call(sim.k.hp.offline_package(1))
    serial = sim.add("u", USER_KEY)
    kid = sim.keyid(serial)
    assert sim.plat.packages[1].mc.keys.mode(kid) == TME  # offline: not programmed
    sim.call(sim.k.hp.online_package(1))
    assert sim.plat.packages[1].online
    assert all(c.online for c in sim.plat.packages[1].cores)
    assert sim.key_in_tables(kid) == [USER_XTS, USER_XTS]


def test_online_gives_a_cpu_key_a_different_random_key_and_starts_from_an_empty_table():
    sim = Sim(policy_overrides={"clear_sends_alg": True})  # a no-encrypt key can exist
    x, y, z = (sim.add(d, USER_KEY) for d in "xyz")  # KeyIDs 1-3, programmed everywhere
    for serial in (x, y, z):
        sim.revoke(serial)  # freed; the hardware slots stay programmed
    sim.call(sim.k.hp.offline_package(1))
    cpu_key = sim.add("c", CPU_KEY)
    plain = sim.add("n", "type=no-encrypt")
    kc, kn = sim.keyid(cpu_key), sim.keyid(plain)
    assert (kc, kn) == (1, 2)
    t1 = sim.plat.packages[1].mc.keys
    assert [t1.key(k) for k in (1, 2, 3)] == [USER_XTS] * 3  # stale slots while offline
    sim.call(sim.k.hp.online_package(1))
    assert t1.mode(kc) == KEY
    k0, k1 = sim.key_in_tables(kc)
    assert k1 is not None and k1 != k0 and k1 != USER_XTS
    assert t1.mode(kn) == NO_ENCRYPT
    assert set(t1.programmed()) == {kc, kn}  # only KeyIDs in use were programmed
    assert t1.mode(3) == TME  # the package came back with an empty table
    assert sim.plat.packages[0].mc.keys.key(3) == USER_XTS


def test_offline_of_a_lead_cpu_hands_over_to_a_sibling():
    sim = Sim()
    cpp = sim.plat.model.topology.cores_per_package
    lead1 = cpp
    assert sim.k.lead_cpus() == {0: 0, 1: lead1}
    sim.add("before")
    sim.call(sim.k.hp.offline_cpu(lead1))
    assert sim.k.lead_cpus() == {0: 0, 1: lead1 + 1}
    entry = sim.k.hp.log[-1]
    assert (entry["was_lead"], entry["new_lead"]) == (True, lead1 + 1)
    mark = len(sim.plat.pconfig_log)
    serial = sim.add("after")
    kid = sim.keyid(serial)
    pkg1 = [e for e in sim.plat.pconfig_log[mark:] if e[2] == 1]
    assert {e[1] for e in pkg1} == {lead1 + 1}
    assert [e[5] for e in pkg1] == ["issued", "applied"]
    assert sim.plat.packages[1].mc.keys.mode(kid) == KEY
    # Offlining a CPU that is not the lead hands nothing over.
    sim.call(sim.k.hp.offline_cpu(lead1 + 5))
    assert sim.k.hp.log[-1]["was_lead"] is False
    assert sim.k.lead_cpus() == {0: 0, 1: lead1 + 1}


def test_offline_of_the_last_online_cpu_with_keys_in_use_is_ebusy_in_2019():
    sim = Sim(policy="mktme-2019")
    cpp = sim.plat.model.topology.cores_per_package
    serial = sim.add("k")
    for cpu in range(cpp + 1, 2 * cpp):
        sim.call(sim.k.hp.offline_cpu(cpu))
    before = sim.state()
    sim.fails(sim.k.hp.offline_cpu(cpp), "EBUSY")
    assert sim.state() == before
    assert sim.plat.packages[1].online and sim.plat.cores[cpp].online
    # With no key in use the package may go down with its last CPU.
    sim.revoke(serial)
    sim.call(sim.k.hp.offline_cpu(cpp))
    assert not sim.plat.packages[1].online
    assert sim.k.lead_cpus() == {0: 0}


def test_offline_errors():
    sim = Sim()
    sim.call(sim.k.hp.offline_package(1))
    before = sim.state()
    sim.fails(sim.k.hp.offline_package(1), "EINVAL")  # already offline
    sim.fails(sim.k.hp.offline_package(0), "EBUSY")  # the last online package
    sim.fails(sim.k.hp.online_package(0), "EINVAL")  # already online
    sim.fails(sim.k.hp.offline_cpu(17), "EINVAL")  # already offline
    assert sim.state() == before


@pytest.mark.parametrize("caller", [0, 1, 16, 17])
def test_broadcast_window_is_the_difference_of_completion_times(caller):
    sim = Sim()
    m = sim.plat.model
    cpp = m.topology.cores_per_package
    L = ns(m.pconfig.latency_ns)
    local, remote = ns(m.ipi.local_ns), ns(m.ipi.remote_ns)
    caller_pkg = caller // cpp
    delays = {}
    sent = 0  # IPIs leave the caller one after another, send_ns apart, in package order
    for pkg in (0, 1):
        lead = pkg * cpp
        if caller == lead:
            delays[pkg] = 0
        else:
            sent += 1
            delays[pkg] = sent * ns(m.ipi.send_ns) + (local if pkg == caller_pkg else remote)
    sim.add("k", cpu=caller)
    (bc,) = sim.keys.broadcasts
    assert bc.first_change - bc.start == min(delays.values()) + L
    assert bc.last_change - bc.start == max(delays.values()) + L
    assert bc.end - bc.start == max(delays.values()) + L
    assert bc.window_ns == to_ns(abs(delays[0] - delays[1]))
    assert bc.window_ns > 0
    for pkg in (0, 1):
        assert sim.plat.packages[pkg].mc.keys.entry(1).time == bc.start + delays[pkg] + L


def test_broadcast_with_one_package_offline_has_no_window():
    sim = Sim()
    sim.call(sim.k.hp.offline_package(1))
    sim.add("k")
    (bc,) = sim.keys.broadcasts
    assert bc.statuses == {0: "PROG_SUCCESS"}
    assert bc.window_ns == 0.0
    assert sim.plat.packages[1].mc.keys.mode(1) == TME


@pytest.mark.parametrize("policy", ["rfc-v2", "unsafe-no-hotplug-lock"])
def test_online_during_a_broadcast(policy):
    """The broadcast holds the hotplug lock as a reader: an online waits and then programs the
    new KeyID; without the lock the onlined package misses it."""
    sim = Sim(policy=policy)
    sim.call(sim.k.hp.offline_package(1))
    box: dict = {}

    def onliner():
        yield sim.plat.env.timeout(ns(sim.k.policy.syscall_ns) + 1)  # the broadcast has begun
        yield from sim.k.hp.online_package(1)
        box["online_at"] = sim.plat.env.now

    sim.plat.env.process(onliner())
    serial = sim.add("k")
    kid = sim.keyid(serial)
    assert sim.plat.packages[1].online
    mode = sim.plat.packages[1].mc.keys.mode(kid)
    if sim.k.policy.hotplug_lock:
        assert mode == KEY
        assert box["online_at"] >= sim.keys.broadcasts[0].end
    else:
        assert mode == TME


# -- memory hot-remove: migrating pages off a package going offline -----------------------------


def _tenant_on_package_1(sim: Sim, pages: int = 3):
    """A process on cpu 16 (package 1) with ``pages`` encrypted pages written with patterns."""
    serial = sim.add("k")
    proc = sim.mm.spawn(16)
    va = sim.mmap(proc, pages)
    sim.protect(proc, va, pages * PAGE, serial)
    for i in range(pages):
        sim.write(proc, va + i * PAGE, pattern(40 + i) * (PAGE // 64))
    home = sim.plat.amap.home
    assert all(home(sim.frame(proc, va + i * PAGE)[1]) == 1 for i in range(pages))
    return proc, va, sim.keyid(serial)


def test_offline_with_pages_is_refused_unless_the_policy_migrates():
    sim = Sim()
    _tenant_on_package_1(sim)
    before = sim.state()
    err = sim.fails(sim.k.hp.offline_package(1), "EBUSY")
    assert "3 allocated page(s)" in err.reason and "migrate_on_offline" in err.reason
    assert sim.state() == before


@pytest.mark.parametrize("policy", ["rfc-v2", "mktme-2019"])
def test_offline_migrates_pages_through_their_keyid_and_keeps_their_data(policy):
    sim = Sim(policy=policy, policy_overrides={"migrate_on_offline": True})
    proc, va, kid = _tenant_on_package_1(sim)
    refs = sim.keys.refs[kid]
    old = [sim.frame(proc, va + i * PAGE)[1] for i in range(3)]
    flushes = sim.clflushes()
    sim.call(sim.k.hp.offline_package(1))
    assert not sim.plat.packages[1].online
    assert proc.cpu == 0  # the scheduler moved the task off the dead CPUs
    home = sim.plat.amap.home
    for i in range(3):
        keyid, pa = sim.frame(proc, va + i * PAGE)
        assert keyid == kid and home(pa) == 0
        assert sim.read(proc, va + i * PAGE, PAGE) == pattern(40 + i) * (PAGE // 64)
    # The old frames went back to package 1's free list, flushed through the KeyID.
    assert set(old) <= set(sim.mm.frames.free[1])
    assert sim.clflushes() - flushes >= 3 * LINES
    assert sim.keys.refs[kid] == refs  # page references moved with the pages
    assert sim.mm.counts["pages_migrated"] == 3
    assert sim.k.hp.log[-1]["migrated"] == 3
    sim.no_violations()


def test_migrating_through_a_keyid0_direct_map_corrupts_and_the_oracle_says_so():
    sim = Sim(policy="unsafe-keyid0-direct-map", policy_overrides={"migrate_on_offline": True})
    proc, va, _ = _tenant_on_package_1(sim, pages=1)
    sim.call(sim.k.hp.offline_package(1))
    # The kernel copied ciphertext-as-KeyID-0 plaintext: under the new address the user's
    # KeyID decrypts it to garbage.
    assert sim.read(proc, va) != pattern(40)
    assert sim.plat.oracle.violations


def test_an_access_during_migration_waits_for_the_page_to_be_mapped_again():
    sim = Sim(policy_overrides={"migrate_on_offline": True})
    proc, va, _ = _tenant_on_package_1(sim, pages=2)
    env = sim.plat.env
    seen = {}

    def reader():
        yield env.timeout(ns(200))  # inside the offline's TLB shootdown window
        start = env.now
        yield from sim.mm.fault(proc, va + PAGE)
        keyid, pa = sim.mm.translate(proc, va + PAGE)
        log: list = []
        yield from sim.plat.cores[0].run([(O.READ, keyid, pa, 64, None)], log)
        seen.update(start=start, pa=pa, data=log[0][5], end=env.now)

    env.process(reader())
    sim.call(sim.k.hp.offline_package(1))
    assert sim.plat.amap.home(seen["pa"]) == 0  # it waited, then used the new frame
    assert seen["data"] == pattern(41)
    assert seen["end"] - seen["start"] > ns(1000)
    sim.no_violations()


def test_migration_out_of_frames_fails_with_the_rest_left_in_place():
    # Package 0 has two free frames left: the third page cannot move.
    sim = Sim(policy_overrides={"migrate_on_offline": True})
    proc, va, _ = _tenant_on_package_1(sim)
    del sim.mm.frames.free[0][:-2]
    err = sim.fails(sim.k.hp.offline_package(1), "ENOMEM")
    assert "package 0" in err.reason
    assert sim.plat.packages[1].online
    home = sim.plat.amap.home
    assert [home(sim.frame(proc, va + i * PAGE)[1]) for i in range(3)] == [0, 0, 1]
    for i in range(3):
        assert sim.read(proc, va + i * PAGE, PAGE) == pattern(40 + i) * (PAGE // 64)
    assert not proc.migrating
    sim.no_violations()


# -- key lifetime: revoke waits for the garbage collector, invalidate does not -----------------


def _full_then_release(how: str, gc_delay_s: float, probe_after_ns: float) -> dict:
    """Fill the client model's 15 KeyIDs, release KeyID 3's key with ``how`` and, that many
    ns later, try the released serial and a new key; returns what each call gave."""
    sim = Sim("client-1s", policy_overrides={"key_gc_delay_s": gc_delay_s})
    serials = [sim.add(f"k{i}") for i in range(15)]
    released = serials[2]
    kid = sim.keyid(released)
    out: dict = {}

    def body():
        t0 = sim.plat.env.now
        yield from getattr(sim.keys, how)(0, released)
        out["released_at"] = sim.plat.env.now
        yield sim.plat.env.timeout(max(0, t0 + ns(probe_after_ns) - sim.plat.env.now))
        out["probe_at"] = sim.plat.env.now
        for name, gen in (("update", sim.keys.update_key(0, released, CPU_KEY)),
                          ("mprotect", sim.mm.encrypt_mprotect(proc, va, PAGE, 3, released)),
                          ("add", sim.keys.add_key(0, "new", CPU_KEY))):
            try:
                out[name] = yield from gen
            except Errno as err:
                out[name] = err.name

    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 1)
    sim.plat.env.process(body())
    sim.plat.run()
    out["new_keyid"] = sim.keyid(out["add"]) if isinstance(out["add"], int) else None
    out["kid"] = kid
    return out


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(gc_us=st.floats(1.0, 1000.0), probe_fraction=st.floats(0.0, 3.0))
def test_revoked_key_holds_its_keyid_until_garbage_collection(gc_us, probe_fraction):
    """A revoked key is unusable at once (EKEYREVOKED) but keeps its KeyID until the collector
    runs gc_delay later; then its serial is gone (ENOKEY) and the KeyID is reused."""
    probe_ns = probe_fraction * gc_us * 1000
    assume(abs(probe_ns - gc_us * 1000) > 2000)  # not within the probing calls' own time
    out = _full_then_release("revoke", gc_us * 1e-6, probe_ns)
    collected = out["probe_at"] > out["released_at"] + ns(gc_us * 1000) - ns(2000)
    assert out["update"] == out["mprotect"] == ("ENOKEY" if collected else "EKEYREVOKED")
    if collected:
        assert out["new_keyid"] == out["kid"]
    else:
        assert out["add"] == "ENOKEY"  # all 15 KeyIDs still held


@pytest.mark.parametrize("gc_delay_s", [300.0, 0.001])
def test_invalidate_releases_the_keyid_at_once(gc_delay_s):
    out = _full_then_release("invalidate", gc_delay_s, 0.0)
    assert out["update"] == out["mprotect"] == "ENOKEY"
    assert out["new_keyid"] == out["kid"]


def test_default_gc_delay_is_the_keyring_default_of_300_s():
    """keyrings(7): /proc/sys/kernel/keys/gc_delay defaults to 300 seconds."""
    out = _full_then_release("revoke", load_policy("rfc-v2").key_gc_delay_s, 299.9e9)
    assert out["add"] == "ENOKEY" and out["update"] == "EKEYREVOKED"
    out = _full_then_release("revoke", load_policy("rfc-v2").key_gc_delay_s, 300.1e9)
    assert out["new_keyid"] == out["kid"]


# -- CPU-less packages: RFC v2 patch 13 forgets them, 2019 refuses ---------------------------


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(before=st.lists(st.sampled_from(["cpu", "user"]), max_size=3),
       during=st.lists(st.sampled_from(["cpu", "user"]), max_size=3),
       policy=st.sampled_from(["rfc-v2", "mktme-2019"]))
def test_a_package_without_online_cpus(before, during, policy):
    """RFC v2: the last CPU may always go; keys added meanwhile never reach the package; when
    a CPU returns every KeyID in use is programmed there, CPU keys with a new random key.
    2019: the last CPU cannot go while keys are in use, and no key is created meanwhile."""
    sim = Sim(policy=policy, policy_overrides={"savekeys": True},
              overrides={"topology": {"cores_per_package": 2}})
    payload = {"cpu": CPU_KEY, "user": USER_KEY}
    old = {sim.keyid(sim.add(f"b{i}", payload[t])): t for i, t in enumerate(before)}
    t1 = sim.plat.packages[1].mc.keys
    old_keys = {k: t1.key(k) for k in old}
    sim.call(sim.k.hp.offline_cpu(2))
    if policy == "mktme-2019" and old:
        sim.fails(sim.k.hp.offline_cpu(3), "EBUSY")
        assert sim.k.lead_cpus() == {0: 0, 1: 3}
        return
    sim.call(sim.k.hp.offline_cpu(3))
    assert sim.k.lead_cpus() == {0: 0}
    new: dict[int, str] = {}
    for i, t in enumerate(during):
        if policy == "mktme-2019":
            sim.fails(sim.keys.add_key(0, f"d{i}", payload[t]), "EINVAL")
            continue
        kid = sim.keyid(sim.add(f"d{i}", payload[t]))
        new[kid] = t
        assert t1.mode(kid) == TME  # never programmed on the CPU-less package
    sim.call(sim.k.hp.online_cpu(2))
    assert sim.k.lead_cpus() == {0: 0, 1: 2}
    for kid, t in {**old, **new}.items():
        assert t1.mode(kid) == KEY
        if t == "user":
            assert t1.key(kid) == USER_XTS
    for kid, t in old.items():
        if t == "cpu":
            assert t1.key(kid) != old_keys[kid]  # a fresh random key: old data is garbage


def test_cpu_key_data_on_a_forgotten_package_becomes_garbage():
    sim = Sim(overrides={"topology": {"cores_per_package": 2}})
    serial = sim.add("k")
    proc = sim.mm.spawn(2)  # package 1: its pages are homed there
    va = sim.mmap(proc, 1)
    sim.protect(proc, va, PAGE, serial)
    sim.write(proc, va, pattern(7))
    sim.call(sim.plat.cores[2].run([(O.CLFLUSH, *sim.frame(proc, va), None, None)], []))
    sim.call(sim.k.hp.offline_cpu(3))
    sim.call(sim.k.hp.offline_cpu(2))  # RFC v2: succeeds; the process moves to cpu 0
    assert proc.cpu == 0
    assert sim.read(proc, va) == pattern(7)  # the old key is still in package 1's table
    kid, pa = sim.frame(proc, va)
    sim.call(sim.plat.cores[0].run([(O.CLFLUSH, kid, pa, None, None)], []))
    sim.call(sim.k.hp.online_cpu(2))
    assert sim.read(proc, va) != pattern(7)


# -- a package without memory: the CPU rules of both series, no data at stake ------------------

MEMORYLESS_OPS = st.sampled_from(["offline2", "offline3", "online2", "online3", "cpu-key",
                                  "user-key", "invalidate", "tenant"])


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(ops=st.lists(MEMORYLESS_OPS, min_size=6, max_size=16),
       policy=st.sampled_from(["rfc-v2", "mktme-2019"]), savekeys=st.booleans())
# The two returns that differ most, always run: 2019 brings a CPU back to a package whose
# table missed the keys created while it had none; RFC v2 refuses it for an unsaved user key.
@example(ops=["offline2", "offline3", "cpu-key", "tenant", "online2", "tenant", "cpu-key",
              "tenant"], policy="mktme-2019", savekeys=False)
@example(ops=["cpu-key", "tenant", "offline2", "offline3", "user-key", "tenant", "online3",
              "invalidate", "cpu-key", "online3", "tenant"], policy="rfc-v2", savekeys=False)
def test_a_package_without_memory_under_random_hotplug_and_keys(ops, policy, savekeys):
    """On server-2s-memoryless (package 1: CPUs 2-3, a key table, no memory), whatever the
    order of CPU hotplug, keys and tenants:

    * the last CPU of package 1 goes (RFC v2, patch 13) unless the 2019 rules are on and a
      key is in use (EBUSY), as 2019's teardown never looks at memory;
    * no key is refused for the topology (EINVAL): 2019 checks packages with memory only;
    * a CPU returning to a CPU-less package 1: RFC v2 programs every KeyID in use there
      (EPERM when a user key is in use without mktme_savekeys); 2019 programs nothing;
    * and nothing is ever corrupted: every tenant, whichever package's CPU wrote its page,
      reads its data back, the oracle sees no violation and the kernel invariants hold."""
    sim = Sim("server-2s-memoryless", policy=policy, policy_overrides={"savekeys": savekeys},
              overrides={"topology": {"cores_per_package": 2}})
    hp, keys, table = sim.k.hp, sim.keys, sim.plat.packages[1].mc.keys
    live: list[int] = []
    tenants: list[tuple] = []
    for i, op in enumerate(ops):
        if op.startswith("offline"):
            cpu = int(op[-1])
            if not sim.plat.cores[cpu].online:
                continue
            last = not any(c.online for c in sim.plat.packages[1].cores if c.cpu != cpu)
            if policy == "mktme-2019" and last and keys.in_use():
                sim.fails(hp.offline_cpu(cpu), "EBUSY")
            else:
                sim.call(hp.offline_cpu(cpu))
        elif op.startswith("online"):
            cpu = int(op[-1])
            if sim.plat.cores[cpu].online:
                continue
            returning = 1 in hp.cpuless
            before = [table.entry(k).version for k in range(table.max_keyid + 1)]
            in_use = keys.in_use()
            if (policy == "rfc-v2" and returning and in_use and keys.user_type
                    and not savekeys):
                sim.fails(hp.online_cpu(cpu), "EPERM")
                continue
            sim.call(hp.online_cpu(cpu))
            after = [table.entry(k).version for k in range(table.max_keyid + 1)]
            if policy == "rfc-v2" and returning:
                assert all(table.mode(k) == KEY for k in in_use)
                assert all(after[k] > before[k] for k in in_use)
            else:
                assert after == before  # 2019 has no startup callback
        elif op in ("cpu-key", "user-key"):
            live.append(sim.add(f"k{i}", CPU_KEY if op == "cpu-key" else USER_KEY))
        elif op == "invalidate" and live:
            if not any(t[3] == live[0] for t in tenants):
                sim.call(keys.invalidate(0, live.pop(0)))
        elif op == "tenant" and live:
            cpu = next(c.cpu for c in reversed(sim.plat.cores[:4]) if c.online)
            proc = sim.mm.spawn(cpu)  # on package 1 while it has a CPU: remote memory
            va = sim.mmap(proc, 1)
            sim.protect(proc, va, PAGE, live[-1])
            sim.write(proc, va, pattern(i))
            kid, pa = sim.frame(proc, va)
            sim.call(sim.plat.cores[proc.cpu].run([(O.CLFLUSH, kid, pa, None, None)], []))
            assert sim.plat.amap.home(pa) == 0
            tenants.append((proc, va, pattern(i), live[-1]))
    for proc, va, data, _serial in tenants:
        assert sim.read(proc, va) == data
    sim.no_violations()
    assert broken_invariants(sim.k) == []


# -- pinned pages (get_user_pages) outlive their VMA -------------------------------------------


@pytest.mark.parametrize("refcount_pages", [False, True])
def test_a_pinned_page_keeps_its_keyid_only_with_page_references(refcount_pages):
    """Only the refcount_pages switch differs: without page references the KeyID of a pinned
    page is freed with its VMA and key, reused and reprogrammed under the page's data."""
    sim = Sim(policy_overrides={"refcount_pages": refcount_pages})
    serial = sim.add("a")
    proc, va, kid, pa = sim.page_in_dram(serial, pattern(3))
    page = sim.call(sim.mm.pin(proc, va))
    sim.munmap(proc, va, 1)
    assert pa not in sim.mm.frames.free[0]  # the pinned frame was not freed with its VMA
    sim.call(sim.keys.invalidate(0, serial))
    nxt = sim.keyid(sim.add("b"))
    entry = sim.call(sim.mm.device_read(0, page))
    if refcount_pages:
        assert nxt != kid and entry[5] == pattern(3)
        sim.no_violations()
    else:
        assert nxt == kid and entry[5] != pattern(3)
        assert sim.plat.oracle.violations
    sim.call(sim.mm.unpin(0, page))
    assert pa in sim.mm.frames.free[0]  # the last pin freed it
    if refcount_pages:
        assert sim.keys.refs[kid] == 0  # and with it the page's reference on the KeyID


def test_unpin_of_an_unpinned_page_is_einval():
    sim = Sim()
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 1)
    page = sim.call(sim.mm.pin(proc, va))
    sim.call(sim.mm.unpin(0, page))
    sim.fails(sim.mm.unpin(0, page), "EINVAL")


# -- encrypt_mprotect honours prot ---------------------------------------------------------------


@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(calls=st.lists(st.tuples(st.sampled_from([1, 3, 5, 7]), st.sampled_from("ab")),
                      min_size=1, max_size=4))
def test_encrypt_mprotect_discards_the_pages_whenever_key_or_prot_changes(calls):
    """Patch 05: a call that changes the KeyID or the protection zaps the range (the data is
    gone, the next load sees zeros); one that changes neither leaves it alone."""
    sim = Sim()
    serials = {"a": sim.add("a"), "b": sim.add("b")}
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 1)
    state = (0, 3)  # (KeyID, prot) after mmap
    for i, (prot, key) in enumerate(calls):
        if state[1] & 1:  # readable: store a fresh value first (through the user mapping)
            sim.write(proc, va, pattern(50 + i)) if state[1] & 2 else None
        had = proc.pages.get(va)
        before = sim.read(proc, va) if state[1] & 1 and had is not None else None
        sim.call(sim.mm.encrypt_mprotect(proc, va, PAGE, prot, serials[key]))
        new = (sim.keyid(serials[key]), prot)
        vma = proc.vma_at(va)
        assert (vma.keyid, vma.prot) == new
        if new != state:
            assert va not in proc.pages  # zapped
            if prot & 1:
                assert sim.read(proc, va) == bytes(64)
        elif before is not None:
            assert proc.pages.get(va) is had
            assert sim.read(proc, va) == before
        state = new


def test_user_access_obeys_prot_and_bad_prot_is_einval():
    sim = Sim()
    serial = sim.add("a")
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 1)
    before = sim.state()
    sim.fails(sim.mm.encrypt_mprotect(proc, va, PAGE, 8, serial), "EINVAL")
    assert sim.state() == before
    sim.call(sim.mm.encrypt_mprotect(proc, va, PAGE, 1, serial))  # PROT_READ
    sim.mm.check_access(proc, va, write=False)
    with pytest.raises(Errno) as info:
        sim.mm.check_access(proc, va, write=True)
    assert info.value.name == "EFAULT"


# -- swap writes MKTME pages unencrypted ----------------------------------------------------------


@pytest.mark.parametrize("policy", ["rfc-v2", "unsafe-keyid0-direct-map"])
def test_swap_out_of_an_mktme_page_exposes_its_plaintext(policy):
    sim = Sim(policy=policy)
    sim.plat.recorder.keep("events")
    serial = sim.add("k")
    kid = sim.keyid(serial)
    proc = sim.mm.spawn(0)
    va, plain_va = sim.mmap(proc, 1), sim.mmap(proc, 1)
    sim.protect(proc, va, PAGE, serial)
    sim.write(proc, va, pattern(9))
    sim.write(proc, plain_va, pattern(10))
    sim.call(sim.mm.swap_out(proc, va))
    sim.call(sim.mm.swap_out(proc, plain_va))  # a KeyID-0 page: TME covers it, no MKTME key
    data, verdict = sim.mm.swap_read(0)
    per_keyid = policy == "rfc-v2"
    stats = sim.k.stats()["swap_plaintext_bytes_by_keyid"]
    events = [e for e in sim.plat.events if e[2] == "swap-out unencrypted"]
    if per_keyid:  # the kernel read the page through its KeyID: the device holds plaintext
        assert data == pattern(9) and verdict == "plaintext"
        assert stats == {str(kid): PAGE}
        assert len(events) == 1 and sim.plat.amap.split(events[0][3])[0] == kid
    else:  # read through KeyID 0: what reaches swap is not the tenant's plaintext
        assert data != pattern(9) and verdict == "opaque"
        assert stats == {} and not events
    assert sim.mm.swap_read(1)[0] == pattern(10)  # KeyID 0 is plaintext to the kernel too
    if per_keyid:
        assert sim.read(proc, va) == pattern(9)  # swap-in gives it back: the leak is silent
        assert 0 not in sim.mm.swap_device  # the slot was released


@pytest.mark.parametrize("policy", ["rfc-v2", "unsafe-keyid0-direct-map"])
def test_a_kernel_read_through_the_direct_map_sees_the_tenants_plaintext(policy):
    """Per-KeyID direct maps give the kernel a decrypted view of every tenant's memory."""
    sim = Sim(policy=policy)
    serial = sim.add("k")
    proc, va, kid, pa = sim.page_in_dram(serial, pattern(11))
    seen = sim.call(sim.mm.direct_map_read(20, kid, pa))[5]
    keyid0 = sim.call(sim.mm.direct_map_read(20, 0, pa))[5]
    assert keyid0 != pattern(11)
    assert (seen == pattern(11)) == (policy == "rfc-v2")


# -- allocation flush: last KeyID with skip-on-repeat, or always through KeyID 0 ------------------


@pytest.mark.parametrize("alloc_flush", ["last-keyid", "keyid0"])
def test_allocation_flush_policy(alloc_flush):
    sim = Sim(policy_overrides={"alloc_flush": alloc_flush})
    serial = sim.add("k")
    kid = sim.keyid(serial)
    proc = sim.mm.spawn(0)
    va = sim.mmap(proc, 1)
    sim.protect(proc, va, PAGE, serial)
    flushed: list[tuple[int, int]] = []  # (KeyID, pa) of every clflush on allocation
    real = sim.mm.flush_page

    def spy(cpu, pa, keyid):
        flushed.append((keyid, pa))
        yield from real(cpu, pa, keyid)

    sim.mm.flush_page = spy
    sim.write(proc, va, pattern(1))  # first use of the frame: it last had KeyID 0
    _, pa = sim.frame(proc, va)
    on_alloc = [f for f in flushed]
    sim.munmap(proc, va, 1)  # free: flushed through K
    flushed.clear()
    va2 = sim.mmap(proc, 1)
    sim.protect(proc, va2, PAGE, serial)
    sim.write(proc, va2, pattern(2))  # LIFO: the same frame again, same KeyID
    assert sim.frame(proc, va2)[1] == pa
    again = [f for f in flushed]
    assert on_alloc == [(0, pa)]  # last KeyID 0, or KeyID 0: the same lines either way
    if alloc_flush == "keyid0":
        assert again == [(0, pa)]  # every allocation, through KeyID 0
    else:
        assert again == []  # same KeyID as last time: skipped
    assert kid
    sim.no_violations()
