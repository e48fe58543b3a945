"""Partial-order reduction of exhaustive exploration (mktme_des/scenarios/por.py).

The reduction may only drop orders equivalent to one it runs: on random small programs the
set of distinct outcomes (verdict, checks, violations and the whole trace) with reduction
equals the set without it, and every shipped scenario explores completely within the
default cap.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from mktme_des.hunt.generator import machine, program
from mktme_des.scenarios.explore import EXHAUSTIVE_CAP, every_tie_order, explore
from mktme_des.scenarios.por import ANY, dependent
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import list_scenarios, scenario_from

LINES = (0x10000, 0x10040, 0x20000 + (1 << 30))  # two lines homed on package 0, one on 1
CORE_OPS = ("write", "read", "clflush", "prefetch")
FULL_CAP = 200  # programs whose every order fits in this many runs are compared
FIRST_ORDER = 80  # ... and whose first order's ties multiply to at most this


def digest(run: tuple) -> str:
    """What distinguishes two runs: verdict, checks, the oracle's violations, the trace."""
    _trial, ok, checks, violations, trace = run
    text = json.dumps([ok, checks, violations, trace], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def core_program(rng: np.random.Generator) -> dict:
    """Two or three cores of two packages (and sometimes a PCONFIG and a DRAM probe) doing
    loads, stores, flushes and prefetches of three lines under two KeyIDs, their ops due at
    a few shared instants so that they tie."""
    cpus = []
    for core in rng.choice([0, 1, 16, 17], size=int(rng.integers(2, 4)), replace=False):
        ops, last = [], 0.0
        for _ in range(int(rng.integers(1, 4))):
            kind = CORE_OPS[int(rng.integers(len(CORE_OPS)))]
            op = {"op": kind, "keyid": int(rng.integers(1, 3)),
                  "addr": LINES[int(rng.integers(len(LINES)))]}
            if kind == "write":
                op["data"] = bytes([int(rng.integers(256))] * 8).hex()
            at = float(100 * int(rng.integers(1, 4)))
            if rng.random() < 0.7 and at >= last:
                op["at"] = last = at
            ops.append(op)
        cpus.append({"id": int(core), "ops": ops})
    data = {"scenario": {"name": "random", "title": "random", "model": "server-2s", "seed": 1},
            "keys": [{"keyid": 1, "mode": "key"}, {"keyid": 2, "mode": "key"}], "cpu": cpus}
    if rng.random() < 0.5:
        data["system"] = [{"name": "admin", "cpu": int(rng.choice([2, 18])), "ops": [
            {"op": "pconfig", "keyid": int(rng.integers(1, 3)), "command": "SET_KEY_RANDOM",
             "at": 200.0}]}]
    if rng.random() < 0.5:
        data["agent"] = [{"name": "probe", "ops": [
            {"op": "raw_read", "addr": LINES[0], "size": 8, "at": 200.0}]}]
    return data


def compare(data: dict, name: str) -> tuple[int, int, int] | None:
    """(orders, schedules with reduction, distinct outcomes) of a program whose every order
    fits in ``FULL_CAP`` runs, after checking both find the same outcomes; None otherwise
    (or when the ties of its first order already multiply to more than ``FIRST_ORDER``)."""
    _taken, branching = run_scenario(scenario_from(data, name), []).ties
    if math.prod(branching) > FIRST_ORDER:
        return None
    full, complete, _ = every_tie_order(data, name, FULL_CAP, reduce=False)
    if not complete:
        return None
    reduced, complete, _ = every_tie_order(data, name, FULL_CAP, reduce=True)
    assert complete
    assert {digest(r) for r in reduced} == {digest(r) for r in full}, name
    return len(full), len(reduced), len({digest(r) for r in full})


def test_reduction_keeps_every_outcome_of_random_core_programs():
    compared = []
    for i in range(24):
        got = compare(core_program(np.random.default_rng([13, i])), f"core program {i}")
        if got is not None:
            compared.append(got)
    assert len(compared) >= 8
    assert any(outcomes > 1 for _, _, outcomes in compared)  # races that matter were met
    assert any(reduced < full for full, reduced, _ in compared)


def test_reduction_keeps_every_outcome_of_random_kernel_programs():
    mach = machine("server-2s")
    compared = []
    for size in (2, 3):
        for i in range(30):
            data = program(np.random.default_rng([7, size, i]), size, "rfc-v2", "server-2s",
                           mach)
            got = compare(data, f"kernel program {size}/{i}")
            if got is not None:
                compared.append(got)
    assert len(compared) >= 10
    assert any(outcomes > 1 for _, _, outcomes in compared)
    assert any(reduced < full for full, reduced, _ in compared)


def test_reduction_runs_fewer_schedules_where_events_are_independent():
    found = explore("s2-stale-writeback-no-flush", exhaustive=True, compare=True)
    assert found.complete and found.unreduced_complete and found.same_outcomes
    assert found.runs < found.unreduced
    report = found.to_dict()["schedules"]
    assert report["explored"] == found.runs and report["unreduced"] == found.unreduced
    text = found.text()
    assert f"without reduction: {found.unreduced} schedules; the same outcomes" in text


def test_dependence_is_symmetric_and_conservative():
    rng = np.random.default_rng(5)
    tokens = ["hw", "pkg:0", "pkg:1", "rng", "kernel", "mm:a", "mm:b", "flag:x", "board",
              "serials", ANY]
    for _ in range(300):
        a = frozenset(t for t in tokens if rng.random() < 0.2)
        b = frozenset(t for t in tokens if rng.random() < 0.2)
        assert dependent(a, b) == dependent(b, a)
        if a and b and (a & b or ANY in a | b):
            assert dependent(a, b)
        if not a or not b:
            assert not dependent(a, b)  # an event with no callbacks does nothing
    assert dependent(frozenset({"hw"}), frozenset({"pkg:1"}))
    assert dependent(frozenset({"board"}), frozenset({"flag:x"}))
    assert not dependent(frozenset({"pkg:0"}), frozenset({"pkg:1"}))


@pytest.mark.parametrize("path", list_scenarios(), ids=lambda p: p.stem)
def test_every_shipped_scenario_explores_completely_within_the_default_cap(path):
    found = explore(path, exhaustive=True)
    assert found.complete and found.runs <= EXHAUSTIVE_CAP
    assert found.ok  # every order gives the file's own verdict
