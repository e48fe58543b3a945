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
