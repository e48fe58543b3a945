"""Parked streams (engine/wakeup.py, "Parked streams"): the run loop makes a waiting core's
steps through cache hits itself, in SimPy's order and with the ids SimPy would give. Whether
streams park or not (``MKTME_DES_PARKING=0``) must change no byte of any result: workloads of
many cores (shared sets, stores to shared lines, prefetch, fill buffers, warm-up, lackey
traces), every shipped scenario, and random multi-core programs with flushes, WBINVD, aliases
and key changes, compared on their JSON, op logs, oracle output, traces and event ids. The
same random programs meet platform-level actions while cores' DRAM waits are held in the
parked streams' heap (resets, offline and online, raw DRAM traffic, PCONFIG, evictions,
streams started mid-run, stops with ``env.run(until=...)``), parked or not and compiled or
from the source."""

from __future__ import annotations

import json
import os

import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktme_des.config.model import load_model
from mktme_des.engine import wakeup
from mktme_des.engine.time import ns
from mktme_des.hw import ops as O
from mktme_des.hw import pconfig as pc
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import list_scenarios
from mktme_des.simulate import simulate, workload_from
from tests.helpers import SMALL_CACHES
from tests.test_memsys import KEYS, check_directory

PARKING = "MKTME_DES_PARKING"


def both_ways(monkeypatch, fn):
    """``fn()`` with streams parking, then without; both results."""
    monkeypatch.setenv(PARKING, "1")
    parked = fn()
    monkeypatch.setenv(PARKING, "0")
    plain = fn()
    monkeypatch.delenv(PARKING)
    return parked, plain


def steps_made(monkeypatch, held: list[int] | None = None) -> list[int]:
    """Record how many parked steps each run's loop made (that parking was exercised), and
    in ``held`` how many waits it held in the heap."""
    made: list[int] = []
    original = wakeup.run

    def run(env):
        original(env)
        parking = env.__dict__.get("_parking")
        made.append(parking.steps if parking is not None else 0)
        if held is not None:
            held.append(parking.holds if parking is not None else 0)

    monkeypatch.setattr(wakeup, "run", run)
    return made


WORKLOADS = [
    {"pattern": "sequential", "working_set_kib": 16, "accesses": 4000, "cores": 4},
    # One working set for all: reads of shared lines, stores that invalidate other copies.
    {"pattern": "random", "working_set_kib": 64, "accesses": 3000, "cores": 4,
     "sharing": "shared", "read_fraction": 0.5},
    {"pattern": "zipf", "working_set_kib": 4096, "accesses": 3000, "cores": 3,
     "prefetch_distance": 4, "warmup": 300},
    {"pattern": "stride", "working_set_kib": 64, "accesses": 2000, "cores": 16,
     "compute_ns": 1.5, "spread": "fill"},
    {"pattern": "random", "working_set_kib": 65536, "accesses": 800, "cores": 8,
     "mktme_fraction": 0.5, "placement": "remote"},
    {"kind": "lackey", "accesses": 6000, "cores": 4},
    {"kind": "lackey", "accesses": 3000, "cores": 2, "warmup": 1000, "prefetch_distance": 2},
]


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("fill_buffers", [1, 6])
def test_workloads_give_the_same_bytes_parked_or_not(monkeypatch, workload, fill_buffers):
    model = load_model("server-2s", {"core": {"fill_buffers": fill_buffers}})
    held: list[int] = []
    made = steps_made(monkeypatch, held)
    parked, plain = both_ways(
        monkeypatch, lambda: json.dumps(simulate(model, workload_from(workload), seed=3)))
    assert parked == plain
    assert made[0] > 0 and made[1] == 0
    # Cores waiting for memory hold their waits in the heap, with parking only.
    assert held[1] == 0
    if workload.get("working_set_kib", 0) >= 65536 and fill_buffers == 1:
        assert held[0] > 0  # nearly every access waits for DRAM


def scenario_names() -> list[str]:
    return [p.stem for p in list_scenarios()]


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_scenario_gives_the_same_bytes_parked_or_not(monkeypatch, name):
    """``scenario run --json --trace``'s document, whole."""
    parked, plain = both_ways(
        monkeypatch, lambda: json.dumps(run_scenario(name).to_dict(), default=str))
    assert parked == plain


def test_scenarios_exercise_parking(monkeypatch):
    made = steps_made(monkeypatch)
    monkeypatch.setenv(PARKING, "1")
    for name in scenario_names():
        run_scenario(name)
    assert sum(made) > 0


# -- random multi-core programs ------------------------------------------------------------------

MODEL = load_model("server-2s", {"mktme": {"boot_tweak": "stable"}, **SMALL_CACHES})
MODEL_FB = load_model("server-2s", {"mktme": {"boot_tweak": "stable"}, **SMALL_CACHES,
                                    "core": {"fill_buffers": 3}})
REMOTE = MODEL.memory.gib_per_package << 30
# Lines homed on both packages, several in one set of every level (evictions), under three
# KeyIDs (aliases of one PA).
LINES = [0x10_0000, 0x10_0040, 0x11_0000, REMOTE + 0x10_0000, REMOTE + 0x11_0000]
KEYIDS = (1, 2, 3)
CPUS = (0, 1, 2, 16, 17)  # three cores of package 0, two of package 1
KINDS = ["read"] * 6 + ["write"] * 4 + ["compute", "prefetch", "clwb", "clflushopt",
                                        "clflush", "wbinvd"]
# (kind, line, KeyID, byte, start): start None follows the previous op (back-to-back hits).
op_st = st.tuples(st.sampled_from(KINDS), st.integers(0, len(LINES) - 1),
                  st.sampled_from(KEYIDS), st.integers(0, 255),
                  st.one_of(st.none(), st.none(), st.integers(0, 4000)))
program_st = st.tuples(
    st.lists(st.lists(op_st, max_size=30), min_size=len(CPUS), max_size=len(CPUS)),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 1), st.sampled_from(KEYIDS)),
             max_size=3))


def ops_of(spec: list[tuple]) -> list[tuple]:
    out, last = [], 0
    for kind, line, keyid, byte, start in spec:
        at = None
        if start is not None:
            last = max(last, ns(start))  # starts never go back in time
            at = last
        pa = LINES[line]
        if kind == "read":
            out.append((O.READ, keyid, pa + (byte % 8) * 8, 8, at))
        elif kind == "write":
            out.append((O.WRITE, keyid, pa + (byte % 8) * 8, bytes([byte]) * 8, at))
        elif kind == "compute":
            out.append((O.COMPUTE, 0, 0, 1 + byte, at))
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
    return out


def as_task(core, ops: list[tuple]):
    """A SimPy process running ``ops`` on ``core`` a few at a time, as kernel code runs its
    loads and stores (``yield from core.run(...)``)."""
    for i in range(0, len(ops), 3):
        yield from core.run(ops[i : i + 3])


def outcome(program, model, actions: tuple = (), stops: tuple = (), refuse: bool = False,
            anchors: tuple | None = None, second: bool = False, tasks: bool = False) -> str:
    """Everything a run can show: op logs, the oracle's classes and violations, statistics,
    the recorded events and writebacks, the final time and the next event id. ``actions``
    are platform-level actions (:func:`schedule_actions`; ``anchors``: the times they may be
    tied to), ``stops`` times to stop at with ``env.run(until=...)`` before the run loop
    runs the rest, ``refuse``: package 1's cores refuse ops while offline (never parked),
    ``second``: after the run, a second run loop reads every line back, ``tasks``: cpus 1
    and 17 run their ops as kernel code does (:func:`as_task`)."""
    per_cpu, rekeys = program
    plat = Platform(model, seed=9, oracle=Oracle(classify=True))
    plat.recorder.keep("writebacks")
    plat.recorder.keep("events")
    for k in KEYIDS:
        plat.set_key(k, "key", bytes([k]) * 32)
    for t, package, keyid in rekeys:
        plat.later(ns(t), plat.set_key, keyid, "key", bytes([keyid + 7]) * 32, [package])
    seen = schedule_actions(plat, actions, anchors or ([], []))
    for cpu, spec in zip(CPUS, per_cpu, strict=True):
        plat.cores[cpu].log = []
        if tasks and cpu in (1, 17):
            plat.env.process(as_task(plat.cores[cpu], ops_of(spec)))
        else:
            plat.start(cpu, ops_of(spec), refuse and cpu >= 16)
    for until in sorted(set(stops)):
        if ns(until) > plat.env.now:
            plat.run(until=ns(until))
            seen["stops"].append((plat.env.now, sorted(c.finished_at or 0 for c in plat.cores)))
    plat.run()
    logs = [plat.cores[cpu].log for cpu in CPUS]
    if second:  # a later run loop on the same environment: every line read back
        reads = [(O.READ, keyid, pa, 64, None) for pa in LINES for keyid in KEYIDS]
        for cpu in (0, 16):
            plat.cores[cpu].log = []
            plat.start(cpu, reads)
        plat.run()
        seen["second"] = [plat.cores[cpu].log for cpu in (0, 16)]
    channels = plat.recorder.channels
    return json.dumps({
        "logs": logs,
        "oracle": plat.oracle.summary(),
        "violations": plat.oracle.violations,
        "stats": plat.stats(),
        "events": [repr(e) for e in channels["events"]],
        "writebacks": [(wb.seq, wb.tag, wb.sent, wb.arrival, wb.state, wb.data, wb.key)
                       for wb in channels["writebacks"]],
        "dram": [plat.dram_read(pa, 64) for pa in LINES],
        "pconfig": plat.pconfig_log,
        "actions": seen,
        "now": plat.env.now,
        "next_id": next(plat.env._eid),
    }, default=repr)


PROPS = settings(max_examples=int(os.environ.get("MKTME_DES_EXAMPLES", "120")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@PROPS
@given(program_st, st.booleans())
def test_random_programs_give_the_same_bytes_parked_or_not(monkeypatch, program, fill_buffers):
    """The rule of "Parked streams": parking changes the mechanism, never the order, so every
    byte a run shows, and the event ids it used, are the same."""
    model = MODEL_FB if fill_buffers else MODEL
    parked, plain = both_ways(monkeypatch, lambda: outcome(program, model))
    assert parked == plain


def test_random_programs_do_park(monkeypatch):
    """The property above is not vacuous: programs like its own make parked steps."""
    made = steps_made(monkeypatch)
    monkeypatch.setenv(PARKING, "1")
    spec = [("read", 0, 1, 0, None), ("write", 1, 1, 3, None), ("compute", 0, 0, 5, None)] * 20
    spec += [("clflush", 0, 1, 0, None)] + [("read", 2, 2, 1, None)] * 10
    outcome(([spec] * len(CPUS), []), MODEL)
    assert made[0] > 20


# -- held DRAM waits meet the platform ----------------------------------------------------------
# A core's two waits for a DRAM request (at the controller, data back) are held in the parked
# streams' heap (Parking.hold). Platform-level actions land while such waits are held: resets
# with and without flush (memsys rule 6), a package going offline and back online (rule 7),
# raw DRAM writes and reads by an agent, PCONFIGs and direct key changes, hardware evictions
# (writebacks in flight to the lines being read) and the directory's invariants checked
# (tests/test_memsys.py). Their times are free or tied to the end (or middle) of a DRAM wait
# of the program run alone, to the tick or one tick either side; runs may stop at times with
# env.run(until=...) first, and a second run loop may follow on the same environment.

ACTION_KINDS = ["reboot", "offline", "raw", "pconfig", "set_key", "evict", "check", "spawn"]
SPAWNED = (3, 18)  # idle cores a "spawn" action starts a stream on, mid-run
ANCHORS = ["free", "end", "arrival", "before", "after"]
# (kind, how its time is chosen, ns or anchor index, line, KeyID, byte, two flags)
action_st = st.tuples(st.sampled_from(ACTION_KINDS), st.sampled_from(ANCHORS),
                      st.integers(0, 4000), st.integers(0, len(LINES) - 1),
                      st.sampled_from(KEYIDS), st.integers(0, 255), st.booleans(),
                      st.booleans())
# (program, actions, stops (ns), fill buffers, refuse, second run loop, tasks)
held_st = st.tuples(program_st, st.lists(action_st, max_size=4),
                    st.lists(st.integers(0, 4500), max_size=2), st.booleans(), st.booleans(),
                    st.booleans(), st.booleans())
DRAM = ("DRAM", "DRAM-remote")


def dram_waits(doc: dict, cpus=CPUS, stores_only: bool = False) -> list[tuple[int, int]]:
    """``(start, end)`` of every load or store of ``cpus`` served by DRAM, from an outcome
    (of stores only with ``stores_only``)."""
    return [(e[0], e[1]) for cpu, log in zip(CPUS, doc["logs"], strict=True) if cpu in cpus
            for e in log if e is not None and e[6] in DRAM
            and not (stores_only and e[2] == O.READ)]


def anchors_of(program, model) -> tuple[list[int], list[int]]:
    """Times worth tying actions to, from the program run alone: when each DRAM wait ends
    (the data is back) and when its request reached the controller (the keys of the two
    held waits), from the model's miss cost and route latencies."""
    doc = json.loads(outcome(program, model))
    cores = Platform(model, seed=9).cores
    ends, arrivals = [], []
    for cpu, log in zip(CPUS, doc["logs"], strict=True):
        core = cores[cpu]
        for e in log:
            if e is not None and e[6] in DRAM:
                ends.append(e[1])
                arrivals.append(e[0] + core.miss_cost + core.routes[core.amap.slot(e[4])][1])
    return ends, arrivals


def action_time(how: str, when: int, anchors: tuple[list[int], list[int]]) -> int:
    """An action's time: ``when`` ns, or the ``when``-th anchor, to the tick or one tick
    before or after (of an end or an arrival, by ``when``'s parity)."""
    ends, arrivals = anchors
    if how == "free" or not ends:
        return ns(when)
    times = arrivals if how == "arrival" or (how != "end" and when & 1) else ends
    return max(0, times[(when >> 1) % len(times)] + {"before": -1, "after": 1}.get(how, 0))


def schedule_actions(plat, actions: tuple, anchors: tuple[list[int], list[int]]) -> dict:
    """Schedule platform-level ``actions`` (see above) on ``plat`` before it runs, each by
    the hook the project's own tests use; returns what they record as they run."""
    env = plat.env
    seen: dict = {"at": [], "agent": [], "offline": [], "pconfig": [], "evict": [],
                  "stops": [], "spawned": {}}
    latency = ns(plat.model.pconfig.latency_ns)

    def offline(t: int, package: int, back: int):
        yield env.timeout(t)
        for core in plat.packages[package].cores:
            core.online = False
        done = plat.offline_caches(env.now, package)
        seen["offline"].append((package, env.now, done))
        yield env.timeout(done - env.now + back)
        for core in plat.packages[package].cores:
            core.online = True
        seen["offline"].append((package, env.now))

    def pconfig(t: int, cpu: int, keyid: int, key: bytes):
        yield env.timeout(t)
        prog = pc.KeyProgram(keyid, pc.SET_KEY_DIRECT, pc.AES_XTS_128,
                             key[:16].ljust(64, b"\0"), key[16:].ljust(64, b"\0"))
        status = yield from pc.pconfig(plat, cpu, prog)
        seen["pconfig"].append((cpu, env.now, status))

    def evict(tag: int) -> None:
        seen["evict"].append((env.now, tag, plat.evict(env.now, tag)))

    def spawn(cpu: int, ops: list[tuple], process: bool) -> None:
        # Started by an urgent event at the current time (a Driver's or a Process's start),
        # which goes before the held waits due at that time.
        log = seen["spawned"].setdefault(cpu, [])
        if process:
            env.process(plat.cores[cpu].run(ops, log))
        else:
            plat.start(cpu, ops)

    for cpu in SPAWNED:
        plat.cores[cpu].log = seen["spawned"].setdefault(cpu, [])
    for kind, how, when, line, keyid, byte, a, b in actions:
        t = action_time(how, when, anchors)
        seen["at"].append((kind, t))
        pa = LINES[line]
        if kind == "reboot":  # a:  persistent memory, b: an orderly reset (flush)
            if byte & 1:
                plat.later(t, plat.reboot, a, b)
            else:
                plat.start_agent("firmware", [("reboot", 0, 0, (a, b), t)], seen["agent"])
        elif kind == "offline":  # back online ``byte`` ns after its caches are empty
            env.process(offline(t, int(a), ns(byte)))
        elif kind == "raw":
            ops = [(O.RAW_WRITE, 0, pa + (byte % 8) * 8, bytes([byte ^ 0x5A]) * 8, t)]
            if b:
                ops.append((O.RAW_READ, 0, pa, 64, None))
            plat.start_agent("dma", ops, seen["agent"])
        elif kind == "pconfig":  # issued so that it lands at t when it can
            key = KEYS[byte % len(KEYS)]
            env.process(pconfig(max(0, t - latency) if a else t, CPUS[byte % len(CPUS)],
                                keyid, key))
        elif kind == "set_key":
            plat.later(t, plat.set_key, keyid, "key", KEYS[byte % len(KEYS)], [int(a)])
        elif kind == "evict":
            plat.later(t, evict, (keyid << plat.amap.keyid_shift) | pa)
        elif kind == "spawn":  # a read and a store of a line, at once or a little later
            ops = [(O.READ, keyid, pa, 64, None),
                   (O.WRITE, keyid, pa + 8 * (byte % 8), bytes([byte]) * 8, t + ns(byte))]
            plat.later(t, spawn, SPAWNED[int(a)], ops, b)
        else:
            plat.later(t, check_directory, plat)
    return seen


def held_outcome(case, anchors: tuple[list[int], list[int]]) -> str:
    program, actions, stops, fill_buffers, refuse, second, tasks = case
    return outcome(program, MODEL_FB if fill_buffers else MODEL, tuple(actions), tuple(stops),
                   refuse, anchors, second, tasks)


@PROPS
@given(held_st)
def test_held_dram_waits_meet_platform_actions_the_same_parked_or_not(monkeypatch, case):
    """Held waits keep SimPy's order against everything else the platform does: resets,
    offline and online, raw DRAM traffic, key changes and PCONFIGs landing while a request
    is in flight, evictions of the lines in flight, stops with ``env.run(until=...)`` and a
    second run loop, ops run by SimPy processes as kernel code runs them; every byte a run shows and every event id are the same either way."""
    anchors = anchors_of(case[0], MODEL_FB if case[3] else MODEL)
    held: list[int] = []
    with monkeypatch.context() as patch:  # undone at each example's end: no nested wrappers
        made = steps_made(patch, held)
        parked, plain = both_ways(patch, lambda: held_outcome(case, anchors))
    assert parked == plain
    half = len(made) // 2
    assert not any(made[half:]) and not any(held[half:])  # nothing parks with parking off


def random_case(rng) -> tuple:
    """A case of ``held_st`` drawn from ``rng`` (for batches run in another process)."""
    def op():
        return (rng.choice(KINDS), rng.randrange(len(LINES)), rng.choice(KEYIDS),
                rng.randrange(256), rng.choice([None, None, rng.randrange(4001)]))

    program = ([[op() for _ in range(rng.randrange(31))] for _ in CPUS],
               [(rng.randrange(4001), rng.randrange(2), rng.choice(KEYIDS))
                for _ in range(rng.randrange(4))])
    actions = [(rng.choice(ACTION_KINDS), rng.choice(ANCHORS), rng.randrange(4001),
                rng.randrange(len(LINES)), rng.choice(KEYIDS), rng.randrange(256),
                rng.random() < 0.5, rng.random() < 0.5) for _ in range(1 + rng.randrange(4))]
    stops = [rng.randrange(4501) for _ in range(rng.randrange(3))]
    return (program, actions, stops, rng.random() < 0.5, rng.random() < 0.3,
            rng.random() < 0.5, rng.random() < 0.3)


def batch(seed: int, n: int) -> list[str]:
    """The outcomes of ``n`` random cases from ``seed``, parked (the default)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        case = random_case(rng)
        out.append(held_outcome(case, anchors_of(case[0], MODEL_FB if case[3] else MODEL)))
    return out


BATCH = max(8, int(os.environ.get("MKTME_DES_EXAMPLES", "120")) // 2)


def test_held_waits_give_the_same_bytes_compiled_or_from_the_source():
    """The compiled hot path (held waits, C fields of wake-ups, put_bytes, copy_bytes,
    pass_ownership, place) and the Python source it is compiled from give the same bytes on
    random cases of the property above (the source runs in another process)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MKTME_DES_PURE", PARKING)}
    other = dict(env) if os.environ.get("MKTME_DES_PURE") else {**env, "MKTME_DES_PURE": "1"}
    code = ("import json, sys; from tests.test_parking import batch; "
            "print(json.dumps(batch(int(sys.argv[1]), int(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, "11", str(BATCH)], cwd=root, env=other,
                          capture_output=True, check=True)
    assert json.loads(done.stdout) == batch(11, BATCH)


def test_platform_actions_land_during_held_waits(monkeypatch):
    """The properties above are not vacuous: on the random cases of the batch, waits are held,
    and every kind of action lands inside a DRAM wait of a core the run loop drives (after
    the last stop, blocking loads, streams that park)."""
    import random

    held: list[int] = []
    steps_made(monkeypatch, held)
    monkeypatch.setenv(PARKING, "1")
    rng = random.Random(11)
    inside = dict.fromkeys(ACTION_KINDS, 0)
    for _ in range(BATCH):
        case = random_case(rng)
        doc = json.loads(held_outcome(case, anchors_of(case[0], MODEL_FB if case[3] else MODEL)))
        start = max([ns(u) for u in case[2]], default=0)
        # With fill buffers, loads under a miss wait on a fill, not a held wake-up; stores
        # still block. An action at a wait's very end is earlier in SimPy's order.
        waits = dram_waits(doc, [c for c in CPUS if not (case[4] and c >= 16)], case[3])
        for kind, t in doc["actions"]["at"]:
            if t > start and any(s < t <= e for s, e in waits):
                inside[kind] += 1
    assert sum(held) > 0
    assert all(inside.values()), inside


# -- edges -----------------------------------------------------------------------------------------

def bad_stream():
    for i in range(40):
        yield (O.READ, 0, 0x1000, 8, None)
        if i == 30:
            yield (O.READ, 0, 0x1000)  # malformed: a parked step meets it


def test_a_failure_in_a_parked_step_fails_the_run_as_the_generator_would(monkeypatch):
    def failure() -> str:
        plat = Platform(MODEL, seed=1)
        plat.start(0, bad_stream())
        plat.start(1, [(O.READ, 0, 0x2000, 8, None)] * 200)
        with pytest.raises(ValueError, match="values to unpack") as info:
            plat.run()
        return f"{info.value!r} at {plat.env.now}"

    parked, plain = both_ways(monkeypatch, failure)
    assert parked == plain


def test_a_run_to_a_time_parks_nothing_and_the_rest_runs_parked(monkeypatch):
    """``env.run(until=...)`` sees only SimPy's queue: streams park only under wakeup.run."""

    def result(parking: str) -> str:
        monkeypatch.setenv(PARKING, parking)
        plat = Platform(MODEL, seed=1)
        for cpu in (0, 1, 16):
            plat.cores[cpu].log = []
            plat.start(cpu, [(O.READ, 1, 0x1000 * (cpu + 1), 8, None),
                             (O.WRITE, 1, 0x1000 * (cpu + 1), b"x" * 8, None)] * 50)
        plat.run(until=ns(200))
        parking_obj = plat.env.__dict__.get("_parking")
        assert parking_obj is None or parking_obj.n == 0
        plat.run()
        return json.dumps([plat.cores[c].log for c in (0, 1, 16)], default=repr)

    assert result("1") == result("0")


def test_a_run_loop_left_by_an_exception_leaves_no_wait_behind_for_a_run_to_a_time(monkeypatch):
    """An exception out of a callback leaves the run loop while cpu0's DRAM wait is held (its
    request reaches the controller at about 37 ns); the run goes on with ``env.run(until=...)``
    and then the run loop. As with SimPy's queue, the held wait must come before a raw DRAM
    write at 50 ns: the read sees DRAM as it was when the request arrived, and time never goes
    back. Parked or not, the same bytes."""
    a = LINES[0]

    def result() -> str:
        plat = Platform(MODEL, seed=1)
        plat.cores[0].log = []
        plat.start(0, [(O.READ, 0, a, 8, None)])

        def fail() -> None:
            raise RuntimeError("a failed callback")

        plat.later(ns(10), fail)
        plat.later(ns(50), plat.dram_write, a, b"\xaa" * 8)
        with pytest.raises(RuntimeError):
            plat.run()
        plat.run(until=ns(100))
        times = [plat.env.now]
        plat.run()
        times.append(plat.env.now)
        return json.dumps([plat.cores[0].log, times], default=repr)

    parked, plain = both_ways(monkeypatch, result)
    assert parked == plain


def test_tie_shuffling_environments_never_park():
    from mktme_des.engine.ties import environment

    assert wakeup.parking_for(environment(tie_seed=3)) is None
    assert wakeup.parking_for(simpy.Environment()) is not None
