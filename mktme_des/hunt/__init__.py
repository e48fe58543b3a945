"""``mktme-des hunt POLICY``: a corrupting schedule found from the policy alone.

The hunt generates programs (:mod:`~mktme_des.hunt.generator`), runs each under random
schedules (:mod:`~mktme_des.hunt.search`), judges every run (:mod:`~mktme_des.hunt.detect`),
shrinks one counterexample per cause (:mod:`~mktme_des.hunt.shrink`) and, with ``save``,
writes each as a scenario file that replays it, with its trace and timeline
(:mod:`~mktme_des.hunt.counterexample`). :func:`hunt` returns a :class:`Hunt` whose text and
JSON are what the command prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktme_des.errors import ConfigError, UserError
from mktme_des.hunt.generator import Machine, machine

DEFAULT_BUDGET_S = 120.0


@dataclass
class Counterexample:
    """One shrunk counterexample: its cause, a full instance of it, its size before and after
    shrinking, when the search found it, and the files written for it."""

    cause: str
    detail: str
    run: int
    ops: int
    ops_found: int
    found_after_s: float
    shrink_runs: int
    data: dict
    result: Any = None  # the shrunk program's run (a scenarios.runner.Result)
    holds: bool = True  # the file's expectations hold when it is run
    file: str | None = None
    files: dict = field(default_factory=dict)


@dataclass
class Hunt:
    """What a hunt did and found (see the module docstring)."""

    policy: str
    model: str
    seed: int
    programs: int
    schedules: int
    crashed: int
    largest_program: int
    seconds: float
    counterexamples: list[Counterexample]

    @property
    def found(self) -> int:
        return len(self.counterexamples)

    def to_dict(self) -> dict:
        return {"policy": self.policy, "model": self.model, "found": self.found,
                "counterexamples": [{"file": c.file, "ops": c.ops, "cause": c.cause,
                                     "found_after_s": round(c.found_after_s, 3)}
                                    for c in self.counterexamples],
                "programs": self.programs, "schedules": self.schedules,
                "seconds": round(self.seconds, 3)}

    def text(self) -> str:
        lines = [f"hunt {self.policy} on {self.model} (seed {self.seed}): {self.programs} "
                 f"programs, {self.schedules} schedules in {self.seconds:.1f} s"]
        if not self.counterexamples:
            lines.append(f"  no counterexample: every run kept the oracle, the processes' "
                         f"data and the kernel invariants (programs up to "
                         f"{self.largest_program} ops, {self.crashed} not runnable)")
            return "\n".join(lines)
        for k, c in enumerate(self.counterexamples, 1):
            lines.append(f"  counterexample {k}: {c.cause}")
            lines.append(f"    found in run {c.run} after {c.found_after_s:.1f} s; shrunk from "
                         f"{c.ops_found} to {c.ops} ops ({c.shrink_runs} candidate runs)")
            lines.append(f"    {c.detail}")
            if not c.holds:
                lines.append("    (its replay does not meet every expectation written for it)")
            if c.file:
                lines.append(f"    reproduce: mktme-des scenario run {c.file}")
                lines.append(f"    trace: {c.files['trace']}; timeline: {c.files['timeline']}")
        return "\n".join(lines)


def check_inputs(policy: str, model: str, runs: int | None, budget_s: float | None,
                 workers: int, against: str | None = None) -> Machine:
    """Validate the command's inputs (UserError, one line, naming what is wrong); returns
    what the generator needs of the model."""
    from mktme_des import catalog
    from mktme_des.config.model import load_model
    from mktme_des.kernel.policy import list_policies, load_policy

    def exists(name: str) -> bool:
        try:
            return catalog.find("policy", name).exists()
        except ConfigError:
            return False

    for what, name in (("policy", policy), ("--against", against)):
        if name is not None and not exists(name):
            raise UserError(f"{what} {name!r}: no such policy; choose one of "
                            f"{', '.join(list_policies())} or a policy file")
    for what, name in (("policy", policy), ("--against", against)):
        try:
            if name is not None:
                load_policy(name)
        except ConfigError as err:
            raise UserError(f"{what} {name!r}: {err}") from None
    try:
        m = load_model(model)
    except ConfigError as err:
        raise UserError(f"--model {model!r}: {err}") from None
    if runs is not None and runs < 1:
        raise UserError(f"--runs {runs}: at least one run")
    if budget_s is not None and not budget_s > 0:
        raise UserError(f"--budget-s {budget_s}: a positive number of seconds")
    if workers < 1:
        raise UserError(f"--workers {workers}: at least one")
    if m.topology.cores_per_package < 2:
        raise UserError(f"--model {model}: a hunt needs two cores per package "
                        f"(it has {m.topology.cores_per_package})")
    return machine(model)


def hunt(policy: str, model: str = "server-2s", runs: int | None = None,
         budget_s: float | None = None, seed: int = 0, workers: int = 1,
         save: str | Path | None = None, against: str | None = None,
         every_cause: bool = False, strategy: str = "uniform", depth: int = 3) -> Hunt:
    """Search ``policy`` for a corrupting schedule: ``runs`` runs, or ``budget_s`` seconds
    (120 when neither is given). With ``against`` (a policy), only what the same program and
    schedule does not show under that policy counts: the hunted policy's own faults. The
    search stops at its first batch with a counterexample, or with ``every_cause`` goes on
    to the end of the budget for other causes. With ``save``, each shrunk counterexample is
    written there. ``strategy`` and ``depth``: how a schedule decides same-time events
    (:mod:`~mktme_des.hunt.search`)."""
    from mktme_des.hunt.counterexample import with_expectations, write_counterexample
    from mktme_des.hunt.detect import findings
    from mktme_des.hunt.generator import count_ops
    from mktme_des.hunt.search import SCHEDULES, search
    from mktme_des.hunt.shrink import replay, shrink

    if runs is not None and budget_s is not None:
        raise UserError("give --runs or --budget-s, not both")
    if runs is None and budget_s is None:
        budget_s = DEFAULT_BUDGET_S
    from mktme_des.scenarios.explore import check_strategy

    check_strategy(strategy, depth)
    mach = check_inputs(policy, model, runs, budget_s, workers, against)
    start = time.monotonic()
    found = search(policy, model, mach, seed, runs, budget_s, workers, against, every_cause,
                   strategy, depth)
    first: dict[str, tuple] = {}
    for run in found.hits:
        for f in run.findings:
            first.setdefault(f.cause, (run, f))
    results = []
    for cause, (run, _first_finding) in first.items():
        small, res, used = shrink(run.data, cause, against=against)
        detail = next(g.detail for g in findings(res) if g.cause == cause)
        final = with_expectations(small, res)
        final["scenario"]["name"] = f"hunt-{policy}"
        final["scenario"]["title"] = f"under {policy}: {detail}"
        again = replay(final)
        results.append(Counterexample(cause, detail, run.index, count_ops(small),
                                      count_ops(run.data), run.found_after_s, used,
                                      final, again if again is not None else res,
                                      holds=again is not None and again.ok))
    results.sort(key=lambda c: (c.ops, c.cause))
    if save is not None:
        folder = Path(save)
        vs = (f" --against {against}" if against else "") + (" --all" if every_cause else "") \
            + (f" --strategy pct --depth {depth}" if strategy == "pct" else "")
        for k, c in enumerate(results, 1):
            header = (f"A counterexample to the kernel policy {policy!r} on {model}, found by "
                      f"`mktme-des hunt {policy} --model {model} --seed {seed}{vs}`: run {c.run} "
                      f"of the search\n(program {c.run // SCHEDULES}, schedule {c.run % SCHEDULES}; random "
                      f"op times and same-time orders), shrunk from {c.ops_found} to {c.ops} "
                      f"ops.\nCause: {c.cause}\nIts times and tie_choices are the run's; "
                      f"`mktme-des scenario run` on this file replays it, and its "
                      f"expectations state what the run did.")
            c.files, c.result = write_counterexample(folder, f"{policy}-{k}", c.data, header)
            c.file = c.files["file"]
    return Hunt(policy, model, seed, found.programs, found.runs, found.crashed,
                found.largest_program, time.monotonic() - start, results)
