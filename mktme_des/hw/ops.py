"""The operations a core executes, as compact tuples.

An op is ``(code, keyid, pa, arg, at)``:

* ``code``: one of the constants below;
* ``keyid``, ``pa``: the KeyID and the physical address (KeyID bits not included) it names;
* ``arg``: bytes to store for ``WRITE``, a byte count for ``READ`` and the raw ops, a duration
  in clock ticks for ``COMPUTE``, a destination address for ``RAW_COPY``;
* ``at``: an absolute start time in clock ticks, or ``None`` to follow the previous op.

Tuples, not objects, because a workload streams millions of them.
"""

from __future__ import annotations

READ = 0  # load: fills the line (read for ownership is not needed)
WRITE = 1  # store: read for ownership, then the line is dirty
CLFLUSH = 2  # write back if dirty and invalidate the tag everywhere; ordered, the core waits
CLFLUSHOPT = 3  # the same, unordered: the core goes on; SFENCE waits for it
CLWB = 4  # write back if dirty, keep the line (clean); unordered like CLFLUSHOPT
SFENCE = 5  # wait until every earlier CLFLUSHOPT/CLWB has reached memory
MFENCE = 6  # the same, for this model (loads and stores already complete in order)
WBINVD = 7  # write back and invalidate every cache of the core's package
PREFETCH = 8  # speculative load: fills a clean line, the core does not wait
COMPUTE = 9  # pure delay
RAW_READ = 10  # read ciphertext from DRAM directly (a bus probe, a cold-boot image)
RAW_WRITE = 11  # write bytes into DRAM directly, bypassing caches and the engine
RAW_COPY = 12  # copy DRAM bytes from pa to arg (relocation of ciphertext)
WRITE_CAPTURE = 13  # store bytes an agent captured earlier; arg = (label, key or None): with a
#                     key, store the XTS decryption of the capture under it (a preimage)
# Happens-before between actors (scenario ``label`` / ``after``); neither is logged or timed.
AWAIT = 14  # wait until the op labelled ``arg`` (any actor) has completed; ``arg`` may be
# ``(label, delay)``: until ``delay`` ticks after that (Board.wait)
SIGNAL = 15  # the op before this one, labelled ``arg``, has completed

NAMES = {
    READ: "read", WRITE: "write", CLFLUSH: "clflush", CLFLUSHOPT: "clflushopt", CLWB: "clwb",
    SFENCE: "sfence", MFENCE: "mfence", WBINVD: "wbinvd", PREFETCH: "prefetch",
    COMPUTE: "compute", RAW_READ: "raw_read", RAW_WRITE: "raw_write", RAW_COPY: "raw_copy",
    WRITE_CAPTURE: "write", AWAIT: "await", SIGNAL: "signal",
}
CODES = {v: k for k, v in NAMES.items() if k not in (WRITE_CAPTURE, AWAIT, SIGNAL)}
# "fence" is the scenario spelling of a full fence.
CODES["fence"] = MFENCE

Op = tuple  # (code, keyid, pa, arg, at)
