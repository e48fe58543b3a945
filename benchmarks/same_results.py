"""Do two builds give the same bytes? Runs the same ``simulate --json`` workloads (many cores,
shared lines, prefetch, fill buffers, warm-up, the lackey trace) and scenarios in two
checkouts, each with its own built ``.venv``, and compares the outputs' SHA-256 (the
checkout's own path, which a scenario's output names, left out).

    python benchmarks/same_results.py OLD_CHECKOUT NEW_CHECKOUT

Exit status 0 when every output is identical, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

W = "-w"
CASES = [
    ["simulate", "server-2s", W, "pattern=sequential", W, "working_set_kib=16", W, "cores=4",
     W, "accesses=20000", "--json"],
    ["simulate", "server-2s", W, "pattern=sequential", W, "working_set_kib=16", W, "cores=16",
     W, "accesses=4000", "--json"],
    ["simulate", "server-2s", W, "pattern=random", W, "working_set_kib=64", W, "sharing=shared",
     W, "read_fraction=0.5", W, "cores=4", W, "accesses=5000", "--json"],
    ["simulate", "server-2s", W, "pattern=zipf", W, "cores=3", W, "accesses=5000", W,
     "prefetch_distance=4", W, "warmup=500", "--json"],
    ["simulate", "server-2s", W, "pattern=random", W, "working_set_kib=65536", W, "cores=8",
     W, "accesses=1500", "-m", "core.fill_buffers=6", "--json"],
    ["simulate", "server-2s", W, "kind=lackey", W, "cores=4", W, "accesses=20000", "--json"],
    ["simulate", "server-2s", W, "pattern=random", W, "working_set_kib=16777216", W,
     "mktme_fraction=0.5", W, "no_encrypt_fraction=0.2", W, "mktme_keys=3", W, "cores=2",
     W, "accesses=20000", "--json"],
    ["simulate", "server-2s", W, "kind=lackey", W, "cores=2", W, "warmup=2000", W,
     "accesses=10000", "--json"],
    ["scenario", "run", "s2-stale-writeback-no-flush", "--json", "--trace"],
    ["scenario", "run", "s7-hotplug-offline-migrates", "--json", "--trace"],
    ["scenario", "run", "s14-key-per-customer", "--json", "--trace"],
]


def digest(checkout: Path, args: list[str]) -> str:
    python = checkout / ".venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "mktme_des", *args], cwd=checkout,
                          capture_output=True, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"{checkout}: {' '.join(args)} failed: {done.stderr.decode().strip()}")
    # A scenario's output names its file, under the checkout: compare what is inside it.
    return hashlib.sha256(done.stdout.replace(bytes(checkout), b"CHECKOUT")).hexdigest()


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    old, new = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    same = True
    for args in CASES:
        a, b = digest(old, args), digest(new, args)
        same &= a == b
        print(f"{'same' if a == b else 'DIFFERENT'} {a[:16]} {b[:16]}  {' '.join(args)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
