"""The ``pconfig`` driver (experiment E3): what programming keys costs.

``measure = "broadcast"``: the caller (cpu 0) adds ``keys`` CPU-type keys one after another;
each ``add_key`` programs its KeyID on every package through IPIs to the lead CPUs. Reported:
the mean broadcast time (first IPI to last PCONFIG status), the mean time packages disagreed
on the key, and the mean ``add_key`` system-call latency.

``measure = "online"``: the last package goes offline, ``keys`` keys are added, and the
package comes back online: the kernel programs every KeyID in use on it before its CPUs may
run. Reported: the time the online took.

``measure = "offline"``: a tenant on the last package writes ``pages`` pages under ``keys``
keys (round robin), and the package goes offline with memory hot-remove
(``migrate_on_offline``): every page is copied through its KeyID to another package first.
Reported: the time the offline took.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.schema import Context, param
from mktme_des.engine.time import to_ns
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register

METRICS = {
    "packages": "packages in the model",
    "keys": "keys added",
    "broadcast_ns": "mean time of one system-wide programming, first IPI to last status [ns]",
    "window_ns": "mean time packages disagreed on the KeyID's key [ns]",
    "add_key_ns": "mean add_key system-call latency [ns]",
    "online_ns": "time to online a package with the keys in use programmed on it [ns]",
    "pages": "pages migrated off the package going offline",
    "offline_ns": "time to offline a package, migrating its pages first [ns]",
}


@dataclass(frozen=True, kw_only=True)
class PconfigBase(pb.PlatformBase):
    measure: str = param("broadcast", doc="what to time",
                         choices=("broadcast", "online", "offline"))
    keys: int = param(1, doc="keys to add", min=1, max=32767)
    pages: int = param(1, doc="offline: pages the tenant writes on the package", min=1,
                       max=4096)


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    out = pb.resolve_platform(base, ctx)
    m = out["model_resolved"]
    if base["keys"] > m["mktme"]["max_keys"]:
        raise ctx.error("keys", f"{base['keys']} keys but the model has {m['mktme']['max_keys']} KeyIDs")
    if base["measure"] in ("online", "offline") and m["topology"]["packages"] < 2:
        raise ctx.error("measure", f"the {base['measure']} measure needs a model with at least "
                        "2 packages")
    if base["measure"] == "offline":
        out["policy_resolved"] = dict(out["policy_resolved"], migrate_on_offline=True)
    return out


@register("pconfig", metrics=METRICS, base=PconfigBase, resolve=resolve, param_value=pb.param_value)
def pconfig(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed, oracle=False)
    last = len(plat.packages) - 1
    out: dict[str, Any] = {"packages": len(plat.packages), "keys": config["keys"]}

    def body():
        if config["measure"] == "online":
            yield from kernel.hp.offline_package(last)
        calls = []
        for i in range(config["keys"]):
            t = plat.env.now
            yield from kernel.keys.add_key(0, f"key-{i}", "type=cpu algorithm=aes-xts-128")
            calls.append(plat.env.now - t)
        bcs = kernel.keys.broadcasts
        out["broadcast_ns"] = sum(to_ns(b.end - b.start) for b in bcs) / len(bcs)
        out["window_ns"] = sum(b.window_ns for b in bcs) / len(bcs)
        out["add_key_ns"] = to_ns(sum(calls)) / len(calls)
        out["online_ns"] = out["pages"] = out["offline_ns"] = None
        if config["measure"] == "online":
            t = plat.env.now
            yield from kernel.hp.online_package(last)
            out["online_ns"] = to_ns(plat.env.now - t)
        elif config["measure"] == "offline":
            yield from _tenant(plat, kernel, last, config["pages"])
            t = plat.env.now
            yield from kernel.hp.offline_package(last)
            out["pages"] = config["pages"]
            out["offline_ns"] = to_ns(plat.env.now - t)

    pb.run_process(plat, body())
    return out


def _tenant(plat, kernel, package: int, pages: int):
    """A process on ``package`` writing one line into each of ``pages`` pages, spread over
    the keys added so far (one VMA per key)."""
    from mktme_des.hw import ops as O
    from mktme_des.kernel.mm import PAGE

    mm = kernel.mm
    proc = mm.spawn(plat.packages[package].cores[0].cpu)
    serials = sorted(kernel.keys.keys)
    for k, serial in enumerate(serials):
        count = len(range(k, pages, len(serials)))
        if not count:
            continue
        va = yield from mm.mmap(proc, count * PAGE)
        yield from mm.encrypt_mprotect(proc, va, count * PAGE, 3, serial)
        for i in range(count):
            yield from mm.fault(proc, va + i * PAGE)
            keyid, pa = mm.translate(proc, va + i * PAGE)
            yield from plat.cores[proc.cpu].run([(O.WRITE, keyid, pa, bytes(64), None)], [])
