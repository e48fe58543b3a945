"""The ``race`` driver (experiment E6): how often S2 or S4 corrupts data, against timing.

Each point runs ``trials`` independent trials, each on a fresh platform with its own random
timing drawn from the point's seed and the trial number. The time until the cache evicts the
stale dirty line is exponential with mean ``evict_mean_ns``; everything else is fixed.

* ``race = "s4"``: a tenant's dirty line of KeyID K sits in the cache while the administrator
  updates K's key at ``change_at_ns``. Corruption: the line is evicted, and reaches memory
  under the old key, before the new key is in place, and the tenant later reads garbage.
  RFC v2 refuses the update (EBUSY); ``unsafe-reprogram-in-use`` allows it.
* ``race = "s2"``: a tenant frees an encrypted page that still has a dirty line; a second
  process gets the frame (KeyID 0, no flush on allocation), writes and flushes its data at
  ``change_at_ns``. Corruption: the stale line is evicted after that and overwrites it. RFC v2
  flushes on free; ``unsafe-no-flush-on-free`` does not.

A trial counts as corrupted when the victim's read returns wrong bytes; the oracle's verdict is
reported too (they agree: a test holds them to it). The probability comes with a 95% Wilson
interval.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mktme_des.config.schema import param
from mktme_des.engine.time import ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.hw import ops as O
from mktme_des.kernel.errno import Errno

METRICS = {
    "trials": "trials run",
    "corrupted": "trials whose victim read wrong data",
    "oracle_flagged": "trials in which the oracle reported a violation",
    "p_corrupt": "corrupted / trials",
    "p_low": "95% Wilson interval, lower bound",
    "p_high": "95% Wilson interval, upper bound",
}
DATA = b"victim data. " * 5


@dataclass(frozen=True, kw_only=True)
class RaceBase(pb.PlatformBase):
    race: str = param("s4", doc="which race", choices=("s2", "s4"))
    trials: int = param(40, doc="independent trials", min=1, max=100000)
    evict_mean_ns: float = param(2000.0, doc="mean time until the stale line is evicted",
                                 unit="ns", min=0.0, min_exclusive=True)
    change_at_ns: float = param(2000.0, doc="s4: when the key update starts; s2: when the "
                                "frame's new owner flushes its data, after the free", unit="ns",
                                min=0.0)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _trial_s4(config: dict[str, Any], seed: int, delay: int) -> tuple[bool, bool]:
    plat, kernel = pb.build_platform(config, seed)
    mm, keys, env = kernel.mm, kernel.keys, plat.env
    result = {}

    def tenant():
        proc = mm.spawn(0)
        serial = yield from keys.add_key(0, "tenant", "type=cpu algorithm=aes-xts-128")
        addr, keyid, pa = yield from pb.tenant_page(mm, plat.cores[0], proc, serial, DATA[:64],
                                                    flush=False)
        t0 = env.now
        env.process(admin(serial, t0))
        plat.later(t0 + delay, plat.evict, t0 + delay, plat.amap.tag(keyid, pa))
        yield env.timeout(delay + ns(config["change_at_ns"]) + ns(20000))
        log: list = []
        yield from plat.cores[0].run([(O.READ, keyid, pa, 64, None)], log)
        result["data"] = log[0][5]

    def admin(serial: int, t0: int):
        yield env.timeout(ns(config["change_at_ns"]))
        with contextlib.suppress(Errno):
            yield from keys.update_key(1, serial, "type=cpu algorithm=aes-xts-128")

    pb.run_process(plat, tenant())
    return result["data"] != DATA[:64], bool(plat.oracle.violations)


def _trial_s2(config: dict[str, Any], seed: int, delay: int) -> tuple[bool, bool]:
    plat, kernel = pb.build_platform(config, seed)
    mm, keys, env = kernel.mm, kernel.keys, plat.env
    result = {}

    def run():
        tenant, other = mm.spawn(0), mm.spawn(0)
        serial = yield from keys.add_key(0, "tenant", "type=cpu algorithm=aes-xts-128")
        core = plat.cores[0]
        addr, keyid, pa = yield from pb.tenant_page(mm, core, tenant, serial,
                                                    b"old tenant data " * 4, flush=False)
        stale = plat.amap.tag(keyid, pa)
        yield from mm.munmap(tenant, addr, 4096)  # flushed on free, or not, per policy
        t0 = env.now
        plat.later(t0 + delay, plat.evict, t0 + delay, stale)
        va = yield from mm.mmap(other, 4096)
        yield from mm.fault(other, va)  # LIFO free list: the same frame, KeyID 0
        k2, pa2 = mm.translate(other, va)
        yield from core.run([(O.WRITE, k2, pa2, DATA[:64], None)], [])
        yield env.timeout(max(0, t0 + ns(config["change_at_ns"]) - env.now))
        yield from core.run([(O.CLFLUSH, k2, pa2, None, None)], [])
        yield env.timeout(delay + ns(20000))
        yield from core.run([(O.CLFLUSH, k2, pa2, None, None)], [])
        log: list = []
        yield from core.run([(O.READ, k2, pa2, 64, None)], log)
        result["data"] = log[0][5]

    pb.run_process(plat, run())
    return result["data"] != DATA[:64], bool(plat.oracle.violations)


@register("race", metrics=METRICS, base=RaceBase, resolve=pb.resolve_platform, param_value=pb.param_value)
def race(config: dict[str, Any], seed: int) -> dict[str, Any]:
    trial = _trial_s4 if config["race"] == "s4" else _trial_s2
    corrupted = flagged = 0
    for i in range(config["trials"]):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i])))
        delay = max(1, ns(rng.exponential(config["evict_mean_ns"])))
        bad, seen = trial(config, int(rng.integers(2**62)), delay)
        corrupted += bad
        flagged += seen
    n = config["trials"]
    lo, hi = wilson(corrupted, n)
    return {"trials": n, "corrupted": corrupted, "oracle_flagged": flagged,
            "p_corrupt": corrupted / n, "p_low": lo, "p_high": hi}
