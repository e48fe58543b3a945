"""The ``pconfig`` driver (experiment E3): what programming keys costs.

``measure = "broadcast"``: the caller (cpu 0) adds ``keys`` CPU-type keys one after another;
each ``add_key`` programs its KeyID on every package through IPIs to the lead CPUs. Reported:
the mean broadcast time (first IPI to last PCONFIG status), the mean time packages disagreed
on the key, and the mean ``add_key`` system-call latency.

``measure = "online"``: the last package goes offline, ``keys`` keys are added, and the
package comes back online: the kernel programs every KeyID in use on it before its CPUs may
run. Reported: the time the online took.
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
}


@dataclass(frozen=True, kw_only=True)
class PconfigBase(pb.PlatformBase):
    measure: str = param("broadcast", doc="what to time", choices=("broadcast", "online"))
    keys: int = param(1, doc="keys to add", min=1, max=32767)


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    out = pb.resolve_platform(base, ctx)
    m = out["model_resolved"]
    if base["keys"] > m["mktme"]["max_keys"]:
        raise ctx.error("keys", f"{base['keys']} keys but the model has {m['mktme']['max_keys']} KeyIDs")
    if base["measure"] == "online" and m["topology"]["packages"] < 2:
        raise ctx.error("measure", "onlining a package needs a model with at least 2 packages")
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
        if config["measure"] == "online":
            t = plat.env.now
            yield from kernel.hp.online_package(last)
            out["online_ns"] = to_ns(plat.env.now - t)
        else:
            out["online_ns"] = None

    pb.run_process(plat, body())
    return out
