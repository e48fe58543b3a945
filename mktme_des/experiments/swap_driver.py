"""The ``swap`` driver (experiment E14): MKTME plaintext written to swap under memory pressure.

The thread settled that swap is not encrypted (Lutomirski, Dec 4: "maybe we should just encrypt
everything when it's swapped"; RFC v2 leaves it to the swap device). The kernel swaps a page
out by reading it through its direct map: with a direct map per KeyID that read decrypts, so
the swap device receives the tenant's plaintext (``swap_plaintext_bytes`` in the kernel's
statistics); with only a KeyID-0 direct map it receives garbage and the page comes back
corrupted.

One process maps ``ws_pages`` pages under an MKTME key (``mktme_share`` of them; the rest stay
under KeyID 0) and makes ``accesses`` accesses, each a 64-byte store to a random line of a page
drawn uniformly or from a Zipf law (exponent ``zipf_s``, page ranks shuffled). Its resident set
is limited to ``resident_share`` of the working set, like a memory cgroup limit: before a
fault would exceed the limit, the least recently used resident page is swapped out (an exact
LRU, standing in for the kernel's two-list approximation). A fault on a swapped page swaps it
back in. Counts cover the accesses; afterwards every page is read back (swapped in as needed)
so that the oracle checks each swap round trip (``oracle_violations``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from mktme_des.config.schema import Context, param
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.hw import ops as O
from mktme_des.kernel.mm import PAGE

METRICS = {
    "accesses": "stores made",
    "swap_outs": "pages written to swap",
    "swap_ins": "pages read back from swap",
    "plaintext_kib": "KiB of MKTME pages written to swap as plaintext",
    "plaintext_bytes_per_access": "plaintext bytes written to swap per store",
    "mktme_pages": "pages of the working set under the MKTME key",
    "oracle_violations": "reads the oracle found corrupted",
}


@dataclass(frozen=True, kw_only=True)
class SwapBase(pb.PlatformBase):
    model: str = param("client-1s", doc="model name (models/NAME.toml) or path")
    ws_pages: int = param(64, doc="pages in the working set", min=1, max=4096)
    resident_share: float = param(0.5, doc="resident limit as a share of the working set",
                                  min=0.0, max=1.0, min_exclusive=True)
    accesses: int = param(1000, doc="stores to the working set", min=1, max=1_000_000)
    pattern: str = param("uniform", doc="how pages are drawn", choices=("uniform", "zipf"))
    zipf_s: float = param(0.99, doc="Zipf exponent (pattern zipf)", min=0.0)
    mktme_share: float = param(1.0, doc="share of the working set under the MKTME key",
                               min=0.0, max=1.0)


def resolve(base: dict[str, Any], ctx: Context) -> dict[str, Any]:
    if int(base["resident_share"] * base["ws_pages"]) < 1:
        raise ctx.error("resident_share", "resident_share x ws_pages must leave at least one "
                        "resident page")
    return pb.resolve_platform(base, ctx)


@register("swap", metrics=METRICS, base=SwapBase, resolve=resolve, param_value=pb.param_value)
def swap(config: dict[str, Any], seed: int) -> dict[str, Any]:
    plat, kernel = pb.build_platform(config, seed)
    mm, keys = kernel.mm, kernel.keys
    rng = plat.streams.get("swap/accesses")
    ws = config["ws_pages"]
    limit = int(config["resident_share"] * ws)
    enc = int(round(config["mktme_share"] * ws))
    if config["pattern"] == "zipf":
        weights = 1.0 / np.arange(1, ws + 1) ** config["zipf_s"]
        weights = weights[rng.permutation(ws)]
        pages = rng.choice(ws, size=config["accesses"], p=weights / weights.sum())
    else:
        pages = rng.integers(0, ws, size=config["accesses"])
    lines = rng.integers(0, 64, size=config["accesses"])
    core = plat.cores[0]

    snap: dict[str, int] = {}

    def run():
        proc = mm.spawn(0)
        addr = yield from mm.mmap(proc, ws * PAGE)
        if enc:
            serial = yield from keys.add_key(0, "tenant", "type=cpu algorithm=aes-xts-128")
            yield from mm.encrypt_mprotect(proc, addr, enc * PAGE, 3, serial)
        resident: OrderedDict[int, None] = OrderedDict()  # LRU order, oldest first
        for n, (p, line) in enumerate(zip(pages, lines, strict=True)):
            va = addr + int(p) * PAGE
            if va in resident:
                resident.move_to_end(va)
            else:
                if len(resident) >= limit:
                    victim, _ = resident.popitem(last=False)
                    yield from mm.swap_out(proc, victim)
                yield from mm.fault(proc, va)
                resident[va] = None
            keyid, pa = mm.translate(proc, va + int(line) * 64)
            data = f"store {n:06d} page {int(p):04d} line {int(line):02d} ".encode().ljust(64)
            yield from core.run([(O.WRITE, keyid, pa, data, None)], [])
        snap.update(mm.counts)
        # Read every page back (swapping in what is out) so the oracle checks swap round trips;
        # the swap traffic of this check is not counted.
        for p in range(ws):
            va = addr + p * PAGE
            if va not in resident:
                if len(resident) >= limit:
                    victim, _ = resident.popitem(last=False)
                    yield from mm.swap_out(proc, victim)
                yield from mm.fault(proc, va)
                resident[va] = None
            keyid, pa = mm.translate(proc, va)
            yield from core.run([(O.READ, keyid, pa + i * 64, 64, None) for i in range(64)], [])

    pb.run_process(plat, run())
    plain = snap.get("swap_plaintext_bytes", 0)
    return {
        "accesses": config["accesses"],
        "swap_outs": snap.get("swap_outs", 0),
        "swap_ins": snap.get("swap_ins", 0),
        "plaintext_kib": plain / 1024,
        "plaintext_bytes_per_access": plain / config["accesses"],
        "mktme_pages": enc,
        "oracle_violations": len(plat.oracle.violations),
    }
