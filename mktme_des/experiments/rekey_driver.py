"""The ``rekey`` driver (experiment E4): flushing a region before it changes KeyID.

cpu 0 first writes every line of a ``region_kib`` region through KeyID 1 (so it is dirty in the
caches, as far as they hold it), then flushes it the way software would before giving the
region another KeyID:

* ``clflush``: one CLFLUSH per line, each waiting for its writeback;
* ``clflushopt``: one CLFLUSHOPT per line, then one SFENCE;
* ``wbinvd``: one WBINVD on the package, which walks its whole cache capacity whatever the
  region's size;
* ``wbinvd-all``: WBINVD on every package, as the kernel must (a dirty line of the region may
  sit in any package's caches): cpu 0 runs it on its own and sends IPIs to a CPU of each other
  package (``MM.wbinvd_all``); the flush ends when the last package's has.

Reported: the time the flush took and the lines it wrote back. CLFLUSH cost grows with the
region, WBINVD's with the cache: the crossover is where the curves meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.model import model_from_dict
from mktme_des.config.schema import Context, param
from mktme_des.engine.time import to_ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.hw import ops as O

METRICS = {
    "region_kib": "region size [KiB]",
    "lines": "lines in the region",
    "flush_ns": "time the flush took, from its first instruction to completion [ns]",
    "flush_ns_per_line": "flush time per line of the region [ns]",
    "written_back": "dirty lines the flush wrote back",
    "cpu_ns": "CPU time the flush took on every CPU that ran part of it [ns]",
}


@dataclass(frozen=True, kw_only=True)
class RekeyBase(pb.PlatformBase):
    region_kib: int = param(64, doc="region to re-key", unit="KiB", min=4, max=1 << 22)
    method: str = param("clflush", doc="how to flush", choices=("clflush", "clflushopt", "wbinvd", "wbinvd-all"))


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    out = pb.resolve_platform(base, ctx)
    pkg_bytes = model_from_dict(out["model_resolved"]).package_bytes
    if base["region_kib"] * 1024 + (256 << 20) > pkg_bytes:
        raise ctx.error("region_kib", "the region does not fit in package 0's memory")
    return out


@register("rekey", metrics=METRICS, base=RekeyBase, resolve=resolve, param_value=pb.param_value)
def rekey(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed, oracle=False)
    plat.program(1, "key")
    base = 256 << 20
    lines = config["region_kib"] * 1024 // 64
    core = plat.cores[0]
    out: dict[str, Any] = {"region_kib": config["region_kib"], "lines": lines}

    def body():
        fill = ((O.WRITE, 1, base + i * 64, b"\x5a" * 8, None) for i in range(lines))
        yield from core.run(fill, [])
        before = plat.writebacks
        t = plat.env.now
        method = config["method"]
        if method == "wbinvd-all":
            yield from kernel.mm.wbinvd_all(0)
            flush = []
        elif method == "wbinvd":
            flush = [(O.WBINVD, 0, 0, None, None)]
        else:
            code = O.CLFLUSH if method == "clflush" else O.CLFLUSHOPT
            flush = [(code, 1, base + i * 64, None, None) for i in range(lines)]
            if method == "clflushopt":
                flush.append((O.SFENCE, 0, 0, None, None))
        yield from core.run(flush, [])
        out["flush_ns"] = to_ns(plat.env.now - t)
        out["flush_ns_per_line"] = out["flush_ns"] / lines
        out["cpu_ns"] = out["flush_ns"] + to_ns(sum(kernel.irq_owed))
        out["written_back"] = plat.writebacks - before

    pb.run_process(plat, body())
    return out
