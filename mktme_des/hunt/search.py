"""The search: programs of growing size, each run under several random schedules.

Run ``n`` of a hunt is schedule ``n % SCHEDULES`` of program ``n // SCHEDULES``. Program ``i``
is drawn from the hunt's seed and ``i`` alone (:func:`~mktme_des.hunt.generator.program`),
with at most ``size_of(i)`` ops per actor: small programs first, growing as property-based
testers grow theirs. A schedule moves the program's times as ``scenario explore`` does
(:func:`~mktme_des.scenarios.explore.perturb`: each actor starts at a random time, by up to a
jitter drawn per schedule from ``JITTERS_NS``) and decides every same-time tie by a random
draw (strategy ``uniform``), or by random actor priorities with ``depth - 1`` priority
changes among the ties the same program meets in its own order (strategy ``pct``,
:class:`~mktme_des.engine.ties.PriorityTies`); either way the choices are recorded as
``tie_choices``, so the run replays exactly.

Runs go in batches of ``BATCH``, shared among worker processes; the hunt stops after the
first batch that holds a counterexample, or when the budget (runs, or seconds checked between
batches) is spent. With ``every_cause`` it goes on to the end of the budget, keeping the
first run of each new cause. Every run depends on its number alone, and the batches are judged in
order, so what a hunt finds is the same whichever ``workers``; with a budget in seconds only
how far an unsuccessful hunt gets depends on the machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from mktme_des.errors import ConfigError
from mktme_des.hunt.detect import Finding, findings, not_under
from mktme_des.hunt.generator import Machine, count_ops, program
from mktme_des.scenarios.explore import perturb
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import scenario_from

SCHEDULES = 4  # schedules per program
BATCH = 32  # runs judged together
JITTERS_NS = (0.0, 1000.0, 10000.0, 100000.0, 400000.0)
MAX_SIZE = 14


def size_of(program_index: int) -> int:
    """Most ops per actor of program ``program_index``: 4 at first, one more every 6."""
    return min(MAX_SIZE, 4 + program_index // 6)


@dataclass
class Run:
    """One run of a hunt: its number, the program as run (times and tie choices) and why it
    is a counterexample (empty when it is not one)."""

    index: int
    data: dict[str, Any]
    findings: list[Finding]
    crashed: bool = False
    found_after_s: float = 0.0  # when its batch was judged, from the start of the search


@dataclass
class Search:
    """What a hunt's search did: the runs that were counterexamples, and how much it ran."""

    runs: int = 0
    programs: int = 0
    crashed: int = 0
    seconds: float = 0.0
    found_after_s: float | None = None
    hits: list[Run] = field(default_factory=list)
    largest_program: int = 0


def one_run(policy: str, model: str, mach: Machine, seed: int, against: str | None,
            index: int, strategy: str = "uniform", depth: int = 3) -> Run:
    """Run number ``index`` of a hunt (see the module docstring)."""
    prog, sched = divmod(index, SCHEDULES)
    data = program(np.random.default_rng([seed, prog]), size_of(prog), policy, model, mach)
    rng = np.random.default_rng([seed, prog, sched])
    jitter = JITTERS_NS[int(rng.integers(len(JITTERS_NS)))]
    trial = perturb(data, rng, jitter)
    draw = int(rng.integers(1, 2**31))
    path = f"hunt {policy} seed {seed} run {index}"
    try:
        if strategy == "pct":
            from mktme_des.scenarios.explore import tie_steps
            from mktme_des.scenarios.por import pct_environment

            sc = scenario_from(trial, path)
            env = pct_environment(draw, depth, tie_steps(sc))
            res = run_scenario(sc, env=env)
        else:
            res = run_scenario(scenario_from(trial, path), [], draw)
    except ConfigError:
        raise
    except (ValueError, KeyError, AssertionError, RuntimeError):
        return Run(index, trial, [], crashed=True)
    trial["scenario"]["tie_choices"] = list(res.ties[0])
    try:
        found = not_under(trial, findings(res), against)
    except (ValueError, KeyError, AssertionError, RuntimeError):
        return Run(index, trial, [], crashed=True)
    return Run(index, trial, found)


def search(policy: str, model: str, mach: Machine, seed: int, runs: int | None,
           budget_s: float | None, workers: int, against: str | None = None,
           every_cause: bool = False, strategy: str = "uniform", depth: int = 3) -> Search:
    """Run batches until a counterexample or the budget; see the module docstring. With
    ``against``, a finding counts only when the same run under that policy does not show it
    (:func:`~mktme_des.hunt.detect.not_under`)."""
    out = Search()
    start = time.monotonic()
    work = partial(one_run, policy, model, mach, seed, against, strategy=strategy, depth=depth)
    pool = None
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        from mktme_des.experiments.executors import _context

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context())
    try:
        first = 0
        while True:
            if runs is not None and first >= runs:
                break
            if budget_s is not None and time.monotonic() - start >= budget_s:
                break
            last = first + BATCH if runs is None else min(first + BATCH, runs)
            indices = range(first, last)
            batch = list(pool.map(work, indices)) if pool else [work(i) for i in indices]
            out.runs = last
            out.programs = (last - 1) // SCHEDULES + 1
            out.crashed += sum(r.crashed for r in batch)
            out.largest_program = max([out.largest_program] + [count_ops(r.data) for r in batch])
            seen = {f.cause for r in out.hits for f in r.findings}
            hits = [r for r in batch if {f.cause for f in r.findings} - seen]
            first = last
            if hits:
                for r in hits:
                    r.found_after_s = time.monotonic() - start
                out.hits += hits
                if out.found_after_s is None:
                    out.found_after_s = time.monotonic() - start
                if not every_cause:
                    break
    finally:
        if pool is not None:
            pool.shutdown()
    out.seconds = time.monotonic() - start
    return out
