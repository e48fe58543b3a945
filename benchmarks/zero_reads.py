"""CPU time of a DRAM read of a line zeroed through one KeyID and read through another.

Such a read decrypts, under the reader's key, the ciphertext of zeros under the key that
zeroed the page (a tenant reading a page the kernel zeroed through another KeyID, a rekeyed
KeyID reading its old pages, a page copied or migrated line by line). Cases: pages zeroed as a
prepared working set (one region) or page by page (``zero_page``), read either line by line
through whole pages or one line a page. Each round builds a fresh platform and times only
the reads (``DramStore.read``); printed is the median over the rounds of the CPU time per read.

    python benchmarks/zero_reads.py [ROUNDS]
"""

from __future__ import annotations

import sys
import time
from statistics import median

from mktme_des.config.model import load_model
from mktme_des.hw.platform import Platform
from mktme_des.simulate import workload_from
from mktme_des.workloads.synthetic import prepare

PAGES = 256


def reads(zeroing: str, pattern: str) -> tuple[list, object, bytes, int]:
    """A fresh platform's store, the addresses to read and the reader's key and boot tweak."""
    p = Platform(load_model("server-2s"), seed=1)
    spec = workload_from({"working_set_kib": PAGES * 4, "mktme_keys": 2, "accesses": 1})
    (region,) = prepare(p, spec).values()  # every page under KeyID 1 (mktme_fraction 1)
    mc = p.mc_for(region.base)
    if zeroing == "page":
        for i in range(PAGES):
            mc.store.zero_page(region.base + i * 4096, mc.keys.key(1), p.boot_tweak)
    lines = range(64) if pattern == "whole pages" else range(1)
    pas = [region.base + i * 4096 + j * 64 for i in range(0, PAGES, 2) for j in lines]
    return pas, mc.store, mc.keys.key(2), p.boot_tweak


def per_read_us(zeroing: str, pattern: str) -> float:
    pas, store, key, boot = reads(zeroing, pattern)
    t = time.process_time()
    for pa in pas:
        store.read(pa, key, boot)
    return (time.process_time() - t) / len(pas) * 1e6


def main(rounds: int = 7) -> None:
    import mktme_des

    print(f"compiled {mktme_des.compiled()}; median of {rounds} rounds; CPU us per read")
    for zeroing in ("region", "page"):
        for pattern in ("whole pages", "one line a page"):
            us = median(per_read_us(zeroing, pattern) for _ in range(rounds))
            print(f"zeroed as {zeroing:<7} read {pattern:<16} {us:8.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
