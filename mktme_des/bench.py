"""``mktme-des bench``: the simulator's own speed, as ratios measured in one run.

Absolute seconds mean little on a shared machine, so each workload's simulated memory
accesses per second is reported next to bare SimPy timeouts per second measured in the same
process, moments before, and their ratio. A ratio of 1 would mean one simulated access costs
as much as one bare SimPy event.
"""

from __future__ import annotations

import time

import simpy

from mktme_des.config.model import load_model
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from mktme_des.simulate import workload_from
from mktme_des.workloads.synthetic import start

MODEL = "server-2s"
WORKLOADS = {
    # (a) a loop over an L1-resident buffer: almost every access hits L1.
    "hits": {"pattern": "sequential", "working_set_kib": 16, "read_fraction": 0.7,
             "accesses": 300_000},
    # (b) uniform random over 256 MiB, all pages under an MKTME key: nearly all go to DRAM.
    "dram": {"pattern": "random", "working_set_kib": 262_144, "read_fraction": 0.7,
             "accesses": 60_000, "mktme_fraction": 1.0},
    # (c) the shipped valgrind lackey trace.
    "trace": {"kind": "lackey", "accesses": 458_536},
    # Multi-core variants: cores interleave in time, so lookahead windows are shorter.
    "hits_4cores": {"pattern": "sequential", "working_set_kib": 16, "read_fraction": 0.7,
                    "accesses": 75_000, "cores": 4},
    "dram_4cores": {"pattern": "random", "working_set_kib": 262_144, "read_fraction": 0.7,
                    "accesses": 15_000, "cores": 4},
}


def simpy_timeouts_per_s(n: int = 300_000) -> float:
    """Bare SimPy: one process yielding ``n`` timeouts."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1)

    env.process(proc())
    t = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t)


def accesses_per_s(workload: dict, seed: int = 1) -> tuple[float, int]:
    """Run one workload (oracle on, as by default) and time the simulation proper."""
    plat = Platform(load_model(MODEL), seed=seed, oracle=Oracle())
    start(plat, workload_from(workload, "bench"))
    t = time.perf_counter()
    plat.run()
    wall = time.perf_counter() - t
    n = sum(sum(c.served.values()) for c in plat.cores)
    return n / wall, n


def bench(quick: bool = False) -> dict:
    scale = 0.2 if quick else 1.0
    import mktme_des

    out: dict = {"model": MODEL, "compiled": mktme_des.compiled(), "workloads": {}}
    for name, wl in WORKLOADS.items():
        wl = dict(wl, accesses=max(1000, int(wl["accesses"] * scale)))
        base = max(simpy_timeouts_per_s(int(300_000 * scale)) for _ in range(2))
        rate, n = accesses_per_s(wl)
        out["workloads"][name] = {"accesses": n, "accesses_per_s": rate,
                                  "simpy_timeouts_per_s": base, "ratio": rate / base}
    out["simpy_timeouts_per_s"] = out["workloads"]["hits"]["simpy_timeouts_per_s"]
    return out


def bench_text(result: dict) -> str:
    hot = "compiled" if result["compiled"] else "Python source (MKTME_DES_PURE)"
    lines = [f"model {result['model']}; hot path {hot}; bare SimPy measured before each workload",
             f"{'workload':<13} {'accesses':>9} {'accesses/s':>12} {'SimPy timeouts/s':>17} {'ratio':>6}"]
    for name, w in result["workloads"].items():
        lines.append(f"{name:<13} {w['accesses']:>9} {w['accesses_per_s']:>12.0f} "
                     f"{w['simpy_timeouts_per_s']:>17.0f} {w['ratio']:>6.2f}")
    return "\n".join(lines)
