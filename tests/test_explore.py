"""Scenario exploration: jittered timing finds a race's outcomes, and each saved outcome file
reproduces its outcome; the TOML writer round-trips every file we ship."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from mktme_des.cli import main
from mktme_des.config.toml_write import dumps
from mktme_des.errors import UserError
from mktme_des.scenarios.explore import explore, perturb
from mktme_des.scenarios.runner import run_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = ROOT / "experiments" / "scenarios"
S4 = "s4-pconfig-vs-writeback-key-first"


@pytest.fixture(scope="module")
def s4(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explore")
    return explore(S4, runs=40, jitter_ns=1500, seed=0, save=folder), folder


def test_jitter_finds_both_orders_of_the_pconfig_writeback_race(s4):
    found, _ = s4
    assert sum(len(o.runs) for o in found.outcomes) == 40
    good = [o for o in found.outcomes if o.ok]
    bad = [o for o in found.outcomes if not o.ok]
    assert good and bad
    assert all(not o.violations for o in good)
    # The failing order: the writeback reached DRAM under the old key, the read used the new.
    assert any("written back under the old key" in v["cause"] for o in bad for v in o.violations)
    assert not found.ok


def test_each_saved_outcome_reproduces_exactly(s4):
    found, folder = s4
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{S4}-outcome{k}.toml" for k in range(1, len(found.outcomes) + 1)]
    for o in found.outcomes:
        res = run_scenario(o.file)
        assert res.ok == o.ok
        assert [(c["name"], c["ok"], c["detail"]) for c in res.checks] == \
               [(c["name"], c["ok"], c["detail"]) for c in o.checks]
        assert res.violations == o.violations


def test_exploration_is_deterministic_in_its_seed():
    a = explore(S4, runs=12, jitter_ns=1500, seed=3).to_dict()
    b = explore(S4, runs=12, jitter_ns=1500, seed=3).to_dict()
    c = explore(S4, runs=12, jitter_ns=1500, seed=4).to_dict()
    assert json.dumps(a) == json.dumps(b)
    assert [o["schedule"] for o in a["outcomes"]] != [o["schedule"] for o in c["outcomes"]]


def test_perturb_moves_timed_ops_within_the_jitter_and_starts_untimed_actors():
    data = tomllib.loads((SCENARIO_DIR / f"{S4}.toml").read_text())
    before = json.dumps(data)
    for run in range(50):
        out = perturb(data, np.random.default_rng([1, run]), 300.0)
        cpu, admin = out["cpu"][0]["ops"], out["system"][0]["ops"]
        assert 0 <= cpu[0]["at"] <= 300  # the untimed first op now starts at a random time
        assert abs(cpu[1]["at"] - 2000) <= 300 and abs(cpu[2]["at"] - 3000) <= 300
        assert 0 <= admin[0]["at"] <= 300  # at = 0 moves forward only
    assert json.dumps(data) == before  # the input is not touched


def test_a_scenario_without_a_race_has_one_passing_outcome():
    found = explore("s1-alias-read", runs=10, jitter_ns=200)
    assert len(found.outcomes) == 1 and found.ok
    assert found.outcomes[0].summary() == "every expectation holds"


def test_cli_explore_json_exit_status_and_bad_input(capsys, tmp_path):
    assert main(["scenario", "explore", S4, "--runs", "20", "--jitter-ns", "1500",
                 "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["runs"] == 20 and not out["ok"]
    assert sum(o["runs"] for o in out["outcomes"]) == 20
    assert abs(sum(o["fraction"] for o in out["outcomes"]) - 1.0) < 1e-12
    assert main(["scenario", "explore", "s1-alias-read", "--runs", "3"]) == 0
    assert "3/3 runs meet every expectation" in capsys.readouterr().out
    assert main(["scenario", "explore", S4, "--runs", "0"]) == 2
    assert "at least one run" in capsys.readouterr().err
    assert main(["scenario", "explore", S4, "--jitter-ns", "-1"]) == 2
    assert "positive number of ns" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text((SCENARIO_DIR / f"{S4}.toml").read_text().replace("at = 2000", "at = -5"))
    assert main(["scenario", "explore", str(bad), "--runs", "2"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "cpu[0].ops[1].at" in err


def test_explore_refuses_no_runs_through_the_api():
    with pytest.raises(UserError):
        explore(S4, runs=0)


@pytest.mark.parametrize("path", sorted(
    [*ROOT.glob("experiments/scenarios/*.toml"), *ROOT.glob("experiments/*.toml"),
     *ROOT.glob("models/*.toml"), *ROOT.glob("models/kernel/*.toml")]), ids=lambda p: p.name)
def test_toml_writer_round_trips_every_shipped_file(path):
    data = tomllib.loads(path.read_text())
    text = dumps(data, ("addr", "to"), header="a header\nof two lines")
    assert text.startswith("# a header\n# of two lines\n")
    assert tomllib.loads(text) == data


def test_toml_writer_values():
    data = {"top": 1, "t": {"addr": 4096, "neg": -3, "f": 0.5, "inf": float("inf"),
                            "s": 'quote " and \\ and \u00e9', "multi": "a\nb", "b": False,
                            "nested": {"x": [1, 2]}, "odd key": "v", "empty": {}},
            "arr": [{"ops": [{"op": "read", "addr": 64}, {"op": "sfence"}]}]}
    text = dumps(data, ("addr",))
    assert "addr = 0x1000" in text and "addr = 0x40" in text
    assert tomllib.loads(text) == data
    with pytest.raises(TypeError):
        dumps({"x": object()})


# --- happens-before: label / after ---------------------------------------------------------

HB = """
[scenario]
name = "hb"
title = "happens-before across actors"
model = "server-2s"

[[keys]]
keyid = 1
mode = "key"

[[cpu]]
id = 0
ops = [
  {{ op = "write", keyid = 1, addr = 0x40000, data = "41", at = 1000 }},
  {{ op = "clflush", keyid = 1, addr = 0x40000, label = "{label}" }},
]

[[cpu]]
id = 1
ops = [
  {{ op = "read", keyid = 1, addr = 0x40000, size = 1, name = "reader", expect = "41", at = 0, after = "{after}" }},
]

[[agent]]
name = "probe"
ops = [
  {{ op = "raw_read", addr = 0x40000, size = 1, name = "raw", expect = "ciphertext", after = "{after}" }},
]

[[system]]
name = "admin"
cpu = 2
ops = [
  {{ op = "keytable", package = 0, keyid = 1, expect = "key", name = "table", after = "{after}" }},
]
"""


def _hb(tmp_path: Path, label: str = "flushed", after: str = "flushed") -> Path:
    path = tmp_path / "hb.toml"
    path.write_text(HB.format(label=label, after=after))
    return path


def test_after_holds_every_kind_of_actor_until_the_labelled_op_completes(tmp_path):
    res = run_scenario(_hb(tmp_path))
    assert res.ok, [c for c in res.checks if not c["ok"]]
    flush_end = next(e["end_ns"] for e in res.trace if e["actor"] == "cpu0" and e["op"] == "clflush")
    assert flush_end > 1000
    starts = {e["actor"]: e["start_ns"] for e in res.trace if e.get("check")}
    assert starts == {"cpu1": flush_end, "probe": flush_end, "admin": flush_end}
    # Neither the wait nor the announcement is an op of its own.
    assert [e["op"] for e in res.trace if e["actor"] == "cpu0"] == ["write", "clflush"]


def test_without_after_the_reader_runs_first_and_reads_uninitialised_dram(tmp_path):
    text = _hb(tmp_path).read_text().replace(', after = "flushed"', "", 1)
    path = tmp_path / "nohb.toml"
    path.write_text(text)
    res = run_scenario(path)
    reader = next(c for c in res.checks if c["name"] == "reader")
    # DRAM still holds zeros, which decrypt under K1 to noise.
    assert not reader["ok"] and reader["class"] == "garbage"


@pytest.mark.parametrize("label, after, field, reason", [
    ("flushed", "flushd", "cpu[1].ops[0].after", "no op is labelled 'flushd' (labels: flushed)"),
    ("", "flushed", "cpu[0].ops[1].label", "must not be empty"),
])
def test_bad_labels_name_the_field(tmp_path, capsys, label, after, field, reason):
    path = _hb(tmp_path, label, after)
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {field}: {reason}" in err or (field in err and reason in err)


def test_duplicate_labels_and_cycles_are_refused(tmp_path, capsys):
    dup = _hb(tmp_path).read_text().replace('name = "raw", expect', 'label = "flushed", name = "raw", expect')
    cyc = _hb(tmp_path).read_text().replace(
        '{ op = "write", keyid = 1, addr = 0x40000, data = "41", at = 1000 }',
        '{ op = "write", keyid = 1, addr = 0x40000, data = "41", at = 1000, after = "read done" }'
    ).replace('name = "reader"', 'label = "read done", name = "reader"')
    for text, field, reason in ((dup, "agent[0].ops[0].label", "already labels op 1 of cpu0"),
                                (cyc, "cpu[0].ops[0].after", "wait for each other")):
        path = tmp_path / "x.toml"
        path.write_text(text)
        assert main(["scenario", "run", str(path)]) == 2
        err = capsys.readouterr().err
        assert field in err and reason in err, err


def test_exploring_keeps_happens_before_so_only_real_races_vary():
    # S2 with its flush ordered before the page's reuse: no timing breaks it ...
    safe = explore("s2-stale-writeback-flush", runs=15, jitter_ns=1000)
    assert len(safe.outcomes) == 1 and safe.ok
    # ... and without the flush, every timing corrupts the new owner's data.
    unsafe = explore("s2-stale-writeback-no-flush", runs=15, jitter_ns=1000)
    assert len(unsafe.outcomes) == 1
    assert unsafe.outcomes[0].violations
    assert "overwrote data written" in unsafe.outcomes[0].violations[0]["cause"]


# --- the order of same-time events -------------------------------------------------------------

def _order(env) -> list[str]:
    seen = []
    for name in "abcdefgh":
        env.timeout(5).callbacks.append(lambda _ev, n=name: seen.append(n))
    urgent = env.event()
    urgent.callbacks.append(lambda _ev: seen.append("urgent"))
    urgent._ok, urgent._value = True, None  # what Event.succeed sets, before scheduling
    env.schedule(urgent, priority=0, delay=5)  # URGENT, due at the same instant
    env.run()
    return seen


def test_shuffled_ties_are_seeded_and_keep_priorities():
    import simpy

    from mktme_des.engine.ties import ShuffledTies, environment

    fifo = _order(simpy.Environment())
    assert fifo == ["urgent", *"abcdefgh"]
    orders = {tuple(_order(ShuffledTies(seed))) for seed in range(1, 9)}
    assert len(orders) > 1  # other same-time orders do occur
    assert all(o[0] == "urgent" and sorted(o[1:]) == list("abcdefgh") for o in orders)
    assert _order(ShuffledTies(3)) == _order(ShuffledTies(3))
    assert type(environment(0)) is simpy.Environment


TIE = """
[scenario]
name = "tie"
title = "a raw write and a raw read due at the same instant"
model = "client-1s"
{tie}

[[agent]]
name = "writer"
ops = [ {{ op = "raw_write", addr = 0x1000, data = "ff", at = 1000 }} ]

[[agent]]
name = "reader"
ops = [ {{ op = "raw_read", addr = 0x1000, size = 1, name = "read at the same instant", expect = "ff", at = 1000 }} ]
"""


def test_exploring_with_no_jitter_finds_both_orders_of_a_tie(tmp_path):
    path = tmp_path / "tie.toml"
    path.write_text(TIE.format(tie=""))
    assert run_scenario(path).ok  # scheduling order: the writer started first
    found = explore(path, runs=24, jitter_ns=0, save=tmp_path / "out")
    assert sorted(o.ok for o in found.outcomes) == [False, True]
    assert found.verdict("read at the same instant").startswith("sometimes")
    for o in found.outcomes:
        assert run_scenario(o.file).ok == o.ok  # the saved tie seed replays the order
    path.write_text(TIE.format(tie="tie_seed = 0"))
    assert run_scenario(path).ok


def test_workers_share_the_runs_without_changing_the_result():
    one = explore("s7-hotplug-race-unsafe", runs=16, jitter_ns=1000, seed=2)
    two = explore("s7-hotplug-race-unsafe", runs=16, jitter_ns=1000, seed=2, workers=2)
    assert json.dumps(one.to_dict(trace=True)) == json.dumps(two.to_dict(trace=True))
    assert len(one.outcomes) == 2


# --- every order of same-time events ---------------------------------------------------------

def test_chosen_ties_follow_the_choices_and_record_the_branching():
    from mktme_des.engine.ties import ChosenTies

    env = ChosenTies([2, 1])
    seen = []
    for name in "abc":
        env.timeout(5).callbacks.append(lambda _ev, n=name: seen.append(n))
    env.run()
    assert seen == ["c", "b", "a"]
    assert (env.taken, env.branching) == ([2, 1], [3, 2])
    env = ChosenTies([])  # out of choices: scheduling order, still recorded
    for name in "ab":
        env.timeout(5).callbacks.append(lambda _ev, n=name: seen.append(n))
    env.run()
    assert seen[-2:] == ["a", "b"] and (env.taken, env.branching) == ([0], [2])


def test_exhaustive_exploration_runs_every_order_and_each_replays(tmp_path):
    path = tmp_path / "tie.toml"
    path.write_text(TIE.format(tie=""))
    found = explore(path, runs=100, exhaustive=True, save=tmp_path / "out", reduce=False)
    # Two actors start at t = 0 and act at t = 1000 (ties of two events each, at least;
    # their ends tie too). Every schedule is a different list of choices.
    assert found.complete and found.runs >= 4
    reduced = explore(path, runs=100, exhaustive=True)
    # The starts touch nothing shared; the write and the read at 1000 race: two classes.
    assert reduced.complete and reduced.runs == 2 and reduced.pruned > 0
    assert sorted(o.ok for o in reduced.outcomes) == [False, True]
    schedules = {tuple(o["tie_choices"]) for o in found.to_dict()["outcomes"]}
    assert len(schedules) == len(found.outcomes) == 2
    assert found.verdict("read at the same instant").startswith("sometimes")
    for o in found.outcomes:
        replay = run_scenario(o.file)
        choices = tomllib.loads(Path(o.file).read_text())["scenario"]["tie_choices"]
        assert replay.ok == o.ok and replay.ties[0] == choices  # the same order again
    again = explore(path, runs=100, exhaustive=True)
    assert json.dumps(again.to_dict()) == json.dumps(
        explore(path, runs=100, exhaustive=True).to_dict())


def test_exhaustive_exploration_stops_at_the_cap_and_says_so():
    found = explore("s10-replay-preimage", runs=5, exhaustive=True)
    assert found.runs == 5 and not found.complete
    assert "stopped at the cap of 5" in found.text()


def test_cli_exhaustive_refuses_a_jitter_and_files_refuse_two_tie_orders(tmp_path, capsys):
    assert main(["scenario", "explore", "s1-alias-read", "--exhaustive", "--jitter-ns", "5"]) == 2
    assert "leave out --jitter-ns" in capsys.readouterr().err
    assert main(["scenario", "explore", "s1-alias-read", "--exhaustive", "--workers", "2"]) == 2
    assert "leave out --workers" in capsys.readouterr().err
    assert main(["scenario", "explore", "s1-alias-read", "--exhaustive"]) == 0
    assert "every order of its same-time events" in capsys.readouterr().out
    path = tmp_path / "both.toml"
    path.write_text(TIE.format(tie="tie_seed = 3\ntie_choices = [1]"))
    assert main(["scenario", "run", str(path)]) == 2
    assert "scenario.tie_choices" in capsys.readouterr().err
