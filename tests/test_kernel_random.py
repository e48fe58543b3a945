"""Property tests of the kernel model: random sequences of system calls, page touches, cache
flushes and hotplug on server-2s.

* Under the ``rfc-v2`` policy no sequence, however invalid its calls, makes the oracle report a
  violation, makes a reference count go negative, or makes a process read anything but what
  it last wrote (zeros for fresh or discarded pages). Errors returned as ``Errno`` are fine.
* ``unsafe-no-flush-on-free`` lets a stale dirty line of a freed encrypted page be written back
  over the page's next (KeyID 0) user: the oracle reports it and names the stale writeback,
  while the very same sequences under ``rfc-v2`` stay clean.

Every process, the one on package 1 included, uses every KeyID. Offlining package 1 is refused
(EBUSY) while pages are homed on it, so no data encrypted under its old CPU keys outlives an
offline/online.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktme_des.config.model import load_model
from mktme_des.hw import ops as O
from mktme_des.hw.platform import Platform
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.kernel import Kernel
from mktme_des.kernel.mm import PAGE
from mktme_des.kernel.policy import load_policy
from mktme_des.oracle import Oracle

MODEL = load_model("server-2s")
MODEL_FB = load_model("server-2s", {"core": {"fill_buffers": 4}})  # loads go on under misses
CPP = MODEL.topology.cores_per_package
PROC_CPUS = (0, 1, 2, CPP + 1)  # three processes on package 0, one on package 1
ZERO = bytes(64)


def budget(examples: int):
    """Fixed examples (derandomized, no example database) sized to keep the file fast."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Runner:
    """Interprets op tuples against a kernel, keeping a shadow of what each line must hold."""

    def __init__(self, policy: str, seed: int = 0, model=MODEL) -> None:
        self.plat = Platform(model, seed, oracle=Oracle())
        self.k = Kernel(self.plat, load_policy(policy), frames_per_package=64)
        self.procs = [self.k.mm.spawn(cpu) for cpu in PROC_CPUS]
        self.regions: list[list[tuple[int, int]]] = [[] for _ in self.procs]
        self.serials: dict[int, int] = {}
        self.shadow: dict[tuple[int, int], bytes] = {}  # (proc index, line va) -> bytes
        self.errors: Counter = Counter()
        self.reads = 0

    # -- helpers -------------------------------------------------------------------------------
    def runs(self, p: int) -> bool:
        """A process runs only while its CPU is online."""
        return self.plat.cores[self.procs[p].cpu].online

    def va_of(self, p: int, r: int, off: int, line: int = 0) -> int | None:
        regions = self.regions[p]
        if not regions:
            return None
        start, pages = regions[r % len(regions)]
        return start + (off % pages) * PAGE + line * 64

    def drop(self, p: int, start: int, end: int) -> None:
        for key in [k for k in self.shadow if k[0] == p and start <= k[1] < end]:
            del self.shadow[key]

    def core(self, p: int, op: tuple):
        log: list = []
        yield from self.plat.cores[self.procs[p].cpu].run([op], log)
        return log[0]

    def read_line(self, p: int, va: int):
        proc = self.procs[p]
        yield from self.k.mm.fault(proc, va)
        keyid, pa = self.k.mm.translate(proc, va)
        entry = yield from self.core(p, (O.READ, keyid, pa, 64, None))
        self.reads += 1
        want = self.shadow.get((p, va), ZERO)
        assert entry[5] == want, (p, hex(va), entry[5].hex(), want.hex())

    def wbinvd(self, cpu: int):
        env = self.plat.env
        done = self.plat.wbinvd(env.now, self.plat.cores[cpu].package, cpu)
        yield env.timeout(done - env.now)

    # -- one op ----------------------------------------------------------------------------------
    def step(self, op: tuple):
        kind = op[0]
        mm, keys, hp = self.k.mm, self.k.keys, self.k.hp
        if kind == "add":
            _, idx, user, material, cpu = op
            if user:
                payload = (f"type=user algorithm=aes-xts-128 key={material[:16].hex()} "
                           f"tweak={material[16:].hex()}")
            else:
                payload = "type=cpu algorithm=aes-xts-128"
            self.serials[idx] = yield from keys.add_key(cpu, f"key{idx}", payload)
        elif kind == "revoke":
            serial = self.serials.get(op[1])
            if serial is not None:
                yield from keys.revoke(0, serial)
        elif kind == "mmap":
            _, p, pages = op
            if self.runs(p):
                va = yield from mm.mmap(self.procs[p], pages * PAGE)
                self.regions[p].append((va, pages))
        elif kind == "mprotect":
            _, p, r, off, n, idx, clip = op
            va = self.va_of(p, r, off)
            if va is None or not self.runs(p):
                return
            if clip:
                start, pages = self.regions[p][r % len(self.regions[p])]
                n = min(n, pages - (va - start) // PAGE)
            proc = self.procs[p]
            serial = self.serials.get(idx, 999_999)
            old = {}
            for i in range(n):
                vma = proc.vma_at(va + i * PAGE)
                old[i] = vma.keyid if vma is not None else None
            yield from mm.encrypt_mprotect(proc, va, n * PAGE, 3, serial)
            new = keys.keys[serial].keyid
            for i in range(n):
                assert proc.vma_at(va + i * PAGE).keyid == new
                if old[i] != new:  # existing pages were discarded
                    self.drop(p, va + i * PAGE, va + (i + 1) * PAGE)
        elif kind == "touch":
            _, p, r, off, line, lo, data = op
            va = self.va_of(p, r, off, line)
            if va is None or not self.runs(p):
                return
            data = data[: 64 - lo]
            proc = self.procs[p]
            yield from mm.fault(proc, va)
            keyid, pa = mm.translate(proc, va)
            yield from self.core(p, (O.WRITE, keyid, pa + lo, data, None))
            line_bytes = bytearray(self.shadow.get((p, va), ZERO))
            line_bytes[lo : lo + len(data)] = data
            self.shadow[(p, va)] = bytes(line_bytes)
            yield from self.read_line(p, va)
        elif kind == "read":
            _, p, r, off, line = op
            va = self.va_of(p, r, off, line)
            if va is not None and self.runs(p):
                yield from self.read_line(p, va)
        elif kind == "munmap":
            _, p, r, off, n = op
            va = self.va_of(p, r, off)
            if va is not None and self.runs(p):
                yield from mm.munmap(self.procs[p], va, n * PAGE)
                self.drop(p, va, va + n * PAGE)
        elif kind == "swap_out":
            _, p, r, off = op
            va = self.va_of(p, r, off)
            if va is not None and self.runs(p):
                yield from mm.swap_out(self.procs[p], va)
        elif kind == "wbinvd":
            if self.plat.cores[op[1]].online:
                yield from self.wbinvd(op[1])
        elif kind == "offline1":
            yield from hp.offline_package(1)
        elif kind == "online1":
            yield from hp.online_package(1)
        else:  # pragma: no cover
            raise ValueError(op)

    def final_check(self):
        """Write everything back to DRAM and read every line a process still owns."""
        for pkg in self.plat.packages:
            if pkg.online:
                yield from self.wbinvd(pkg.cores[0].cpu)
        for p, va in sorted(self.shadow):
            if self.runs(p):
                yield from self.read_line(p, va)

    def run(self, ops: list[tuple], final: bool = True) -> None:
        def body():
            for op in ops:
                try:
                    yield from self.step(op)
                except Errno as err:
                    self.errors[err.name] += 1
            if final:
                yield from self.final_check()

        self.plat.env.process(body())
        self.plat.run()

    def check_references(self) -> None:
        ks = self.k.keys
        per_page = self.k.policy.refcount_pages
        for kid in range(1, ks.nr_keyids + 1):
            owner = ks.owner[kid]
            live = 1 if owner in ks.keys and ks.keys[owner].live else 0
            vmas = sum(v.keyid == kid for pr in self.procs for v in pr.vmas)
            pages = sum(pg.keyid == kid for pr in self.procs for pg in pr.pages.values())
            assert ks.refs[kid] == live + vmas + (pages if per_page else 0), kid
            if ks.refs[kid]:
                assert owner is not None


# -- strategies --------------------------------------------------------------------------------

procs = st.integers(0, len(PROC_CPUS) - 1)
regions = st.integers(0, 7)
offsets = st.integers(0, 3)
key_idx = st.integers(0, 3)  # the prelude adds keys 0-2: key 3 is often unknown
lines = st.sampled_from([0, 1, 2, 63])


def op_st(kind: str, *parts):
    return st.tuples(st.just(kind), *parts)


STRATEGIES = {
    "touch": op_st("touch", procs, regions, offsets, lines, st.sampled_from([0, 0, 8, 60]),
                   st.binary(min_size=1, max_size=64)),
    "read": op_st("read", procs, regions, offsets, lines),
    "mprotect": op_st("mprotect", procs, regions, offsets, st.integers(1, 3), key_idx,
                      st.sampled_from([True, True, False])),  # clip the range to the region
    "add": op_st("add", key_idx, st.booleans(), st.binary(min_size=32, max_size=32),
                 st.sampled_from([0, 1, 2])),
    "mmap": op_st("mmap", procs, st.integers(1, 3)),
    "munmap": op_st("munmap", procs, regions, offsets, st.integers(1, 2)),
    "revoke": op_st("revoke", key_idx),
    "swap_out": op_st("swap_out", procs, regions, offsets),
    "wbinvd": op_st("wbinvd", st.sampled_from([0, 1, CPP, CPP + 1])),
    "offline1": op_st("offline1"),
    "online1": op_st("online1"),
}
WEIGHTS = {"touch": 6, "read": 3, "mprotect": 3}
OP = st.sampled_from([k for k in STRATEGIES for _ in range(WEIGHTS.get(k, 1))]).flatmap(
    STRATEGIES.__getitem__)


@st.composite
def preludes(draw, user_keys: bool = True) -> list[tuple]:
    """A few keys (some of user type) and one mapping per process, so that the random ops
    have something to work on."""
    ops = []
    for idx in range(3):
        user = user_keys and draw(st.integers(0, 3)) == 0
        ops.append(("add", idx, user, draw(st.binary(min_size=32, max_size=32)), 0))
    for p in range(len(PROC_CPUS)):
        ops.append(("mmap", p, draw(st.integers(1, 3))))
    return ops


@budget(150)
@given(prelude=preludes(), ops=st.lists(OP, min_size=10, max_size=40))
def test_random_sequences_under_rfc_v2_never_violate(prelude, ops):
    runner = Runner("rfc-v2")
    runner.run(prelude + ops)
    assert runner.plat.oracle.violations == []
    runner.check_references()


@budget(60)
@given(prelude=preludes(), ops=st.lists(OP, min_size=10, max_size=40))
def test_loads_in_flight_keep_the_kernel_right(prelude, ops):
    """The same with cores that keep load misses in flight: the kernel's page copies (swap,
    migration) read whole pages through one op list each, and the lines arrive out of order."""
    runner = Runner("rfc-v2", model=MODEL_FB)
    runner.run(prelude + ops)
    assert runner.plat.oracle.violations == []
    runner.check_references()


def _cpu_keys_only(op: tuple) -> tuple:
    return op[:2] + (False,) + op[3:] if op[0] == "add" else op


@budget(60)
@given(prelude=preludes(user_keys=False), ops=st.lists(OP, min_size=10, max_size=30),
       cycles=st.integers(1, 2))
def test_hotplug_with_cpu_keys_always_onlines_and_never_violates(prelude, ops, cycles):
    """With only CPU keys, onlining is always allowed; package 1 cycles through
    offline/online in the middle of random work (offline is refused, EBUSY, while pages are
    homed on it: its memory goes with it)."""
    runner = Runner("rfc-v2")
    seq = [_cpu_keys_only(op) for op in prelude + ops]
    half = len(seq) // 2
    seq = seq[:half] + [("offline1",), ("online1",)] * cycles + seq[half:]
    attempts: list[tuple[bool, bool]] = []  # (offline before, online after) per online
    step = runner.step

    def tracked(op):
        if op[0] != "online1":
            yield from step(op)
            return
        was_offline = not runner.plat.packages[1].online
        try:
            yield from step(op)
        finally:
            attempts.append((was_offline, runner.plat.packages[1].online))

    runner.step = tracked
    runner.run(seq)
    assert "EPERM" not in runner.errors
    # Every online of an offline package succeeded.
    assert all(after for before, after in attempts if before)
    assert runner.plat.oracle.violations == []
    runner.check_references()
    # Every KeyID in use is programmed on every online package.
    for kid in runner.k.keys.in_use():
        for pkg in runner.plat.packages:
            if pkg.online:
                assert pkg.mc.keys.entry(kid).version >= 1, (kid, pkg.index)


# -- an unsafe switch ------------------------------------------------------------------------


P_A, P_B = 0, 1  # processes on cpu0 and cpu1: the same package


def stale_sequence(a_writes, b_writes, b_lines, cpu=0):
    """Process A writes an encrypted page and unmaps it; process B (same package) maps a plain
    page, which reuses the frame, writes it, and after a WBINVD on ``cpu`` reads it back."""
    ops = [("add", 0, False, bytes(32), 0), ("mmap", P_A, 1), ("mprotect", P_A, -1, 0, 1, 0, False)]
    ops += [("touch", P_A, -1, 0, line, 0, data) for line, data in a_writes]
    ops += [("munmap", P_A, -1, 0, 1), ("mmap", P_B, 1)]
    ops += [("touch", P_B, -1, 0, line, 0, data) for line, data in b_writes]
    ops += [("wbinvd", cpu)]
    ops += [("read", P_B, -1, 0, line) for line in b_lines]
    return ops


def run_checked(policy: str, ops: list[tuple]):
    """Run ``ops``, collecting wrong reads (process, error) instead of failing on them."""
    runner = Runner(policy)
    wrong: list = []
    original = runner.read_line

    def lenient(p, va):
        try:
            yield from original(p, va)
        except AssertionError as err:
            wrong.append((p, err))

    runner.read_line = lenient
    runner.run(ops, final=False)
    return runner, wrong


def test_no_flush_on_free_stale_writeback_corrupts_the_next_user():
    data_a, data_b = bytes(range(64)), bytes(range(100, 164))
    ops = stale_sequence([(0, data_a)], [(0, data_b)], [0, 1], cpu=1)
    safe, wrong = run_checked("rfc-v2", ops)
    assert safe.errors == Counter() and wrong == []
    assert safe.plat.oracle.violations == []

    unsafe, wrong = run_checked("unsafe-no-flush-on-free", ops)
    assert unsafe.errors == Counter()
    assert [p for p, _ in wrong] == [P_B, P_B]  # both reads of B are wrong (line 1: zeros)
    viol = unsafe.plat.oracle.violations
    assert len(viol) == 2
    kid = unsafe.k.keys.keys[unsafe.serials[0]].keyid
    assert kid != 0
    line_pa = int(viol[0]["addr"], 16)
    assert viol[0]["keyid"] == 0 and viol[0]["cpu"] == PROC_CPUS[P_B]
    assert viol[0]["expected"] == data_b.hex()
    assert viol[0]["actual"] != data_b.hex()
    cause = viol[0]["cause"]
    assert f"writeback of (K{kid}, {line_pa:#x})" in cause
    assert f"overwrote data written via (K0, {line_pa:#x})" in cause
    assert "wbinvd" in cause
    assert viol[1]["expected"] == ZERO.hex()


@budget(50)
@given(prelude=st.lists(OP, max_size=12),
       a_writes=st.lists(st.tuples(lines, st.binary(min_size=64, max_size=64)), min_size=1,
                         max_size=3),
       b_writes=st.lists(st.tuples(lines, st.binary(min_size=64, max_size=64)), min_size=1,
                         max_size=3),
       b_lines=st.lists(lines, min_size=1, max_size=3, unique=True),
       cpu=st.sampled_from([0, 1]))
def test_generated_stale_sequences_violate_only_without_flush_on_free(
        prelude, a_writes, b_writes, b_lines, cpu):
    ops = stale_sequence(a_writes, b_writes, b_lines, cpu)
    # The prelude runs first, in the other processes, with the other keys.
    prelude = [op for op in prelude
               if not (op[0] in ("add", "revoke") and op[1] == 0)
               and not (op[0] in ("mmap", "mprotect", "touch", "read", "munmap", "swap_out")
                        and op[1] in (P_A, P_B))]
    seq = prelude + ops
    safe, wrong = run_checked("rfc-v2", seq)
    assert wrong == [] and safe.plat.oracle.violations == []
    safe.check_references()

    unsafe, wrong = run_checked("unsafe-no-flush-on-free", seq)
    # A's page was zeroed through its KeyID on allocation, so all 64 of its lines were dirty
    # when it was freed without a flush: every read B makes after the WBINVD is stale.
    viol = [v for v in unsafe.plat.oracle.violations if v["cpu"] == PROC_CPUS[P_B]]
    assert len(viol) == len(b_lines) == len([p for p, _ in wrong if p == P_B])
    kid = unsafe.k.keys.keys[unsafe.serials[0]].keyid
    for v in viol:
        assert v["keyid"] == 0
        assert f"writeback of (K{kid}, {v['addr']})" in v["cause"]
        assert "overwrote data written via (K0" in v["cause"]
