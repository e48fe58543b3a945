"""Bounds on what a user may ask for at the edges: worker processes, input-file size, nesting.

Each bound is stated in the message that refuses a value beyond it. Bounds on simulated time
live with the clock (:data:`mktme_des.engine.time.MAX_NS`).
"""

from __future__ import annotations

import os

from mktme_des.errors import UserError

WORKERS_PER_CPU = 4
"""``--workers`` may ask for at most this many processes per CPU of the machine: more only
adds memory and start-up time (every run is CPU-bound), and a mistyped huge N would fork N
processes at once."""

MAX_FILE_BYTES = 16 << 20
"""The largest input file (TOML, JSON) read: 16 MiB. The shipped files are a few KiB; the
cap keeps a path such as ``/dev/zero`` from being read without end."""

MAX_DEPTH = 32
"""Tables and arrays in an input file nest at most this deep (the shipped files: 4); deeper
input would exhaust the recursion of the code that walks it."""

MAX_SEED = (1 << 63) - 1
"""Seeds are 0 .. 2^63 - 1 (what numpy's generators and the run-seed derivation accept)."""


def max_workers() -> int:
    """The most worker processes ``--workers`` may ask for on this machine."""
    return WORKERS_PER_CPU * (os.cpu_count() or 1)


def check_workers(workers: int, *, allow_zero: bool) -> int:
    """``workers`` when it is within 0 (or 1) .. :func:`max_workers`; a UserError otherwise."""
    low = 0 if allow_zero else 1
    cap = max_workers()
    if not low <= workers <= cap:
        zero = " (0: run in this process)" if allow_zero else ""
        raise UserError(f"--workers {workers}: must be {low}..{cap}{zero}; the cap is "
                        f"{WORKERS_PER_CPU} per CPU of this machine ({os.cpu_count() or 1} "
                        "CPUs)")
    return workers


# -- work that cannot be simulated in memory ------------------------------------------------------
MEMORY_BUDGET_BYTES = 8 << 30
"""The memory one run may plan to take: 8 GiB (an ``ASSUMPTION``: what a developer's machine
spares for one run). The caps below are this budget divided by what each unit of work keeps."""

BYTES_PER_LINE = 1024
"""Memory the simulator keeps per distinct 64-byte line a workload touches, for the whole run:
the line's ciphertext in DRAM and the oracle's record of its last store (an ``ASSUMPTION``
measured with CPython 3.11: about 660 bytes per line written, 270 per line only read,
rounded up). An access to a line already touched keeps nothing new."""

MAX_LINES = MEMORY_BUDGET_BYTES // BYTES_PER_LINE
"""The most distinct lines a synthetic workload may touch: 8,388,608 (512 MiB of data)."""

BYTES_PER_TENANT = 4096
"""Memory the ``slots`` driver keeps per tenant that has arrived and not yet left (an
``ASSUMPTION`` measured with CPython 3.11: 4.0-4.2 KiB per tenant queued for a KeyID under
``on_exhaustion = "wait"``, where none leaves before it got one; rounded down)."""

MAX_TENANTS = MEMORY_BUDGET_BYTES // BYTES_PER_TENANT
"""The most tenants (``arrival_per_us x duration_us``, the mean count) a ``slots`` point may
expect: 2,097,152, as all of them may be waiting at once."""

CPU_US_PER_ACCESS = (0.5, 5.0)
"""CPU time one simulated access costs, from a cache-hit stream to DRAM-heavy random accesses
on four cores (measured on the 2-core development machine, compiled; see README, Speed). Used
only for the estimate ``simulate`` prints before a long run."""

ESTIMATE_ABOVE_S = 60.0
"""``simulate`` prints its estimate when the slower end of it exceeds this many seconds."""


def human_seconds(seconds: float) -> str:
    """``seconds`` in the largest unit that keeps it at least 1: s, min, h or days."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"
