"""The ``workload`` driver: one :func:`mktme_des.simulate.simulate` run per point.

``[base]`` of an experiment using it::

    [base]
    model = "server-2s"                # models/NAME.toml, or a path
    policy = ...                       # reserved for kernel policies: leave unset for now

    [base.model_overrides]             # any model field, merged over the model file
    mktme.aes_latency_ns = 16
    "cache[1]".size_kib = 2048         # list entries by index: the second cache level

    [base.workload]                    # the [workload] table of mktme_des/workloads/synthetic.py
    pattern = "random"
    cores = 4

Every field is addressable from ``[sweep]`` by dotted name: ``model``,
``model_overrides.mktme.aes_latency_ns``, ``model_overrides.cache[1].size_kib``,
``workload.mktme_fraction``. The point's resolved configuration holds the model name and
overrides as given, the workload with every default explicit, and the whole resulting model
(``model_resolved``), so editing a model file changes the points that use it (they are then
recomputed), and workers never read model files.

Before anything runs, each point's model is built with its overrides and its workload is
checked against the model (cores, KeyIDs, memory): an error names the experiment file and the
override or workload field.

Metrics (all deterministic in the configuration and seed): see :data:`METRICS`. Latency
metrics merge every core's exact histogram; engine and DRAM queueing are means over all memory
controllers, weighted by their jobs. The merged read- and write-latency histograms are stored
in the point's result file as the series ``read_latency_hist`` and ``write_latency_hist``
(``{"values_ns": [...], "counts": [...]}``), which CDF figures use.

A warm-up is ``workload.warmup`` (accesses per core before measurement starts; sweepable like
any field); ``[experiment].warmup``, when given, is its default for every point. Metrics then
cover the measured accesses only, and ``time_ns`` runs from the end of the warm-up.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mktme_des import catalog
from mktme_des.config.model import Model, model_from_dict, resolve_extends
from mktme_des.config.schema import Context, Section, build, param, read_toml, resolved
from mktme_des.engine.stats import LatencyStat
from mktme_des.errors import ConfigError, UserError
from mktme_des.experiments import dotted
from mktme_des.experiments.drivers import register
from mktme_des.hw.address import AddressMap
from mktme_des.workloads.synthetic import PAGE, WorkloadSpec, workload_cpus

METRICS: dict[str, str] = {
    "time_ns": "simulated time until the last core finished (after any warm-up) [ns]",
    "accesses": "memory accesses executed, all cores",
    "reads": "loads executed",
    "writes": "stores executed",
    "read_latency_mean_ns": "mean load latency [ns]",
    "read_latency_p50_ns": "median load latency [ns]",
    "read_latency_p90_ns": "90th percentile load latency [ns]",
    "read_latency_p99_ns": "99th percentile load latency [ns]",
    "read_latency_p999_ns": "99.9th percentile load latency [ns]",
    "read_latency_max_ns": "largest load latency [ns]",
    "write_latency_mean_ns": "mean store latency [ns]",
    "write_latency_p99_ns": "99th percentile store latency [ns]",
    "hit_rate_<LEVEL>": "hits / accesses reaching cache level LEVEL (e.g. hit_rate_L1D)",
    "dram_reads": "lines read from DRAM, all memory controllers",
    "dram_writes": "lines written to DRAM, all memory controllers",
    "writebacks": "dirty lines written back",
    "aes_jobs": "lines through the AES-XTS engines",
    "aes_busy_ns": "total AES-XTS engine service time, all controllers [ns]",
    "aes_service_mean_ns": "mean AES-XTS service time per line [ns]",
    "aes_queue_mean_ns": "mean wait for the AES-XTS engine per line [ns]",
    "aes_queue_max_ns": "largest wait for the AES-XTS engine [ns]",
    "aes_utilisation_max": "busiest engine's busy time / simulated time",
    "dram_busy_ns": "total DRAM service time, all controllers [ns]",
    "dram_queue_mean_ns": "mean wait for DRAM per access [ns]",
    "oracle_checked": "reads the oracle checked",
    "oracle_violations": "reads the oracle found corrupted",
}

SERIES: dict[str, str] = {
    "read_latency_hist": "exact load-latency histogram, all cores: values_ns, counts",
    "write_latency_hist": "exact store-latency histogram, all cores: values_ns, counts",
}


@dataclass(frozen=True, kw_only=True)
class WorkloadBase(Section):
    """``[base]`` of the workload driver."""

    model: str = param(doc="model name (models/NAME.toml) or path to a model file")
    model_overrides: dict[str, Any] = param(
        {}, doc="model fields merged over the model file; list entries as 'cache[1]'"
    )
    workload: dict[str, Any] = param({}, doc="the [workload] table (workloads/synthetic.py)")
    policy: str | None = param(None, doc="reserved for kernel policies; not used by this driver")


@functools.lru_cache(maxsize=32)
def _model_file(path: str, mtime_ns: int) -> dict[str, Any]:
    return read_toml(path)


def _model_data(path: Path) -> dict[str, Any]:
    return copy.deepcopy(_model_file(str(path), path.stat().st_mtime_ns))


_INDEXED = re.compile(r"(.+?)((?:\[[0-9]+\])+)")


def apply_overrides(data: dict[str, Any], over: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """``over`` merged into ``data``: tables merge, other values replace; a key ``name[i]``
    addresses entry ``i`` of the list ``name`` (itself merged when both are tables)."""
    out = dict(data)
    for key, value in over.items():
        m = _INDEXED.fullmatch(key)
        if m is None:
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = apply_overrides(out[key], value, ctx.child(key))
            else:
                out[key] = value
            continue
        name, idx = m.group(1), [int(i) for i in re.findall(r"[0-9]+", m.group(2))]
        if not isinstance(out.get(name), list):
            raise ctx.error(key, f"{name} is not a list in the model, so it cannot be indexed")
        out[name] = copy.deepcopy(out[name])
        holder, pos = out, name
        for i in idx:
            seq = holder[pos]
            if not isinstance(seq, list) or i >= len(seq):
                size = len(seq) if isinstance(seq, list) else 0
                raise ctx.error(key, f"no entry [{i}]: the model has {size}")
            holder, pos = seq, i
        if isinstance(value, dict) and isinstance(holder[pos], dict):
            holder[pos] = apply_overrides(holder[pos], value, ctx.child(key))
        else:
            holder[pos] = value
    return out


def build_model(name: str, overrides: dict[str, Any], ctx: Context) -> Model:
    """The model ``name`` with ``overrides``; errors in overridden fields are reported at
    ``ctx``'s ``model_overrides.FIELD`` (the experiment file), others at the model file."""
    try:
        path = catalog.find("model", name)
    except UserError as err:
        raise ctx.error("model", str(err)) from None
    raw = resolve_extends(_model_data(path), path)
    data = apply_overrides(raw, overrides, ctx.child("model_overrides"))
    try:
        return build(Model, data, Context(str(path)))
    except ConfigError as err:
        if not overrides:
            raise
        touched = dotted.leaves(overrides)
        if err.field and any(dotted.related(err.field, t) for t in touched):
            raise ctx.error(f"model_overrides.{err.field}", f"{err.reason} (model {name})") from None
        try:
            build(Model, raw, Context(str(path)))
        except ConfigError:
            raise err from None
        raise ctx.error("model_overrides", f"model {name} with these overrides is invalid: "
                        f"{err.field or '(model)'}: {err.reason}") from None


def check_fits(model: Model, spec: WorkloadSpec, ctx: Context) -> None:
    """What ``simulate`` would reject at run time: cores, KeyIDs, working sets in memory."""
    topo = model.topology
    total = topo.packages * topo.cores_per_package
    if spec.cores > total:
        raise ctx.error("workload.cores", f"{spec.cores} cores but model "
                        f"{model.platform.name} has {total}")
    need = spec.mktme_keys + (1 if spec.no_encrypt_fraction > 0 else 0)
    encrypted = spec.mktme_fraction > 0 or spec.no_encrypt_fraction > 0
    available = model.mktme.max_keys if model.mktme.enabled else 0
    if encrypted and need > available:
        raise ctx.error("workload.mktme_keys", f"the workload needs {need} KeyIDs but model "
                        f"{model.platform.name} has {available}")
    if spec.kind != "synthetic":
        return
    cpus = workload_cpus(types.SimpleNamespace(model=model), spec)
    amap = AddressMap(model)
    homes: dict[int, int] = {}
    for cpu in cpus:
        home = amap.nearest_home(cpu // topo.cores_per_package)  # as synthetic.py places it
        if spec.placement == "remote":
            home = amap.nearest_home((home + 1) % topo.packages)
        homes[home] = 1 if spec.sharing == "shared" else homes.get(home, 0) + 1
    size = -(-spec.working_set_kib * 1024 // PAGE) * PAGE
    pkg_bytes = model.package_bytes
    if max(homes.values()) * size + (256 << 20) > pkg_bytes:
        raise ctx.error("workload.working_set_kib", f"{spec.working_set_kib} KiB per core does "
                        f"not fit in one package's memory ({pkg_bytes >> 30} GiB)")


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Validate a point's ``[base]`` (already built with :class:`WorkloadBase`)."""
    if base.get("policy") is not None:
        raise ctx.error("policy", "reserved for kernel policies; the workload driver runs no "
                        "policy, so leave it unset")
    model = build_model(base["model"], base["model_overrides"], ctx)
    spec = build(WorkloadSpec, base["workload"], ctx.child("workload"))
    check_fits(model, spec, ctx)
    return {
        "model": base["model"],
        "model_overrides": base["model_overrides"],
        "workload": resolved(spec),
        "policy": None,
        "model_resolved": resolved(model),
    }


def param_value(config: dict[str, Any], name: str) -> Any:
    """A parameter column's value for a point that does not assign it: model overrides are
    read from the resolved model."""
    if name.startswith("model_overrides."):
        return dotted.lookup(config["model_resolved"], name.split(".", 1)[1])
    return dotted.lookup(config, name)


def metrics_for(config: dict[str, Any]) -> list[str]:
    levels = [c["name"] for c in config["model_resolved"]["cache"]]
    fixed = [m for m in METRICS if "<" not in m]
    return fixed + [f"hit_rate_{name}" for name in levels]


def _hist(stat: LatencyStat) -> dict[str, list]:
    values, counts = stat.samples_ns()
    return {"values_ns": values, "counts": counts}


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


@register("workload", metrics=METRICS, series=SERIES, base=WorkloadBase, resolve=resolve,
          metrics_for=metrics_for, param_value=param_value, warmup=True)
def workload(config: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the point's workload on its model with ``seed``; flat metrics and histograms."""
    from mktme_des.simulate import run_workload

    model = model_from_dict(config["model_resolved"], f"model {config['model']}")
    spec = build(WorkloadSpec, config["workload"], Context("<point>", "workload"))
    if config.get("warmup") and not spec.warmup:
        spec = dataclasses.replace(spec, warmup=config["warmup"])
    stats, plat = run_workload(model, spec, seed)
    reads, writes = LatencyStat(), LatencyStat()
    for core in plat.cores:
        reads.merge(core.read_lat)
        writes.merge(core.write_lat)
    rd, wr = reads.to_dict(), writes.to_dict()
    mcs = list(stats["memory_controllers"].values())
    aes = [mc["aes_engine"] for mc in mcs]
    dram = [mc["dram"] for mc in mcs]
    aes_jobs = sum(a["jobs"] for a in aes)
    dram_jobs = sum(d["jobs"] for d in dram)
    out: dict[str, Any] = {
        "time_ns": stats["time_ns"],
        "accesses": stats["accesses"],
        "reads": rd["count"],
        "writes": wr["count"],
        "read_latency_mean_ns": _num(rd.get("mean_ns")),
        "read_latency_p50_ns": _num(rd.get("p50_ns")),
        "read_latency_p90_ns": _num(rd.get("p90_ns")),
        "read_latency_p99_ns": _num(rd.get("p99_ns")),
        "read_latency_p999_ns": _num(rd.get("p99.9_ns")),
        "read_latency_max_ns": _num(rd.get("max_ns")),
        "write_latency_mean_ns": _num(wr.get("mean_ns")),
        "write_latency_p99_ns": _num(wr.get("p99_ns")),
    }
    for name, level in stats["levels"].items():
        out[f"hit_rate_{name}"] = level["hit_rate"]
    aes_busy = sum(a["busy_ns"] for a in aes)
    out.update({
        "dram_reads": sum(mc["reads"] for mc in mcs),
        "dram_writes": sum(mc["writes"] for mc in mcs),
        "writebacks": stats["writebacks"],
        "aes_jobs": aes_jobs,
        "aes_busy_ns": aes_busy,
        "aes_service_mean_ns": aes_busy / aes_jobs if aes_jobs else 0.0,
        "aes_queue_mean_ns": (sum(a["queue_delay_total_ns"] for a in aes) / aes_jobs
                              if aes_jobs else 0.0),
        "aes_queue_max_ns": max((a["queue_delay_max_ns"] for a in aes), default=0.0),
        "aes_utilisation_max": max((a["utilisation"] for a in aes), default=0.0),
        "dram_busy_ns": sum(d["busy_ns"] for d in dram),
        "dram_queue_mean_ns": (sum(d["queue_delay_total_ns"] for d in dram) / dram_jobs
                               if dram_jobs else 0.0),
    })
    counts = stats.get("oracle", {}).get("counts", {})
    out["oracle_checked"] = counts.get("checked", 0)
    out["oracle_violations"] = counts.get("violations", 0)
    return out, {"read_latency_hist": _hist(reads), "write_latency_hist": _hist(writes)}
