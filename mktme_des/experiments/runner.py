"""``mktme-des run``: run an experiment's sweep, resumably, and write its table and figures.

:func:`run_experiment` does, in order:

1. load and validate the experiment, every point included (nothing runs on a bad file);
2. prepare ``results/<name>/`` (or ``out``): delete temporary files a killed run left, copy the
   experiment file (``experiment.toml``) and what ``plot`` needs (``spec.json``);
3. find the runs to do: every run (point x replication) whose result file is missing, failed,
   or lacks a metric now recorded; all of them with ``force``;
4. execute them on a backend (:mod:`executors`): worker processes (default: one per core), this
   process (``workers=0``) or a Dask cluster (``scheduler``); as each run finishes, the parent
   writes its result file atomically, so a run killed at any point keeps every finished run and
   the next run does only the rest. A run whose driver raises is recorded as failed, with its
   traceback, and the others go on; failed runs are retried by the next run;
5. write ``table.csv`` (and ``table.parquet``), ``manifest.json``, and draw the figures.

Ctrl-C stops at once: queued runs are dropped, workers are stopped, finished runs are kept, and
the table is not rewritten; run the same command again to continue.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mktme_des.errors import UserError
from mktme_des.experiments import manifest as manifest_mod
from mktme_des.experiments.executors import WorkerLost, check_backend, make_backend
from mktme_des.experiments.plots import fmt, plot_results
from mktme_des.experiments.progress import Progress, clock
from mktme_des.experiments.spec import FORMAT, Experiment, Run, load_experiment
from mktme_des.experiments.store import Store, clean, is_complete, write_text
from mktme_des.experiments.table import build_rows, write_csv, write_parquet


@dataclass
class RunSummary:
    """What a call of :func:`run_experiment` did."""

    experiment: str
    out: Path
    points: int
    runs: int
    cached: int = 0
    computed: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0
    interrupted: bool = False
    worker_lost: str | None = None
    wall_s: float = 0.0
    executor: str | None = None
    workers: int | None = None
    table: Path | None = None
    rows: int = 0
    figures: list[Path] = field(default_factory=list)
    figure_error: str | None = None
    stale: int = 0

    @property
    def exit_code(self) -> int:
        """0: every run succeeded; 1: failures, lost runs or a figure error; 130: Ctrl-C."""
        if self.interrupted:
            return 130
        return 1 if (self.failed or self.missing or self.figure_error) else 0

    def text(self) -> str:
        where = f" on {self.executor} x{self.workers}" if self.executor else ""
        lines = [f"{self.experiment}: {self.runs} runs ({self.points} points x "
                 f"{self.runs // max(self.points, 1)} replications): {self.computed} computed, "
                 f"{self.cached} cached, {len(self.failed)} failed, in {clock(self.wall_s)}"
                 f"{where}"]
        if self.interrupted:
            lines.append(f"  interrupted: {self.missing} runs not done; run the same command "
                         "again to continue (finished runs are kept)")
        elif self.worker_lost:
            lines.append(f"  stopped: {self.worker_lost}; {self.missing} runs not done; run "
                         "the same command again to continue")
        if self.table is not None:
            lines.append(f"  table:   {self.table} ({self.rows} rows)")
        if self.figures:
            lines.append("  figures: " + ", ".join(str(f) for f in self.figures))
        if self.figure_error:
            lines.append(f"  figures: FAILED: {self.figure_error}")
        if self.stale:
            lines.append(f"  {self.stale} result files in {self.out / 'points'} belong to points "
                         "no longer in the experiment; they are not in the table")
        if self.failed:
            lines.append(f"  failed runs ({len(self.failed)}; they are retried by the next run):")
            for f in self.failed:
                lines.append(f"    {f['what']}: {f['error']}  [{f['file']}]")
        return "\n".join(lines)


def describe(run: Run) -> str:
    """A run as a person reads it: its sweep assignments and replication."""
    parts = [f"{k}={fmt(v)}" for k, v in run.point.assigned.items()]
    return (", ".join(parts) or "base") + f" #{run.replication}"


def _record(exp: Experiment, run: Run, res: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "format": FORMAT, "key": run.key, "experiment": exp.name, "driver": exp.driver.name,
        "params": run.point.params, "replication": run.replication, "seed": run.seed,
        "config": exp.driver.stored_config(run.point.config), "status": res["status"],
    }
    if res["status"] == "ok":
        metrics, series = clean(res["metrics"]), clean(res["series"])
        lacking = [m for m in exp.metrics if m not in metrics]
        lacking += [s for s in exp.needed_series if s not in series]
        if not lacking:
            rec.update(metrics=metrics, series=series)
            return rec
        rec.update(status="failed", error=f"the driver reported no {', '.join(map(repr, lacking))}",
                   traceback="")
        return rec
    rec.update(error=res.get("error", "unknown error"), traceback=res.get("traceback", ""))
    return rec


def _old_runs(store: Store) -> dict[str, dict[str, Any]]:
    """Wall time and executor of every run the previous manifest lists (runs cached now
    keep them)."""
    try:
        old = json.loads((store.root / "manifest.json").read_text())
        return {r["key"]: {"wall_s": r.get("wall_s"), "executor": r.get("executor")}
                for r in old.get("run_list", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def run_experiment(experiment: str | Path | Experiment, *, workers: int | None = None,
                   scheduler: str | None = None, out: str | Path | None = None,
                   force: bool = False, plot: bool = True,
                   stream: TextIO | None = None) -> RunSummary:
    """Run ``experiment`` (a name, a file, or a loaded :class:`Experiment`); see the module
    docstring. Progress goes to ``stream`` (default stderr). Raises UserError (ConfigError)
    for a bad experiment file before anything runs."""
    started, t0 = manifest_mod.now(), time.perf_counter()
    check_backend(workers, scheduler)
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    out = Path(out) if out is not None else Path("results") / exp.name
    store = Store(out)
    with store.lock():
        return _run(exp, store, workers=workers, scheduler=scheduler, force=force, plot=plot,
                    stream=stream, started=started, t0=t0)


def _run(exp: Experiment, store: Store, *, workers: int | None, scheduler: str | None,
         force: bool, plot: bool, stream: TextIO | None, started: str, t0: float) -> RunSummary:
    """The body of :func:`run_experiment`, with the results folder locked."""
    out = store.root
    store.prepare()
    write_text(out / "experiment.toml", exp.text)
    store.write_json("spec.json", exp.plot_spec())
    stream = stream if stream is not None else sys.stderr

    records: dict[str, dict[str, Any]] = {}
    todo: list[Run] = []
    for run in exp.runs:
        rec = None if force else store.load_point(run.key)
        if is_complete(rec, exp.metrics, exp.needed_series):
            records[run.key] = rec
        else:
            todo.append(run)
    summary = RunSummary(experiment=exp.name, out=out, points=len(exp.points),
                         runs=len(exp.runs), cached=len(exp.runs) - len(todo))
    keys = {run.key for run in exp.runs}
    summary.stale = sum(1 for p in store.points.glob("*.json") if p.stem not in keys)
    timing = _old_runs(store)
    computed: set[str] = set()
    backend = None
    if todo:
        backend = make_backend(workers, scheduler)
        summary.executor, summary.workers = backend.name, backend.workers
        progress = Progress(len(todo), label=exp.name, stream=stream)
        progress.message(f"{exp.name}: {len(todo)} of {len(exp.runs)} runs to do on "
                         f"{backend.name} x{backend.workers}")
        tasks = [(exp.driver.module, exp.driver.name, r.point.config, r.seed) for r in todo]
        try:
            for i, res in backend.run(tasks):
                run = todo[i]
                rec = _record(exp, run, res)
                path = store.save_point(rec)
                records[run.key] = rec
                computed.add(run.key)
                timing[run.key] = {"wall_s": res.get("wall_s"), "executor": backend.name}
                ok = rec["status"] == "ok"
                if not ok:
                    summary.failed.append({"key": run.key, "what": describe(run),
                                           "error": rec["error"], "file": str(path)})
                progress.update(ok, describe(run) + ("" if ok else f": {rec['error']}"))
        except KeyboardInterrupt:
            summary.interrupted = True
            backend.cancel()
        except WorkerLost as exc:
            summary.worker_lost = str(exc)
            backend.cancel()
        finally:
            progress.close()
            backend.close()
        summary.computed = len(computed)
        summary.missing = len(todo) - len(computed)

    if not (summary.interrupted or summary.worker_lost):
        rows = build_rows(exp, records)
        summary.table = write_csv(out / "table.csv", exp.columns, rows)
        summary.rows = len(rows)
        if write_parquet(out / "table.parquet", exp.columns, rows) is None:
            (out / "table.parquet").unlink(missing_ok=True)
    summary.wall_s = time.perf_counter() - t0
    run_list = []
    for run in exp.runs:
        rec = records.get(run.key)
        run_list.append({"key": run.key, "params": run.point.params,
                         "replication": run.replication, "seed": run.seed,
                         "status": rec["status"] if rec else "missing",
                         "computed": run.key in computed,
                         **timing.get(run.key, {"wall_s": None, "executor": None})})
    store.write_json("manifest.json", manifest_mod.manifest(
        exp, started=started, wall_s=summary.wall_s, backend=backend, runs=run_list,
        interrupted=summary.interrupted))
    if plot and summary.table is not None:
        try:
            summary.figures = plot_results(out, log=lambda s: print(s, file=stream))
        except UserError as exc:
            summary.figure_error = str(exc)
    summary.wall_s = time.perf_counter() - t0
    return summary
