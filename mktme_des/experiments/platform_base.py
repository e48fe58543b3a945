"""What the kernel-level drivers share: a model with overrides and a kernel policy with
overrides, resolved before anything runs and rebuilt in the worker from plain data.

``[base]`` of such a driver starts with::

    model = "server-2s"             # models/NAME.toml or a path
    policy = "rfc-v2"               # models/kernel/NAME.toml or a path
    [base.model_overrides]          # any model field (dotted names in a sweep)
    [base.policy_overrides]         # any policy switch

and the resolved configuration carries ``model_resolved`` and ``policy_resolved`` (every
default explicit), so a worker never reads model or policy files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mktme_des.config.model import model_from_dict
from mktme_des.config.schema import Context, Section, build, param, resolved
from mktme_des.errors import ConfigError
from mktme_des.experiments import dotted
from mktme_des.experiments.workload_driver import build_model
from mktme_des.kernel.mm import PAGE
from mktme_des.kernel.policy import Policy, load_policy


@dataclass(frozen=True, kw_only=True)
class PlatformBase(Section):
    """The model and kernel policy of a point."""

    model: str = param("server-2s", doc="model name (models/NAME.toml) or path")
    model_overrides: dict[str, Any] = param({}, doc="model fields merged over the model file")
    policy: str = param("rfc-v2", doc="kernel policy name (models/kernel/NAME.toml) or path")
    policy_overrides: dict[str, Any] = param({}, doc="policy switches merged over the policy")


def resolve_platform(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Validate model and policy of a point (built from a PlatformBase subclass)."""
    model = build_model(base["model"], base["model_overrides"], ctx)
    try:
        policy = load_policy(base["policy"], base["policy_overrides"] or None)
    except ConfigError as err:
        raise ctx.error("policy" if not base["policy_overrides"] else "policy_overrides",
                        str(err)) from None
    out = dict(base)
    out["model_resolved"] = resolved(model)
    out["policy_resolved"] = resolved(policy)
    return out


def param_value(config: dict[str, Any], name: str) -> Any:
    """A parameter column's value for a point that does not assign it."""
    if name.startswith("model_overrides."):
        return dotted.lookup(config["model_resolved"], name.split(".", 1)[1])
    if name.startswith("policy_overrides."):
        return dotted.lookup(config["policy_resolved"], name.split(".", 1)[1])
    return dotted.lookup(config, name)


def build_platform(config: dict[str, Any], seed: int, oracle: bool = True):
    """A fresh Platform and Kernel for one point (or one trial) of an experiment."""
    from mktme_des.hw.platform import Platform
    from mktme_des.kernel.kernel import Kernel
    from mktme_des.oracle import Oracle

    model = model_from_dict(config["model_resolved"], f"model {config['model']}")
    policy = build(Policy, config["policy_resolved"], Context(f"policy {config['policy']}"))
    plat = Platform(model, seed=seed, oracle=Oracle() if oracle else None)
    return plat, Kernel(plat, policy)


def run_process(plat, body) -> Any:
    """Run the generator ``body`` as a SimPy process to the end; return its value."""
    proc = plat.env.process(body)
    plat.run()
    if not proc.triggered:  # pragma: no cover - a deadlock in a driver
        raise RuntimeError("the driver's process did not finish")
    return proc.value


def tenant_page(mm, core, proc, serial: int, data: bytes, flush: bool = True):
    """A tenant's usual start: one page mapped, put under ``serial``'s key, faulted in, its
    first line written with ``data`` by ``core`` and, with ``flush``, flushed to DRAM (else
    left dirty in the caches). Returns ``(addr, keyid, pa)`` (a SimPy generator: ``yield
    from``)."""
    from mktme_des.hw import ops as O

    addr = yield from mm.mmap(proc, PAGE)
    yield from mm.encrypt_mprotect(proc, addr, PAGE, 3, serial)
    yield from mm.fault(proc, addr)
    keyid, pa = mm.translate(proc, addr)
    ops = [(O.WRITE, keyid, pa, data, None)]
    if flush:
        ops.append((O.CLFLUSH, keyid, pa, None, None))
    yield from core.run(ops, [])
    return addr, keyid, pa
