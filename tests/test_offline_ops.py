"""[[cpu]] ops on an offline CPU are refused when they are due (after their waits), with a
clear verdict, and take no time; kernel-level actors are tasks the scheduler moves, never
refused."""

from __future__ import annotations

import random

import pytest

from mktme_des.cli import main
from mktme_des.errors import ConfigError
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import scenario_from

WBINVD_FAST = {"flush": {"wbinvd_line_ns": 0.001}}


def _doc(cpu_ops: list[dict], admin_ops: list[dict], extra: dict | None = None) -> dict:
    doc = {"scenario": {"name": "O", "title": "offline", "model": "client-1s"},
           "model_overrides": WBINVD_FAST,
           "cpu": [{"id": 1, "ops": cpu_ops}],
           "system": [{"name": "admin", "cpu": 0, "ops": admin_ops}]}
    doc.update(extra or {})
    return doc


def _checks(res) -> dict[str, dict]:
    return {c["name"]: c for c in res.checks}


def test_a_cpu_op_due_while_its_cpu_is_offline_is_refused():
    res = run_scenario(scenario_from(_doc(
        [{"op": "write", "keyid": 0, "addr": 0x1000, "data": "41", "at": 10},
         {"op": "read", "keyid": 0, "addr": 0x1000, "size": 1, "expect": "41", "name": "before"},
         {"op": "read", "keyid": 0, "addr": 0x1000, "size": 1, "after": "down",
          "name": "while offline"},
         {"op": "read", "keyid": 0, "addr": 0x1000, "size": 1, "after": "up", "expect": "41",
          "name": "back online"}],
        [{"op": "offline_cpu", "target": 1, "at": 1000, "label": "down"},
         {"op": "online_cpu", "target": 1, "at": 50000, "label": "up"}]), "o.toml"))
    checks = _checks(res)
    assert not res.ok
    assert checks["before"]["ok"] and checks["back online"]["ok"]
    refused = checks["while offline"]
    assert not refused["ok"] and refused["result"] == "offline"
    assert "cpu 1 is offline" in refused["detail"] and "not executed" in refused["detail"]
    ev = next(e for e in res.trace if e.get("check") == "while offline")
    assert ev["start_ns"] == ev["end_ns"] and ev["result"] == "offline"


def test_the_verdict_names_the_refusal(capsys, tmp_path):
    path = tmp_path / "o.toml"
    path.write_text('[scenario]\nname = "O"\ntitle = "t"\nmodel = "client-1s"\n'
                    '[[system]]\nname = "admin"\ncpu = 0\n'
                    'ops = [ { op = "offline_cpu", target = 1, label = "down" } ]\n'
                    '[[cpu]]\nid = 1\nops = [ { op = "clflush", keyid = 0, addr = 0x40, '
                    'after = "down" } ]\n')
    assert main(["scenario", "run", str(path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] cpu1 op 0" in out and "cpu 1 is offline when the op is due" in out


def test_kernel_contexts_are_never_refused():
    """A system actor's CPU going offline does not refuse its ops: it is a task, not a core."""
    doc = _doc([], [{"op": "offline_cpu", "target": 2, "label": "down"}])
    doc["system"].append({"name": "other", "cpu": 2, "ops": [
        {"op": "compute", "ns": 5, "after": "down"},
        {"op": "add_key", "key": "k", "options": "type=cpu algorithm=aes-xts-128",
         "after": "down", "expect": "ok", "name": "add"}]})
    del doc["cpu"]
    res = run_scenario(scenario_from(doc, "o.toml"))
    assert res.ok and _checks(res)["add"]["result"] == "ok"
    doc["system"][1]["ops"][1]["expect"] = "offline"
    with pytest.raises(ConfigError):
        scenario_from(doc, "o.toml")


def test_a_process_moves_off_a_cpu_going_offline_and_goes_on():
    doc = _doc([], [{"op": "offline_cpu", "target": 1, "label": "down"}])
    del doc["cpu"]
    doc["process"] = [{"name": "p", "cpu": 1, "ops": [
        {"op": "mmap", "vma": "b", "pages": 1},
        {"op": "write", "vma": "b", "data": "41", "after": "down"},
        {"op": "read", "vma": "b", "size": 1, "expect": "41", "name": "read"}]}]
    res = run_scenario(scenario_from(doc, "o.toml"))
    assert res.ok, res.checks


def test_random_offline_cycles_refuse_exactly_the_ops_due_offline():
    """Property: over random op streams on cpu 1 and random offline/online cycles of it, an
    op that starts after an offline_cpu of cpu 1 completed and before the next online_cpu
    started is refused; one that starts before any offline started, or after an online
    completed and before the next offline started, runs. Refused ops take no time."""
    rng = random.Random(77)
    for trial in range(20):
        cpu_ops = []
        for _ in range(rng.randint(3, 12)):
            op = rng.choice([{"op": "read", "keyid": 0, "addr": 0x1000, "size": 8},
                             {"op": "write", "keyid": 0, "addr": 0x1040, "data": "ab"},
                             {"op": "compute", "ns": rng.choice([10, 500])}])
            if rng.random() < 0.6:
                op["at"] = rng.uniform(0, 40000)
            cpu_ops.append(op)
        times = sorted(rng.uniform(0, 40000) for _ in range(2 * rng.randint(1, 2)))
        admin = []
        for k, t in enumerate(times):
            admin.append({"op": "offline_cpu" if k % 2 == 0 else "online_cpu", "target": 1,
                          "at": t})
        res = run_scenario(scenario_from(_doc(cpu_ops, admin), f"r{trial}.toml"))
        cycles = [(e["start_ns"], e["end_ns"], e["op"]) for e in res.trace
                  if e["actor"] == "admin"]
        assert all(e.get("result", "ok") == "ok" for e in res.trace if e["actor"] == "admin")
        ops = [e for e in res.trace if e["actor"] == "cpu1"]
        assert len(ops) == len(cpu_ops)
        for e in ops:
            t = e["start_ns"]
            refused = e.get("result") == "offline"
            state = "online"  # what cpu 1 is surely in at t, or "unknown" during a transition
            for start, end, what in cycles:
                if start <= t < end or (start <= t <= end and what == "online_cpu"):
                    state = "unknown"
                elif t >= end:
                    state = "offline" if what == "offline_cpu" else "online"
            if state != "unknown":
                assert refused == (state == "offline"), (trial, e, cycles)
            if refused:
                assert e["end_ns"] == e["start_ns"]
