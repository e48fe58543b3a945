"""The memory system's ordering rules (mktme_des.hw.memsys), each as a property over random
programs and as the example that once went wrong.

The random programs run several cores on both packages of a small machine over a few lines and
their aliases (the same PA under other KeyIDs); keys change at random times on random
packages, and flushes, prefetches and WBINVDs come and go. Every writeback is kept
(the recorder's ``writebacks`` channel) and checked against what the test itself scheduled: the key each
package held for each KeyID at each instant, and the route latency the model gives. Expected
bytes come from an independent AES-XTS (tests/helpers.xts).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktme_des.config.model import load_model
from mktme_des.engine.time import ns
from mktme_des.hw import ops as O
from mktme_des.hw import pconfig as pc
from mktme_des.hw.memsys import APPLIED, LOST, SUPERSEDED
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from tests.helpers import SMALL_CACHES, R, W, pattern, run, us, xts

STABLE = {"mktme": {"boot_tweak": "stable"}}
SMALL = {**STABLE, **SMALL_CACHES}
MODEL = load_model("server-2s", SMALL)
MODEL_FB = load_model("server-2s", {**SMALL, "core": {"fill_buffers": 4}})
REMOTE = MODEL.memory.gib_per_package << 30  # first PA homed on package 1
# Two lines homed on each package, all in set 0 of every level: evictions happen.
LINES = [0x10_0000, 0x11_0000, REMOTE + 0x10_0000, REMOTE + 0x11_0000]
KEYIDS = (1, 2, 3)
CPUS = (0, 1, 16, 17)  # two cores of each package
KEYS = [bytes([k]) * 16 + bytes([k + 1]) * 16 for k in range(1, 40)]
SPAN_NS = 6_000


def route_ticks(m, package: int, home: int) -> int:
    """One-way latency from a package to a home controller, from the model's numbers."""
    ic = m.interconnect
    return ns(ic.mesh_latency_ns) + (ns(ic.socket_hop_ns) if package != home else 0)


def home_of(pa: int) -> int:
    return 0 if pa < REMOTE else 1


# -- random programs ---------------------------------------------------------------------------

KINDS = ["read", "read", "write", "write", "write", "prefetch", "clwb", "clflushopt", "clflush",
         "wbinvd"]
op_st = st.tuples(st.sampled_from(KINDS), st.integers(0, len(LINES) - 1),
                  st.sampled_from(KEYIDS), st.integers(0, 255), st.integers(0, SPAN_NS))
# A key change: time (ns), package, KeyID, which key.
rekey_st = st.tuples(st.integers(0, SPAN_NS), st.integers(0, 1), st.sampled_from(KEYIDS),
                     st.integers(0, len(KEYS) - 1))
program_st = st.tuples(st.lists(st.lists(op_st, max_size=10), min_size=len(CPUS),
                                max_size=len(CPUS)),
                       st.lists(rekey_st, max_size=4))


def streams_of(per_cpu) -> dict[int, list[tuple]]:
    streams: dict[int, list[tuple]] = {}
    for cpu, ops in zip(CPUS, per_cpu, strict=True):
        out = streams[cpu] = []
        for kind, line, keyid, byte, t in sorted(ops, key=lambda o: o[4]):
            pa, at = LINES[line], ns(t)
            if kind == "read":
                out.append((O.READ, keyid, pa, 64, at))
            elif kind == "write":
                out.append((O.WRITE, keyid, pa + (byte % 8) * 8, bytes([byte]) * 8, at))
            elif kind == "prefetch":
                out.append((O.PREFETCH, keyid, pa, None, at))
            elif kind == "clwb":
                out.append((O.CLWB, keyid, pa, None, at))
            elif kind == "clflush":
                out.append((O.CLFLUSH, keyid, pa, None, at))
            elif kind == "clflushopt":
                out += [(O.CLFLUSHOPT, keyid, pa, None, at), (O.SFENCE, 0, 0, None, None)]
            else:
                out.append((O.WBINVD, 0, 0, None, at))
    return streams


class Schedule:
    """The keys the test programs, and when: its own record of what each table held."""

    def __init__(self) -> None:
        self.changes: list[tuple[int, int, int, bytes]] = []  # (time, package, keyid, key)

    def key(self, package: int, keyid: int, t: int) -> bytes:
        """The key of ``keyid`` on ``package`` in force at ``t``."""
        key = KEYS[0]
        for when, p, k, new in sorted(self.changes, key=lambda c: c[0]):
            if p == package and k == keyid and when <= t:
                key = new
        return key


def run_program(program, model=MODEL, extra: dict[int, list[tuple]] | None = None):
    """Run a random program; returns the platform (history kept), its schedule and logs."""
    per_cpu, rekeys = program
    plat = Platform(model, seed=5, oracle=Oracle())
    plat.recorder.keep("writebacks")
    sched = Schedule()
    for k in KEYIDS:
        plat.set_key(k, "key", KEYS[0])
    for t, package, keyid, which in rekeys:
        # One tick past a whole nanosecond: never tied with an arrival (whole nanoseconds).
        when = ns(t) + 1
        sched.changes.append((when, package, keyid, KEYS[which]))
        plat.later(when, plat.set_key, keyid, "key", KEYS[which], [package])
    streams = streams_of(per_cpu)
    for cpu, ops in (extra or {}).items():
        streams[cpu] = streams.get(cpu, []) + ops
    logs = run(plat, *streams.items())
    return plat, sched, dict(zip(streams, logs, strict=True))


PROPS = settings(max_examples=int(os.environ.get("MKTME_DES_EXAMPLES", "120")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(program_st, st.booleans())
def test_rule1_key_at_own_arrival(program, fill_buffers):
    """Every writeback applied was encrypted with the key its home held at its own arrival,
    and that arrival is its departure plus the route latency: no other traffic moved it."""
    model = MODEL_FB if fill_buffers else MODEL
    plat, sched, _ = run_program(program, model)
    for wb in plat.recorder["writebacks"]:
        home = home_of(wb.tag & plat.amap.pa_mask)
        assert wb.arrival == wb.sent + route_ticks(model, wb.package, home)
        if wb.state == APPLIED:
            keyid = wb.tag >> plat.amap.keyid_shift
            assert wb.key == sched.key(home, keyid, wb.arrival), plat.amap.describe(wb.tag)
    # What DRAM holds at the end is the last writeback applied to each line, encrypted so.
    last: dict[int, object] = {}
    for wb in plat.recorder["writebacks"]:
        if wb.state == APPLIED:
            pa = wb.tag & plat.amap.pa_mask
            if pa not in last or (wb.arrival, wb.seq) > (last[pa].arrival, last[pa].seq):
                last[pa] = wb
    for pa, wb in last.items():
        assert plat.dram_read(pa, 64) == xts(wb.key, pa, wb.data)


@PROPS
@given(program_st)
def test_rule2_same_tag_order(program):
    """Writebacks of one tag take effect in the order they left the caches: by arrival, the
    applied ones have increasing sequence numbers, and each one dropped had a later-sent
    writeback of its tag already applied."""
    plat, _, _ = run_program(program)
    applied: dict[int, list] = {}
    for wb in plat.recorder["writebacks"]:
        if wb.state == APPLIED:
            applied.setdefault(wb.tag, []).append(wb)
    for wbs in applied.values():
        seqs = [wb.seq for wb in sorted(wbs, key=lambda w: (w.arrival, w.seq))]
        assert seqs == sorted(seqs)
    for wb in plat.recorder["writebacks"]:
        if wb.state == SUPERSEDED:
            assert any(o.seq > wb.seq and o.arrival <= wb.arrival
                       for o in applied.get(wb.tag, []))
    assert all(wb.state in (APPLIED, SUPERSEDED) for wb in plat.recorder["writebacks"])


@PROPS
@given(program_st)
def test_rule3_fills_are_coherent(program):
    """With no key change, and every tag of a line used under one KeyID, every read returns
    what was last stored: fills that take in-flight writebacks' data included."""
    per_cpu, _ = program
    one_keyid = [[(k, line, 1, b, t) for k, line, _kid, b, t in ops] for ops in per_cpu]
    plat, _, _ = run_program((one_keyid, []))
    assert plat.oracle.violations == []


def test_rule4_unrelated_reads_change_nothing():
    """Adding reads of other lines homed on the other package, by cores of that package (no
    cache or queue shared with the program), changes no read's bytes or time and no DRAM
    byte; checked on random programs run on package 0 over lines homed there."""
    import random

    rng = random.Random(4)
    for _ in range(40):
        per_cpu = [[(rng.choice(KINDS), rng.randrange(2), rng.choice(KEYIDS), rng.randrange(256),
                     rng.randrange(SPAN_NS)) for _ in range(rng.randrange(10))]
                   if cpu in (0, 1) else [] for cpu in CPUS]
        rekeys = [(rng.randrange(SPAN_NS), 0, rng.choice(KEYIDS), rng.randrange(len(KEYS)))
                  for _ in range(rng.randrange(3))]
        extra = {16: [R(rng.choice(KEYIDS), REMOTE + 0x20_0000 + 64 * rng.randrange(64),
                        at=ns(rng.randrange(SPAN_NS))) for _ in range(12)]}
        extra[16].sort(key=lambda op: op[4])
        base, _, logs = run_program((per_cpu, rekeys))
        more, _, logs2 = run_program((per_cpu, rekeys), extra=extra)
        for cpu in (0, 1):
            assert logs[cpu] == logs2[cpu]
        for pa in LINES[:2]:
            assert base.dram_read(pa, 64) == more.dram_read(pa, 64)


def check_directory(plat) -> None:
    """The directory and the caches agree, and every dirty line's owner holds it (rule 5)."""
    mem = plat.mem
    for tag, line in mem.directory.items():
        assert line.holders, plat.amap.describe(tag)
        for c in mem.caches:
            assert c.contains(tag) == bool(line.holders >> c.bit & 1)
        if line.dirty:
            assert line.owner >= 0 and line.holders & mem.package_mask[line.owner]
    for c in mem.caches:
        for tag in c.tags():
            assert tag in mem.directory and mem.directory[tag].holders >> c.bit & 1


@PROPS
@given(program_st, st.lists(st.integers(0, SPAN_NS), min_size=1, max_size=5))
def test_rule5_wbinvd_writes_back_owned_lines_only(program, checks):
    """At any instant every dirty line is held by its owner's package; WBINVD anywhere keeps
    that so and loses no data: with one KeyID and no key change every read is right."""
    per_cpu, _ = program
    one_keyid = [[(k, line, 1, b, t) for k, line, _kid, b, t in ops] for ops in per_cpu]
    per_cpu = [ops + [("wbinvd", 0, 1, 0, t) for t in checks[i % len(checks):][:1]]
               for i, ops in enumerate(one_keyid)]
    plat = Platform(MODEL, seed=5, oracle=Oracle())
    for k in KEYIDS:
        plat.set_key(k, "key", KEYS[0])
    for t in checks:
        plat.later(ns(t) + 1, check_directory, plat)
    run(plat, *streams_of(per_cpu).items())
    check_directory(plat)
    assert plat.oracle.violations == []
    # Every line written back by a WBINVD left from the package that owned it: its data is
    # what DRAM holds now or was overwritten by a later writeback of the same tag.
    for cpu in (0, 16):
        run(plat, (cpu, [(O.WBINVD, 0, 0, None, None)]))
    assert not plat.mem.directory
    for pa in LINES:
        (log,) = run(plat, (1, [R(1, pa)]))
    assert plat.oracle.violations == []


@PROPS
@given(program_st, st.integers(0, SPAN_NS), st.booleans(), st.booleans())
def test_rule6_reset_is_a_clean_cut(program, at, flush, persistent):
    """Whatever is in flight at a reset: no writeback sent before it arrives after it (an
    orderly reset applies them at the reset, a power loss loses them), the caches are empty
    the moment after, and every writeback sent after it is encrypted under the new boot's
    keys."""
    plat = Platform(MODEL, seed=5, oracle=Oracle())
    plat.recorder.keep("writebacks")
    for k in KEYIDS:
        plat.set_key(k, "key", KEYS[0])
    reset = ns(at) + 1
    seen: dict = {}

    def after_reset() -> None:
        seen["last_seq"] = plat.mem.sent  # writebacks sent up to the reset, its drain included
        seen["occupied"] = sum(c.occupancy() for c in plat.mem.caches)
        seen["pending"] = sum(len(v) for v in plat.mem.pending.values())
        seen["tme"] = [p.mc.keys.key(0) for p in plat.packages]

    def reboot() -> None:
        plat.reboot(persistent, flush)
        after_reset()

    plat.later(reset, reboot)
    run(plat, *streams_of(program[0]).items())
    assert seen["occupied"] == 0 and seen["pending"] == 0
    for wb in plat.recorder["writebacks"]:
        if wb.seq <= seen["last_seq"]:
            if flush:  # arrived before the reset, or drained at it
                assert wb.state != LOST and wb.arrival <= reset
            else:  # arrived before the reset, or lost
                assert wb.state == LOST or wb.arrival < reset
        elif wb.state == APPLIED:
            home = home_of(wb.tag & plat.amap.pa_mask)
            # Key tables are back to TME after a reset, with the new boot's TME key.
            assert wb.key == seen["tme"][home]


@PROPS
@given(program_st, st.integers(SPAN_NS // 2, SPAN_NS))
def test_rule7_offline_package_holds_nothing(program, at):
    """Package 1 goes offline once its cores are done (their prefetches maybe still in
    flight) and no earlier than a random time: its caches hold nothing then and after,
    package 0's cores are served nothing from them, and no data is lost (one KeyID, no key
    change: every read is right)."""
    per_cpu, _ = program
    one_keyid = [[(k, line, 1, b, t) for k, line, _kid, b, t in ops] for ops in per_cpu]
    plat = Platform(MODEL_FB, seed=5, oracle=Oracle())
    for k in KEYIDS:
        plat.set_key(k, "key", KEYS[0])
    env = plat.env
    streams = streams_of(one_keyid)
    procs = {}
    for cpu, ops in streams.items():
        plat.cores[cpu].log = []
        procs[cpu] = plat.start(cpu, ops)
    seen: dict = {}

    def offline():
        yield env.all_of([procs[16], procs[17]])
        if env.now < ns(at):
            yield env.timeout(ns(at) - env.now)
        seen["off"] = env.now
        for core in plat.packages[1].cores:
            core.online = False
        done = plat.offline_caches(env.now, 1)
        yield env.timeout(done - env.now)
        seen["empty"] = all(c.occupancy() == 0 for c in plat.packages[1].caches)

    env.process(offline())
    plat.run()
    assert seen["empty"] and all(c.occupancy() == 0 for c in plat.packages[1].caches)
    for cpu in (0, 1):
        assert all(e[6] != "remote" for e in plat.cores[cpu].log if e[0] > seen["off"])
    for pa in LINES:
        run(plat, (0, [R(1, pa)]))
    assert plat.oracle.violations == []


# -- the examples that went wrong ---------------------------------------------------------------


def test_an_alias_read_does_not_change_the_key_of_a_writeback_in_flight():
    """An S4-like race: cpu16 flushes (K1, A) toward package 0; a read of the alias (K9, A)
    reaches package 0 while the writeback is on its way; then K1 gets a new key there, before
    the writeback arrives. The writeback is encrypted under the new key (the one at its
    arrival), the owner reads its data back, and the alias read saw DRAM as it was."""
    m = load_model("server-2s", STABLE)
    plat = Platform(m, seed=1, oracle=Oracle())
    A = 0x10_0000  # home: package 0
    KA, KB, KX = KEYS[1], KEYS[2], KEYS[3]
    plat.set_key(1, "key", KA)
    plat.set_key(9, "key", KX)
    cyc = ns(1.0 / m.platform.frequency_ghz)
    llc = m.cache[-1].hit_latency_cycles * cyc
    mesh, hop = ns(m.interconnect.mesh_latency_ns), ns(m.interconnect.socket_hop_ns)
    D = pattern(3)
    T1 = us(2)
    depart = T1 + m.flush.clflushopt_cycles * cyc
    arrival = depart + mesh + hop
    alias_at = depart + ns(2) - llc - mesh  # its request reaches the home 2 ns after departure
    tk = arrival - ns(2)
    assert depart < alias_at + llc + mesh < tk < arrival
    plat.later(tk, plat.set_key, 1, "key", KB, [0])
    log16, log1 = run(plat, (16, [W(1, A, D, at=us(1)), (O.CLFLUSHOPT, 1, A, None, T1),
                                  R(1, A, at=us(5))]),
                      (1, [R(9, A, at=alias_at)]))
    assert plat.dram_read(A, 64) == xts(KB, A, D)
    assert log16[-1][5] == D  # the owner reads its data back
    assert log1[0][5] == xts(KX, A, bytes(64), encrypt=False)  # DRAM before the writeback
    assert plat.oracle.violations == []


def test_a_fill_taking_a_writebacks_data_leaves_its_arrival_and_key_alone():
    """cpu0 re-reads (K1, A) while cpu16's flush of it is on its way from package 1: the fill
    gets the flushed bytes, and the writeback still reaches DRAM at its own arrival, under
    the key of that moment (changed in between)."""
    m = load_model("server-2s", STABLE)
    plat = Platform(m, seed=1)
    plat.recorder.keep("writebacks")
    A = 0x10_0000
    KA, KB = KEYS[1], KEYS[2]
    plat.set_key(1, "key", KA)
    cyc = ns(1.0 / m.platform.frequency_ghz)
    mesh, hop = ns(m.interconnect.mesh_latency_ns), ns(m.interconnect.socket_hop_ns)
    llc = m.cache[-1].hit_latency_cycles * cyc
    D = pattern(4)
    T1 = us(2)
    depart = T1 + m.flush.clflushopt_cycles * cyc
    arrival = depart + mesh + hop
    read_at = depart + ns(1) - llc - mesh  # reaches the home before the writeback
    plat.later(arrival - ns(1), plat.set_key, 1, "key", KB, [0])
    _, log0 = run(plat, (16, [W(1, A, D, at=us(1)), (O.CLFLUSHOPT, 1, A, None, T1)]),
                  (0, [R(1, A, at=read_at)]))
    assert log0[0][5] == D
    (wb,) = plat.recorder["writebacks"]
    assert (wb.state, wb.arrival, wb.key) == (APPLIED, arrival, KB)
    assert plat.dram_read(A, 64) == xts(KB, A, D)


def test_a_reset_drains_or_loses_writebacks_in_flight():
    """A CLFLUSHOPT writeback in flight at a reset reaches DRAM under the pre-reset TME key
    with an orderly reset, and never with a power loss; in neither case under the new boot's
    key."""
    for flush in (True, False):
        m = load_model("server-2s", STABLE)
        plat = Platform(m, seed=1)
        A = 0x10_0000
        old_tme = plat.packages[0].mc.keys.tme_key
        D = pattern(5)
        T1 = us(2)
        cyc = ns(1.0 / m.platform.frequency_ghz)
        depart = T1 + m.flush.clflushopt_cycles * cyc
        plat.start_agent("firmware", [("reboot", 0, 0, (True, flush), depart + ns(1))])
        run(plat, (16, [W(0, A, D, at=us(1)), (O.CLFLUSHOPT, 0, A, None, T1)]))
        new_tme = plat.packages[0].mc.keys.tme_key
        assert new_tme != old_tme
        want = xts(old_tme[:32], A, D) if flush else bytes(64)
        assert plat.dram_read(A, 64) == want


def test_a_pconfig_in_progress_at_a_reset_never_lands():
    m = load_model("server-2s", STABLE)
    plat = Platform(m, seed=1)
    prog = pc.KeyProgram(3, pc.SET_KEY_DIRECT, pc.AES_XTS_128, bytes(range(16)).ljust(64, b"\0"),
                         bytes(range(16, 32)).ljust(64, b"\0"))
    proc = plat.env.process(pc.pconfig(plat, 0, prog))
    plat.start_agent("firmware", [("reboot", 0, 0, (False, True), ns(m.pconfig.latency_ns) // 2)])
    plat.run()
    assert proc.value == pc.RESET
    assert plat.packages[0].mc.keys.mode(3) == "tme"
    # The new boot's table is free: a PCONFIG now succeeds.
    again = plat.env.process(pc.pconfig(plat, 0, prog))
    plat.run()
    assert again.value == pc.PROG_SUCCESS and plat.packages[0].mc.keys.mode(3) == "key"


def test_an_offline_package_writes_back_and_serves_nothing():
    """cpu16 (package 1) holds (K0, A) dirty, A homed on package 0. Package 1 goes offline:
    the line reaches DRAM, and cpu0's read is served by DRAM, not by package 1's cache."""
    from mktme_des.kernel.kernel import Kernel
    from mktme_des.kernel.policy import load_policy

    m = load_model("server-2s", STABLE)
    plat = Platform(m, seed=1, oracle=Oracle())
    kernel = Kernel(plat, load_policy("rfc-v2"))
    A = 0x10_0000
    D = pattern(6)
    run(plat, (16, [W(0, A, D, at=us(1))]))
    assert plat.dram_read(A, 64) != xts(plat.packages[0].mc.keys.tme_key, A, D)

    def offline():
        yield from kernel.hp.offline_package(1)

    start = plat.env.now
    plat.env.process(offline())
    plat.run()
    assert plat.env.now > start  # the WBINVD took time
    assert plat.dram_read(A, 64) == xts(plat.packages[0].mc.keys.tme_key, A, D)
    assert all(c.occupancy() == 0 for c in plat.packages[1].caches)
    (log0,) = run(plat, (0, [R(0, A)]))
    assert log0[0][5] == D and log0[0][6] == "DRAM"
    assert plat.oracle.violations == []


def test_wbinvd_on_a_package_with_a_shared_copy_writes_nothing_back():
    """cpu0 writes A (owner: package 0); cpu16 reads it (a shared copy in package 1). WBINVD
    on package 1 drops its copy without a writeback; WBINVD on package 0 then writes it back
    once."""
    plat = Platform(load_model("server-2s", STABLE), seed=1, oracle=Oracle())
    A = 0x10_0000
    D = pattern(7)
    run(plat, (0, [W(0, A, D, at=us(1))]), (16, [R(0, A, at=us(2))]))
    run(plat, (16, [(O.WBINVD, 0, 0, None, None)]))
    assert plat.writebacks == 0 and plat.dram_read(A, 64) != xts(
        plat.packages[0].mc.keys.tme_key, A, D)
    run(plat, (0, [(O.WBINVD, 0, 0, None, None)]))
    assert plat.writebacks == 1
    assert plat.dram_read(A, 64) == xts(plat.packages[0].mc.keys.tme_key, A, D)


def test_a_second_read_of_a_corrupted_line_names_the_original_cause():
    """(K1, A) reaches DRAM under one key and K1 changes: the first read (from DRAM) and the
    second (from L1) both blame the key change."""
    plat = Platform(load_model("server-2s", STABLE), seed=1, oracle=Oracle())
    A = 0x10_0000
    plat.set_key(1, "key", KEYS[1])
    run(plat, (0, [W(1, A, pattern(8), at=us(1)), (O.CLFLUSH, 1, A, None, None)]))
    plat.set_key(1, "key", KEYS[2])
    run(plat, (0, [R(1, A), R(1, A)]))
    first, second = plat.oracle.violations
    assert first["served_by"] == "DRAM" and second["served_by"] == "L1D"
    assert "key of K1 on package 0 changed" in first["cause"]
    assert "key of K1 on package 0 changed" in second["cause"]


def test_lost_writebacks_are_kept_in_the_history():
    plat = Platform(load_model("server-2s", STABLE), seed=1)
    plat.recorder.keep("writebacks")
    A = 0x10_0000
    plat.start_agent("power", [("reboot", 0, 0, (True, False), us(2) + ns(10))])
    run(plat, (16, [W(0, A, pattern(9), at=us(1)), (O.CLFLUSHOPT, 0, A, None, us(2))]))
    assert [wb.state for wb in plat.recorder["writebacks"]] == [LOST]


def test_loads_in_flight_to_a_core_that_goes_offline_install_nothing():
    """cpu16 has three load misses in flight when package 1 goes offline: the loads return
    the stored bytes (from memory, as it is) and package 1's caches stay empty (rule 7)."""
    plat = Platform(MODEL_FB, seed=5, oracle=Oracle())
    lines = [0x20_0000 + i * 0x1000 for i in range(3)]  # homed on package 0: a long trip
    run(plat, (0, [W(0, pa, pattern(i), at=us(1)) for i, pa in enumerate(lines)]
               + [(O.CLFLUSH, 0, pa, None, None) for pa in lines]))
    start = plat.env.now

    def offline() -> None:
        for core in plat.packages[1].cores:
            core.online = False
        plat.offline_caches(plat.env.now, 1)

    plat.later(start + us(1) + ns(20), offline)
    (log,) = run(plat, (16, [R(0, pa, at=start + us(1)) for pa in lines]))
    assert [e[5] for e in log] == [pattern(i) for i in range(3)]
    assert all(c.occupancy() == 0 for c in plat.packages[1].caches)
    assert plat.oracle.violations == []
