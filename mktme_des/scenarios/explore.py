"""Exploring a scenario: every outcome the race it stages can have.

A scenario file fixes one timing, and a race has as many outcomes as there are orders its
events can reach the memory controllers in. In a discrete-event model two things make that
order: the timing, and the order of events due at the same instant. :func:`explore` runs the
scenario many times and varies both:

* every op that has an ``at`` time moves by a random amount, uniform in ``±jitter_ns`` (never
  before 0; a relative ``at = "LABEL+5ns"`` moves its delay, never before the labelled op
  completes), and each actor whose first op is untimed starts at a random time in
  ``[0, jitter_ns]``: what interrupts, other work and skew do to software. Ops without ``at``
  keep following the op before them, and ops with ``after`` keep waiting for the op they
  name, so program order and the orders software enforces stay as written;
* events due at the same instant run in a random order (the scenario's ``tie_seed``, see
  :mod:`mktme_des.engine.ties`).

Each run is judged exactly as ``scenario run`` judges the file. Runs with the same verdict
(which expectations held, whether the oracle saw a violation) form one *outcome*. The first
run of every outcome is kept as a complete scenario file with that run's times and tie seed,
so ``mktme-des scenario run`` on it reproduces the outcome, byte for byte. Each expectation is
also summarised over all runs as holding always, sometimes or never.

The random draws come from the explorer's own seed; the scenario's seed (keys, tweaks) is the
same in every run, so outcomes differ by ordering alone.

With ``exhaustive=True`` nothing is random: the scenario keeps its own timing and *every*
order of its same-time events is run, depth first (:class:`~mktme_des.engine.ties.ChosenTies`),
up to a cap (``EXHAUSTIVE_CAP`` schedules by default). Each schedule is saved as the choice
made at each tie (``tie_choices``), so any outcome replays exactly. Orders that differ only by
swapping independent events (events whose steps touch disjoint state: other lines, packages,
keys, processes) reach the same state, so by default one schedule of each class is run
(partial-order reduction, :mod:`mktme_des.scenarios.por`); ``reduce=False`` runs every
order, whose count is the product of the ties' sizes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mktme_des.config.schema import read_toml
from mktme_des.config.toml_write import dumps
from mktme_des.engine.time import MAX_NS
from mktme_des.errors import UserError
from mktme_des.limits import MAX_SEED, check_workers
from mktme_des.outputs import check_folder, make_folder, write_text
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import find_scenario, relative_at, scenario_from

ACTOR_TABLES = ("cpu", "agent", "process", "system")
RUNS = 100  # jittered runs of an exploration, by default
STRATEGIES = ("uniform", "pct")  # how a random run decides same-time events
DEFAULT_DEPTH = 3
MAX_DEPTH = 20
EXHAUSTIVE_CAP = 500  # most schedules of an exhaustive exploration, by default
HEX_FIELDS = ("addr", "to")


def perturb(data: dict[str, Any], rng: np.random.Generator, jitter_ns: float) -> dict[str, Any]:
    """A copy of a scenario's data with its op times moved (see the module docstring)."""
    out = copy.deepcopy(data)
    for table in ACTOR_TABLES:
        actors = out.get(table)
        if not isinstance(actors, list):
            continue  # validation names the problem
        for actor in actors:
            ops = actor.get("ops") if isinstance(actor, dict) else None
            if not isinstance(ops, list):
                continue
            for j, op in enumerate(ops):
                if not isinstance(op, dict):
                    continue
                at = op.get("at")
                if isinstance(at, int | float) and not isinstance(at, bool):
                    op["at"] = round(max(0.0, at + rng.uniform(-jitter_ns, jitter_ns)), 3)
                elif isinstance(at, str):  # relative: its delay moves, its reference stays
                    label, delay = relative_at(at)
                    if math.isfinite(delay):
                        moved = round(max(0.0, delay + rng.uniform(-jitter_ns, jitter_ns)), 3)
                        op["at"] = f"{label}+{moved!r}ns"
                elif j == 0 and at is None:
                    op["at"] = round(rng.uniform(0.0, jitter_ns), 3)
    return out


def schedule(data: dict[str, Any]) -> dict[str, list[float | None]]:
    """Each actor's op ``at`` times (None: after the previous op)."""
    out = {}
    for table in ACTOR_TABLES:
        for i, actor in enumerate(data.get(table, [])):
            name = f"cpu{actor['id']}" if table == "cpu" else actor.get("name") or f"{table}{i}"
            out[name] = [op.get("at") for op in actor.get("ops", [])]
    return out


@dataclass
class Outcome:
    """Runs that reached one verdict; ``data`` is the first such run's scenario."""

    ok: bool
    checks: list[dict]  # name, ok and detail of each expectation, from the first run
    violations: list[dict]  # the oracle's violations in the first run
    trace: list[dict]  # the first run's numbered event trace
    runs: list[int] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    file: str | None = None

    def summary(self) -> str:
        if self.ok and not self.violations:
            return "every expectation holds"
        parts = [f"{c['name']}: {c['detail']}" for c in self.checks if not c["ok"]]
        if self.violations:
            v = self.violations[0]
            parts.append(f"{len(self.violations)} oracle violation(s), first at "
                         f"{v['time_ns']:g} ns on cpu{v['cpu']}: {v['cause']}")
        return ("FAIL: " if not self.ok else "holds, but ") + "; ".join(parts)


@dataclass
class Exploration:
    """What exploring a scenario found: its runs grouped into outcomes, and how often each
    expectation held."""

    path: str
    name: str
    title: str
    runs: int
    jitter_ns: float
    seed: int
    outcomes: list[Outcome]
    held: dict[str, int]  # expectation name -> runs in which it held
    exhaustive: bool = False
    complete: bool = True  # exhaustive: every order was run (the cap was not reached)
    reduced: bool = False  # exhaustive: one schedule per class of equivalent orders
    pruned: int = 0  # exhaustive, reduced: runs cut short as equivalent to one already run
    # exhaustive with a comparison: schedules without reduction, whether that was all of them,
    # and whether the two explorations found the same outcomes (when both completed)
    unreduced: int | None = None
    unreduced_complete: bool = False
    same_outcomes: bool | None = None
    strategy: str = "uniform"  # random runs: how same-time events were ordered
    depth: int = DEFAULT_DEPTH  # pct: the bug depth aimed at

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def failed(self) -> int:
        """Runs that broke an expectation of the file."""
        return sum(len(o.runs) for o in self.outcomes if not o.ok)

    def describe(self) -> str:
        if self.exhaustive:
            how = ("one per class of orders equivalent up to swapping independent events, "
                   f"{self.pruned} more runs cut short as equivalent" if self.reduced else
                   "without reduction")
            return (f"schedules of {self.path}: every order of its same-time events at its own "
                    f"timing ({how})" + ("" if self.complete else
                                         f"; stopped at the cap of {self.runs}, more remain"))
        ties = ("same-time events shuffled" if self.strategy == "uniform" else
                f"same-time events ordered by random actor priorities with {self.depth - 1} "
                "change(s) (PCT)")
        return (f"runs of {self.path}, op times moved by up to ±{self.jitter_ns:g} ns and "
                f"{ties} (explorer seed {self.seed})")

    def verdict(self, name: str) -> str:
        """``always``, ``never`` or ``sometimes (k/n)`` for one expectation."""
        k = self.held[name]
        return "always" if k == self.runs else "never" if not k else f"sometimes ({k}/{self.runs})"

    def to_dict(self, trace: bool = False) -> dict:
        return {
            "scenario": {"name": self.name, "title": self.title, "file": self.path},
            "runs": self.runs, "jitter_ns": self.jitter_ns, "seed": self.seed, "ok": self.ok,
            "exhaustive": self.exhaustive, "complete": self.complete,
            **({} if self.exhaustive else {"strategy": self.strategy,
                                            **({"depth": self.depth}
                                               if self.strategy == "pct" else {})}),
            **({"schedules": {"reduced": self.reduced, "explored": self.runs,
                              "pruned": self.pruned, "unreduced": self.unreduced,
                              "unreduced_complete": self.unreduced_complete,
                              "same_outcomes": self.same_outcomes}}
               if self.exhaustive else {}),
            "expectations": [{"name": name, "held": k, "verdict": self.verdict(name)}
                             for name, k in self.held.items()],
            "outcomes": [{
                "ok": o.ok, "runs": len(o.runs), "fraction": len(o.runs) / self.runs,
                "first_run": o.runs[0], "summary": o.summary(),
                "checks": [{"name": c["name"], "ok": c["ok"], "detail": c["detail"]}
                           for c in o.checks],
                "violations": len(o.violations), "schedule": schedule(o.data),
                "tie_seed": o.data["scenario"].get("tie_seed", 0),
                "tie_choices": o.data["scenario"].get("tie_choices", []), "file": o.file,
                **({"trace": o.trace} if trace else {}),
            } for o in self.outcomes],
        }

    def text(self, trace: bool = False) -> str:
        from mktme_des.scenarios.report import trace_line

        lines = [f"{self.name}: {self.title}", f"  {self.runs} {self.describe()}"]
        if self.unreduced is not None:
            lines.append(f"  without reduction: {self.unreduced} schedules"
                         + ("" if self.unreduced_complete else " (the cap; more remain)")
                         + ("" if self.same_outcomes is None else
                            "; the same outcomes" if self.same_outcomes else
                            "; OTHER OUTCOMES (a dependence the reduction missed)"))
        lines.append("")
        for name in self.held:
            lines.append(f"  [{self.verdict(name).upper()}] {name}")
        lines.append("")
        for k, o in enumerate(self.outcomes, 1):
            share = 100 * len(o.runs) / self.runs
            lines.append(f"  outcome {k}: {len(o.runs)} runs ({share:.1f}%), first in run "
                         f"{o.runs[0]}: {o.summary()}")
            if o.file:
                lines.append(f"    reproduce: mktme-des scenario run {o.file}")
            if trace:
                lines.extend("      " + trace_line(ev) for ev in o.trace)
        lines.append("")
        failed = self.failed
        lines.append(f"  verdict: {'PASS' if not failed else 'FAIL'} "
                     f"({self.runs - failed}/{self.runs} runs meet every expectation)")
        return "\n".join(lines)


def explore(name_or_path: str | Path, runs: int | None = None, jitter_ns: float = 500.0,
            seed: int = 0, save: str | Path | None = None, workers: int = 1,
            exhaustive: bool = False, reduce: bool = True,
            compare: bool = False, strategy: str = "uniform",
            depth: int = DEFAULT_DEPTH) -> Exploration:
    """Run a scenario ``runs`` times with jittered op times; group the runs by verdict.

    With ``save``, the first run of each outcome is written there as a scenario file. With
    ``workers`` > 1 the runs are shared among that many processes; every run depends on its
    number alone, so the result is the same. With ``exhaustive``, every order of same-time
    events is run instead, at the file's timing, ``runs`` being the cap (``EXHAUSTIVE_CAP``
    by default); ``reduce`` runs one order per class of equivalent ones
    (:mod:`mktme_des.scenarios.por`), and ``compare`` also counts the orders without
    reduction (up to the same cap) and checks that both find the same outcomes. ``strategy``
    decides same-time events in a jittered run: ``uniform`` (a seeded shuffle) or ``pct``
    (actor priorities with ``depth - 1`` random changes, :func:`check_strategy`)."""
    check_strategy(strategy, depth)
    if exhaustive and strategy != "uniform":
        raise UserError("--exhaustive runs every order; --strategy is for random runs")
    if runs is None:
        runs = EXHAUSTIVE_CAP if exhaustive else RUNS
    if runs < 1:
        raise UserError(f"--runs {runs}: at least one run")
    check_workers(workers, allow_zero=False)
    if not 0 <= jitter_ns <= MAX_NS:  # also refuses nan
        raise UserError(f"--jitter-ns {jitter_ns}: must be 0 (only same-time events are "
                        f"shuffled) or a positive number of ns up to {MAX_NS:g} (the longest "
                        "simulated time)")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed}: must be 0..{MAX_SEED}")
    if save is not None:
        check_folder(save, "--save")  # before the runs, not after them
    path = find_scenario(name_or_path)
    return explore_data(read_toml(path), path, runs, jitter_ns, seed, save, workers, exhaustive,
                        reduce, compare, strategy, depth)


def check_strategy(strategy: str, depth: int) -> None:
    """Refuse an unknown strategy or a depth out of range (one line, UserError)."""
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if not 1 <= depth <= MAX_DEPTH:
        raise UserError(f"--depth {depth}: the number of ordering constraints a bug needs, "
                        f"1..{MAX_DEPTH}")


def tie_steps(sc) -> int:
    """How many ties a run of a parsed scenario meets in its own order: the ``k`` of PCT's
    change points."""
    return max(1, len(run_scenario(sc, []).ties[1]))


def one_run(data: dict[str, Any], path: str, jitter_ns: float, seed: int, run: int,
            strategy: str = "uniform", depth: int = DEFAULT_DEPTH, steps: int = 1) -> tuple:
    """Run ``run`` of an exploration: ``(scenario data as run, ok, checks, violations, trace)``.
    With ``strategy="pct"`` the same-time events follow actor priorities
    (:class:`~mktme_des.engine.ties.PriorityTies`, ``steps`` ties expected) and the run is
    kept as its ``tie_choices``; otherwise as a ``tie_seed``."""
    rng = np.random.default_rng([seed, run])
    trial = perturb(data, rng, jitter_ns)
    tie_seed = int(rng.integers(1, 2**31))
    name = f"{path} (explored run {run})"
    if strategy == "pct":
        from mktme_des.scenarios.por import pct_environment

        trial.setdefault("scenario", {}).pop("tie_seed", None)
        trial["scenario"].pop("tie_choices", None)
        env = pct_environment(tie_seed, depth, steps)
        res = run_scenario(scenario_from(trial, name), env=env)
        trial["scenario"]["tie_choices"] = list(env.taken)
        return _judged(trial, res)
    trial.setdefault("scenario", {})["tie_seed"] = tie_seed
    return _judged(trial, run_scenario(scenario_from(trial, name)))


def _judged(trial: dict[str, Any], res) -> tuple:
    """What an exploration keeps of one run: the scenario as run and its verdict."""
    return trial, res.ok, res.checks, res.violations, res.trace


def every_tie_order(data: dict[str, Any], path: str, cap: int,
                    reduce: bool = True) -> tuple[list[tuple], bool, int]:
    """Run the scenario under each order of its same-time events, depth first, at most
    ``cap`` times: the runs (as :func:`one_run` gives them), whether that was all, and how
    many runs were cut short as equivalent to one already run. With ``reduce``, orders that
    differ only by swapping independent events are run once (:mod:`mktme_des.scenarios.por`);
    without it, every order is."""
    if reduce:
        return _reduced_orders(data, path, cap)
    runs: list[tuple] = []
    prefix: list[int] = []
    sc = scenario_from(data, f"{path} (every order)")  # one parse: only the order varies
    loaded: dict = {}
    while True:
        res = run_scenario(sc, prefix, loaded=loaded)
        taken, branching = res.ties
        runs.append(_judged(_with_choices(data, taken), res))
        i = len(taken) - 1
        while i >= 0 and taken[i] + 1 >= branching[i]:
            i -= 1
        if i < 0:
            return runs, True, 0
        if len(runs) >= cap:
            return runs, False, 0
        prefix = taken[:i] + [taken[i] + 1]


def _with_choices(data: dict[str, Any], taken: list[int]) -> dict[str, Any]:
    """The scenario's data as one schedule ran it: its tie choices in place of a tie seed."""
    trial = copy.deepcopy(data)
    trial.setdefault("scenario", {}).pop("tie_seed", None)
    trial["scenario"]["tie_choices"] = list(taken)
    return trial


def _reduced_orders(data: dict[str, Any], path: str, cap: int) -> tuple[list[tuple], bool, int]:
    from mktme_des.scenarios.por import Blocked, ReducedTies, next_plan

    runs: list[tuple] = []
    pruned = 0
    plan: list[tuple[int, list[int]]] = []
    sc = scenario_from(data, f"{path} (every order)")
    loaded: dict = {}
    while True:
        env = ReducedTies(plan)
        try:
            res = run_scenario(sc, env=env, loaded=loaded)
        except Blocked:
            pruned += 1
        else:
            runs.append(_judged(_with_choices(data, res.ties[0]), res))
        plan = next_plan(env.nodes)
        if plan is None:
            return runs, True, pruned
        if len(runs) >= cap:
            return runs, False, pruned


def outcome_key(ok: bool, checks: list[dict], violations: list) -> tuple:
    """What makes two runs one outcome: the verdict of every expectation and whether the
    oracle saw a violation."""
    return ok, tuple((c["name"], c["ok"]) for c in checks), bool(violations)


def explore_data(data: dict[str, Any], path: Path, runs: int, jitter_ns: float, seed: int,
                 save: str | Path | None = None, workers: int = 1,
                 exhaustive: bool = False, reduce: bool = True,
                 compare: bool = False, strategy: str = "uniform",
                 depth: int = DEFAULT_DEPTH) -> Exploration:
    """:func:`explore` on a scenario's parsed ``data`` (``path`` names it in messages)."""
    base = scenario_from(data, str(path))  # a bad file is reported once, as itself
    if strategy == "pct" and not exhaustive:
        plain = copy.deepcopy(data)
        plain.setdefault("scenario", {}).pop("tie_seed", None)
        plain["scenario"].pop("tie_choices", None)
        steps = tie_steps(scenario_from(plain, str(path)))
    else:
        steps = 1
    run_number = partial(one_run, data, str(path), jitter_ns, seed, strategy=strategy,
                         depth=depth, steps=steps)
    complete = True
    pruned = 0
    if exhaustive:
        results, complete, pruned = every_tie_order(data, str(path), runs, reduce)
    elif workers > 1 and runs > 1:
        from concurrent.futures import ProcessPoolExecutor

        from mktme_des.experiments.executors import _context
        from mktme_des.signals import stop_pool, worker_init

        pool = ProcessPoolExecutor(max_workers=min(workers, runs), mp_context=_context(),
                                   initializer=worker_init)
        try:
            results = list(pool.map(run_number, range(runs),
                                    chunksize=max(1, runs // (4 * workers))))
        except BaseException:  # Ctrl-C, SIGTERM: stop the workers now, not after their runs
            stop_pool(pool)
            raise
        pool.shutdown()
    else:
        results = [run_number(run) for run in range(runs)]
    outcomes: dict[tuple, Outcome] = {}
    held: dict[str, int] = {}
    for run, (trial, ok, checks, violations, trace) in enumerate(results):
        for c in checks:
            held[c["name"]] = held.get(c["name"], 0) + bool(c["ok"])
        sig = outcome_key(ok, checks, violations)
        if sig not in outcomes:
            outcomes[sig] = Outcome(ok, checks, violations, trace, data=trial)
        outcomes[sig].runs.append(run)
    found = list(outcomes.values())
    info = base.info
    explored = Exploration(str(path), info.name, info.title, len(results), jitter_ns, seed,
                           found, held, exhaustive, complete, exhaustive and reduce, pruned,
                           strategy=strategy, depth=depth)
    if exhaustive and compare and reduce:
        other, other_complete, _ = every_tie_order(data, str(path), runs, False)
        explored.unreduced, explored.unreduced_complete = len(other), other_complete
        if complete and other_complete:
            explored.same_outcomes = set(outcomes) == {outcome_key(*r[1:4]) for r in other}
    if save is not None:
        folder = make_folder(save, "--save")
        for k, o in enumerate(found, 1):
            target = folder / f"{path.stem}-outcome{k}.toml"
            how = ("one order of its same-time events at its own timing" if exhaustive else
                   f"op times moved by up to ±{jitter_ns:g} ns (explorer seed {seed})")
            header = (f"Outcome {k} of exploring {path.name}: run {o.runs[0]} of "
                      f"{explored.runs}, {how}.\n"
                      f"{len(o.runs)} of {explored.runs} ended so: {o.summary()}\n"
                      f"Every time below, and the order of same-time events (tie_seed or "
                      f"tie_choices), are that run's; `mktme-des scenario run` on this file "
                      f"reproduces it.")
            # A saved run must replay, keys included: readable by its owner only.
            write_text(target, dumps(o.data, HEX_FIELDS, header), "--save", mode=0o600)
            o.file = str(target)
    return explored
