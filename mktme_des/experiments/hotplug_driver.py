"""The ``hotplug`` driver (experiment E16): a package that loses its CPUs but keeps its memory,
or a package without memory, under CPU hotplug and key churn.

The model's last package is a NUMA node whose CPUs come and go while its memory stays online.
Each *hotplug cycle* (a Poisson stream, ``hotplug_per_ms``) takes its CPUs offline one by one,
leaves them down for an exponential ``down_us`` and brings them back. While they are down the
package has memory and no CPU:

* ``cpuless_package = "forget"`` (RFC v2, patch 13): the teardown succeeds and the package is
  left out of key broadcasts; a key added meanwhile never reaches it (its memory is encrypted
  under the slot's TME behaviour, readable through KeyID 0); when a CPU returns, every KeyID
  in use is programmed there afresh, a CPU key with a new random key, so what was written
  under the previous one reads as garbage.
* ``"refuse"`` (2019, 37/62 and 38/62): the last CPU cannot go while keys are in use (EBUSY:
  the cycle is cancelled), and add_key fails with EINVAL while the package has no CPU.

When the model gives that package no memory (``gib_per_package = [64, 0]``,
``server-2s-memoryless``), it has CPUs and a key table that every broadcast programs and
that its returning CPUs program afresh (RFC v2) or leave alone (2019), but no address is
homed there (``config/model.py``, MemorySpec): tenants then allocate locally, on package 0,
and the two series differ only in what they refuse.

Tenants arrive as a Poisson stream (``churn_per_ms``) on cpu 0, bound (MPOL_BIND) to that
package's memory when it has some: each adds its own CPU key, maps a page under it, stores 64 bytes and flushes
them, keeps them for an exponential ``lifetime_us``, reads them back, then reads the frame
through KeyID 0 (as the kernel's direct map or another tenant's unprogrammed KeyID could) and
gives the key up. A tenant is *corrupted* when its own read returns other bytes, *exposed* when
the KeyID-0 read returns its plaintext. Shares come with 95% Wilson intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.schema import Context, param
from mktme_des.engine.time import ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.experiments.race_driver import wilson
from mktme_des.hw import ops as O
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.mm import PAGE

METRICS = {
    "tenants": "tenants that arrived",
    "refused": "tenants whose add_key the kernel refused",
    "keyed": "tenants that got a key and stored their data",
    "corrupted": "keyed tenants whose read returned other bytes than they stored",
    "exposed": "keyed tenants whose data read through KeyID 0 as their plaintext",
    "p_corrupt": "corrupted / keyed",
    "p_low": "95% Wilson interval of p_corrupt, lower bound",
    "p_high": "95% Wilson interval of p_corrupt, upper bound",
    "p_exposed": "exposed / keyed",
    "cycles": "hotplug cycles that took the package's CPUs down",
    "cycles_refused": "hotplug cycles cancelled because the last CPU could not go",
    "p_refused": "refused / tenants",
    "p_cycles_refused": "cycles_refused / (cycles + cycles_refused)",
}


@dataclass(frozen=True, kw_only=True)
class HotplugBase(pb.PlatformBase):
    model_overrides: dict[str, Any] = param({"topology": {"cores_per_package": 2}},
                                            doc="model fields merged over the model file")
    hotplug_per_ms: float = param(1.0, doc="hotplug cycles of the last package's CPUs",
                                  unit="1/ms", min=0.0)
    down_us: float = param(200.0, doc="mean time the package's CPUs stay down in a cycle",
                           unit="us", min=0.0, min_exclusive=True)
    churn_per_ms: float = param(2.0, doc="tenant (key) arrival rate", unit="1/ms", min=0.0,
                                min_exclusive=True)
    lifetime_us: float = param(1000.0, doc="mean time a tenant keeps its data", unit="us",
                               min=0.0, min_exclusive=True)
    duration_ms: float = param(20.0, doc="how long tenants and hotplug cycles arrive",
                               unit="ms", min=0.01)


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    out = pb.resolve_platform(base, ctx)
    if out["model_resolved"]["topology"]["packages"] < 2:
        raise ctx.error("model", "needs at least two packages: one keeps a CPU, the last one "
                        "loses its CPUs")
    return out


@register("hotplug", metrics=METRICS, base=HotplugBase, resolve=resolve,
          param_value=pb.param_value)
def hotplug(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed, oracle=False)
    env, mm, keys, hp = plat.env, kernel.mm, kernel.keys, kernel.hp
    rng_hp = plat.streams.get("hotplug/cycles")
    rng_t = plat.streams.get("hotplug/tenants")
    node = len(plat.packages) - 1
    bind = plat.packages[node].has_memory  # else tenants' pages are local, on package 0
    node_cpus = [c.cpu for c in plat.packages[node].cores]
    core = plat.cores[0]
    end = ns(config["duration_ms"] * 1e6)
    stats = dict.fromkeys(("tenants", "refused", "keyed", "corrupted", "exposed", "cycles",
                           "cycles_refused"), 0)

    def tenant(i: int):
        stats["tenants"] += 1
        proc = mm.spawn(0)
        if bind:
            proc.node = node
        try:
            serial = yield from keys.add_key(0, f"tenant-{i}", "type=cpu algorithm=aes-xts-128")
        except Errno:
            stats["refused"] += 1
            return
        data = f"tenant {i:06d} data on the memory node ".encode().ljust(64, b".")
        addr, keyid, pa = yield from pb.tenant_page(mm, core, proc, serial, data)
        stats["keyed"] += 1
        yield env.timeout(ns(rng_t.exponential(config["lifetime_us"]) * 1000))
        log: list = []
        yield from core.run([(O.READ, keyid, pa, 64, None), (O.CLFLUSH, keyid, pa, None, None),
                             (O.READ, 0, pa, 64, None), (O.CLFLUSH, 0, pa, None, None)], log)
        stats["corrupted"] += log[0][5] != data
        stats["exposed"] += log[1][5] == data
        yield from mm.munmap(proc, addr, PAGE)
        yield from keys.invalidate(0, serial)

    def cycle():
        down = []
        try:
            for cpu in node_cpus:
                yield from hp.offline_cpu(cpu)
                down.append(cpu)
        except Errno:
            stats["cycles_refused"] += 1
        else:
            stats["cycles"] += 1
            yield env.timeout(ns(rng_hp.exponential(config["down_us"]) * 1000))
        for cpu in reversed(down):
            yield from hp.online_cpu(cpu)

    def cycles():
        rate = config["hotplug_per_ms"]
        if rate <= 0:
            return
        while True:
            yield env.timeout(ns(rng_hp.exponential(1.0 / rate) * 1e6))
            if env.now >= end:
                return
            yield from cycle()  # one cycle at a time: the next waits for the CPUs to return

    def arrivals():
        i = 0
        while True:
            yield env.timeout(ns(rng_t.exponential(1.0 / config["churn_per_ms"]) * 1e6))
            if env.now >= end:
                return
            env.process(tenant(i))
            i += 1

    env.process(cycles())
    pb.run_process(plat, arrivals())
    n = stats["keyed"]
    lo, hi = wilson(stats["corrupted"], n)
    tried = stats["cycles"] + stats["cycles_refused"]
    return {**stats, "p_corrupt": stats["corrupted"] / n if n else 0.0, "p_low": lo,
            "p_high": hi, "p_exposed": stats["exposed"] / n if n else 0.0,
            "p_refused": stats["refused"] / stats["tenants"] if stats["tenants"] else 0.0,
            "p_cycles_refused": stats["cycles_refused"] / tried if tried else 0.0}
