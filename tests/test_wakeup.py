"""Cores wait on reusable wake-ups and run under their own driver (engine/wakeup.py) instead of
SimPy's Timeout and Process. The order of every event, and so every byte of every result,
must be what SimPy's own objects give: checked by running the same workloads and scenarios on
an environment that SimPy drives the ordinary way (a subclass: the fast path is only taken
for ``simpy.Environment`` itself)."""

from __future__ import annotations

import json

import pytest
import simpy

import mktme_des.hw.platform as platform_module
from mktme_des.config.model import load_model
from mktme_des.engine import wakeup
from mktme_des.scenarios.runner import run_scenario
from mktme_des.simulate import simulate, workload_from


class PlainEnvironment(simpy.Environment):
    """SimPy's environment, unchanged, but not ``simpy.Environment`` itself."""


def plain(monkeypatch) -> None:
    original = platform_module.environment

    def environment(tie_seed=0, tie_choices=None):
        env = original(tie_seed, tie_choices)
        return PlainEnvironment() if type(env) is simpy.Environment else env

    monkeypatch.setattr(platform_module, "environment", environment)


WORKLOADS = [
    {"pattern": "sequential", "working_set_kib": 16, "accesses": 5000, "cores": 4},
    {"pattern": "random", "working_set_kib": 65536, "accesses": 1500, "cores": 16,
     "mktme_fraction": 0.5},
    {"pattern": "zipf", "working_set_kib": 4096, "accesses": 3000, "cores": 3,
     "prefetch_distance": 4, "warmup": 300},
    {"kind": "lackey", "accesses": 8000, "cores": 2},
]


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("fill_buffers", [1, 6])
def test_workloads_give_the_same_bytes_either_way(monkeypatch, workload, fill_buffers):
    model = load_model("server-2s", {"core": {"fill_buffers": fill_buffers}})
    fast = json.dumps(simulate(model, workload_from(workload), seed=7))
    plain(monkeypatch)
    assert json.dumps(simulate(model, workload_from(workload), seed=7)) == fast


@pytest.mark.parametrize("name", ["s2-stale-writeback-flush", "s4-pconfig-vs-writeback-wb-first",
                                  "s7-hotplug-race-unsafe", "s12-reboot-per-boot-tweak",
                                  "s14-keyid-wait", "s5-pinned-page-rfc-v2"])
def test_scenarios_give_the_same_bytes_either_way(monkeypatch, name):
    def outcome():
        r = run_scenario(name)
        return json.dumps([r.ok, r.checks, r.trace, r.violations, r.stats], default=str)

    fast = outcome()
    plain(monkeypatch)
    assert outcome() == fast


def test_a_driven_stream_ends_as_a_process_does():
    """The driver's end event carries the generator's value, and a failure inside it crashes
    the run as a failed Process would."""
    env = simpy.Environment()

    def ok():
        yield env.timeout(5)
        return 42

    def bad():
        yield wakeup.Wakeup(env).at(3)
        raise RuntimeError("boom")

    done = wakeup.start(env, ok())
    wakeup.run(env)
    assert done.value == 42 and env.now == 5
    wakeup.start(env, bad())
    with pytest.raises(RuntimeError, match="boom"):
        wakeup.run(env)


def test_tie_shuffling_environments_keep_simpys_own_objects():
    from mktme_des.engine.ties import environment

    env = environment(tie_seed=3)

    def idle():
        yield env.timeout(1)

    assert wakeup.wakeup_for(env) is None
    assert isinstance(wakeup.start(env, idle()), simpy.Process)
