"""The ``slots`` driver (experiment E5): KeyID slot pressure.

Tenants arrive as a Poisson process (``arrival_per_us``) for ``duration_us``; each adds its own
CPU-type key, keeps it for an exponentially distributed ``lifetime_us`` and then releases it
with ``keyctl invalidate`` (the KeyID is free at once) or ``keyctl revoke`` (the KeyID stays
held until the keyring garbage collector destroys the key, the policy's ``key_gc_delay_s``
later). The offered load in keys is ``arrival_per_us * lifetime_us``; the hardware has the
model's KeyIDs. With ``on_exhaustion = "fail"`` (RFC v2) an add finds no free KeyID and fails
with ENOKEY; with ``"wait"`` it sleeps until one is freed. With ``customers > 0`` the tenants belong to
that many customers sharing one key each (Hansen's "5 Pepsi VMs and 5 Coke VMs"): a tenant
uses its customer's key while any of the customer's tenants is alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des import limits
from mktme_des.config.schema import Context, param
from mktme_des.engine.time import ns, to_ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.kernel.errno import Errno

METRICS = {
    "keyids": "KeyIDs the hardware offers",
    "offered_keys": "arrival rate x lifetime: mean keys wanted at once",
    "tenants": "tenants that arrived",
    "failures": "adds that failed with ENOKEY",
    "failure_rate": "failures / tenants",
    "wait_mean_ns": "mean add_key latency of the successful adds [ns]",
    "wait_max_ns": "largest add_key latency [ns]",
    "keyids_max_in_use": "most KeyIDs in use at once",
    "gc_delay_ratio": "the policy's key_gc_delay_s / the mean tenant lifetime",
}


@dataclass(frozen=True, kw_only=True)
class SlotsBase(pb.PlatformBase):
    arrival_per_us: float = param(0.5, doc="tenant arrival rate", unit="1/us", min=1e-6,
                                  max=1000.0)
    lifetime_us: float = param(20.0, doc="mean tenant lifetime", unit="us", min=0.0,
                               min_exclusive=True)
    duration_us: float = param(400.0, doc="how long tenants arrive", unit="us", min=1.0)
    customers: int = param(0, doc="0: a key per tenant; N: tenants share N customer keys",
                           min=0)
    release: str = param("invalidate", doc="how a key is given up: invalidate (its KeyID is "
                         "free at once) or revoke (held until garbage collection)",
                         choices=("invalidate", "revoke"))

    def check(self, ctx: Context) -> None:
        """The tenants expected, ``arrival_per_us x duration_us``, are at most
        :data:`~mktme_des.limits.MAX_TENANTS`: each may be alive (waiting for a KeyID) at
        once, at :data:`~mktme_des.limits.BYTES_PER_TENANT` each."""
        tenants = self.arrival_per_us * self.duration_us
        if tenants > limits.MAX_TENANTS:
            raise ctx.error("duration_us", f"{self.duration_us:g} us at arrival_per_us = "
                            f"{self.arrival_per_us:g} brings {tenants:.3g} tenants on average, "
                            f"more than the {limits.MAX_TENANTS} that fit the memory budget "
                            f"({limits.MEMORY_BUDGET_BYTES >> 30} GiB at "
                            f"{limits.BYTES_PER_TENANT} bytes a tenant, mktme_des/limits.py); "
                            "lower duration_us or arrival_per_us")


@register("slots", metrics=METRICS, base=SlotsBase, resolve=pb.resolve_platform, param_value=pb.param_value)
def slots(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed, oracle=False)
    env = plat.env
    rng = plat.streams.get("slots/arrivals")
    keys = kernel.keys
    ncpu = len(plat.cores)
    waits: list[int] = []
    stats = {"tenants": 0, "failures": 0, "max_in_use": 0}
    shared: dict[str, dict] = {}  # key description -> {"count", "ready" event}

    def tenant(i: int):
        desc = f"customer-{i % config['customers']}" if config["customers"] else f"tenant-{i}"
        cpu = i % ncpu
        t = env.now
        entry = shared.get(desc)
        if entry is None:  # the first tenant of this key adds it; others wait for it
            entry = shared[desc] = {"count": 0, "ready": env.event()}
            try:
                yield from keys.add_key(cpu, desc, "type=cpu algorithm=aes-xts-128")
                entry["ready"].succeed(True)
            except Errno:
                del shared[desc]
                entry["ready"].succeed(False)
        ok = yield entry["ready"]
        if not ok:
            stats["failures"] += 1
            return
        entry["count"] += 1
        waits.append(env.now - t)
        stats["max_in_use"] = max(stats["max_in_use"], len(keys.in_use()))
        yield env.timeout(ns(rng.exponential(config["lifetime_us"]) * 1000))
        entry["count"] -= 1
        if entry["count"] == 0:
            del shared[desc]
            release = keys.revoke if config["release"] == "revoke" else keys.invalidate
            yield from release(cpu, keys.by_desc[desc])

    def arrivals():
        end = ns(config["duration_us"] * 1000)
        i = 0
        while True:
            yield env.timeout(ns(rng.exponential(1.0 / config["arrival_per_us"]) * 1000))
            if env.now >= end:
                return
            stats["tenants"] += 1
            env.process(tenant(i))
            i += 1

    pb.run_process(plat, arrivals())
    n = stats["tenants"]
    return {
        "keyids": min(plat.amap.max_keyid, plat.model.mktme.max_keys),
        "offered_keys": config["arrival_per_us"] * config["lifetime_us"],
        "tenants": n,
        "failures": stats["failures"],
        "failure_rate": stats["failures"] / n if n else 0.0,
        "wait_mean_ns": to_ns(sum(waits)) / len(waits) if waits else None,
        "wait_max_ns": to_ns(max(waits)) if waits else None,
        "keyids_max_in_use": stats["max_in_use"],
        "gc_delay_ratio": kernel.policy.key_gc_delay_s * 1e6 / config["lifetime_us"],
    }
