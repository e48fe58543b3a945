"""The ``pins`` driver (experiment E12): pinned pages that outlive their VMA, under key churn.

Hansen (Dec 5): "get_user_pages() is our mortal enemy". A direct I/O pins a tenant's page; the
tenant unmaps the buffer and gives its key up (``keyctl invalidate``) before the I/O completes,
as a process killed in the middle of an I/O does. RFC v2 counts KeyID references from the key
and from VMAs only, so the KeyID is free at once although the pinned page still holds data
under it; the 2019 per-page references (``refcount_pages``) keep it until the page is freed.

For ``duration_us`` two Poisson streams run on one platform (the model's first package):

* **I/O tenants** (``io_per_us``): each adds its own CPU key, maps a page under it, stores 64
  bytes and flushes them, pins the page, unmaps the buffer and invalidates its key; the device
  reads the pinned page when the I/O completes, an exponential ``pin_mean_us`` later, and the
  pin is dropped (freeing the page).
* **Key churn** (``churn_per_us``): tenants each add a CPU key, keep it for an exponential
  ``lifetime_us`` and invalidate it. Every add takes the first free KeyID and programs it.

An I/O is *corrupted* when the device reads anything but what the tenant stored: its KeyID was
handed to a new key and reprogrammed while the page was pinned. An add that finds every KeyID
held fails with ENOKEY (RFC v2's ``on_exhaustion = "fail"``): the cost of holding KeyIDs for
pinned pages. Probabilities come with 95% Wilson intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.schema import param
from mktme_des.engine.time import ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.experiments.race_driver import wilson
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.mm import PAGE

METRICS = {
    "ios": "direct I/Os whose tenant got a key",
    "corrupted": "I/Os whose device read returned other bytes than the tenant stored",
    "p_corrupt": "corrupted / ios",
    "p_low": "95% Wilson interval, lower bound",
    "p_high": "95% Wilson interval, upper bound",
    "adds": "add_key calls (I/O tenants and churn)",
    "enokey": "add_key calls refused with ENOKEY",
    "p_enokey": "enokey / adds",
}
CPU_KEY = "type=cpu algorithm=aes-xts-128"


@dataclass(frozen=True, kw_only=True)
class PinsBase(pb.PlatformBase):
    model: str = param("client-1s", doc="model name (models/NAME.toml) or path")
    pin_mean_us: float = param(10.0, doc="mean time a direct I/O keeps its page pinned",
                               unit="us", min=0.0, min_exclusive=True)
    churn_per_us: float = param(0.2, doc="arrival rate of tenants adding (and later "
                                "invalidating) a key", unit="1/us", min=0.0)
    lifetime_us: float = param(20.0, doc="mean time a churn tenant keeps its key", unit="us",
                               min=0.0, min_exclusive=True)
    io_per_us: float = param(0.05, doc="arrival rate of direct-I/O tenants", unit="1/us",
                             min=0.0, min_exclusive=True)
    duration_us: float = param(400.0, doc="how long tenants arrive", unit="us", min=1.0)


@register("pins", metrics=METRICS, base=PinsBase, resolve=pb.resolve_platform,
          param_value=pb.param_value)
def pins(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed, oracle=False)
    env, mm, keys = plat.env, kernel.mm, kernel.keys
    rng_io = plat.streams.get("pins/io")
    rng_churn = plat.streams.get("pins/churn")
    cpus = [c.cpu for c in plat.packages[0].cores]
    stats = {"ios": 0, "corrupted": 0, "adds": 0, "enokey": 0}
    end = ns(config["duration_us"] * 1000)

    def add(cpu: int, desc: str):
        stats["adds"] += 1
        try:
            return (yield from keys.add_key(cpu, desc, CPU_KEY))
        except Errno:
            stats["enokey"] += 1
            return None

    def io_tenant(i: int):
        cpu = cpus[i % len(cpus)]
        proc = mm.spawn(cpu)
        serial = yield from add(cpu, f"io-{i}")
        if serial is None:
            return
        data = f"direct I/O buffer {i:08d} ".encode().ljust(64, b".")
        addr, keyid, pa = yield from pb.tenant_page(mm, plat.cores[cpu], proc, serial, data)
        page = yield from mm.pin(proc, addr)
        yield from mm.munmap(proc, addr, PAGE)
        yield from keys.invalidate(cpu, serial)
        yield env.timeout(ns(rng_io.exponential(config["pin_mean_us"]) * 1000))
        entry = yield from mm.device_read(cpu, page, 64)
        stats["ios"] += 1
        stats["corrupted"] += entry[5] != data
        yield from mm.unpin(cpu, page)

    def churn_tenant(i: int):
        cpu = cpus[i % len(cpus)]
        serial = yield from add(cpu, f"churn-{i}")
        if serial is None:
            return
        yield env.timeout(ns(rng_churn.exponential(config["lifetime_us"]) * 1000))
        yield from keys.invalidate(cpu, serial)

    def arrivals(rate: float, rng, body):
        if rate <= 0:
            return
        i = 0
        while True:
            yield env.timeout(ns(rng.exponential(1.0 / rate) * 1000))
            if env.now >= end:
                return
            env.process(body(i))
            i += 1

    env.process(arrivals(config["churn_per_us"], rng_churn, churn_tenant))
    pb.run_process(plat, arrivals(config["io_per_us"], rng_io, io_tenant))
    n = stats["ios"]
    lo, hi = wilson(stats["corrupted"], n)
    return {**stats, "p_corrupt": stats["corrupted"] / n if n else 0.0, "p_low": lo,
            "p_high": hi, "p_enokey": stats["enokey"] / stats["adds"] if stats["adds"] else 0.0}
