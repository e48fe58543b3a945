"""The ``loadgen`` driver (experiment E7): memory latency against offered load.

An open-loop generator offers line requests to package 0's memory controller as a Poisson
process of ``rate_lines_per_ns`` (uniformly random lines over 1 GiB, a ``write_fraction`` of
them writes), through an MKTME KeyID (``encrypted = true``) or a NO_ENCRYPT one. Each request
is timed from its arrival at the controller to the end of its DRAM access and AES-XTS pass,
queueing included. As the offered load nears what the AES engine or the DRAM channel can
serve, latency grows without bound: the knee shows which saturates first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.schema import param
from mktme_des.engine.stats import LatencyStat
from mktme_des.engine.time import ns, to_ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register

METRICS = {
    "offered_lines_per_ns": "offered load [lines/ns]",
    "served_lines_per_ns": "completed requests / time to complete them all [lines/ns]",
    "latency_mean_ns": "mean controller latency, queueing included [ns]",
    "latency_p50_ns": "median controller latency [ns]",
    "latency_p99_ns": "99th percentile controller latency [ns]",
    "aes_utilisation": "AES engine busy time / elapsed",
    "aes_queue_mean_ns": "mean wait for the AES engine [ns]",
    "dram_queue_mean_ns": "mean wait for a DRAM bank or the channel [ns]",
}
SPAN = 1 << 30


@dataclass(frozen=True, kw_only=True)
class LoadBase(pb.PlatformBase):
    rate_lines_per_ns: float = param(0.5, doc="offered load", unit="lines/ns", min=1e-6,
                                     max=1000.0)
    requests: int = param(20000, doc="requests to offer", min=10)
    write_fraction: float = param(0.3, doc="share of requests that are writes", min=0.0, max=1.0)
    encrypted: bool = param(True, doc="through an MKTME KeyID (else a NO_ENCRYPT one)")


@register("loadgen", metrics=METRICS, base=LoadBase, resolve=pb.resolve_platform, param_value=pb.param_value)
def loadgen(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, _kernel = pb.build_platform(config, seed, oracle=False)
    plat.program(1, "key" if config["encrypted"] else "no-encrypt")
    mc = plat.packages[0].mc
    rng = plat.streams.get("loadgen")
    n = config["requests"]
    gaps = rng.exponential(1.0 / config["rate_lines_per_ns"], n)
    lines = rng.integers(0, SPAN // 64, n) * 64 + (256 << 20)
    writes = rng.random(n) < config["write_fraction"]
    lat = LatencyStat()
    data = bytes(64)
    env = plat.env
    finish = {"last": 0}

    def generator():
        for gap, pa, w in zip(gaps.tolist(), lines.tolist(), writes.tolist(), strict=True):
            yield env.timeout(ns(gap))
            tag = plat.amap.tag(1, pa)
            done = mc.write(env.now, tag, data, "loadgen") if w else mc.read(env.now, tag)[1]
            lat.record(done - env.now)
            finish["last"] = max(finish["last"], done)

    pb.run_process(plat, generator())
    elapsed = finish["last"]
    d = lat.to_dict()
    st = mc.stats(elapsed)
    return {
        "offered_lines_per_ns": config["rate_lines_per_ns"],
        "served_lines_per_ns": n / to_ns(elapsed),
        "latency_mean_ns": d["mean_ns"],
        "latency_p50_ns": d["p50_ns"],
        "latency_p99_ns": d["p99_ns"],
        "aes_utilisation": st["aes_engine"]["utilisation"],
        "aes_queue_mean_ns": st["aes_engine"]["queue_delay_mean_ns"],
        "dram_queue_mean_ns": st["dram"]["queue_delay_mean_ns"],
    }
