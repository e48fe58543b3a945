"""The ``churn`` driver: a page-churn workload through the kernel model.

``processes`` user processes (on cpus 0, 1, ...) each run ``iterations`` rounds of: mmap
``pages`` pages; if ``encrypted``, ``encrypt_mprotect`` them with one CPU-generated key shared
by all processes; touch every page (a page fault: allocation, the policy's flushes, zeroing
through the page's KeyID; then ``touches`` stores to it) with ``compute_ns_per_page`` of work
per page; munmap (every page freed, flushed per policy). This is the shape of a kernel build:
many short-lived processes allocating and freeing anonymous memory. What the MKTME page
protocol costs is the difference between ``encrypted`` true and false. Under a policy with
``direct_map_isolation`` (``kernel/directmap.py``) each allocation also pays that work, and a
CPU's work per page is delayed by the IPIs it handled meanwhile (TLB shootdowns, WBINVDs run
for another CPU's ``page_flush = "wbinvd"``). With ``huge``, the mappings use 2 MiB pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.schema import Context, param
from mktme_des.engine.time import ns, to_ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.hw import ops as O

METRICS = {
    "time_ns": "simulated time until the last process finished [ns]",
    "pages": "pages allocated (faults)",
    "page_flushes": "full-page clflush passes of the MKTME protocol",
    "clflushes": "CLFLUSH instructions executed",
    "time_per_page_ns": "time / pages per process [ns]",
    "oracle_violations": "reads the oracle found corrupted",
    "shootdown_ipis": "TLB-shootdown IPIs sent (direct_map_isolation = xpfo)",
    "pages_per_s": "pages allocated per second of simulated time, all CPUs together",
    "wbinvd_all": "WBINVDs run on every package by the page protocol (page_flush = wbinvd)",
}


@dataclass(frozen=True, kw_only=True)
class ChurnBase(pb.PlatformBase):
    processes: int = param(2, doc="processes, one per cpu; 0: one on every cpu of the model",
                           min=0, max=256)
    iterations: int = param(4, doc="mmap/touch/munmap rounds per process", min=1)
    pages: int = param(16, doc="pages mapped per round", min=1, max=4096)
    touches: int = param(4, doc="stores per page after it is faulted in", min=0, max=64)
    compute_ns_per_page: float = param(25000.0, doc="work per page besides memory management",
                                       unit="ns", min=0.0)
    encrypted: bool = param(True, doc="encrypt_mprotect the mappings with an MKTME key")
    huge: bool = param(False, doc="map with 2 MiB pages (pages must then be a multiple of 512)")


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    out = pb.resolve_platform(base, ctx)
    topo = out["model_resolved"]["topology"]
    cpus = topo["packages"] * topo["cores_per_package"]
    if base["processes"] > cpus:
        raise ctx.error("processes", "more processes than cpus in the model")
    if base["huge"] and base["pages"] % 512:
        raise ctx.error("pages", "with huge = true, pages must be a multiple of 512 (2 MiB)")
    if not base["processes"]:
        out["processes"] = cpus
    return out


def run_churn(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed)
    mm, keys, env = kernel.mm, kernel.keys, plat.env
    length = config["pages"] * 4096
    state = {"serial": None, "ready": env.event()}
    counts = {"pages": 0}

    def process(cpu: int):
        proc = mm.spawn(cpu)
        if config["encrypted"]:
            if cpu == 0:
                state["serial"] = yield from keys.add_key(0, "churn", "type=cpu algorithm=aes-xts-128")
                state["ready"].succeed()
            yield state["ready"]
        for _ in range(config["iterations"]):
            addr = yield from mm.mmap(proc, length, huge=config.get("huge", False))
            if config["encrypted"]:
                yield from mm.encrypt_mprotect(proc, addr, length, 3, state["serial"])
            for p in range(config["pages"]):
                va = addr + p * 4096
                yield from mm.fault(proc, va)
                counts["pages"] += 1
                keyid, pa = mm.translate(proc, va)
                ops = [(O.WRITE, keyid, pa + (i % 64) * 64, b"\x01" * 8, None)
                       for i in range(config["touches"])]
                # Work per page, later by the shootdown IPIs this CPU handled meanwhile.
                ops.append((O.COMPUTE, 0, 0,
                            ns(config["compute_ns_per_page"]) + kernel.owed(cpu), None))
                yield from plat.cores[cpu].run(ops, [])
            yield from mm.munmap(proc, addr, length)

    procs = [env.process(process(cpu)) for cpu in range(config["processes"])]
    pb.run_process(plat, _wait_all(env, procs))
    clflushes = sum(c.op_counts.get("clflush", 0) for c in plat.cores)
    return {
        "time_ns": to_ns(env.now),
        "pages": counts["pages"],
        "page_flushes": mm.counts.get("page_flushes", 0),
        "clflushes": clflushes,
        "time_per_page_ns": to_ns(env.now) * config["processes"] / max(1, counts["pages"]),
        "oracle_violations": len(plat.oracle.violations),
        "shootdown_ipis": kernel.dmap.counts.get("shootdown_ipis", 0),
        "wbinvd_all": mm.counts.get("wbinvd_all", 0),
        "pages_per_s": counts["pages"] / (to_ns(env.now) * 1e-9) if env.now else 0.0,
    }


def _wait_all(env, procs):
    yield env.all_of(procs)


@register("churn", metrics=METRICS, base=ChurnBase, resolve=resolve, param_value=pb.param_value)
def churn(config: dict[str, Any], seed: int) -> dict[str, Any]:
    return run_churn(config, seed)
