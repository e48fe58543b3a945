"""The ``replay`` driver (experiment E13): Rannaud's replay carried out through the kernel.

Rannaud (Dec 7) notes that MKTME, like SME and TME, lets someone who can read and write DRAM
replay old ciphertext. The scenarios S9/S10 stage the replay with an alias at the hardware
level. Here the attacker, Eve, goes through the kernel's page allocator instead: she is an
ordinary tenant who also records DRAM (a bus probe, the physical attacker of the thread), and
she gets the victim's frame back the ordinary way, after the victim freed it.

One trial, on a fresh platform (all processes on cpu 0, so one LIFO free list):

1. Alice maps one page under her MKTME key (type=cpu), stores ``OLD`` in its first line and
   flushes it; Eve records the line's ciphertext ``E`` from DRAM. Alice then stores ``NEW``,
   flushes, and unmaps the page: the frame is freed (flushed per policy).
2. Hand-off noise: another process faults in ``k`` KeyID-0 pages, k ~ Poisson(
   ``background_mean``), and frees them one by one in a random order, so the frame on top of
   the free list is the victim's only when that order happens to put it there.
3. Eve adds her own key (``attacker_key``), maps a page under it and faults it in. She stores
   what makes ``E`` reach DRAM at the address she got: with a ``no-encrypt`` key ``E`` itself;
   with a ``user`` key (she chose it) the XTS preimage of ``E`` under her key and that
   address's tweak; with a ``cpu`` key (unknown to her) she can only store ``E`` as data, which
   the engine encrypts. She flushes and unmaps. A key the kernel refuses (ENOKEY: RFC v2 sends
   NO_ENCRYPT without an algorithm, ``clear_sends_alg``) ends the attempt.
4. Hand-off noise again; then Alice maps a fresh page under the same key and reads it.

The replay succeeds when Alice's read returns ``OLD``: her own old data, brought back by Eve.
``zero_on_alloc`` zeroes the new page through Alice's KeyID, which overwrites whatever Eve left.
Without it Alice reads the frame as DRAM holds it: ``OLD`` when the frame went Alice -> Eve ->
Alice and Eve's store decrypts to it, ``NEW`` (her own stale data) when Eve did not get the
frame, garbage otherwise. The success probability comes with a 95% Wilson interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mktme_des.config.schema import param
from mktme_des.crypto import line_tweak, xts_decrypt
from mktme_des.experiments import platform_base as pb
from mktme_des.experiments.drivers import register
from mktme_des.experiments.race_driver import wilson
from mktme_des.hw import ops as O
from mktme_des.kernel.errno import Errno
from mktme_des.kernel.mm import PAGE

METRICS = {
    "trials": "trials run",
    "replayed": "trials in which Alice read her old data back (the replay succeeded)",
    "p_replay": "replayed / trials",
    "p_low": "95% Wilson interval, lower bound",
    "p_high": "95% Wilson interval, upper bound",
    "refused": "trials in which the kernel refused the attacker's key",
    "eve_got_frame": "trials in which Eve's page was on Alice's freed frame",
    "stale": "trials in which Alice read NEW, her own last data, in a fresh page",
    "zeros": "trials in which Alice's fresh page read as zeros",
}
OLD = b"alice: pay 100 " * 4 + b"alic"
NEW = b"alice: pay 000 " * 4 + b"alic"
# Eve's type=user key (32 hex characters each): she knows it, so she can compute preimages.
EVE_KEY = bytes(range(16))
EVE_TWEAK_KEY = bytes(range(16, 32))
ATTACKER_OPTIONS = {
    "cpu": "type=cpu algorithm=aes-xts-128",
    "user": f"type=user algorithm=aes-xts-128 key={EVE_KEY.hex()} tweak={EVE_TWEAK_KEY.hex()}",
    "no-encrypt": "type=no-encrypt",
}


@dataclass(frozen=True, kw_only=True)
class ReplayBase(pb.PlatformBase):
    model: str = param("client-1s", doc="model name (models/NAME.toml) or path")
    attacker_key: str = param("user", doc="the key type Eve maps her page with",
                              choices=tuple(ATTACKER_OPTIONS))
    trials: int = param(20, doc="independent trials", min=1, max=100000)
    background_mean: float = param(0.0, doc="mean number of pages another process faults in "
                                   "and frees, in a random order, at each hand-off of the frame",
                                   min=0.0, max=64.0)


def _noise(mm, proc, count: int, rng: np.random.Generator):
    """Fault in ``count`` KeyID-0 pages and free them one by one in a random order."""
    if not count:
        return
    addr = yield from mm.mmap(proc, count * PAGE)
    for i in range(count):
        yield from mm.fault(proc, addr + i * PAGE)
    for i in rng.permutation(count):
        yield from mm.munmap(proc, addr + int(i) * PAGE, PAGE)


def _trial(config: dict[str, Any], seed: int, rng: np.random.Generator) -> dict[str, bool]:
    plat, kernel = pb.build_platform(config, seed, oracle=False)
    mm, keys = kernel.mm, kernel.keys
    core = plat.cores[0]
    out = {"refused": False, "eve_got_frame": False, "read": b""}
    counts = [int(rng.poisson(config["background_mean"])) for _ in range(2)]

    def run():
        alice, eve, other = mm.spawn(0), mm.spawn(0), mm.spawn(0)
        serial = yield from keys.add_key(0, "alice", ATTACKER_OPTIONS["cpu"])
        addr, keyid, frame = yield from pb.tenant_page(mm, core, alice, serial, OLD)
        recorded = plat.dram_read(frame, 64)  # Eve's bus probe
        yield from core.run([(O.WRITE, keyid, frame, NEW, None),
                             (O.CLFLUSH, keyid, frame, None, None)], [])
        yield from mm.munmap(alice, addr, PAGE)
        yield from _noise(mm, other, counts[0], rng)
        try:
            eserial = yield from keys.add_key(0, "eve", ATTACKER_OPTIONS[config["attacker_key"]])
        except Errno:
            out["refused"] = True
        else:
            eaddr = yield from mm.mmap(eve, PAGE)
            yield from mm.encrypt_mprotect(eve, eaddr, PAGE, 3, eserial)
            yield from mm.fault(eve, eaddr)
            ekeyid, epa = mm.translate(eve, eaddr)
            out["eve_got_frame"] = epa == frame
            data = recorded
            if config["attacker_key"] == "user":
                data = xts_decrypt(EVE_KEY + EVE_TWEAK_KEY, line_tweak(epa, plat.boot_tweak),
                                   recorded)
            yield from core.run([(O.WRITE, ekeyid, epa, data, None),
                                 (O.CLFLUSH, ekeyid, epa, None, None)], [])
            yield from mm.munmap(eve, eaddr, PAGE)
        yield from _noise(mm, other, counts[1], rng)
        addr = yield from mm.mmap(alice, PAGE)
        yield from mm.encrypt_mprotect(alice, addr, PAGE, 3, serial)
        yield from mm.fault(alice, addr)
        keyid, pa = mm.translate(alice, addr)
        log: list = []
        yield from core.run([(O.READ, keyid, pa, 64, None)], log)
        out["read"] = log[0][5]

    pb.run_process(plat, run())
    return {"replayed": out["read"] == OLD, "stale": out["read"] == NEW,
            "zeros": out["read"] == bytes(64), "refused": out["refused"],
            "eve_got_frame": out["eve_got_frame"]}


@register("replay", metrics=METRICS, base=ReplayBase, resolve=pb.resolve_platform,
          param_value=pb.param_value)
def replay(config: dict[str, Any], seed: int) -> dict[str, Any]:
    totals = dict.fromkeys(("replayed", "stale", "zeros", "refused", "eve_got_frame"), 0)
    for i in range(config["trials"]):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i])))
        got = _trial(config, int(rng.integers(2**62)), rng)
        for name, hit in got.items():
            totals[name] += hit
    n = config["trials"]
    lo, hi = wilson(totals["replayed"], n)
    return {"trials": n, **totals, "p_replay": totals["replayed"] / n, "p_low": lo, "p_high": hi}
