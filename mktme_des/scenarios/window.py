"""The edges of a race window: how far apart two racing ops may be for the race to end as the
scenario file's own timing ends.

A scenario stages a race at one timing. Two of its ops race (each has an ``at`` time): op
``A`` stays, op ``B`` moves, and the *offset* is ``B.at - A.at`` in ns. Every other op keeps
its time; ops after ``B`` without an ``at`` follow it, ops with ``after`` keep waiting for the
op they name. The *window* is the interval of offsets around the file's own offset whose
runs end with the file's own outcome (the verdict of every expectation, and whether the
oracle saw a violation, as ``scenario explore`` groups runs).

:func:`race_window` finds each edge by a search on the offset: it steps outwards from the
file's offset by ``resolution_ns``, doubling the step, until a run ends otherwise (or the
step would leave ``span_ns``, or put ``B`` before time 0: it then tries that limit, and
the edge is *open* when the limit too ends as the file does: the limit itself ends as the file does), then bisects between the last offset inside and the first outside until they are
``resolution_ns`` apart. It reports the outermost offsets found inside, ``[start, end]``, the
width ``end - start`` and, per edge, the first offset found outside. The search assumes the
outcome changes once on each side: a window with holes is reported up to its first hole
met by the bisection.

An op is named by its ``label``, its ``name`` (an expectation's name), or ``ACTOR:INDEX``
(the actor's name, or ``cpuN``, and the op's index in its list).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktme_des.config.schema import read_toml
from mktme_des.engine.time import MAX_NS
from mktme_des.errors import UserError
from mktme_des.scenarios.explore import ACTOR_TABLES, outcome_key
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import find_scenario, scenario_from

RESOLUTION_NS = 1.0
SPAN_NS = 100_000.0


@dataclass
class RaceWindow:
    """The window of two racing ops (see the module docstring)."""

    path: str
    name: str
    op_a: str
    op_b: str
    offset_ns: float  # the file's own offset, B.at - A.at
    start_ns: float
    end_ns: float
    outside_start_ns: float | None  # the first offset found outside below (None: open)
    outside_end_ns: float | None  # the first offset found outside above (None: open)
    resolution_ns: float
    summary: str  # the outcome inside the window
    outside: dict[str, str] = field(default_factory=dict)  # edge -> outcome just outside
    runs: int = 0

    @property
    def width_ns(self) -> float:
        return self.end_ns - self.start_ns

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": {"name": self.name, "file": self.path}, "op_a": self.op_a,
                "op_b": self.op_b, "offset_ns": self.offset_ns,
                "window_ns": [self.start_ns, self.end_ns], "width_ns": self.width_ns,
                "outside_ns": [self.outside_start_ns, self.outside_end_ns],
                "resolution_ns": self.resolution_ns, "inside": self.summary,
                "outside": self.outside, "runs": self.runs}

    def text(self) -> str:
        def edge(inside: float, outside: float | None) -> str:
            return (f"{inside:g} ns (open: the same outcome up to the search's limit)"
                    if outside is None else f"{inside:g} ns ({outside:g} ns is outside)")

        lines = [f"{self.name}: race window of {self.op_b!r} against {self.op_a!r}",
                 f"  offset = at({self.op_b}) - at({self.op_a}); the file's own: "
                 f"{self.offset_ns:g} ns",
                 f"  inside, every run ends as the file's own timing does: {self.summary}",
                 f"  start: {edge(self.start_ns, self.outside_start_ns)}",
                 f"  end:   {edge(self.end_ns, self.outside_end_ns)}",
                 f"  width: {self.width_ns:g} ns (resolution {self.resolution_ns:g} ns, "
                 f"{self.runs} runs)"]
        for where, what in self.outside.items():
            lines.append(f"  just outside the {where}: {what}")
        return "\n".join(lines)


def _ops(data: dict[str, Any]):
    for table in ACTOR_TABLES:
        for i, actor in enumerate(data.get(table) or []):
            if not isinstance(actor, dict):
                continue
            name = f"cpu{actor.get('id')}" if table == "cpu" else actor.get("name") or \
                f"{table}{i}"
            for j, op in enumerate(actor.get("ops") or []):
                if isinstance(op, dict):
                    yield name, j, op


def find_op(data: dict[str, Any], path: str, ref: str) -> dict[str, Any]:
    """The op named ``ref`` (label, name or ACTOR:INDEX); one-line UserError otherwise."""
    hits = [op for actor, j, op in _ops(data)
            if ref in (op.get("label"), op.get("name"), f"{actor}:{j}")]
    if len(hits) != 1:
        why = "no op" if not hits else f"{len(hits)} ops"
        raise UserError(f"{path}: --race-window {ref!r}: {why} with that label, name or "
                        "ACTOR:INDEX (e.g. cpu0:1, the second op of cpu0); name exactly one")
    at = hits[0].get("at")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise UserError(f"{path}: --race-window {ref!r}: the op has no `at` time; the window "
                        "is searched over the two ops' times, so both need one")
    return hits[0]


class _Probe:
    """Runs of the scenario with op B at a given offset from op A, remembered."""

    def __init__(self, data: dict[str, Any], path: str, ref_a: str, ref_b: str) -> None:
        self.data, self.path, self.ref_b = data, path, ref_b
        self.at_a = float(find_op(data, path, ref_a)["at"])
        self.own = float(find_op(data, path, ref_b)["at"]) - self.at_a
        self.seen: dict[float, tuple] = {}
        self.runs = 0

    def outcome(self, offset: float) -> tuple:
        offset = round(offset, 3)
        if offset not in self.seen:
            trial = copy.deepcopy(self.data)
            find_op(trial, self.path, self.ref_b)["at"] = round(self.at_a + offset, 3)
            res = run_scenario(scenario_from(trial, f"{self.path} (offset {offset:g} ns)"))
            self.runs += 1
            from mktme_des.scenarios.explore import Outcome

            summary = Outcome(res.ok, res.checks, res.violations, []).summary()
            self.seen[offset] = (outcome_key(res.ok, res.checks, res.violations), summary)
        return self.seen[offset]


def _edge(probe: _Probe, sign: int, resolution: float, span: float) -> tuple[int, int | None]:
    """Steps (of ``resolution``) from the file's offset to the last offset inside and the
    first outside on one side (None: none up to the limit, which is then inside)."""
    own = probe.outcome(probe.own)[0]
    limit = span if sign > 0 else min(span, probe.own + probe.at_a)  # A.at + offset >= 0
    if sign > 0:
        limit = min(limit, MAX_NS - probe.at_a - probe.own)
    most = int(limit // resolution + 1e-9)
    inside, step = 0, 1
    while True:
        if step > most:
            if inside == most:
                return inside, None
            step = most
        if probe.outcome(probe.own + sign * step * resolution)[0] != own:
            break
        inside, step = step, step * 2
    outside = step
    while outside - inside > 1:
        mid = (inside + outside) // 2
        if probe.outcome(probe.own + sign * mid * resolution)[0] == own:
            inside = mid
        else:
            outside = mid
    return inside, outside


def race_window(name_or_path: str | Path, op_a: str, op_b: str,
                resolution_ns: float = RESOLUTION_NS, span_ns: float = SPAN_NS,
                model_overrides: dict[str, Any] | None = None) -> RaceWindow:
    """Search the window of ``op_b`` against ``op_a`` (module docstring). ``model_overrides``
    (nested tables) are applied on top of the file's own."""
    if not 0 < resolution_ns <= MAX_NS:
        raise UserError(f"--resolution-ns {resolution_ns}: a positive number of ns up to "
                        f"{MAX_NS:g}")
    if not resolution_ns <= span_ns <= MAX_NS:
        raise UserError(f"--span-ns {span_ns}: at least the resolution, at most {MAX_NS:g}")
    path = find_scenario(name_or_path)
    data = read_toml(path)
    scenario_from(data, str(path))  # a bad file is reported once, as itself
    if model_overrides:
        data["model_overrides"] = _merged(data.get("model_overrides") or {}, model_overrides)
    data.setdefault("scenario", {})
    probe = _Probe(data, str(path), op_a, op_b)
    if find_op(data, str(path), op_a) is find_op(data, str(path), op_b):
        raise UserError(f"{path}: --race-window names the same op twice")
    low_in, low_out = _edge(probe, -1, resolution_ns, span_ns)
    high_in, high_out = _edge(probe, +1, resolution_ns, span_ns)
    own = probe.own
    window = RaceWindow(str(path), path.stem, op_a, op_b, round(own, 3),
                        round(own - low_in * resolution_ns, 3),
                        round(own + high_in * resolution_ns, 3),
                        None if low_out is None else round(own - low_out * resolution_ns, 3),
                        None if high_out is None else round(own + high_out * resolution_ns, 3),
                        resolution_ns, probe.outcome(own)[1])
    for where, offset in (("start", window.outside_start_ns), ("end", window.outside_end_ns)):
        if offset is not None:
            window.outside[where] = probe.outcome(offset)[1]
    window.runs = probe.runs
    return window


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merged(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out
