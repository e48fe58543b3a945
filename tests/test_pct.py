"""The PCT strategy (engine/ties.py PriorityTies): a planted depth-2 bug is found at the rate
PCT guarantees, uniform shuffling finds it far less often, and runs are deterministic per
seed whichever the workers."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import simpy

from mktme_des.engine.ties import PriorityTies, ShuffledTies
from mktme_des.hunt import hunt
from mktme_des.scenarios.explore import explore
from mktme_des.scenarios.runner import run_scenario

STEPS = 7  # instants at which the two actors tie
SEEDS = 400


def planted(env: simpy.Environment) -> bool:
    """Two actors act at each of ``STEPS`` instants. The bug needs two ordering constraints
    (depth 2): ``a`` before ``b`` at every instant but the last, ``b`` before ``a`` at the
    last; no fixed priority order reaches it. Returns whether the run hit it."""
    return firsts(env) == ["a"] * (STEPS - 1) + ["b"]


def firsts(env: simpy.Environment) -> list[str]:
    """Which actor went first at each instant."""
    first: list[str] = []

    def actor(name: str):
        for t in range(1, STEPS + 1):
            yield env.timeout(1)
            if len(first) < t:
                first.append(name)

    env.process(actor("a"))
    env.process(actor("b"))
    env.run()
    return first


def pct(seed: int) -> PriorityTies:
    names: dict = {}

    def actor_of(ev) -> str:
        if not ev.callbacks:
            return "nobody"  # an actor's end, which no one waits for
        proc = ev.callbacks[0].__self__
        return names.setdefault(proc, f"actor{len(names)}")

    # The ties: both starts at 0, one per instant, both ends: k = STEPS + 2.
    return PriorityTies(seed, 2, STEPS + 2, actor_of)


def test_pct_finds_a_planted_depth_two_bug_at_its_guaranteed_rate():
    hits = sum(planted(pct(seed)) for seed in range(SEEDS))
    # PCT: at least 1 / (n k^(d-1)) per run, n = 2 actors, k = 9 ties, d = 2: 1/18, so 22 of
    # 400 expected; fewer than 11 would be a binomial tail below 0.5%.
    assert hits >= 11
    uniform = sum(planted(ShuffledTies(seed + 1)) for seed in range(SEEDS))
    # A uniform shuffle needs 7 coin flips right: 1/128 of runs, about 3 of 400.
    assert hits > 2 * uniform


def test_pct_changes_priorities_only_at_its_change_points():
    # Depth 1 has no change point: one actor goes first at every instant, and either actor
    # may be it.
    seen = set()
    for seed in range(20):
        env = pct(seed)
        env.change = {}
        order = firsts(env)
        assert len(set(order)) == 1
        seen.add(order[0])
    assert seen == {"a", "b"}


def test_pct_explore_is_deterministic_whichever_workers_and_replays(tmp_path):
    args = dict(runs=12, jitter_ns=300, strategy="pct", depth=2, seed=5)
    one = explore("s7-hotplug-race-unsafe", save=tmp_path / "a", **args)
    two = explore("s7-hotplug-race-unsafe", workers=2, **args)
    strip = lambda d: json.dumps({k: v for k, v in d.items() if k != "outcomes"} | {  # noqa: E731
        "outcomes": [{k: v for k, v in o.items() if k != "file"} for o in d["outcomes"]]})
    assert strip(one.to_dict()) == strip(two.to_dict())
    assert one.to_dict()["strategy"] == "pct" and one.to_dict()["depth"] == 2
    for o in one.outcomes:
        data = tomllib.loads(Path(o.file).read_text())
        assert "tie_seed" not in data["scenario"]
        replay = run_scenario(o.file)
        assert replay.ok == o.ok and replay.ties[0] == data["scenario"]["tie_choices"]


def test_pct_hunt_is_deterministic_whichever_workers():
    args = dict(runs=32, seed=3, against="rfc-v2", strategy="pct", depth=2)
    one = hunt("unsafe-keyid0-direct-map", workers=1, **args).to_dict()
    two = hunt("unsafe-keyid0-direct-map", workers=2, **args).to_dict()
    for d in (one, two):
        d.pop("seconds")
        for c in d["counterexamples"]:
            c.pop("found_after_s")
    assert one == two and one["found"] >= 1


def test_a_bad_strategy_or_depth_is_one_line(capsys):
    from mktme_des.cli import main

    assert main(["hunt", "rfc-v2", "--strategy", "shuffle"]) == 2
    assert "--strategy 'shuffle': choose one of uniform, pct" in capsys.readouterr().err
    assert main(["scenario", "explore", "s1-alias-read", "--strategy", "pct", "--depth", "0"]) == 2
    assert "--depth 0" in capsys.readouterr().err
    assert main(["scenario", "explore", "s1-alias-read", "--strategy", "pct",
                 "--exhaustive"]) == 2
