"""What makes a run a counterexample.

A run of a program is a counterexample when

* the oracle reports a violation (a read did not return what was last stored through its tag:
  a stale writeback, a key changed under data, a wrong direct-map alias);
* a process reads another tenant's plaintext through its own mapping (the oracle's
  ``plaintext`` class: bytes stored through another KeyID's alias of the line); or
* a kernel invariant breaks (:mod:`mktme_des.kernel.invariants`: a KeyID in use not programmed
  on a package with memory, or reprogrammed under a live page).

Each finding has a *cause*: a short text with the times, addresses, KeyIDs and names taken
out, so counterexamples of one mechanism group together whatever their details.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from mktme_des.scenarios.runner import Result

_DETAILS = re.compile(r"0x[0-9a-f]+|\d+(\.\d+)?|\([^()]*\)")


def general(text: str) -> str:
    """``text`` without its numbers, addresses and parenthesised details."""
    return re.sub(r"\s+", " ", _DETAILS.sub("_", text)).strip()


@dataclass(frozen=True)
class Finding:
    """Why a run is a counterexample: ``kind`` (oracle, plaintext, invariant), the grouping
    ``cause``, and the first instance in full."""

    kind: str
    cause: str
    detail: str


def findings(res: Result) -> list[Finding]:
    """Every reason ``res`` is a counterexample, oracle first; empty when it is not one."""
    out: list[Finding] = []
    if res.violations:
        v = res.violations[0]
        out.append(Finding("oracle", "oracle violation: " + general(v["cause"]),
                           f"t={v['time_ns']:g} ns cpu{v['cpu']} {v['tag']}: {v['cause']}"))
    kernel_actors = {name for name, (kind, _cpu, _ops) in res.scenario.kernel_ops.items()
                     if kind == "process"}
    for r in res.reads:
        if r["actor"] in kernel_actors and r["class"] == "plaintext":
            out.append(Finding("plaintext", "a process read another tenant's plaintext",
                               f"{r['actor']} read K{r['keyid']} {r['addr']} at "
                               f"{r['time_ns']:g} ns: {r['data']}"))
            break
    for line in res.invariants:
        out.append(Finding("invariant", "kernel invariant: " + general(line), line))
    return out


def same_cause(found: list[Finding], cause: str) -> bool:
    """Whether a run's findings include ``cause`` (what shrinking must keep)."""
    return any(f.cause == cause for f in found)


def under_policy(data: dict[str, Any], policy: str) -> dict[str, Any]:
    """A copy of a program's data run under another kernel policy."""
    out = copy.deepcopy(data)
    out["scenario"]["policy"] = policy
    return out


def not_under(data: dict[str, Any], found: list[Finding], against: str | None) -> list[Finding]:
    """The findings of a run of ``data`` that the same program and schedule (its
    ``tie_choices``) does not show under the policy ``against``: what the hunted policy's own
    difference from it causes. All of them when ``against`` is None."""
    if against is None or not found:
        return found
    from mktme_des.scenarios.runner import run_scenario
    from mktme_des.scenarios.spec import scenario_from

    other = under_policy(data, against)
    base = run_scenario(scenario_from(other, f"{against} baseline"),
                        list(data["scenario"].get("tie_choices", [])))
    causes = {f.cause for f in findings(base)}
    return [f for f in found if f.cause not in causes]
