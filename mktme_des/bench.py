"""``mktme-des bench``: the simulator's own speed, as ratios measured in one run.

Absolute seconds mean little on a shared machine, so each workload's simulated memory
accesses per second is reported against bare SimPy timeouts per second measured in the same
process, just before it, both in CPU time (``time.process_time``: time the process was
scheduled, not time it waited for the machine). Rounds are interleaved (every workload once
per round, each after its own baseline) and the ratio reported is the median over the rounds,
with its minimum and maximum beside. A ratio of 1 would mean one simulated access costs as
much as one bare SimPy event.
"""

from __future__ import annotations

import time
from statistics import median

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
    # One socket's worth of cores, as E9 and E10 run (``accesses`` is per core).
    "hits_16cores": {"pattern": "sequential", "working_set_kib": 16, "read_fraction": 0.7,
                     "accesses": 20_000, "cores": 16},
    "dram_16cores": {"pattern": "random", "working_set_kib": 262_144, "read_fraction": 0.7,
                     "accesses": 4_000, "cores": 16},
}
ROUNDS = 5


def simpy_timeouts_per_s(n: int = 300_000) -> float:
    """Bare SimPy: one process yielding ``n`` timeouts, per second of CPU time."""
    env = simpy.Environment()

    def proc():
        for _ in range(n):
            yield env.timeout(1)

    env.process(proc())
    t = time.process_time()
    env.run()
    return n / max(time.process_time() - t, 1e-9)


def accesses_per_s(workload: dict, seed: int = 1) -> tuple[float, int]:
    """Run one workload (oracle on, as by default); simulated accesses per second of CPU time
    spent in the simulation proper, and how many there were."""
    plat = Platform(load_model(MODEL), seed=seed, oracle=Oracle())
    start(plat, workload_from(workload, "bench"))
    t = time.process_time()
    plat.run()
    cpu = max(time.process_time() - t, 1e-9)
    n = sum(sum(c.served.values()) for c in plat.cores)
    return n / cpu, n


def bench(quick: bool = False, rounds: int | None = None) -> dict:
    """Every workload ``rounds`` times, interleaved; medians (and extremes) of the ratios."""
    scale = 0.2 if quick else 1.0
    rounds = rounds or (2 if quick else ROUNDS)
    import mktme_des

    seen: dict[str, dict[str, list]] = {name: {"rate": [], "base": [], "ratio": []}
                                        for name in WORKLOADS}
    counts: dict[str, int] = {}
    for _ in range(rounds):
        for name, wl in WORKLOADS.items():
            wl = dict(wl, accesses=max(1000 // wl.get("cores", 1), int(wl["accesses"] * scale)))
            base = simpy_timeouts_per_s(int(300_000 * scale))
            rate, counts[name] = accesses_per_s(wl)
            for key, value in (("rate", rate), ("base", base), ("ratio", rate / base)):
                seen[name][key].append(value)
    out: dict = {"model": MODEL, "compiled": mktme_des.compiled(), "rounds": rounds,
                 "clock": "cpu", "workloads": {}}
    for name, s in seen.items():
        out["workloads"][name] = {
            "accesses": counts[name], "accesses_per_s": median(s["rate"]),
            "simpy_timeouts_per_s": median(s["base"]), "ratio": median(s["ratio"]),
            "ratio_min": min(s["ratio"]), "ratio_max": max(s["ratio"])}
    out["simpy_timeouts_per_s"] = out["workloads"]["hits"]["simpy_timeouts_per_s"]
    return out


def bench_text(result: dict) -> str:
    hot = "compiled" if result["compiled"] else "Python source (MKTME_DES_PURE)"
    lines = [f"model {result['model']}; hot path {hot}; CPU time; bare SimPy measured before "
             f"each workload; median of {result['rounds']} interleaved rounds",
             f"{'workload':<13} {'accesses':>9} {'accesses/s':>12} {'SimPy timeouts/s':>17} "
             f"{'ratio':>6} {'min':>6} {'max':>6}"]
    for name, w in result["workloads"].items():
        lines.append(f"{name:<13} {w['accesses']:>9} {w['accesses_per_s']:>12.0f} "
                     f"{w['simpy_timeouts_per_s']:>17.0f} {w['ratio']:>6.2f} "
                     f"{w['ratio_min']:>6.2f} {w['ratio_max']:>6.2f}")
    return "\n".join(lines)
