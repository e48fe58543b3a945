"""Running a scenario: build the platform, run every actor, judge every expectation.

The verdict is the simulator's: each named or expected read is matched to what the run
actually returned (bytes and the oracle's class), and the oracle's violations are reported
beside it. The result also carries a numbered per-event trace for the report and the
timeline picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mktme_des.config.model import load_model
from mktme_des.engine.ties import ChosenTies
from mktme_des.engine.time import to_ns
from mktme_des.hw import ops as O
from mktme_des.hw.agent import NO_PAGE
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from mktme_des.scenarios.hw_ops import RAW_CLASSES, READ_CLASSES
from mktme_des.scenarios.spec import (
    BLOCKED,
    ReadCheck,
    Scenario,
    load_scenario,
)


@dataclass
class Result:
    """What a scenario run produced, ready for text, JSON and a picture."""

    scenario: Scenario
    ok: bool
    checks: list[dict]
    reads: list[dict]
    violations: list[dict]
    oracle_counts: dict
    trace: list[dict]
    end_ns: float
    stats: dict = field(default_factory=dict)
    # With tie_choices: the choice made at each tie and how many events were tied there.
    ties: tuple[list[int], list[int]] | None = None
    # The kernel's broken invariants at the end of the run (kernel/invariants.py).
    invariants: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        info = self.scenario.info
        return {
            "scenario": {"name": info.name, "title": info.title, "file": self.scenario.path,
                         "model": info.model, "seed": info.seed, "source": info.source},
            "ok": self.ok,
            "checks": self.checks,
            "reads": self.reads,
            "oracle": {"counts": self.oracle_counts, "violations": self.violations},
            "trace": self.trace,
            "end_ns": self.end_ns,
            **({"kernel": self.stats["kernel"]} if "kernel" in self.stats else {}),
        }


def _label(code) -> str:
    return code if isinstance(code, str) else O.NAMES[code]


@dataclass
class Setup:
    """A scenario ready to run: the platform, the kernel (for kernel-level actors), and the
    per-actor op logs and details the run will fill."""

    plat: Platform
    kernel: Any
    logs: dict[str, list]
    details: dict[str, list]


def build_platform(sc: Scenario, tie_choices: list[int] | None = None,
                   tie_draw: int | None = None, env=None, loaded: dict | None = None) -> Setup:
    """The platform of a scenario with its key tables set up and its actors started.
    ``tie_choices``, when given, orders same-time events instead of the file's own; with
    ``tie_draw``, ties met after the choices run out are drawn at random from that seed
    (and recorded, see :class:`~mktme_des.engine.ties.ChosenTies`). ``env``, when given, is
    the environment to run on: a :class:`~mktme_des.scenarios.por.ReducedTies` is handed the
    classifier of this run's events. ``loaded`` (a dict kept between runs of one scenario)
    keeps the model and policy loaded by the first run for the next ones.

    Kernel-level processes are spawned here, in file order, before any actor runs: a
    process exists from the start of the scenario, and its pid does not depend on the order
    in which the actors first run."""
    import random

    f = sc.file
    loaded = {} if loaded is None else loaded
    if "model" not in loaded:
        loaded["model"] = load_model(f.scenario.model, f.model_overrides or None)
    model = loaded["model"]
    if tie_draw is not None and tie_choices is None:
        tie_choices = list(f.scenario.tie_choices)
    plat = Platform(model, seed=f.scenario.seed, oracle=Oracle(classify=True),
                    tie_seed=f.scenario.tie_seed,
                    tie_choices=tie_choices if tie_choices is not None
                    else f.scenario.tie_choices or None, env=env)
    from mktme_des.scenarios.por import Actors, Classifier, ReducedTies, Stream

    actors = Actors()
    # An environment that looks at events (reduction, priorities) gets their classifier,
    # and the cores' and agents' op streams it reads their positions from.
    reduced = isinstance(plat.env, ReducedTies) or hasattr(plat.env, "classify")
    if reduced:
        plat.env.classify = Classifier(plat, actors)
    if tie_draw is not None:
        plat.env.draw = random.Random(tie_draw)
    plat.recorder.keep("events")
    for k in f.keys:
        plat.program(k.keyid, k.mode, bytes.fromhex(k.key) if k.key else None,
                     k.packages or None, command="setup")
    logs: dict[str, list] = {}
    details: dict[str, list] = {}
    kernel = None
    if sc.kernel_ops:
        from mktme_des.kernel.kernel import Kernel
        from mktme_des.kernel.policy import load_policy
        from mktme_des.scenarios.actors import kernel_actor

        if "policy" not in loaded:
            loaded["policy"] = load_policy(f.scenario.policy, f.policy_overrides or None)
        kernel = Kernel(plat, loaded["policy"])
        serials: dict[str, int] = {}
        procs = {name: kernel.mm.spawn(cpu) if kind == "process" else None
                 for name, (kind, cpu, _ops) in sc.kernel_ops.items()}
        for name, (_kind, cpu, ops) in sc.kernel_ops.items():
            log = logs[name] = []
            details[name] = []
            plat.env.process(kernel_actor(plat, kernel, name, procs[name], cpu, ops, log,
                                          details[name], serials))
    for cpu, ops in sc.cpu_ops.items():
        plat.cores[cpu].log = logs[f"cpu{cpu}"] = []
        stream = Stream(f"cpu{cpu}", ops) if reduced else ops
        proc = plat.start(cpu, stream, refuse_offline=True)
        if reduced:
            actors.streams[proc] = stream
    for name, ops in sc.agent_ops.items():
        log = logs[name] = []
        stream = Stream(name, ops) if reduced else ops
        proc = plat.start_agent(name, stream, log)
        if reduced:
            actors.streams[proc] = stream
    return Setup(plat, kernel, logs, details)


SUCCESS = ("ok", "PROG_SUCCESS")  # a system call's, and PCONFIG's


def _refusal(actor: str, entry: tuple) -> str:
    """What an op of a CPU or an agent that was not executed says: its CPU was offline
    (:meth:`~mktme_des.hw.core.Core.run`), or the page it names was never named
    (:data:`~mktme_des.hw.agent.NO_PAGE`)."""
    if entry[8] == NO_PAGE:
        return "not executed: the page it names was never named (the op naming it failed)"
    return f"cpu {actor[3:]} is offline when the op is due: refused, not executed"


def _blocked_check(chk: ReadCheck, entry: tuple | None, end_ns: float) -> dict:
    """The verdict on an op that never completed (``entry`` None: it was still waiting, or
    never started, when the run ended at ``end_ns``), or on one expected to be ``blocked``:
    that expectation holds exactly when the op never completed."""
    item = {"name": chk.name, "actor": chk.actor, "op": chk.index,
            "expect": chk.expect or SUCCESS[0]}
    if entry is None:
        item["time_ns"] = end_ns
        item["ok"] = chk.expect == BLOCKED
        item["detail"] = f"never completed: still waiting when the run ended at {end_ns:g} ns"
    else:
        item["time_ns"] = to_ns(entry[1])
        item["ok"] = False
        result = entry[8] if len(entry) > 8 else "ok"
        item["detail"] = f"completed at {to_ns(entry[1]):g} ns: returned {result}"
    return item


def _judge_extra(item: dict, chk: ReadCheck, entry: tuple, logs: dict[str, list],
                 labels: dict[str, tuple[str, int]]) -> None:
    """Add the op's ``served_by``, ``same_as``/``differs_from`` and ``expect_keyid`` verdicts
    to ``item``: it holds when its ``expect`` (if any) and each of these hold."""
    keyid, data, served = entry[3], entry[5], entry[6]
    wants, oks, notes = [], [], []
    if chk.served_by:
        wants.append(f"served by {chk.served_by}")
        oks.append(served == chk.served_by)
        notes.append(f"served by {served}")
    for label, same in ((chk.same_as, True), (chk.differs_from, False)):
        if not label:
            continue
        wants.append(f"{'same as' if same else 'differs from'} {label}")
        actor, index = labels[label]
        log = logs[actor]
        other = log[index] if index < len(log) else None
        if data is None or other is None or other[5] is None:
            oks.append(False)
            notes.append(f"{'this read' if data is None else label} returned no bytes")
            continue
        equal = data is not None and bytes(data) == bytes(other[5])
        oks.append(equal == same)
        notes.append(f"{'same bytes as' if equal else 'bytes differ from'} {label}")
    if chk.keyid is not None:
        wants.append(f"KeyID {chk.keyid}")
        oks.append(keyid == chk.keyid)
        notes.append(f"allocated KeyID {keyid}" if keyid is not None else "allocated no KeyID")
    expected_nothing = not chk.expect and item["detail"].startswith("recorded")
    item["expect"] = "; ".join(([item["expect"]] if item["expect"] else []) + wants)
    item["ok"] = (True if expected_nothing else item["ok"]) and all(oks)
    item["detail"] = "; ".join(notes if expected_nothing else [item["detail"], *notes])


def succeeded(op: str, result: str) -> bool:
    """Whether an op without an expectation went as software meant: a system call or PCONFIG
    that succeeded, or any key-table observation (it records a state, it cannot fail)."""
    return op == "keytable" or result in SUCCESS


def run_scenario(name_or_path, tie_choices: list[int] | None = None,
                 tie_draw: int | None = None, env=None, loaded: dict | None = None) -> Result:
    """Load, run and judge one scenario (``tie_choices``, ``tie_draw``, ``env``,
    ``loaded``: see :func:`build_platform`)."""
    sc = name_or_path if isinstance(name_or_path, Scenario) else load_scenario(name_or_path)
    setup = build_platform(sc, tie_choices, tie_draw, env, loaded)
    plat, logs, details = setup.plat, setup.logs, setup.details
    plat.run()
    amap = plat.amap
    for actor, log in logs.items():  # CPU and agent actors: what a refused op says
        if actor not in details:
            details[actor] = [_refusal(actor, e) if e is not None and len(e) > 8 else ""
                              for e in log]

    checks = []
    for chk in sc.checks:
        log = logs[chk.actor]
        entry = log[chk.index] if chk.index < len(log) else None
        if entry is None or chk.expect == BLOCKED:
            checks.append(_blocked_check(chk, entry, plat.now_ns))
            continue
        start, end, code, keyid, pa, data, served, cls = entry[:8]
        result = entry[8] if len(entry) > 8 else None
        item = {"name": chk.name, "actor": chk.actor, "op": chk.index, "expect": chk.expect,
                "time_ns": to_ns(end), "addr": hex(pa) if pa is not None else None,
                "keyid": keyid, "data": data.hex() if data is not None else None,
                "class": cls, "served_by": served}
        if result is not None:
            item["result"] = result
            item["detail"] = details[chk.actor][chk.index]
        if result is not None and code != "read" and (chk.expect or not succeeded(code, result)):
            want = chk.expect or SUCCESS[0]
            item["expect"] = want
            item["ok"] = result == want
            item["detail"] = f"returned {result}" + (f": {item['detail']}" if item["detail"] else "")
        elif result is not None and code != "read":
            item["ok"] = True
            item["detail"] = f"recorded (no expectation): returned {result}" + (
                f": {item['detail']}" if item["detail"] else "")
        elif result not in (None, "ok"):
            item["ok"] = False
            item["detail"] = f"returned {result}: {item['detail']}"
        elif not chk.expect:
            item["ok"] = True
            item["detail"] = "recorded (no expectation)"
        elif chk.expect in READ_CLASSES or chk.expect in RAW_CLASSES:
            item["ok"] = cls == chk.expect
            item["detail"] = f"read returned {cls} data"
        elif chk.expect.startswith("not:"):
            item["ok"] = data != bytes.fromhex(chk.expect[4:])
            item["detail"] = f"bytes differ (class {cls})" if item["ok"] else "bytes match"
        else:
            item["ok"] = data == bytes.fromhex(chk.expect)
            item["detail"] = "bytes match" if item["ok"] else f"bytes differ (class {cls})"
        if chk.extra:
            _judge_extra(item, chk, entry, logs, sc.labels)
        checks.append(item)

    # An operation that failed where the file expected nothing is a failed check too.
    checked_ops = {(c["actor"], c["op"]) for c in checks}
    for actor, log in logs.items():
        for index, entry in enumerate(log):
            if len(entry) > 8 and not succeeded(entry[2], entry[8]) and \
                    (actor, index) not in checked_ops:
                checks.append({"name": f"{actor} op {index} ({entry[2]})", "actor": actor,
                               "op": index, "expect": "ok", "result": entry[8], "ok": False,
                               "time_ns": to_ns(entry[1]),
                               "detail": f"unexpected {entry[8]}: {details[actor][index]}"})

    counts = plat.oracle.summary()["counts"]
    nviol = counts.get("violations", 0)
    want = sc.file.expect.violations
    if want != "any":
        ok = (nviol == 0) if want == "none" else (nviol > 0)
        checks.append({"name": f"oracle violations: {want}", "actor": "oracle", "expect": want,
                       "ok": ok, "detail": f"{nviol} violation(s) reported"})

    broken = []
    if setup.kernel is not None:
        from mktme_des.kernel.invariants import broken_invariants

        broken = broken_invariants(setup.kernel)
    want = sc.file.expect.invariants
    if want != "any":
        checks.append({"name": f"kernel invariants: {want}", "actor": "kernel", "expect": want,
                       "ok": bool(broken) == (want == "broken"),
                       "detail": "; ".join(broken) or "all hold"})

    reads = []
    for actor, log in logs.items():
        if actor.startswith("cpu"):
            cpu = int(actor[3:])
        elif actor in sc.kernel_ops:
            cpu = sc.kernel_ops[actor][1]
        else:
            continue
        for entry in log:
            _start, end, code, keyid, pa, data, served, cls = entry[:8]
            if code in (O.READ, "read") and data is not None:
                reads.append({"cpu": cpu, "actor": actor, "time_ns": to_ns(end),
                              "keyid": keyid, "addr": hex(pa), "data": data.hex(),
                              "class": cls, "served_by": served})
    reads.sort(key=lambda r: (r["time_ns"], r["cpu"]))

    checked = {(c.actor, c.index): c.name for c in sc.checks}
    trace = []
    for actor, log in logs.items():
        for index, entry in enumerate(log):
            start, end, code, keyid, pa, data, served, cls = entry[:8]
            ev = {"start_ns": to_ns(start), "end_ns": to_ns(end), "actor": actor,
                  "op": _label(code)}
            if len(entry) > 8:
                ev["result"] = entry[8]
                if details[actor][index]:
                    ev["detail"] = details[actor][index]
            if (actor, index) in checked:
                ev["check"] = checked[actor, index]
            if code not in (O.SFENCE, O.MFENCE, O.WBINVD, O.COMPUTE, "reboot") and pa is not None:
                ev["keyid"], ev["addr"] = keyid, hex(pa)
            if served:
                ev["served_by"] = served
            if data is not None and not isinstance(data, tuple):
                ev["data"] = data.hex()
            if cls:
                ev["class"] = cls
            trace.append(ev)
    for rec in plat.recorder["events"]:
        ev = {"start_ns": to_ns(rec.time), "end_ns": to_ns(rec.time), "actor": rec.actor,
              "op": rec.what, "detail": rec.detail}
        if rec.origin is not None:
            ev["from"] = {"actor": rec.origin[0], "time_ns": to_ns(rec.origin[1])}
        if rec.tag is not None:
            keyid, pa = amap.split(rec.tag)
            ev["keyid"], ev["addr"] = keyid, hex(pa)
        trace.append(ev)
    trace.sort(key=lambda e: (e["start_ns"], e["end_ns"], e["actor"]))
    for i, ev in enumerate(trace, 1):
        ev["n"] = i

    ok = all(c["ok"] for c in checks)
    stats = plat.stats()
    if setup.kernel is not None:
        stats["kernel"] = setup.kernel.stats()
    env = plat.env
    ties = (env.taken, env.branching) if isinstance(env, ChosenTies) else None
    return Result(sc, ok, checks, reads, plat.oracle.violations, counts, trace,
                  plat.now_ns, stats, ties, broken)
