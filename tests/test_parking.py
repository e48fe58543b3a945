"""Parked streams (engine/wakeup.py, "Parked streams"): the run loop makes a waiting core's
steps through cache hits itself, in SimPy's order and with the ids SimPy would give. Whether
streams park or not (``MKTME_DES_PARKING=0``) must change no byte of any result: workloads of
many cores (shared sets, stores to shared lines, prefetch, fill buffers, warm-up, lackey
traces), every shipped scenario, and random multi-core programs with flushes, WBINVD, aliases
and key changes, compared on their JSON, op logs, oracle output, traces and event ids."""

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
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import list_scenarios
from mktme_des.simulate import simulate, workload_from
from tests.helpers import SMALL_CACHES

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


def outcome(program, model) -> str:
    """Everything a run can show: op logs, the oracle's classes and violations, statistics,
    the recorded events and writebacks, the final time and the next event id."""
    per_cpu, rekeys = program
    plat = Platform(model, seed=9, oracle=Oracle(classify=True))
    plat.recorder.keep("writebacks")
    plat.recorder.keep("events")
    for k in KEYIDS:
        plat.set_key(k, "key", bytes([k]) * 32)
    for t, package, keyid in rekeys:
        plat.later(ns(t), plat.set_key, keyid, "key", bytes([keyid + 7]) * 32, [package])
    for cpu, spec in zip(CPUS, per_cpu, strict=True):
        plat.cores[cpu].log = []
        plat.start(cpu, ops_of(spec))
    plat.run()
    channels = plat.recorder.channels
    return json.dumps({
        "logs": [plat.cores[cpu].log for cpu in CPUS],
        "oracle": plat.oracle.summary(),
        "stats": plat.stats(),
        "events": [repr(e) for e in channels["events"]],
        "writebacks": [(wb.seq, wb.tag, wb.arrival, wb.state, wb.data) for wb in
                       channels["writebacks"]],
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


def test_tie_shuffling_environments_never_park():
    from mktme_des.engine.ties import environment

    assert wakeup.parking_for(environment(tie_seed=3)) is None
    assert wakeup.parking_for(simpy.Environment()) is not None
