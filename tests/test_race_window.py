"""The race-window search (mktme_des/scenarios/window.py): its edges are checked by running
the scenario again at offsets just inside and just outside them, and a latency that
lengthens the race widens the window."""

from __future__ import annotations

import copy
import json

from mktme_des.cli import main
from mktme_des.config.schema import read_toml
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import find_scenario, scenario_from
from mktme_des.scenarios.window import find_op, race_window

HOTPLUG = "s7-hotplug-race-unsafe"
KEY, ONLINE = "key added", "online package 1"


def rerun(name: str, op_a: str, op_b: str, offset: float, overrides: dict | None = None):
    """The scenario run with op B moved to ``offset`` ns after op A (built here, not by the
    search)."""
    path = find_scenario(name)
    data = copy.deepcopy(read_toml(path))
    if overrides:
        data["model_overrides"] = overrides
    at_a = find_op(data, str(path), op_a)["at"]
    find_op(data, str(path), op_b)["at"] = at_a + offset
    return run_scenario(scenario_from(data, f"{path} at {offset} ns"))


def test_the_hotplug_window_holds_its_own_offset_and_its_edges_are_tight():
    w = race_window(HOTPLUG, KEY, ONLINE)
    assert w.start_ns <= w.offset_ns <= w.end_ns and w.width_ns > 0
    assert w.outside_start_ns == w.start_ns - 1 and w.outside_end_ns == w.end_ns + 1
    own = run_scenario(find_scenario(HOTPLUG))
    assert own.ok  # the file states the race's outcome: the onlined package misses the key
    for offset in (w.start_ns, w.end_ns):
        assert rerun(HOTPLUG, KEY, ONLINE, offset).ok
    for offset in (w.outside_start_ns, w.outside_end_ns):
        res = rerun(HOTPLUG, KEY, ONLINE, offset)
        missed = next(c for c in res.checks if c["name"].startswith("package 1 key table"))
        assert not res.ok and not missed["ok"]  # outside it, package 1 gets the key


def test_the_writeback_window_ends_where_the_writeback_stops_beating_the_key():
    # PCONFIG (admin:0) moves against the flush (cpu0:1): while the key lands after the
    # writeback arrives, the read is garbage and the oracle names the key change.
    w = race_window("s4-pconfig-vs-writeback-wb-first", "cpu0:1", "admin:0")
    assert w.start_ns <= w.offset_ns <= w.end_ns
    assert w.outside_start_ns is None  # PCONFIG at time 0 still lands after the writeback
    inside = rerun("s4-pconfig-vs-writeback-wb-first", "cpu0:1", "admin:0", w.end_ns)
    outside = rerun("s4-pconfig-vs-writeback-wb-first", "cpu0:1", "admin:0",
                    w.outside_end_ns)
    assert inside.ok and inside.violations
    assert not outside.ok and not outside.violations


def test_a_longer_pconfig_widens_the_hotplug_window():
    # The onlined package misses the key while the broadcast is under way; the broadcast
    # lasts as long as the PCONFIGs it sends. Longer PCONFIGs: a wider window, by at least
    # the added latency's share.
    widths = [race_window(HOTPLUG, KEY, ONLINE, resolution_ns=4.0,
                          model_overrides={"pconfig": {"latency_ns": ns}}).width_ns
              for ns in (500.0, 1000.0, 2000.0)]
    assert widths[0] < widths[1] < widths[2]
    assert widths[2] - widths[1] >= 1000.0 - 2 * 4.0


def test_the_command_reports_the_window_and_refuses_bad_names(capsys):
    assert main(["scenario", "explore", HOTPLUG, "--race-window", KEY, ONLINE,
                 "--resolution-ns", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["window_ns"][0] <= out["offset_ns"] <= out["window_ns"][1]
    assert out["width_ns"] == out["window_ns"][1] - out["window_ns"][0]
    assert main(["scenario", "explore", HOTPLUG, "--race-window", KEY, "no such op"]) == 2
    err = capsys.readouterr().err
    assert "'no such op': no op with that label" in err and len(err.strip().splitlines()) == 1
    assert main(["scenario", "explore", "s4-pconfig-vs-writeback-wb-first", "--race-window",
                 "cpu0:0", "admin:0"]) == 2
    assert "has no `at` time" in capsys.readouterr().err
    assert main(["scenario", "explore", HOTPLUG, "--race-window", KEY, ONLINE,
                 "--exhaustive"]) == 2
    assert main(["scenario", "explore", HOTPLUG, "--race-window", KEY, ONLINE,
                 "--resolution-ns", "0"]) == 2
