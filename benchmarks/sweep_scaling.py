"""How a sweep scales with local worker processes: the same sweep with 1 and with 2 workers.

    .venv/bin/python benchmarks/sweep_scaling.py [--points 8] [--accesses 20000] [--workers 1 2]
                                                 [--repeat 2]

Writes a throw-away experiment (random accesses from 4 cores over 64 MiB each on server-2s,
one point per AES-XTS latency, each about a second of simulation), runs it with each worker
count in turn (``--repeat`` rounds, interleaved) into a temporary folder with ``--force``
semantics, checks the tables are byte-identical, and prints each wall time and the ratio of
the best ones. Wall times include everything ``mktme-des run`` does: validating the sweep,
starting the worker processes, writing the table. On a 2-core machine the target is a
ratio of at most 0.6 for 2 workers (ideal: 0.5; process start-up and the serial table and
validation work are the rest).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from mktme_des.experiments.runner import run_experiment

TEMPLATE = """
[experiment]
name = "sweep-scaling"
title = "benchmark: one sweep, several worker counts"
driver = "workload"
seed = 11
replications = 1

[base]
model = "server-2s"

[base.workload]
pattern = "random"
cores = 4
accesses = {accesses}
working_set_kib = 65536

[sweep]
grid."model_overrides.mktme.aes_latency_ns" = {latencies}

[metrics]
record = ["time_ns", "read_latency_mean_ns"]
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=8, help="points in the sweep (default 8)")
    ap.add_argument("--accesses", type=int, default=20000,
                    help="accesses per core per point (default 20000, about 1 s a point)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2,
                    help="rounds over the worker counts, interleaved; the best wall time of "
                    "each counts (other load on the machine only ever slows a round down)")
    args = ap.parse_args(argv)
    latencies = [float(4 * i) for i in range(args.points)]
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as tmp:
        exp = Path(tmp) / "sweep-scaling.toml"
        exp.write_text(TEMPLATE.format(accesses=args.accesses, latencies=latencies))
        best: dict[int, float] = {}
        tables = []
        for rnd in range(args.repeat):
            for n in args.workers:
                out = Path(tmp) / f"workers-{n}"
                t0 = time.perf_counter()
                summary = run_experiment(exp, workers=n, out=out, force=True, plot=False,
                                         stream=io.StringIO())
                wall = time.perf_counter() - t0
                if summary.exit_code:
                    print(summary.text(), file=sys.stderr)
                    return 1
                best[n] = min(wall, best.get(n, wall))
                tables.append((out / "table.csv").read_bytes())
                print(f"round {rnd + 1}: {n} worker(s): {args.points} points in {wall:6.2f} s "
                      f"({wall / args.points:.2f} s per point)")
        same = all(t == tables[0] for t in tables)
        print(f"tables byte-identical across worker counts and rounds: {same}")
        first = args.workers[0]
        for n in args.workers[1:]:
            print(f"best wall time with {n} workers / with {first}: "
                  f"{best[n] / best[first]:.3f}")
        return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
