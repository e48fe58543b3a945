"""``make demo``: what memory encryption does to read latency, and a race made visible.

1. Zipf-distributed reads and writes over a 256 MiB working set on the two-socket model with
   memory interleaved across the sockets every 4 KiB (so half the misses go to the remote
   socket), with the pages under an MKTME KeyID, under KeyID 0 (TME) and under a NO_ENCRYPT
   KeyID: a read-latency CDF and a table.
2. Scenario S2 with and without the flush: the verdicts, and their timelines.
3. The S4 race explored: PCONFIG against a dirty line's writeback, rerun with jittered
   timing; each outcome saved as a scenario file that reproduces it.
4. A small real parameter sweep (``experiments/demo-sweep.toml``) through the experiment
   runner, with its progress bar: slowdown against AES-XTS latency.

Everything lands in ``results/demo/`` (the exploration in ``explore/``, the sweep in
``sweep/``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from mktme_des.config.model import load_model
from mktme_des.engine.stats import LatencyStat
from mktme_des.figures import cdf, new_figure, save
from mktme_des.outputs import make_folder, write_text
from mktme_des.scenarios.explore import explore
from mktme_des.scenarios.report import timeline_figure, verdict_text
from mktme_des.scenarios.runner import run_scenario
from mktme_des.simulate import run_workload, workload_from

MODEL = "server-2s"
CONFIGS = {
    "no encryption (NO_ENCRYPT KeyID)": {"mktme_fraction": 0.0, "no_encrypt_fraction": 1.0},
    "TME (KeyID 0)": {"mktme_fraction": 0.0, "no_encrypt_fraction": 0.0},
    "MKTME (KeyID 1)": {"mktme_fraction": 1.0, "no_encrypt_fraction": 0.0},
}
WORKLOAD = {"pattern": "zipf", "zipf_alpha": 1.05, "working_set_kib": 262144,
            "read_fraction": 0.8, "accesses": 20000, "cores": 4}
MODEL_OVERRIDES = {"memory": {"interleave_bytes": 4096}}
EXPLORE = "s4-pconfig-vs-writeback-key-first"


def _write_text(path: Path, text: str) -> None:
    write_text(path, text, "demo")


def latency_demo(out: Path) -> list[dict]:
    rows = []
    fig, ax = new_figure()
    styles = iter([{"linestyle": "-"}, {"linestyle": "--", "linewidth": 2.5},
                   {"linestyle": ":", "linewidth": 2}])
    for label, extra in CONFIGS.items():
        model = load_model(MODEL, MODEL_OVERRIDES)
        stats, plat = run_workload(model, workload_from(dict(WORKLOAD, **extra), "demo"), seed=1)
        lat = LatencyStat()
        for core in plat.cores:
            lat.merge(core.read_lat)
        values, counts = lat.samples_ns()
        cdf(ax, values, counts, label, **next(styles))
        d = lat.to_dict()
        rows.append({"config": label, "reads": d["count"], "mean_ns": round(d["mean_ns"], 3),
                     "p50_ns": d["p50_ns"], "p99_ns": d["p99_ns"],
                     "aes_queue_mean_ns": round(max(m["aes_engine"]["queue_delay_mean_ns"]
                                                    for m in stats["memory_controllers"].values()), 3)})
    base = rows[0]["mean_ns"]
    for r in rows:
        r["added_ns"] = round(r["mean_ns"] - base, 3)
        r["slowdown_pct"] = round(100 * (r["mean_ns"] / base - 1), 2)
    ax.set_xlabel("read latency (ns)")
    ax.set_ylabel("fraction of reads")
    ax.set_title("server-2s, Zipf accesses over 256 MiB, 4 KiB socket interleave")
    ax.set_xscale("log")
    ax.legend(loc="upper left")
    save(fig, out / "read_latency_cdf")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    _write_text(out / "read_latency.csv", buf.getvalue())
    return rows


def demo(out: Path) -> int:
    make_folder(out, "--out")
    print(f"1/4 read latency with and without encryption ({MODEL}) ...")
    rows = latency_demo(out)
    for r in rows:
        print(f"    {r['config']:<34} mean {r['mean_ns']:7.2f} ns  p99 {r['p99_ns']:7.2f} ns"
              f"  (+{r['added_ns']:.2f} ns, {r['slowdown_pct']:+.2f}%)")
    print("2/4 scenario S2: a stale K1 writeback clobbers data written through K2 ...")
    verdicts = {}
    for name in ("s2-stale-writeback-no-flush", "s2-stale-writeback-flush"):
        res = run_scenario(name)
        timeline_figure(res, out / f"{name}.png")
        _write_text(out / f"{name}.txt", verdict_text(res, trace=True) + "\n")
        verdicts[name] = {"ok": res.ok, "violations": len(res.violations)}
        print(f"    {name}: {'PASS' if res.ok else 'FAIL'}, {len(res.violations)} oracle violation(s)")
        for v in res.violations:
            print(f"      {v['cause']}")
    print(f"    results in {out}/: read_latency_cdf.png, read_latency.csv, S2 timelines, traces")
    print("3/4 exploring S4: PCONFIG vs a dirty line's writeback, timing jittered by ±1 µs ...")
    found = explore(EXPLORE, runs=100, jitter_ns=1000, save=out / "explore")
    print("\n".join("    " + line for line in found.text().splitlines()[3:-2]))
    explored = found.to_dict()
    _write_text(out / "summary.json", json.dumps({"latency": rows, "scenarios": verdicts,
                                                  "explore": explored}, indent=2) + "\n")
    print("4/4 a small sweep: slowdown vs AES-XTS latency (experiments/demo-sweep.toml) ...")
    from mktme_des.experiments.runner import run_experiment

    summary = run_experiment("demo-sweep", out=out / "sweep")
    print("\n".join("    " + line for line in summary.text().splitlines()))
    return summary.exit_code
