"""The scenario format users asked for: `after` takes a list of labels."""

from __future__ import annotations

import json

import pytest

from mktme_des.cli import main

BOTH = """[scenario]
name = "A"
title = "after two labels"
model = "client-1s"

[[cpu]]
id = 0
ops = [ { op = "sfence", at = 100, label = "early" } ]

[[cpu]]
id = 1
ops = [ { op = "sfence", at = 3000, label = "late" } ]

[[agent]]
name = "probe"
ops = [ { op = "raw_read", addr = 0x1000, name = "r", after = AFTER } ]

[[process]]
name = "p"
cpu = 2
ops = [ { op = "compute", ns = 1, after = AFTER, label = "p done" } ]
"""


def _starts(capsys, tmp_path, after: str) -> dict[str, float]:
    path = tmp_path / "a.toml"
    path.write_text(BOTH.replace("AFTER", after))
    assert main(["scenario", "run", str(path), "--json", "--trace"]) == 0
    trace = json.loads(capsys.readouterr().out)["trace"]
    return {e["actor"]: e["start_ns"] for e in trace if e["actor"] in ("probe", "p")}


def test_after_a_list_waits_for_every_label(capsys, tmp_path):
    one = _starts(capsys, tmp_path, '"early"')
    both = _starts(capsys, tmp_path, '["early", "late"]')
    assert one["probe"] < 3000 and one["p"] < 3000
    assert both["probe"] >= 3000 and both["p"] >= 3000


@pytest.mark.parametrize("after, says", [
    ("[]", "non-empty list of labels"),
    ('["early", ""]', "non-empty list of labels"),
    ('["early", "early"]', "names a label twice"),
    ('["early", "nope"]', "no op is labelled 'nope'"),
    ("[1]", "non-empty list of labels"),
])
def test_bad_after_lists(capsys, tmp_path, after, says):
    path = tmp_path / "a.toml"
    path.write_text(BOTH.replace("AFTER", after))
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: agent[0].ops[0].after" in err and says in err and "Traceback" not in err


# -- relative times: at = "LABEL+5ns" --------------------------------------------------------------
REL = """[scenario]
name = "R"
title = "relative times"
model = "client-1s"

[[cpu]]
id = 0
ops = [
  { op = "write", keyid = 0, addr = 0x1000, data = "41", at = 200 },
  { op = "clflush", keyid = 0, addr = 0x1000, label = "flush" },
]

[[cpu]]
id = 1
ops = [ { op = "read", keyid = 0, addr = 0x1000, size = 1, expect = "41", at = CPU_AT } ]

[[agent]]
name = "probe"
ops = [ { op = "raw_read", addr = 0x1000, size = 1, name = "dram", expect = "ciphertext", at = AGENT_AT } ]

[[system]]
name = "admin"
cpu = 2
ops = [ { op = "compute", ns = 1, at = SYS_AT } ]
"""


def _run_rel(capsys, tmp_path, cpu_at: str, agent_at: str = '"flush"', sys_at: str = '"flush"',
             code: int = 0) -> dict:
    path = tmp_path / "r.toml"
    path.write_text(REL.replace("CPU_AT", cpu_at).replace("AGENT_AT", agent_at)
                    .replace("SYS_AT", sys_at))
    assert main(["scenario", "run", str(path), "--json", "--trace"]) == code, capsys.readouterr()
    return json.loads(capsys.readouterr().out)


def _starts_of(res: dict) -> tuple[float, dict[str, float]]:
    ops = [e for e in res["trace"] if e["actor"] in ("cpu0", "cpu1", "probe", "admin")]
    flush_end = next(e["end_ns"] for e in ops if e["actor"] == "cpu0" and e["op"] == "clflush")
    return flush_end, {e["actor"]: e["start_ns"] for e in ops if e["actor"] != "cpu0"}


@pytest.mark.parametrize("cpu_at, agent_at, sys_at, delays", [
    ('"flush+5ns"', '"flush"', '"flush+2us"', (5.0, 0.0, 2000.0)),
    ('"flush+0.5us"', '"flush+12.25ns"', '"flush"', (500.0, 12.25, 0.0)),
])
def test_a_relative_time_starts_after_the_labelled_op_completes(capsys, tmp_path, cpu_at,
                                                                agent_at, sys_at, delays):
    res = _run_rel(capsys, tmp_path, cpu_at, agent_at, sys_at)
    flush_end, starts = _starts_of(res)
    for actor, delay in zip(("cpu1", "probe", "admin"), delays, strict=True):
        assert starts[actor] == pytest.approx(flush_end + delay, abs=1e-3), actor
    # The waits add no logged op: the expectations still find their reads.
    assert res["ok"] and {c["name"] for c in res["checks"]} >= {"cpu1 op 0", "dram"}


def test_a_relative_time_never_runs_before_the_program_order():
    """A relative time is a lower bound, like an absolute one: an op still follows the op
    before it in its actor."""
    from mktme_des.scenarios.runner import run_scenario
    from mktme_des.scenarios.spec import scenario_from

    doc = {"scenario": {"name": "R", "title": "t", "model": "client-1s"},
           "cpu": [{"id": 0, "ops": [{"op": "sfence", "at": 100, "label": "a"}]},
                   {"id": 1, "ops": [{"op": "compute", "ns": 5000},
                                     {"op": "sfence", "at": "a+1ns"}]}]}
    res = run_scenario(scenario_from(doc, "r.toml"))
    starts = [e["start_ns"] for e in res.trace if e["actor"] == "cpu1"]
    assert starts[1] == pytest.approx(5000.0)


@pytest.mark.parametrize("cpu_at, field, says", [
    ('"nope+5ns"', "cpu[1].ops[0].at", "no op is labelled 'nope'"),
    ('"flush+5"', "cpu[1].ops[0].at", 'relative time is "LABEL" or "LABEL+N"'),
    ('"flush-5ns"', "cpu[1].ops[0].at", 'relative time is "LABEL" or "LABEL+N"'),
    ('"flush+1e999ns"', "cpu[1].ops[0].at", "finite"),
    ('"flush+2000000000000000ns"', "cpu[1].ops[0].at", "at most"),
    ('""', "cpu[1].ops[0].at", "relative time"),
])
def test_bad_relative_times_are_refused_at_load(capsys, tmp_path, cpu_at, field, says):
    path = tmp_path / "r.toml"
    path.write_text(REL.replace("CPU_AT", cpu_at).replace("AGENT_AT", '"flush"')
                    .replace("SYS_AT", '"flush"'))
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {field}" in err and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_relative_times_in_a_cycle_are_refused(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[scenario]\nname = "C"\ntitle = "t"\nmodel = "client-1s"\n'
                    '[[cpu]]\nid = 0\nops = [ { op = "sfence", label = "A", at = "B+1ns" } ]\n'
                    '[[agent]]\nname = "x"\nops = [ { op = "wait", ns = 1, label = "B", '
                    'at = "A" } ]\n')
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: cpu[0].ops[0].at: can never be satisfied" in err, err
    # An op relative to one after it in its own actor waits for itself.
    path.write_text('[scenario]\nname = "C"\ntitle = "t"\nmodel = "client-1s"\n'
                    '[[cpu]]\nid = 0\nops = [ { op = "sfence", at = "B" },\n'
                    '{ op = "sfence", label = "B" } ]\n')
    assert main(["scenario", "run", str(path)]) == 2
    assert f"{path}: cpu[0].ops[0].at: can never be satisfied" in capsys.readouterr().err


def test_random_relative_programs_start_where_the_rule_says():
    """Property: in random programs over CPUs, an agent and a system actor, each op with a
    relative ``at = "L+D"`` starts at max(the end of the op before it in its actor, the end of
    the op labelled L + D), and each absolute ``at = T`` op at max(that end, T)."""
    import random

    from mktme_des.scenarios.runner import run_scenario
    from mktme_des.scenarios.spec import scenario_from

    rng = random.Random(1515)
    for trial in range(25):
        actors = [("cpu", 0), ("cpu", 1), ("agent", "probe"), ("system", "admin")]
        labelled: list[str] = []
        doc: dict = {"scenario": {"name": "P", "title": "t", "model": "client-1s"}}
        want: dict[str, list] = {}
        n = 0
        for kind, ident in actors:
            ops = []
            for _ in range(rng.randint(1, 4)):
                if kind == "cpu":
                    op = rng.choice([{"op": "write", "keyid": 0, "addr": 0x1000 + 64 *
                                      rng.randrange(4), "data": "aa"},
                                     {"op": "read", "keyid": 0, "addr": 0x1000, "size": 8},
                                     {"op": "compute", "ns": rng.choice([3, 50])}])
                else:
                    op = {"op": "wait" if kind == "agent" else "compute",
                          "ns": rng.choice([1, 40])}
                r = rng.random()
                if labelled and r < 0.5:
                    delay = rng.choice([0, 2.5, 300])
                    op["at"] = rng.choice(labelled) + (f"+{delay}ns" if delay else "")
                elif r < 0.7:
                    op["at"] = rng.choice([0, 120, 900])
                n += 1
                op["label"] = f"op{n}"
                ops.append(op)
            labelled += [o["label"] for o in ops]  # only earlier actors' ops: no cycle
            name = f"cpu{ident}" if kind == "cpu" else ident
            want[name] = ops
            entry = {"id": ident} if kind == "cpu" else {"name": ident, "cpu": 2}
            if kind == "agent":
                entry = {"name": ident}
            doc.setdefault(kind, []).append(dict(entry, ops=ops))
        res = run_scenario(scenario_from(doc, f"p{trial}.toml"))
        done: dict[str, float] = {}
        spans = {}
        for name in want:
            spans[name] = [(e["start_ns"], e["end_ns"]) for e in res.trace if e["actor"] == name]
            assert len(spans[name]) == len(want[name])
        for name, ops in want.items():
            for j, op in enumerate(ops):
                done[op["label"]] = spans[name][j][1]
        for name, ops in want.items():
            for j, op in enumerate(ops):
                low = spans[name][j - 1][1] if j else 0.0
                at = op.get("at")
                if isinstance(at, str):
                    label, _, delay = at.partition("+")
                    low = max(low, done[label] + float(delay.removesuffix("ns") or 0))
                elif at is not None:
                    low = max(low, float(at))
                assert spans[name][j][0] == pytest.approx(low, abs=1e-3), (trial, name, j, op)


def test_explore_moves_a_relative_delay_and_keeps_its_label():
    import numpy as np

    from mktme_des.scenarios.explore import perturb
    from mktme_des.scenarios.spec import relative_at

    doc = {"cpu": [{"id": 0, "ops": [{"op": "sfence", "at": "flush+5ns"},
                                     {"op": "sfence", "at": "flush"}]}]}
    rng = np.random.default_rng(3)
    for _ in range(30):
        out = perturb(doc, rng, 20.0)
        for op in out["cpu"][0]["ops"]:
            label, delay = relative_at(op["at"])
            assert label == "flush" and 0.0 <= delay <= 25.0
    assert doc["cpu"][0]["ops"][0]["at"] == "flush+5ns"  # the input is not changed
