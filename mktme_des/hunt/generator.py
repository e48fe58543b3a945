"""Programs for a hunt: random scenarios built from the scenario op vocabulary.

A program is an ordinary scenario (its parsed TOML data) on the hunt's model, with two cores
per package so that package and CPU hotplug stay cheap. It has one to three user processes
on CPUs of every package, and sometimes the administrator (``[[system]]``: package and CPU
hotplug, raw PCONFIG, WBINVD, keys of its own) and a core doing flushes and prefetches
(``[[cpu]]``) on the frames the kernel hands out first.

Each process op is drawn from what the process could sensibly do next, as a property-based
tester's stateful generator does: ``add_key`` of every type (cpu, user, clear, no-encrypt)
under a name every actor shares; ``mmap``, ``encrypt_mprotect``, reads, writes and
``clflush`` of its VMAs; ``munmap`` (page frees, the frame's reuse by the next allocation);
``swap_out``; ``pin``, ``unpin`` and a device read of the pinned page; ``update_key``,
``revoke`` and ``invalidate``; and short computations that shift it against the others.
Invalid calls are kept (they fail with an errno, as a fuzzer's would): they cost nothing and
the shrinker removes them.

``size`` bounds the ops per actor (a process's setup may pass it); the search grows it from
small to large. Two habits of property-based testers raise the odds of meeting a fault: most
processes begin as tenants do (a key, a VMA encrypted with it, a write), and each process
leaves some op kinds out altogether (swarm testing), so the ones it keeps come more often.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

HUNT_CORES_PER_PACKAGE = 2
KEY_NAMES = ("a", "b", "c")
VMAS = ("v0", "v1")
PINS = ("p0",)
FRAMES = 2  # the first frames of each package's pool, which the kernel hands out first
FRAME_POOL_OFFSET = 64 << 20  # kernel/mm.py FrameAllocator: the pool's offset in a package


class Machine(NamedTuple):
    """What the generator needs of the hunt's model."""

    packages: int
    package_bytes: int
    max_keyid: int
    memory_packages: int  # packages with memory: the address map's ranges


def machine(model: str) -> Machine:
    """The :class:`Machine` of a model name or file (raises ConfigError when it is bad)."""
    from mktme_des.config.model import load_model
    from mktme_des.hw.address import AddressMap

    m = load_model(model, {"topology": {"cores_per_package": HUNT_CORES_PER_PACKAGE}})
    amap = AddressMap(m)
    return Machine(m.topology.packages, amap.package_bytes, amap.max_keyid, amap.slots)


def key_options(kind: str, rng: np.random.Generator) -> str:
    """An ``add_key``/``update_key`` payload of a key type."""
    if kind == "cpu":
        return "type=cpu algorithm=aes-xts-128"
    if kind == "user":
        return (f"type=user algorithm=aes-xts-128 key={rng.bytes(16).hex()} "
                f"tweak={rng.bytes(16).hex()}")
    return f"type={kind}"


def _pick(rng: np.random.Generator, items) -> Any:
    return items[int(rng.integers(len(items)))]


def _data(actor: str, n: int, rng: np.random.Generator) -> str:
    """Recognisable bytes: the writer's name and the write's number, repeated."""
    text = f"{actor}:{n} ".encode()
    size = int(_pick(rng, (16, 32, 64)))
    return (text * (size // len(text) + 1))[:size].hex()


SWARM = ("clflush", "munmap", "swap_out", "pin", "update_key", "revoke", "invalidate",
         "compute")  # op kinds a process may leave out altogether (swarm testing)


def process_op(rng: np.random.Generator, actor: str, n: int, state: dict) -> dict:
    """The next op of a process; ``state`` keeps its VMAs, pins and the op kinds it leaves
    out (``off``)."""
    mapped, pinned, off = state["vmas"], state["pins"], state.get("off", ())
    choices = ["add_key", "mmap", "compute"]
    weights = [2, 2, 1]
    if mapped:
        choices += ["encrypt_mprotect", "write", "read", "clflush", "munmap", "swap_out", "pin"]
        weights += [3, 5, 4, 2, 2, 2, 2]
    if pinned:
        choices += ["unpin", "device_read"]
        weights += [1, 3]
    choices += ["update_key", "revoke", "invalidate"]
    weights += [1, 1, 2]
    weights = [0 if c in off else w for c, w in zip(choices, weights, strict=True)]
    p = np.array(weights, dtype=float)
    what = choices[int(rng.choice(len(choices), p=p / p.sum()))]
    key = str(_pick(rng, KEY_NAMES))
    if what == "add_key":
        kind = str(rng.choice(["cpu", "user", "clear", "no-encrypt"], p=[0.6, 0.25, 0.1, 0.05]))
        return {"op": "add_key", "key": key, "options": key_options(kind, rng)}
    if what == "update_key":
        return {"op": "update_key", "key": key, "options": key_options("cpu", rng)}
    if what in ("revoke", "invalidate"):
        return {"op": what, "key": key}
    if what == "compute":
        return {"op": "compute", "ns": float(_pick(rng, (100, 1000, 10000, 100000, 400000)))}
    if what == "mmap":
        free = [v for v in VMAS if v not in mapped] or list(VMAS)
        vma = str(_pick(rng, free))
        mapped.add(vma)
        return {"op": "mmap", "vma": vma, "pages": 1}
    if what in ("unpin", "device_read"):
        pin = str(_pick(rng, sorted(pinned)))
        if what == "unpin":
            pinned.discard(pin)
            return {"op": "unpin", "pin": pin}
        return {"op": "device_read", "pin": pin, "size": 16}
    vma = str(_pick(rng, sorted(mapped)))
    offset = int(_pick(rng, (0, 0x40)))
    if what == "encrypt_mprotect":
        return {"op": "encrypt_mprotect", "vma": vma, "key": key}
    if what == "write":
        return {"op": "write", "vma": vma, "offset": offset, "data": _data(actor, n, rng)}
    if what == "read":
        return {"op": "read", "vma": vma, "offset": offset, "size": 16}
    if what == "clflush":
        return {"op": "clflush", "vma": vma, "offset": offset}
    if what == "munmap":
        mapped.discard(vma)
        return {"op": "munmap", "vma": vma}
    if what == "swap_out":
        return {"op": "swap_out", "vma": vma, "offset": offset}
    pin = str(_pick(rng, PINS))
    pinned.add(pin)
    return {"op": "pin", "vma": vma, "pin": pin}


def setup(rng: np.random.Generator, state: dict) -> list[dict]:
    """What most tenants do first: a key, a VMA, the VMA encrypted with the key, and often
    a first write."""
    key = str(_pick(rng, KEY_NAMES))
    kind = "cpu" if rng.random() < 0.7 else "user"
    state["vmas"].add("v0")
    ops = [{"op": "add_key", "key": key, "options": key_options(kind, rng)},
           {"op": "mmap", "vma": "v0", "pages": 1},
           {"op": "encrypt_mprotect", "vma": "v0", "key": key}]
    if rng.random() < 0.6:
        ops.append({"op": "write", "vma": "v0", "offset": 0, "data": _data("setup", 0, rng)})
    return ops


def system_op(rng: np.random.Generator, mach: Machine, state: dict) -> dict:
    """The next op of the administrator: hotplug of the last package or of its CPUs, raw
    PCONFIG, WBINVD, a key of its own, or a pause. The raw PCONFIG programs the model's top
    KeyID, which the kernel's first-fit allocation does not reach in a hunt's programs: root
    reprogramming a KeyID the kernel uses breaks every policy alike, while a PCONFIG beside
    the kernel's broadcasts contends for the key table (DEVICE_BUSY) as the thread feared."""
    last = mach.packages - 1
    cpus = [last * HUNT_CORES_PER_PACKAGE + i for i in range(HUNT_CORES_PER_PACKAGE)]
    what = str(rng.choice(["package", "cpu", "pconfig", "wbinvd", "add_key", "compute"],
                          p=[0.25, 0.3, 0.1, 0.1, 0.15, 0.1]))
    if what == "package":
        op = "online" if state.get("pkg_off") else "offline"
        state["pkg_off"] = not state.get("pkg_off")
        return {"op": op, "package": last}
    if what == "cpu":
        cpu = int(_pick(rng, cpus))
        off = state.setdefault("cpus_off", set())
        op = "online_cpu" if cpu in off else "offline_cpu"
        off.symmetric_difference_update({cpu})
        return {"op": op, "target": cpu}
    if what == "pconfig":
        return {"op": "pconfig", "keyid": mach.max_keyid, "command": "SET_KEY_RANDOM"}
    if what == "wbinvd":
        return {"op": "wbinvd"}
    if what == "add_key":
        return {"op": "add_key", "key": str(_pick(rng, KEY_NAMES)),
                "options": key_options("cpu", rng)}
    return {"op": "compute", "ns": float(_pick(rng, (1000, 10000, 100000)))}


def cpu_op(rng: np.random.Generator, frames: list[int]) -> dict:
    """The next op of a core: a flush or prefetch of a (KeyID, frame line), or WBINVD."""
    what = str(rng.choice(["clflush", "prefetch", "clwb", "wbinvd", "compute"],
                          p=[0.35, 0.3, 0.1, 0.15, 0.1]))
    if what == "wbinvd":
        return {"op": "wbinvd"}
    if what == "compute":
        return {"op": "compute", "ns": float(_pick(rng, (100, 1000, 10000)))}
    addr = int(_pick(rng, frames)) + int(_pick(rng, (0, 0x40)))
    return {"op": what, "keyid": int(rng.integers(0, 4)), "addr": addr}


def program(rng: np.random.Generator, size: int, policy: str, model: str,
            mach: Machine) -> dict[str, Any]:
    """A random program of at most ``size`` ops per actor, as scenario data."""
    packages, package_bytes = mach.packages, mach.package_bytes
    cpus = packages * HUNT_CORES_PER_PACKAGE
    nproc = min(int(rng.integers(1, 4)), cpus)  # one CPU each
    data: dict[str, Any] = {
        "scenario": {"name": "hunt", "title": f"a schedule that breaks {policy}",
                     "model": model, "seed": int(rng.integers(0, 1000)), "policy": policy},
        "model_overrides": {"topology": {"cores_per_package": HUNT_CORES_PER_PACKAGE}},
    }
    processes = []
    used = set()
    for i in range(nproc):
        cpu = int(rng.integers(0, cpus))
        while cpu in used:
            cpu = (cpu + 1) % cpus
        used.add(cpu)
        name = f"p{i}"
        off = {kind for kind in SWARM if rng.random() < 0.5}
        state: dict = {"vmas": set(), "pins": set(), "off": off}
        n = int(rng.integers(max(1, size // 2), size + 1))
        ops = setup(rng, state) if rng.random() < 0.7 else []
        ops += [process_op(rng, name, j, state) for j in range(len(ops), n)]
        processes.append({"name": name, "cpu": cpu, "ops": ops})
    data["process"] = processes
    if packages > 1 and rng.random() < 0.5:
        state = {}
        n = int(rng.integers(1, max(2, size // 2) + 1))
        data["system"] = [{"name": "admin", "cpu": 0,
                           "ops": [system_op(rng, mach, state) for _ in range(n)]}]
    if rng.random() < 0.3:
        frames = [p * package_bytes + FRAME_POOL_OFFSET + f * 4096
                  for p in range(mach.memory_packages) for f in range(FRAMES)]
        free = [c for c in range(cpus) if c not in used] or [cpus - 1]
        n = int(rng.integers(1, max(2, size // 2) + 1))
        data["cpu"] = [{"id": int(_pick(rng, free)), "ops": [cpu_op(rng, frames) for _ in range(n)]}]
    return data


def count_ops(data: dict[str, Any]) -> int:
    """Ops in a program, over every actor."""
    return sum(len(a.get("ops", [])) for table in ("process", "system", "cpu", "agent")
               for a in data.get(table, []))
