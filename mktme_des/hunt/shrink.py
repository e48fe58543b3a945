"""Shrinking a counterexample: the smallest program and schedule that still show its cause.

A counterexample is a program (scenario data with its op times and ``tie_choices``) whose run
has a finding of a given cause. Shrinking tries smaller candidates, in this order, and keeps
each one whose run still has that cause:

1. fewer actors (an actor removed whole);
2. fewer ops (each op removed, last first);
3. smaller times (an op's ``at`` removed, else halved; a computation's ``ns`` halved);
4. simpler tie choices (the list cut short, then each choice set to 0: scheduling order).

The passes repeat until none makes progress or ``max_runs`` candidates were run. A candidate
runs with the current ``tie_choices`` (0 once they run out); when kept, the choices its run
actually took become the program's, so the program replays exactly. Everything here is
deterministic: candidates come in a fixed order and each run depends on its data alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from mktme_des.errors import ConfigError
from mktme_des.hunt.detect import findings, not_under, same_cause
from mktme_des.scenarios.runner import Result, run_scenario
from mktme_des.scenarios.spec import scenario_from

ACTOR_TABLES = ("process", "system", "cpu")


def replay(data: dict[str, Any], path: str = "hunt") -> Result | None:
    """Run ``data`` with its own ``tie_choices``; None when it is not a valid scenario or the
    simulator rejects it."""
    try:
        sc = scenario_from(data, path)
    except ConfigError:
        return None
    try:
        return run_scenario(sc, list(data["scenario"].get("tie_choices", [])))
    except (ValueError, KeyError, AssertionError, RuntimeError):
        return None  # a program the model cannot run says nothing about the policy


def _actors(data: dict[str, Any]) -> list[tuple[str, int]]:
    return [(t, i) for t in ACTOR_TABLES for i in range(len(data.get(t, [])))]


def _without_empty(data: dict[str, Any]) -> dict[str, Any]:
    for table in ACTOR_TABLES:
        if table in data:
            data[table] = [a for a in data[table] if a.get("ops")]
            if not data[table]:
                del data[table]
    return data


def candidates(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Smaller versions of ``data``, in the module docstring's order."""
    actors = _actors(data)
    if len(actors) > 1:
        for table, i in actors:
            cand = copy.deepcopy(data)
            del cand[table][i]
            yield _without_empty(cand)
    for table, i in reversed(actors):
        for j in reversed(range(len(data[table][i]["ops"]))):
            cand = copy.deepcopy(data)
            del cand[table][i]["ops"][j]
            yield _without_empty(cand)
    for table, i in actors:
        for j, op in enumerate(data[table][i]["ops"]):
            if "at" in op:
                cand = copy.deepcopy(data)
                del cand[table][i]["ops"][j]["at"]
                yield cand
                if op["at"] >= 2:
                    cand = copy.deepcopy(data)
                    cand[table][i]["ops"][j]["at"] = float(int(op["at"] // 2))
                    yield cand
            if op.get("op") == "compute" and op.get("ns", 0) >= 2:
                cand = copy.deepcopy(data)
                cand[table][i]["ops"][j]["ns"] = float(int(op["ns"] // 2))
                yield cand
    choices = data["scenario"].get("tie_choices", [])
    cut = len(choices)
    while cut > 0:
        cut //= 2
        cand = copy.deepcopy(data)
        cand["scenario"]["tie_choices"] = choices[:cut]
        yield cand
    for k, c in enumerate(choices):
        if c:
            cand = copy.deepcopy(data)
            cand["scenario"]["tie_choices"][k] = 0
            yield cand


def trim_choices(choices: list[int]) -> list[int]:
    """Choices without their trailing zeros (a tie past the list takes choice 0 anyway)."""
    out = list(choices)
    while out and out[-1] == 0:
        out.pop()
    return out


def shows(data: dict[str, Any], res: Result | None, cause: str, against: str | None) -> bool:
    """Whether the run ``res`` of ``data`` shows ``cause`` (and, with ``against``, the same
    program and schedule under that policy does not)."""
    if res is None:
        return False
    try:
        return same_cause(not_under(data, findings(res), against), cause)
    except (ConfigError, ValueError, KeyError, AssertionError, RuntimeError):
        return False


def shrink(data: dict[str, Any], cause: str, max_runs: int = 600,
           against: str | None = None) -> tuple[dict[str, Any], Result, int]:
    """The smallest candidate of ``data`` found that still shows ``cause`` (see
    :func:`shows`): ``(data, its run, candidate runs used)``. ``data`` must show it (its own
    ``tie_choices``)."""
    current = copy.deepcopy(data)
    res = replay(current)
    if not shows(current, res, cause, against):
        raise ValueError("the counterexample does not replay")
    current["scenario"]["tie_choices"] = trim_choices(res.ties[0])
    used = 0
    progress = True
    while progress and used < max_runs:
        progress = False
        for cand in candidates(current):
            if used >= max_runs:
                break
            used += 1
            got = replay(cand)
            if got is not None:
                cand["scenario"]["tie_choices"] = trim_choices(got.ties[0])
            if shows(cand, got, cause, against):
                current, res, progress = cand, got, True
                break
    return current, res, used
