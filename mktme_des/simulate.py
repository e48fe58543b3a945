"""One simulation run: a model, a workload, a seed -> statistics.

This is the unit every command and experiment builds on. It is deterministic: the same model,
workload and seed give byte-identical statistics, whatever process runs it.
"""

from __future__ import annotations

from typing import Any

from mktme_des.config.model import Model, load_model
from mktme_des.config.schema import Context, build, read_toml, resolved
from mktme_des.errors import ConfigError
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
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
                 oracle: bool = True) -> tuple[dict, Platform]:
    """Run ``workload`` on ``model``; its statistics (JSON-ready) and the platform, whose
    cores keep the exact latency histograms figures are drawn from."""
    if not isinstance(model, Model):
        model = load_model(model)
    plat = Platform(model, seed=seed, oracle=Oracle() if oracle else None)
    info: dict = {}
    cpus = start(plat, workload, info)
    plat.run()
    stats = plat.stats()
    stats["run"] = {"model": model.platform.name, "seed": seed, "cpus": cpus,
                    "workload": resolved(workload)}
    if info:
        stats["run"]["trace"] = info
    return stats, plat


def simulate(model: Model | str, workload: WorkloadSpec, seed: int = 0,
             oracle: bool = True) -> dict:
    """Run ``workload`` on ``model`` and return its statistics (JSON-ready, deterministic)."""
    return run_workload(model, workload, seed, oracle)[0]


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
