"""Instructions per simulated access: a speed measure that does not depend on the machine's load.

Ratios against bare SimPy (``mktme-des bench``) are what users feel, but on a shared machine
they move by 10 % or more between runs, which hides the effect of a small change. This runs a
``bench`` workload under valgrind's callgrind, counting only instructions executed inside the
run loop (``engine/wakeup.run``: no start-up, no preparation), and divides by the accesses
simulated. The count is the same from run to run of the same build, so two builds compare
exactly; it does not see what the host's caches cost, so confirm a gain with ``bench``.

    python benchmarks/instructions.py [WORKLOAD ...] [--accesses N] [--python PYTHON]

``--accesses`` is per core (default 20,000, about 15 s a workload under callgrind);
``--python`` the interpreter of the build to measure (default: this one). Needs valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Counted from the compiled run loop's entry (Cython's name for engine/wakeup.py's run).
RUN_LOOP = "__pyx_pw_9mktme_des_6engine_6wakeup_9run"
SCRIPT = """
import sys
from mktme_des.bench import WORKLOADS, accesses_per_s
w = dict(WORKLOADS[sys.argv[1]], accesses=int(sys.argv[2]))
rate, n = accesses_per_s(w)
print(n)
"""


def instructions_per_access(python: str, workload: str, accesses: int) -> tuple[int, int]:
    """(instructions inside the run per access, accesses simulated) of one workload."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--toggle-collect={RUN_LOOP}",
             f"--callgrind-out-file={out}", python, "-c", SCRIPT, workload, str(accesses)],
            capture_output=True, text=True, check=True)
        n = int(run.stdout.split()[-1])
        with open(out) as f:
            totals = re.search(r"^summary:\s+(\d+)", f.read(), re.MULTILINE)
        if totals is None:
            raise SystemExit(f"instructions.py: no summary in callgrind's output for {workload}")
        return int(totals.group(1)) // n, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=["hits", "dram", "trace", "hits_4cores",
                                                          "dram_4cores"])
    parser.add_argument("--accesses", type=int, default=20_000)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions.py: valgrind is not installed")
    from mktme_des.bench import WORKLOADS

    for name in args.workloads:
        if name not in WORKLOADS:
            raise SystemExit(f"instructions.py: no workload {name!r}; "
                             f"known: {', '.join(WORKLOADS)}")
        per, n = instructions_per_access(args.python, name, args.accesses)
        print(f"{name:14s} {per:8d} instructions per access ({n} accesses)")


if __name__ == "__main__":
    main()
