"""One simulation run: a model, a workload, a seed -> statistics.

This is the unit every command and experiment builds on. It is deterministic: the same model,
workload and seed give byte-identical statistics, whatever process runs it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TextIO

from mktme_des.config.model import Model, load_model
from mktme_des.config.schema import Context, build, read_toml, resolved
from mktme_des.errors import ConfigError
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from mktme_des.workloads.budget import check_budget
from mktme_des.workloads.synthetic import WorkloadSpec, start


def workload_from(data: dict[str, Any], source: str = "<workload>") -> WorkloadSpec:
    """Validate a ``[workload]`` table."""
    return build(WorkloadSpec, data, Context(source, "workload"))


def workload_file(path: str) -> dict[str, Any]:
    """The ``[workload]`` table of a TOML file (or the whole file when it has none)."""
    data = read_toml(path)
    table = data.get("workload", data)
    if not isinstance(table, dict):
        raise ConfigError(path, "workload", "expected a table [workload]")
    return table


def run_workload(model: Model | str, workload: WorkloadSpec, seed: int = 0,
                 oracle: bool = True, progress: TextIO | None = None,
                 after_s: float = 2.0, source: str = "<workload>") -> tuple[dict, Platform]:
    """Run ``workload`` on ``model``; its statistics (JSON-ready) and the platform, whose
    cores keep the exact latency histograms figures are drawn from.

    With ``progress`` (a stream), a run still going after ``after_s`` seconds shows there
    the accesses handed to the cores so far, their rate and an ETA, redrawn from a watcher
    thread: the simulation itself is untouched, so its results are the same with or
    without. A synthetic workload beyond the simulated-time or memory cap is refused first
    (:func:`~mktme_des.workloads.budget.check_budget`; errors name ``source``)."""
    if not isinstance(model, Model):
        model = load_model(model)
    check_budget(model, workload, Context(source, "workload"))
    plat = Platform(model, seed=seed, oracle=Oracle() if oracle else None)
    info: dict = {}
    done = [0]
    cpus = start(plat, workload, info, done)
    watcher = _Watcher(progress, info["total"], done, after_s) if progress is not None else None
    try:
        plat.run()
    finally:
        if watcher is not None:
            watcher.stop()
    stats = plat.stats()
    stats["run"] = {"model": model.platform.name, "seed": seed, "cpus": cpus,
                    "workload": resolved(workload)}
    trace = {k: v for k, v in info.items() if k != "total"}
    if trace:
        stats["run"]["trace"] = trace
    return stats, plat


class _Watcher:
    """Shows a long run's progress (:class:`~mktme_des.experiments.progress.Progress`) from a
    thread of its own, reading the count the workload's op streams keep."""

    def __init__(self, stream: TextIO, total: int, done: list, after_s: float) -> None:
        self.stream, self.total, self.done, self.after_s = stream, total, done, after_s
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from mktme_des.experiments.progress import Progress

        if self._stop.wait(self.after_s):
            return  # done before anyone waited long
        bar = Progress(self.total, "simulate", self.stream, tty=True)
        bar.start = self.t0  # elapsed and ETA count from the run's start
        while not self._stop.wait(0.25):
            bar.advance_to(min(self.done[0], self.total))
        bar.advance_to(min(self.done[0], self.total))
        bar.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def simulate(model: Model | str, workload: WorkloadSpec, seed: int = 0,
             oracle: bool = True, progress: TextIO | None = None,
             source: str = "<workload>") -> dict:
    """Run ``workload`` on ``model`` and return its statistics (JSON-ready, deterministic);
    ``progress``, ``source``: see :func:`run_workload`."""
    return run_workload(model, workload, seed, oracle, progress, source=source)[0]


def summary_text(stats: dict) -> str:
    """A short human summary of :func:`simulate`'s statistics."""
    run = stats["run"]
    wl = run["workload"]
    lines = [f"{run['model']}: {wl['kind']} {wl['pattern'] if wl['kind'] == 'synthetic' else wl['trace']}"
             f" on cpus {run['cpus']}, seed {run['seed']}",
             f"  simulated {stats['time_ns']:.0f} ns, {stats['accesses']} accesses, "
             f"{stats['writebacks']} writebacks"]
    trace = run.get("trace")
    if trace is not None:
        if trace["truncated"]:
            lines.append(f"  trace: its first {trace['accesses']} accesses replayed per core, and "
                         f"it has more: raise -w accesses (now {wl['accesses']}) to replay them")
        else:
            lines.append(f"  trace: all {trace['accesses']} accesses ({trace['trace_lines']} "
                         "lines) replayed per core")
    if "measured_from_ns" in stats:
        lines.append(f"  measured after a warm-up of {wl['warmup']} accesses per core, "
                     f"from {stats['measured_from_ns']:.0f} ns")
    lines.append("  served by: " + ", ".join(f"{k} {v}" for k, v in stats["served_by"].items()))
    for name, lv in stats["levels"].items():
        lines.append(f"  {name:<4} hit rate {lv['hit_rate']:.3f} ({lv['hits']}/{lv['accesses']})")
    reads = [c["read_latency"] for c in stats["cores"].values() if c["read_latency"]["count"]]
    if reads:
        n = sum(r["count"] for r in reads)
        mean = sum(r["mean_ns"] * r["count"] for r in reads) / n
        p99 = max(r["p99_ns"] for r in reads)
        lines.append(f"  read latency: mean {mean:.2f} ns, worst-core p99 {p99:.2f} ns ({n} reads)")
    for name, mc in stats["memory_controllers"].items():
        if mc["reads"] or mc["writes"]:
            aes = mc["aes_engine"]
            lines.append(f"  {name}: {mc['reads']} reads, {mc['writes']} writes; AES busy "
                         f"{aes['busy_ns']:.0f} ns, mean queueing {aes['queue_delay_mean_ns']:.2f} ns; "
                         f"DRAM mean queueing {mc['dram']['queue_delay_mean_ns']:.2f} ns")
    if "oracle" in stats:
        c = stats["oracle"]["counts"]
        lines.append(f"  oracle: {c.get('checked', 0)} reads checked, {c.get('violations', 0)} violations")
    return "\n".join(lines)
