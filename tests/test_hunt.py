"""``mktme-des hunt``: a policy's corrupting schedule found, shrunk and saved as a scenario.

* A small hunt of an unsafe policy, counting only what RFC v2 does not show, finds the
  policy's own fault; the saved file replays with ``scenario run``, its own expectations hold,
  and its run still shows the cause.
* The hunt is the same whichever number of workers shares its runs: the same report and
  byte-identical files.
* Shrinking a padded program keeps the violation and removes ops.
* The kernel invariants hold on the safe variant of a race and break on the unsafe one, and
  a file can expect either; a drawn tie order replays from the choices it recorded.
* Bad input is one line and exit status 2.
"""

from __future__ import annotations

import copy
import json

import pytest

from mktme_des.cli import main
from mktme_des.config.schema import read_toml
from mktme_des.hunt import hunt
from mktme_des.hunt.detect import findings
from mktme_des.hunt.generator import count_ops
from mktme_des.hunt.shrink import replay, shows, shrink
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import find_scenario, scenario_from

POLICY, SEED, RUNS = "unsafe-no-flush-on-free", 1, 32


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hunt")
    return hunt(POLICY, runs=RUNS, seed=SEED, against="rfc-v2", save=folder), folder


def test_small_hunt_finds_the_unsafe_policys_own_fault(found):
    result, _ = found
    assert result.found >= 1
    assert result.schedules == RUNS and result.programs == RUNS // 4
    first = result.counterexamples[0]
    assert "dirty line" in first.cause  # the freed page's line, not an RFC v2 hazard
    assert first.ops <= 12 < first.ops_found
    assert [c.ops for c in result.counterexamples] == sorted(c.ops for c in result.counterexamples)


def test_saved_counterexample_replays_and_its_expectations_hold(found):
    result, folder = found
    first = result.counterexamples[0]
    text = (folder / f"{POLICY}-1.toml").read_text()
    assert first.file == str(folder / f"{POLICY}-1.toml")
    assert f"`mktme-des hunt {POLICY} --model server-2s --seed {SEED} --against rfc-v2`" in text
    assert (folder / f"{POLICY}-1.png").stat().st_size > 0
    assert "kernel invariant broken" in (folder / f"{POLICY}-1.trace.txt").read_text()
    res = run_scenario(first.file)
    assert res.ok, [c for c in res.checks if not c["ok"]]
    assert first.cause in {f.cause for f in findings(res)}
    assert read_toml(first.file)["expect"]["invariants"] == "broken"
    # The same program under RFC v2 keeps the invariant: the policy's difference is the cause.
    data = read_toml(first.file)
    data["scenario"]["policy"] = "rfc-v2"
    assert first.cause not in {f.cause for f in findings(replay(data))}


def test_hunt_is_the_same_whichever_workers(found, tmp_path, capsys):
    result, folder = found
    code = main(["hunt", POLICY, "--runs", str(RUNS), "--seed", str(SEED), "--against",
                 "rfc-v2", "--workers", "2", "--save", str(tmp_path), "--json"])
    assert code == 1
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["policy", "model", "found", "counterexamples", "programs",
                         "schedules", "seconds"]
    mine = result.to_dict()
    for d in (out, mine):
        d.pop("seconds")
        for c in d["counterexamples"]:
            c.pop("found_after_s")
            c["file"] = c["file"].rsplit("/", 1)[-1]
    assert out == mine
    for c in result.counterexamples:
        name = c.file.rsplit("/", 1)[-1]
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()


def test_shrinking_a_padded_program_keeps_the_violation_and_drops_ops():
    data = read_toml(find_scenario("s5-refcount-rule-unsafe"))
    padded = copy.deepcopy(data)
    padded["process"].append({"name": "bystander", "cpu": 2, "ops": [
        {"op": "mmap", "vma": "x", "pages": 1},
        {"op": "write", "vma": "x", "data": "62797374616e646572"},
        {"op": "compute", "ns": 500.0},
        {"op": "read", "vma": "x", "size": 9},
    ]})
    padded["scenario"]["tie_choices"] = []
    res = replay(padded)
    cause = next(f.cause for f in findings(res) if f.kind == "oracle")
    small, small_res, used = shrink(padded, cause, max_runs=40)
    assert count_ops(small) < count_ops(padded)
    assert "bystander" not in {a["name"] for a in small["process"]}
    assert shows(small, small_res, cause, None) and shows(small, replay(small), cause, None)
    assert used <= 40


def test_kernel_invariants_hold_on_the_locked_race_and_break_without_the_lock():
    locked = run_scenario("s7-hotplug-race-locked")
    unsafe = run_scenario("s7-hotplug-race-unsafe")
    assert locked.invariants == []
    assert unsafe.invariants == ["KeyID 1 is in use for a cpu key but package 1 holds tme for it"]
    data = read_toml(find_scenario("s7-hotplug-race-locked"))
    data["expect"] = {"invariants": "broken"}
    res = run_scenario(scenario_from(data, "locked, expecting a broken invariant"))
    check = next(c for c in res.checks if c["name"] == "kernel invariants: broken")
    assert not check["ok"] and check["detail"] == "all hold"


def test_a_drawn_tie_order_replays_from_its_recorded_choices():
    sc = scenario_from(read_toml(find_scenario("s6-broadcast-window-unsafe")), "s6")
    drawn = run_scenario(sc, [], tie_draw=11)
    taken, branching = drawn.ties
    assert any(b > 1 for b in branching)
    again = run_scenario(sc, list(taken))
    assert again.trace == drawn.trace and again.ties[0] == taken


@pytest.mark.parametrize("argv, words", [
    (["hunt", "no-such-policy", "--runs", "1"], "policy 'no-such-policy': no such policy"),
    (["hunt", "rfc-v2", "--runs", "0"], "--runs 0"),
    (["hunt", "rfc-v2", "--runs", "1", "--against", "nope"], "--against 'nope'"),
    (["hunt", "rfc-v2", "--runs", "1", "--workers", "0"], "--workers 0"),
    (["hunt", "rfc-v2", "--runs", "1", "--model", "no-such-model"], "no-such-model"),
    (["hunt", "rfc-v2", "--runs", "1", "--budget-s", "5"], "--runs or --budget-s, not both"),
    (["hunt", "rfc-v2", "--budget-s", "-1"], "--budget-s -1"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys, tmp_path):
    assert main(argv + ["--save", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "out").exists()


def test_the_2019_teardown_check_sees_a_key_being_instantiated():
    """A hunt of mktme-2019 found the last CPU of package 1 going offline while a key's
    broadcast was in flight (its KeyID reserved, not yet referenced): the refusal was checked
    before the hotplug lock. The teardown callback checks under it, counting the reservation."""
    user = "type=user algorithm=aes-xts-128 key=" + "11" * 16 + " tweak=" + "22" * 16
    data = {
        "scenario": {"name": "h", "title": "t", "model": "server-2s", "seed": 741,
                     "policy": "mktme-2019"},
        "model_overrides": {"topology": {"cores_per_package": 2}},
        "process": [{"name": "p1", "cpu": 0, "ops": [{"op": "add_key", "key": "a",
                                                      "options": user}]},
                    {"name": "p2", "cpu": 1, "ops": [{"op": "add_key", "key": "a",
                                                      "options": user}]}],
        "system": [{"name": "admin", "cpu": 0, "ops": [
            {"op": "offline_cpu", "target": 2},
            {"op": "offline_cpu", "target": 3, "expect": "EBUSY"}]}],
        "expect": {"invariants": "hold"},
    }
    res = run_scenario(scenario_from(data, "2019 teardown"))
    assert res.ok, [c for c in res.checks if not c["ok"]]
    data["scenario"]["policy"] = "rfc-v2"  # as posted the teardown always succeeds
    data["system"][0]["ops"][1]["expect"] = "ok"
    data["expect"]["invariants"] = "broken"
    assert run_scenario(scenario_from(data, "rfc-v2 teardown")).ok


def test_a_one_package_model_is_hunted_without_hotplug(capsys):
    # Two CPUs, no second package: at most two processes, no administrator.
    assert main(["hunt", "rfc-v2", "--model", "client-1s", "--runs", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["found"] == 0 and out["schedules"] == 8 and out["model"] == "client-1s"


def test_a_package_offline_counts_the_pages_faulted_in_while_it_waited():
    """``hunt mktme-2019`` found a page faulted in on package 1 while the package's offline
    waited for the hotplug lock: counted before the lock, it was missed, so the memory went
    offline under a live page (and the online later reprogrammed its KeyID under it). The
    offline now isolates the memory and counts under the lock: refused without migration,
    and with migration the page moves before the memory goes."""
    user = "type=user algorithm=aes-xts-128 key=" + "d9" * 16 + " tweak=" + "39" * 16
    data = {
        "scenario": {"name": "h", "title": "t", "model": "server-2s", "seed": 157,
                     "policy": "mktme-2019"},
        "model_overrides": {"topology": {"cores_per_package": 2}},
        "process": [{"name": "p1", "cpu": 3, "ops": [
            {"op": "add_key", "key": "c", "options": user, "at": 18567.688},
            {"op": "mmap", "vma": "v0", "pages": 1},
            {"op": "encrypt_mprotect", "vma": "v0", "key": "c"},
            {"op": "write", "vma": "v0", "offset": 64, "data": "70313a382070313a"},
            {"op": "read", "vma": "v0", "offset": 64, "size": 8, "at": 700_000,
             "expect": "70313a382070313a"}]}],
        "system": [{"name": "admin", "cpu": 0, "ops": [
            {"op": "offline", "package": 1, "at": 25_000, "expect": "EBUSY"}]}],
        "expect": {"invariants": "hold", "violations": "none"},
    }
    res = run_scenario(scenario_from(data, "offline refused"))
    assert res.ok, [c for c in res.checks if not c["ok"]]
    data["policy_overrides"] = {"migrate_on_offline": True}
    data["system"][0]["ops"][0]["expect"] = "ok"
    res = run_scenario(scenario_from(data, "offline migrates"))
    assert res.ok, [c for c in res.checks if not c["ok"]]


def test_a_package_without_memory_gives_the_hunt_no_memory_only_hazard(capsys):
    """The same hunt on server-2s finds RFC v2's memory-only hazard (a key created while
    package 1 has no CPU never reaches its memory); with package 1 holding no memory
    (server-2s-memoryless) neither policy has a counterexample in that budget: the kernel
    invariants ask keys of packages with memory only, and no address is homed on package 1."""
    def hunt_json(policy: str, model: str) -> dict:
        assert main(["hunt", policy, "--model", model, "--runs", "128", "--json"]) in (0, 1)
        return json.loads(capsys.readouterr().out)

    with_memory = hunt_json("rfc-v2", "server-2s")
    assert any("holds tme" in c["cause"] for c in with_memory["counterexamples"])
    for policy in ("rfc-v2", "mktme-2019"):
        out = hunt_json(policy, "server-2s-memoryless")
        assert out["schedules"] == 128 and out["found"] == 0, out["counterexamples"]
