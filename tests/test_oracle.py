"""The read-checking oracle: which reads are checked, what a violation says, read classes.

Scenarios are built from ops on a real platform; expected bytes (including the garbage a wrong
key gives) come from an independent AES-XTS (the ``cryptography`` package) and expected times
from the model parameters.
"""

from __future__ import annotations

import pytest

from mktme_des.config.model import load_model
from mktme_des.engine.time import ns, to_ns
from mktme_des.hw import ops as O
from mktme_des.hw.dram import RAW
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from tests.helpers import R, W, pattern, run, us, xts

MODEL = "server-2s"
STABLE = {"mktme": {"boot_tweak": "stable"}}
KA = bytes(range(32))
KB = bytes(range(100, 132))
A = 0x20_0000  # homed on package 0, where cpus 0 and 1 live







def FLUSH(keyid, pa, at=None):
    return (O.CLFLUSH, keyid, pa, None, at)


class Lat:
    def __init__(self, m) -> None:
        cycle = ns(1.0 / m.platform.frequency_ghz)
        self.l2_name = m.cache[1].name
        self.l2_ways = m.cache[1].ways
        self.llc = m.cache[-1].hit_latency_cycles * cycle
        ic = m.interconnect
        self.mesh = ns(ic.mesh_latency_ns)
        self.dram_local = (self.llc + 2 * self.mesh + ns(m.dram.access_latency_ns)
                           + ns(m.mktme.aes_latency_ns))
        self.clflush = m.flush.clflush_cycles * cycle
        self.all_stride = max(c.sets for c in m.cache) * 64


def make(classify=False, overrides=STABLE, seed=3):
    m = load_model(MODEL, overrides)
    oracle = Oracle(classify=classify)
    plat = Platform(m, seed=seed, oracle=oracle)
    plat.set_key(1, "key", KA)
    plat.set_key(2, "key", KB)
    plat.set_key(3, "no-encrypt")
    plat.set_key(4, "no-encrypt")
    return plat, oracle, Lat(m)


def reads(log):
    return [e for e in log if e[2] == O.READ]


def counts(oracle):
    return oracle.summary()["counts"]


# -- which reads are checked -----------------------------------------------------------------


def test_reads_after_a_store_are_checked_wherever_served():
    plat, o, _ = make()
    D = pattern(1)
    log0, log1, log16 = run(plat, (0, [W(1, A, D, at=us(1)), R(1, A), FLUSH(1, A), R(1, A)]),
                            (1, [R(1, A, at=us(2))]), (16, [R(1, A, at=us(3))]))
    assert all(e[5] == D for e in reads(log0) + log1 + log16)
    c = counts(o)
    assert (c["stores"], c["checked"], c["unchecked"], c["violations"]) == (1, 4, 0, 0)
    assert o.violations == []


def test_alias_store_makes_reads_unchecked_and_a_new_store_defines_only_its_bytes():
    plat, o, _ = make()
    D1, D2, head = pattern(2), pattern(3), pattern(4, 8)
    run(plat, (0, [W(1, A, D1, at=us(1)), FLUSH(1, A)]),
        (1, [W(2, A, D2, at=us(2)), FLUSH(2, A)]))
    (log,) = run(plat, (0, [R(1, A, at=us(5))]))
    garbage = xts(KA, A, xts(KB, A, D2), encrypt=False)
    assert log[0][5] == garbage  # K1 reads what K2 wrote, decrypted with K1's key
    assert counts(o)["unchecked"] == 1 and counts(o)["checked"] == 0
    assert o.violations == []
    # K1 stores 8 bytes again: only they are defined. The other 56 bytes are still the
    # garbage, which differs from D1, yet no violation is reported.
    (log,) = run(plat, (0, [W(1, A, head), R(1, A), R(1, A, n=8)]))
    full, first8 = reads(log)
    assert full[5] == head + garbage[8:]
    assert garbage[8:] != D1[8:]
    assert first8[5] == head
    assert o.violations == [] and counts(o)["violations"] == 0
    assert counts(o)["checked"] == 2


def test_raw_dram_write_makes_reads_unchecked_until_the_next_store():
    plat, o, _ = make()
    D, junk, D2 = pattern(5), pattern(6), pattern(7)
    plat.start_agent("dma", [(O.RAW_WRITE, 0, A, junk, us(3))])
    (log,) = run(plat, (0, [W(1, A, D, at=us(1)), FLUSH(1, A), R(1, A, at=us(4)),
                            W(1, A, D2), R(1, A)]))
    r1, r2 = reads(log)
    assert r1[5] == xts(KA, A, junk, encrypt=False)
    assert r2[5] == D2
    c = counts(o)
    assert (c["raw_writes"], c["unchecked"], c["checked"], c["violations"]) == (1, 1, 1, 0)


def test_partial_line_stores_define_only_their_bytes():
    plat, o, _ = make(classify=True)
    part = pattern(8, 8)
    (log,) = run(plat, (0, [W(1, A + 8, part), R(1, A), R(1, A + 8, n=8), R(1, A + 12, n=4),
                            R(1, A + 16, n=8)]))
    full, exact, inner, undefined = reads(log)
    zero_plain = xts(KA, A, bytes(64), encrypt=False)  # the untouched line through K1
    assert full[5] == zero_plain[:8] + part + zero_plain[16:]
    assert (exact[5], exact[7]) == (part, "expected")
    assert (inner[5], inner[7]) == (part[4:], "expected")
    assert undefined[7] != "expected"
    assert o.violations == []


def test_a_wrong_defined_byte_of_a_partial_store_is_a_violation():
    """The stale-writeback race on a partial line: only the defined byte range is compared."""
    plat, o, _ = make()
    D1, part = pattern(9), pattern(10, 4)
    run(plat, (0, [W(1, A, D1, at=us(1))]),
        (1, [W(2, A + 4, part, at=us(2)), FLUSH(2, A)]))
    run(plat, (0, [FLUSH(1, A, at=us(5))]))
    (log,) = run(plat, (1, [R(2, A + 4, n=4, at=us(8))]))
    got = xts(KB, A, xts(KA, A, D1), encrypt=False)[4:8]
    assert log[0][5] == got
    (v,) = o.violations
    assert (v["expected"], v["actual"], v["addr"]) == (part.hex(), got.hex(), hex(A + 4))


# -- violations and their causes ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["clflush", "eviction"])
def test_stale_writeback_of_another_keyid_clobbers_new_data(how):
    """Page moved from K1 to K2 without flushing K1's dirty line: when that line finally
    leaves the cache it is encrypted with K1 over the K2 data."""
    plat, o, L = make(classify=True)
    D1, D2 = pattern(11), pattern(12)
    run(plat, (0, [W(1, A, D1, at=us(1))]),
        (1, [W(2, A, D2, at=us(2)), FLUSH(2, A)]))
    assert plat.dram_read(A, 64) == xts(KB, A, D2)
    if how == "clflush":
        run(plat, (0, [FLUSH(1, A, at=us(5))]))
        depart = us(5) + L.clflush
        what = "clflush by cpu0"
    else:
        conflicts = [R(0, A + k * L.all_stride, at=us(5 + k)) for k in range(1, L.l2_ways + 1)]
        run(plat, (0, conflicts))
        depart = us(5 + L.l2_ways) + L.dram_local
        what = f"eviction from {L.l2_name}/cpu0"
    assert plat.dram_read(A, 64) == xts(KA, A, D1)
    t_read = us(40)
    (log,) = run(plat, (1, [R(2, A, at=t_read)]))
    actual = xts(KB, A, xts(KA, A, D1), encrypt=False)
    assert log[0][5] == actual
    assert log[0][7] == "garbage"
    assert counts(o)["violations"] == 1
    (v,) = o.violations
    assert v["time_ns"] == to_ns(t_read + L.dram_local)
    assert v["cpu"] == 1
    assert v["keyid"] == 2
    assert v["tag"] == f"(K2, {A:#x})"
    assert v["addr"] == hex(A)
    assert v["expected"] == D2.hex()
    assert v["actual"] == actual.hex()
    assert v["served_by"] == "DRAM"
    cause = v["cause"]
    assert cause.startswith(f"writeback of (K1, {A:#x})")
    assert what in cause
    assert f"t={to_ns(depart):g} ns" in cause
    assert cause.endswith(f"overwrote data written via (K2, {A:#x})")
    assert plat.stats()["oracle"]["violations"] == [v]


def test_stale_writeback_under_a_shared_key_is_a_plaintext_violation():
    """With K1 and K2 given the same key, the stale K1 line decrypts fine through K2: the
    read returns the other alias's plaintext."""
    plat, o, _ = make(classify=True)
    plat.set_key(2, "key", KA)
    D1, D2 = pattern(13), pattern(14)
    run(plat, (0, [W(1, A, D1, at=us(1))]), (1, [W(2, A, D2, at=us(2)), FLUSH(2, A)]))
    run(plat, (0, [FLUSH(1, A, at=us(5))]))
    (log,) = run(plat, (1, [R(2, A, at=us(8))]))
    assert (log[0][5], log[0][7]) == (D1, "plaintext")
    (v,) = o.violations
    assert (v["expected"], v["actual"]) == (D2.hex(), D1.hex())


def test_key_change_between_writeback_and_read_is_named():
    plat, o, L = make()
    D = pattern(15)
    t_key = us(5)
    plat.start_agent("kernel", [("set_key", 1, 0, ("key", KB, None), t_key)])
    (log,) = run(plat, (0, [W(1, A, D, at=us(1)), FLUSH(1, A, at=us(2)), R(1, A, at=us(8))]))
    actual = xts(KB, A, xts(KA, A, D), encrypt=False)
    assert reads(log)[0][5] == actual
    (v,) = o.violations
    assert (v["cpu"], v["tag"], v["expected"], v["actual"]) == (
        0, f"(K1, {A:#x})", D.hex(), actual.hex())
    cause = v["cause"]
    assert cause.startswith(f"key of K1 on package 0 changed at t={to_ns(t_key):g} ns")
    assert "set_key by kernel" in cause
    assert "under the old key" in cause
    assert f"writeback of (K1, {A:#x}) (clflush by cpu0)" in cause


def test_key_change_before_the_writeback_arrives_is_harmless():
    """The dirty line is encrypted with the key in force on arrival, which the later read
    also uses: nothing to report."""
    plat, o, _ = make()
    D = pattern(16)
    plat.start_agent("kernel", [("set_key", 1, 0, ("key", KB, None), us(2))])
    (log,) = run(plat, (0, [W(1, A, D, at=us(1)), FLUSH(1, A, at=us(3)), R(1, A, at=us(8))]))
    assert plat.dram_read(A, 64) == xts(KB, A, D)
    assert reads(log)[0][5] == D
    assert o.violations == [] and counts(o)["checked"] == 1


def test_a_prefetch_racing_a_store_and_its_flush_fills_the_new_data():
    """A prefetch reads DRAM while a store's fill is in flight; the store completes and is
    flushed before the prefetch's fill arrives. Coherence orders the fill after the store:
    the prefetched copy holds the stored data (taken from the writeback), so the owner's
    later read hits a correct line and the oracle has nothing to report."""
    plat, o, L = make()
    D1, D2 = pattern(17), pattern(18)
    run(plat, (0, [W(1, A, D1), FLUSH(1, A)]))
    ts = us(5)
    # The prefetch leaves 40 ns after the store's miss: its DRAM read comes after the store's
    # (bank free again), and its fill after the store's flush (ts + miss + clflush).
    tp = ts + ns(40)
    cycle = ns(1.0 / load_model(MODEL).platform.frequency_ghz)
    assert tp + cycle + L.dram_local > ts + L.dram_local + L.clflush
    assert tp < ts + L.dram_local
    log0, log1 = run(plat, (0, [W(1, A, D2, at=ts), FLUSH(1, A)]),
                     (1, [(O.PREFETCH, 1, A, None, tp), R(1, A, at=us(8))]))
    assert plat.dram_read(A, 64) == xts(KA, A, D2)
    r = reads(log1)[0]
    assert r[5] == D2 and r[6] != "DRAM"  # served by the prefetched copy, which is current
    assert o.violations == []


# -- classification -------------------------------------------------------------------------------


def test_classes_expected_zero_stale_plaintext_garbage():
    plat, o, _ = make(classify=True)
    B, C, E = A + 0x1000, A + 0x2000, A + 0x3000
    D1, D2, D3, D4 = (pattern(20 + i) for i in range(4))
    # expected; zero (untouched no-encrypt line); plaintext (no-encrypt alias);
    # garbage (wrong key); stale (the alias K2 wrote, K1 reads its own old data).
    run(plat, (0, [W(1, A, D1, at=us(1)), W(3, B, D2), FLUSH(3, B), W(1, C, D3), FLUSH(1, C),
                   W(1, E, D4), FLUSH(1, E)]),
        (1, [W(2, E, pattern(30), at=us(3))]))
    (log,) = run(plat, (0, [R(1, A, at=us(5)), R(3, A + 0x4000), R(4, B), R(2, C), R(1, E)]))
    got = [(e[5], e[7]) for e in reads(log)]
    assert got == [
        (D1, "expected"),
        (bytes(64), "zero"),
        (D2, "plaintext"),
        (xts(KB, C, xts(KA, C, D3), encrypt=False), "garbage"),
        (D4, "stale"),
    ]
    c = counts(o)
    for cls in ("expected", "zero", "plaintext", "garbage", "stale"):
        assert c[f"class_{cls}"] == 1
    assert c["violations"] == 0


def test_stale_class_for_a_cached_copy_that_dram_no_longer_matches():
    plat, o, _ = make(classify=True)
    P, Q = pattern(31), pattern(32)
    plat.start_agent("dma", [(O.RAW_WRITE, 0, A, xts(KA, A, P), us(1)),
                             (O.RAW_WRITE, 0, A, xts(KA, A, Q), us(3))])
    (log,) = run(plat, (0, [R(1, A, at=us(2)), R(1, A, at=us(4))]))
    first, second = reads(log)
    # Nobody stored P: valid ciphertext injected raw is not any class of stored data.
    assert (first[5], first[7]) == (P, "garbage")
    assert second[5] == P and second[6] != "DRAM"
    assert second[7] == "stale"  # DRAM now decrypts to Q
    assert o.violations == []


def test_classify_off_returns_no_class():
    plat, o, _ = make(classify=False)
    (log,) = run(plat, (0, [W(1, A, pattern(33)), R(1, A)]))
    assert reads(log)[0][7] is None
    assert not any(k.startswith("class_") for k in counts(o))


# -- raw DRAM reads ----------------------------------------------------------------------------


def test_raw_class_plaintext_ciphertext_zero():
    plat, o, _ = make()
    B, C = A + 0x1000, A + 0x2000
    D1, D2, D3 = pattern(40), pattern(41), pattern(42)
    log: list = []
    plat.start_agent("probe", [
        (O.RAW_READ, 0, A, 64, us(5)),  # no-encrypt, written back: plaintext
        (O.RAW_READ, 0, A + 8, 16, us(5)),  # a piece of it
        (O.RAW_READ, 0, B, 64, us(5)),  # K1, written back: ciphertext
        (O.RAW_READ, 0, C, 64, us(5)),  # no-encrypt but still only in the cache: zero
        (O.RAW_READ, 0, A + 0x5000, 64, us(5)),  # never touched: zero
        (O.RAW_READ, 0, B - 64, 128, us(5)),  # never-stored line + ciphertext line
    ], log)
    run(plat, (0, [W(3, A, D1, at=us(1)), FLUSH(3, A), W(1, B, D2), FLUSH(1, B), W(3, C, D3)]))
    assert log[0][5] == D1 and log[2][5] == xts(KA, B, D2)
    assert [e[7] for e in log] == ["plaintext", "plaintext", "ciphertext", "zero", "zero",
                                   "ciphertext"]
    assert counts(o)["raw_reads"] == 6


def test_raw_class_of_two_plaintext_lines():
    plat, o, _ = make()
    D1, D2 = pattern(43), pattern(44)
    log: list = []
    plat.start_agent("probe", [(O.RAW_READ, 0, A + 32, 64, us(5))], log)
    run(plat, (0, [W(3, A, D1, at=us(1)), W(4, A + 64, D2), FLUSH(3, A), FLUSH(4, A + 64)]))
    assert log[0][5] == (D1 + D2)[32:96]
    assert log[0][7] == "plaintext"


# -- reboot ------------------------------------------------------------------------------------


def _reboot_run(persistent: bool, flush: bool, overrides=STABLE, flush_line: bool = True):
    plat, o, L = make(overrides=overrides)
    D = pattern(50)
    plat.start_agent("firmware", [("reboot", 0, 0, (persistent, flush), us(5)),
                                  ("set_key", 1, 0, ("key", KA, None), us(6))])
    ops = [W(1, A, D, at=us(1))] + ([FLUSH(1, A)] if flush_line else [])
    ops.append(R(1, A, at=us(8)))
    (log,) = run(plat, (0, ops))
    return plat, o, D, reads(log)[0]


def test_reboot_of_volatile_memory_forgets_expectations():
    plat, o, D, r = _reboot_run(persistent=False, flush=True)
    assert r[5] == xts(KA, A, bytes(64), encrypt=False)  # DRAM was wiped
    assert o.violations == []
    assert counts(o)["unchecked"] == 1 and counts(o)["checked"] == 0


def test_reboot_of_persistent_memory_keeps_expectations():
    plat, o, D, r = _reboot_run(persistent=True, flush=True)
    assert (r[5], r[6]) == (D, "DRAM")
    assert o.violations == [] and counts(o)["checked"] == 1


def test_reboot_flushes_dirty_lines_to_persistent_memory():
    plat, o, D, r = _reboot_run(persistent=True, flush=True, flush_line=False)
    assert (r[5], r[6]) == (D, "DRAM")
    assert o.violations == []


def test_persistent_reboot_without_flush_loses_the_dirty_line():
    plat, o, D, r = _reboot_run(persistent=True, flush=False, flush_line=False)
    assert r[5] == xts(KA, A, bytes(64), encrypt=False)
    (v,) = o.violations
    assert v["expected"] == D.hex()
    assert v["cause"] == f"(K1, {A:#x}) never reached DRAM: the dirty line was lost"


def test_persistent_reboot_with_a_new_boot_tweak_is_named():
    plat, o, D, r = _reboot_run(persistent=True, flush=True, overrides=None)
    boot0 = Platform(load_model(MODEL), seed=3).boot_tweak
    assert plat.boot_tweak != boot0
    cipher = xts(KA, A, D, boot=boot0)
    assert r[5] == xts(KA, A, cipher, boot=plat.boot_tweak, encrypt=False)
    (v,) = o.violations
    assert v["cause"] == "the platform rebooted: the tweak changed since the line was written"


class _Amap:
    """The two things the oracle's checks read of an address map, for a bare oracle."""

    pa_mask = (1 << 46) - 1
    keyid_shift = 46

    def split(self, tag):
        return tag >> 46, tag & self.pa_mask

    def describe(self, tag):
        return f"(K{tag >> 46}, {tag & self.pa_mask:#x})"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("classify", [False, True])
def test_checking_a_load_in_place_is_checking_its_bytes(seed, classify):
    """``load_line`` (the bytes read in place in the line image) decides, counts and records
    exactly as ``load`` of a copy of them: random stores of every size through KeyID aliases
    of a few lines, raw writes and reads of line images right, partly right or wrong."""
    import random

    class BareOracle(Oracle):
        """No platform behind it: a cause and a class that need none."""

        def _cause(self, tag, pa, served, off=0, data=b""):
            return "cause"

        def _classify(self, tag, pa, off, data, served):
            return "garbage" if any(data) else "zero"

    rng = random.Random(seed)
    pair = [BareOracle(classify=classify), BareOracle(classify=classify)]
    for o in pair:
        o.amap, o.pa_mask = _Amap(), _Amap.pa_mask
    tags = [(k << 46) | pa for k in (0, 1, 2) for pa in (0x1000, 0x1040)]
    images = {tag: bytearray(64) for tag in tags}
    for step in range(400):
        tag = rng.choice(tags)
        n = rng.choice([1, 2, 4, 8, 16, 64])
        off = rng.randrange(0, 64 - n + 1) // n * n
        what = rng.random()
        if what < 0.35:
            data = bytes(rng.randrange(256) for _ in range(n))
            images[tag][off : off + n] = data
            for o in pair:
                o.store(step, 0, tag, off, data)
        elif what < 0.4:
            for o in pair:
                o.raw_write(step, tag & _Amap.pa_mask)
        else:
            line = bytearray(images[tag])
            if rng.random() < 0.3:
                line[rng.randrange(off, off + n)] ^= 1 << rng.randrange(8)
            a = pair[0].load(step, 1, tag, off, line[off : off + n], "L1D")
            b = pair[1].load_line(step, 1, tag, off, n, line, "L1D")
            assert a == b
    assert pair[0].summary() == pair[1].summary()
    assert pair[0].violation_count > 0  # wrong bytes do reach the checks


class _Model:
    """The oracle's rule written out plainly, independent of how the oracle stores it: per line
    its last writer (a tag, or RAW for a raw write); per tag the image that stores through it
    left (kept when another writer takes the line) and the set of bytes stored since it last
    became the line's owner. A read is checked when its tag is the owner and some byte it reads
    was stored: a wrong stored byte is a violation. Classes (read from DRAM, so memory's image
    is the bytes read): zero, stale (a slice of an image the tag held), plaintext (a slice of
    an image stored through any alias of the line), else garbage."""

    def __init__(self, classify):
        self.classify = classify
        self.owner = {}  # line PA -> tag of its last store or intent, or RAW
        self.image = {}  # tag -> what a full read through it should return
        self.defined = {}  # tag -> offsets stored since it became the owner
        self.intended_via = {}
        self.history = {}
        self.line_history = {}
        self.fill_cause = {}
        self.counts = {"stores": 0, "checked": 0, "unchecked": 0, "violations": 0}
        self.violations = []

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def store(self, tag, off, data):
        pa = tag & _Amap.pa_mask
        if self.owner.get(pa) != tag:
            self.owner[pa] = tag
            self.image.setdefault(tag, bytearray(64))
            self.defined[tag] = set()
            self.intended_via.pop(tag, None)
        if self.classify:
            self.history.setdefault(tag, []).append(bytes(self.image[tag]))
        self.image[tag][off : off + len(data)] = data
        self.defined[tag].update(range(off, off + len(data)))
        if self.classify:
            self.line_history.setdefault(pa, []).append(bytes(self.image[tag]))
        self.count("stores")

    def raw_write(self, pa):
        self.owner[pa] = RAW
        self.count("raw_writes")

    def intend(self, tag, data, via):
        if via is not None and via != tag:
            self.intended_via[tag] = via
        else:
            self.intended_via.pop(tag, None)
        self.owner[tag & _Amap.pa_mask] = tag
        self.image[tag] = bytearray(data)
        self.defined[tag] = set(range(64))
        self.count("intents")

    def reboot(self, persistent):
        self.fill_cause.clear()
        if not persistent:
            self.owner.clear()
            self.image.clear()
            self.defined.clear()

    def full_image(self, tag):
        if self.owner.get(tag & _Amap.pa_mask) == tag and len(self.defined[tag]) == 64:
            return bytes(self.image[tag])
        return None

    def load(self, t, cpu, tag, off, data, served):
        pa, n = tag & _Amap.pa_mask, len(data)
        status = None
        mine = [i for i in range(off, off + n)
                if self.owner.get(pa) == tag and i in self.defined[tag]]
        if not mine:
            self.counts["unchecked"] += 1
        elif all(data[i - off] == self.image[tag][i] for i in mine):
            self.counts["checked"] += 1
            status = "expected"
        else:
            self.counts["violations"] += 1
            self.violations.append({
                "time_ns": to_ns(t), "cpu": cpu, "keyid": tag >> 46, "addr": hex(pa + off),
                "tag": _Amap().describe(tag), "expected": bytes(self.image[tag][off : off + n]).hex(),
                "actual": bytes(data).hex(), "served_by": served, "cause": "cause"})
            if served in ("DRAM", "DRAM-remote"):
                self.fill_cause[tag] = "cause"
        if not self.classify:
            return None
        if status is None:
            held = self.history.get(tag, []) + ([bytes(self.image[tag])] if tag in self.image else [])
            if not any(data):
                status = "zero"
            elif any(img[off : off + n] == data for img in held):
                status = "stale"
            elif any(img[off : off + n] == data for img in self.line_history.get(pa, [])):
                status = "plaintext"
            else:
                status = "garbage"
        self.count(f"class_{status}")
        return status


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("classify", [False, True])
def test_the_oracle_follows_a_plain_model_of_its_rule(seed, classify):
    """Random stores (many through lines never stored before, and after a reboot that forgot
    memory), loads through ``load`` and ``load_line`` of right, wrong, stale, zero and
    alias-written bytes, raw writes, kernel intents and reboots: every returned class, the
    counters, the violations and the reference state (``ref``, ``owner_ref``,
    ``intended_via``, ``history``, ``line_history``, ``fill_cause``) are the model's."""
    import random

    class DiagnosedOracle(Oracle):
        """No platform behind it: the cause of a violation is a constant (reads come from DRAM,
        so a class needs no platform either)."""

        def _cause(self, tag, pa, served, off=0, data=b""):
            return "cause"

    rng = random.Random(seed)
    o, model = DiagnosedOracle(classify=classify), _Model(classify)
    o.amap, o.pa_mask = _Amap(), _Amap.pa_mask
    lines = [0x1000 + 64 * i for i in range(12)]
    served_by = ["DRAM", "DRAM-remote"] + ([] if classify else ["L1D"])
    for step in range(600):
        tag = (rng.randrange(3) << 46) | rng.choice(lines)
        pa = tag & _Amap.pa_mask
        n = rng.choice([1, 2, 4, 8, 16, 32, 64])
        off = rng.randrange(0, 64 - n + 1) // n * n
        what = rng.random()
        if what < 0.35:
            data = bytes(rng.randrange(256) for _ in range(n))
            o.store(step, 0, tag, off, data)
            model.store(tag, off, data)
        elif what < 0.8:
            source = rng.random()
            others = [img for t, img in model.image.items() if t & _Amap.pa_mask == pa]
            if source < 0.45 and tag in model.image:
                line = bytearray(model.image[tag])
                if rng.random() < 0.3:
                    line[rng.randrange(off, off + n)] ^= 1 << rng.randrange(8)
            elif source < 0.6 and others:
                line = bytearray(rng.choice(others))  # what another alias stored
            elif source < 0.7 and model.history.get(tag):
                line = bytearray(rng.choice(model.history[tag]))
            elif source < 0.8:
                line = bytearray(64)
            else:
                line = bytearray(rng.randrange(256) for _ in range(64))
            served = rng.choice(served_by)
            want = model.load(step, 1, tag, off, line[off : off + n], served)
            if rng.random() < 0.5:
                got = o.load_line(step, 1, tag, off, n, line, served)
            else:
                got = o.load(step, 1, tag, off, bytes(line[off : off + n]), served)
            assert got == want
        elif what < 0.86:
            o.raw_write(step, pa)
            model.raw_write(pa)
        elif what < 0.91:
            data = bytes(rng.randrange(256) for _ in range(64))
            via = rng.choice([None, tag, tag ^ (1 << 46)])
            o.intend(tag, data, via)
            model.intend(tag, data, via)
        elif what < 0.93:
            persistent = rng.random() < 0.5
            o.reboot(persistent)
            model.reboot(persistent)
        else:
            assert o.image(tag) == model.full_image(tag)
    summary = o.summary()
    assert summary["counts"] == dict(sorted(model.counts.items()))
    assert summary["violations"] == model.violations
    assert {t: (bytes(r.image), r.valid) for t, r in o.ref.items()} == {
        t: (bytes(img), sum(1 << i for i in model.defined[t])) for t, img in model.image.items()}
    assert {p: r.tag for p, r in o.owner_ref.items()} == model.owner
    # A line's owner is the very Ref of its tag: the expectations of one object
    assert all(r is o.ref[r.tag] for r in o.owner_ref.values() if r.tag != RAW)
    assert (o.intended_via, o.history, o.line_history, o.fill_cause) == (
        model.intended_via, model.history, model.line_history, model.fill_cause)
    assert model.counts["stores"] > 100 and model.counts["checked"] > 0
    assert model.counts["violations"] > 0 and model.counts["unchecked"] > 0
