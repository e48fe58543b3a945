"""Experiments: schema errors, seeds, executors agreeing byte for byte, resuming after a kill,
failures recorded, Ctrl-C, results loading and figures redrawn from a results folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mktme_des.cli import main
from mktme_des.errors import ConfigError, UserError
from mktme_des.experiments import drivers
from mktme_des.experiments.confidence import mean_ci, t975_table
from mktme_des.experiments.progress import Progress
from mktme_des.experiments.runner import run_experiment
from mktme_des.experiments.spec import load_experiment, run_identity
from mktme_des.results import load

ROOT = Path(__file__).resolve().parents[1]

SMALL = """
[experiment]
name = "{name}"
title = "test sweep"
seed = 5
replications = {reps}

[base]
model = "server-2s"

[base.workload]
pattern = "random"
cores = 1
accesses = {accesses}
working_set_kib = 8192

[sweep]
grid."model_overrides.mktme.aes_latency_ns" = [0, 32]
grid."model_overrides.mktme.aes_pipelined" = [true, false]
points = [
  {{ "tag.pages" = "plain", "workload.mktme_fraction" = 0.0, "workload.no_encrypt_fraction" = 1.0 }},
  {{ "tag.pages" = "MKTME", "workload.mktme_fraction" = 1.0 }},
]

[metrics]
record = ["time_ns", "read_latency_mean_ns", "aes_queue_mean_ns", "hit_rate_L1D"]

[[derive]]
name = "slowdown"
metric = "time_ns"
baseline = {{ "tag.pages" = "plain" }}
match = ["model_overrides.mktme.aes_latency_ns", "model_overrides.mktme.aes_pipelined"]

[[figure]]
kind = "line"
file = "slowdown"
x = "model_overrides.mktme.aes_latency_ns"
y = "slowdown"
hue = "tag.pages"
facet = "model_overrides.mktme.aes_pipelined"
xlabel = "AES latency (ns)"
ylabel = "slowdown"

[[figure]]
kind = "cdf"
file = "cdf"
hue = "tag.pages"
where = {{ "model_overrides.mktme.aes_latency_ns" = 32, "model_overrides.mktme.aes_pipelined" = true }}

[[figure]]
kind = "stacked"
file = "breakdown"
x = "model_overrides.mktme.aes_latency_ns"
y = ["read_latency_mean_ns", "aes_queue_mean_ns"]
hue = "tag.pages"
where = {{ "model_overrides.mktme.aes_pipelined" = false }}
"""


def write(tmp: Path, name: str = "small", reps: int = 2, accesses: int = 1500,
          text: str | None = None) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(text if text is not None else SMALL.format(name=name, reps=reps,
                                                               accesses=accesses))
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One run of the small sweep on 2 local workers: (experiment file, results folder)."""
    tmp = tmp_path_factory.mktemp("small")
    path = write(tmp)
    out = tmp / "results"
    summary = run_experiment(path, workers=2, out=out, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert summary.exit_code == 0, summary.text()
    return path, out


# --- the file format ----------------------------------------------------------------------

@pytest.mark.parametrize("old, new, field, reason", [
    ('seed = 5', 'seeed = 5', "experiment.seeed", "unknown key"),
    ('grid."model_overrides.mktme.aes_pipelined" = [true, false]',
     'grid."workload.read_fraction" = [0.5, 2]', "sweep.grid.workload.read_fraction[1]",
     "at most 1.0"),
    ('grid."model_overrides.mktme.aes_pipelined" = [true, false]',
     'grid."model_overrides.mktme.aes_latncy_ns" = [1]',
     "sweep.grid.model_overrides.mktme.aes_latncy_ns[0]", "unknown key"),
    ('grid."model_overrides.mktme.aes_pipelined" = [true, false]',
     'grid."workload.cores" = [1, 64]', "sweep.grid.workload.cores[1]", "has 32"),
    ('"tag.pages" = "MKTME", "workload.mktme_fraction" = 1.0',
     '"tag.pages" = "MKTME", "workload.mktme_fraction" = "all"',
     "sweep.points[1].workload.mktme_fraction", "expected a number"),
    ('"hit_rate_L1D"]', '"hit_rate_L1D", "bogus_metric"]', "metrics.record[4]",
     "unknown metric 'bogus_metric'"),
    ('"hit_rate_L1D"]', '"hit_rate_L3"]', "metrics.record[3]", "hit_rate_L3"),
    ('title = "test sweep"', 'driver = "no-such-driver"', "experiment.driver",
     "unknown driver 'no-such-driver'"),
    ('y = "slowdown"', 'y = "speedup"', "figure[0].y", "'speedup'"),
    ('baseline = { "tag.pages" = "plain" }', 'baseline = { "tag.pages" = "none" }',
     "derive[0].baseline", "no point"),
])
def test_schema_errors_name_file_and_field(tmp_path, capsys, old, new, field, reason):
    text = SMALL.format(name="bad", reps=1, accesses=100)
    assert old in text
    path = write(tmp_path, "bad", text=text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert err.value.file == str(path)
    assert err.value.field == field
    assert reason in err.value.reason
    # The command line says the same in one line, exit 2, and runs nothing.
    code = main(["run", str(path), "--out", str(tmp_path / "out")])
    out, errtext = capsys.readouterr()
    assert code == 2 and str(path) in errtext and field in errtext
    assert "Traceback" not in errtext
    assert not (tmp_path / "out").exists()


def test_unknown_experiment_is_a_user_error(capsys):
    assert main(["run", "no-such-experiment"]) == 2
    assert "no such experiment" in capsys.readouterr().err


def test_shipped_experiments_validate():
    for name in ("e1-aes-latency", "e2-mktme-fraction", "demo-sweep"):
        exp = load_experiment(name)
        assert exp.runs and exp.spec.figure


# --- seeds ----------------------------------------------------------------------------------

def _seeds(path: Path) -> dict[tuple, tuple[int, str]]:
    exp = load_experiment(path)
    return {(json.dumps(r.point.assigned, sort_keys=True), r.replication): (r.seed, r.key)
            for r in exp.runs}


def test_seed_does_not_depend_on_order(tmp_path):
    text = SMALL.format(name="a", reps=2, accesses=100)
    a = write(tmp_path, "a", text=text)
    # The same points listed in another order: grid keys, grid values and points reversed.
    lines = text.replace('[0, 32]', '[32, 0]').replace('[true, false]', '[false, true]')
    grid1 = 'grid."model_overrides.mktme.aes_latency_ns" = [32, 0]'
    grid2 = 'grid."model_overrides.mktme.aes_pipelined" = [false, true]'
    lines = lines.replace(grid1 + "\n" + grid2, grid2 + "\n" + grid1)
    p1 = '  { "tag.pages" = "plain", "workload.mktme_fraction" = 0.0, "workload.no_encrypt_fraction" = 1.0 },'
    p2 = '  { "tag.pages" = "MKTME", "workload.mktme_fraction" = 1.0 },'
    lines = lines.replace(p1 + "\n" + p2, p2 + "\n" + p1)
    b = write(tmp_path, "b", text=lines)
    sa, sb = _seeds(a), _seeds(b)
    assert load_experiment(a).runs[0].key != load_experiment(b).runs[0].key  # order changed
    assert sa == sb
    seeds = [s for s, _ in sa.values()]
    assert len(set(seeds)) == len(seeds)  # every point and replication its own seed


def test_seed_is_a_function_of_seed_config_and_replication():
    cfg = {"workload": {"accesses": 10}, "model": "server-2s"}
    same = {"model": "server-2s", "workload": {"accesses": 10}}
    s1, k1 = run_identity(1, "workload", cfg, 0, {})
    assert (s1, k1) == run_identity(1, "workload", same, 0, {})
    assert run_identity(2, "workload", cfg, 0, {})[0] != s1
    assert run_identity(1, "workload", cfg, 1, {})[0] != s1
    s2, k2 = run_identity(1, "workload", cfg, 0, {"tag.x": "label"})
    assert s2 == s1 and k2 != k1  # labels name the result file but do not change the seed


# --- executors agree byte for byte -----------------------------------------------------------

def _snapshot(out: Path) -> dict[str, bytes]:
    files = {"table.csv": (out / "table.csv").read_bytes()}
    for p in sorted((out / "points").iterdir()):
        files[p.name] = p.read_bytes()
    return files


def test_one_and_two_workers_give_identical_results(tmp_path, small_run):
    path, out2 = small_run
    out1 = tmp_path / "one"
    summary = run_experiment(path, workers=1, out=out1, plot=False, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert summary.exit_code == 0 and summary.computed == 16
    assert _snapshot(out1) == _snapshot(out2)
    assert (out1 / "table.csv").read_bytes() == (out2 / "table.csv").read_bytes()


# --- resuming, failures, Ctrl-C ----------------------------------------------------------

def _start(path: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mktme_des", "run", str(path), "--workers", "1", "--out",
         str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_points(out: Path, n: int, proc: subprocess.Popen, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted((out / "points").glob("*.json")) if (out / "points").is_dir() else []
        if len(files) >= n:
            return files
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("the run produced no point files in time")


def test_killed_run_resumes_without_recomputing(tmp_path):
    path = write(tmp_path, "killed", reps=1, accesses=20000)  # 8 runs, ~0.3 s each
    out = tmp_path / "out"
    proc = _start(path, out)
    try:
        _wait_for_points(out, 2, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes
        proc.communicate()
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes())
              for p in (out / "points").glob("*.json")}
    assert 2 <= len(before) < 8, "the run finished before it could be killed"
    assert not (out / "table.csv").exists()

    summary = run_experiment(path, workers=1, out=out, plot=False, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert summary.exit_code == 0
    assert summary.cached == len(before) and summary.computed == 8 - len(before)
    for name, (mtime, data) in before.items():  # finished runs were kept, not redone
        p = out / "points" / name
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data
    table = load(out)
    points = list(table["point"])
    assert len(points) == 8 and len(set(points)) == 8
    assert {f"{k}.json" for k in points} == {p.name for p in (out / "points").glob("*.json")}
    assert not list(out.rglob("*.tmp"))


def test_ctrl_c_stops_cleanly(tmp_path):
    path = write(tmp_path, "interrupted", reps=1, accesses=20000)
    out = tmp_path / "out"
    proc = _start(path, out)
    try:
        _wait_for_points(out, 1, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    done = list((out / "points").glob("*.json"))
    assert 1 <= len(done) < 8
    assert all(json.loads(p.read_text())["status"] == "ok" for p in done)


CALLS_FILE = "MKTME_DES_TEST_CALLS"


@drivers.register("test-flaky", metrics={"double": "twice the value", "label": "a string"})
def _flaky(config: dict, seed: int) -> dict:
    """A test-only driver: fails for value 2, counts its calls in a file."""
    calls = os.environ.get(CALLS_FILE)
    if calls:
        with open(calls, "a") as fh:
            fh.write(f"{config['value']}\n")
    if config["value"] == 2:
        raise ValueError("injected failure for value 2")
    return {"double": 2 * config["value"], "label": f"v{config['value']}"}


FLAKY = """
[experiment]
name = "flaky"
driver = "test-flaky"
seed = 1

[base]
value = 0

[sweep]
grid.value = [1, 2, 3]

[metrics]
record = ["double", "label"]
"""


def test_failing_point_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    calls = tmp_path / "calls"
    monkeypatch.setenv(CALLS_FILE, str(calls))
    path = write(tmp_path, "flaky", text=FLAKY)
    out = tmp_path / "out"
    code = main(["run", str(path), "--workers", "2", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert "1 failed" in text and "injected failure for value 2" in text
    records = [json.loads(p.read_text()) for p in (out / "points").glob("*.json")]
    assert len(records) == 3
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["params"] == {"value": 2}
    assert failed[0]["error"] == "ValueError: injected failure for value 2"
    assert "Traceback" in failed[0]["traceback"] and "_flaky" in failed[0]["traceback"]
    lines = (out / "table.csv").read_text().splitlines()
    assert lines[0] == "value,replication,seed,point,double,label" and len(lines) == 3
    table = load(out)
    assert list(table["value"]) == [1, 3] and list(table["double"]) == [2, 6]
    assert list(table["label"]) == ["v1", "v3"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["failed"] == 1 and manifest["ok"] == 2
    # The next run retries the failed point only. With another thread running in this
    # process, the workers come from a fork server, which must find this test's driver too.
    calls.write_text("")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert main(["run", str(path), "--workers", "1", "--out", str(out)]) == 1
    finally:
        stop.set()
        other.join()
    assert calls.read_text().split() == ["2"]
    assert "1 failed" in capsys.readouterr().out


# --- results and figures ----------------------------------------------------------------

def test_table_layout_and_derived_column(small_run):
    path, out = small_run
    exp = load_experiment(path)
    header = (out / "table.csv").read_text().splitlines()[0].split(",")
    assert header == exp.params + ["replication", "seed", "point"] + exp.metrics + ["slowdown"]
    assert header[:4] == ["model_overrides.mktme.aes_latency_ns",
                          "model_overrides.mktme.aes_pipelined", "tag.pages",
                          "workload.mktme_fraction"]
    rows = [dict(zip(header, line.split(","), strict=True))
            for line in (out / "table.csv").read_text().splitlines()[1:]]
    assert [r["point"] for r in rows] == [r.key for r in exp.runs]  # the experiment's order
    by = {(r["model_overrides.mktme.aes_latency_ns"], r["model_overrides.mktme.aes_pipelined"],
           r["tag.pages"], r["replication"]): r for r in rows}
    for (lat, pip, pages, rep), r in by.items():
        base = by[(lat, pip, "plain", rep)]
        assert float(r["slowdown"]) == float(r["time_ns"]) / float(base["time_ns"])
        if pages == "plain":
            assert r["slowdown"] == "1.0"
    assert float(by[("32", "true", "MKTME", "0")]["slowdown"]) > 1.05
    assert (out / "experiment.toml").read_text() == path.read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["versions"]["mktme-des"] and manifest["versions"]["simpy"]
    assert manifest["runs"] == 16 and manifest["workers"] == 2
    assert {r["seed"] for r in manifest["run_list"]} == {r.seed for r in exp.runs}
    rec = json.loads((out / "points" / f"{exp.runs[0].key}.json").read_text())
    assert rec["config"] == exp.runs[0].point.config and rec["status"] == "ok"
    hist = rec["series"]["read_latency_hist"]
    assert sum(hist["counts"]) > 0 and len(hist["values_ns"]) == len(hist["counts"])
    assert "read_latency_hist" not in header


def test_results_load_shape(small_run, monkeypatch):
    _, out = small_run
    ncols = len((out / "table.csv").read_text().splitlines()[0].split(","))
    if _has("pandas"):
        import pandas as pd

        df = load(out)
        assert isinstance(df, pd.DataFrame) and df.shape == (16, ncols)
        assert df["model_overrides.mktme.aes_pipelined"].dtype == bool
        assert df["slowdown"].dtype == float
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    arr = load(out / "table.csv")
    assert arr.shape == (16,) and len(arr.dtype.names) == ncols
    assert arr.dtype["replication"].kind == "i" and arr.dtype["time_ns"].kind == "f"
    assert arr.dtype["model_overrides.mktme.aes_pipelined"].kind == "b"
    assert set(arr["tag.pages"]) == {"plain", "MKTME"}
    if _has("pyarrow"):
        import pyarrow.parquet as pq

        pt = pq.read_table(out / "table.parquet")
        assert pt.column_names == list(arr.dtype.names) and pt.num_rows == 16
        assert pt.column("time_ns").to_pylist() == arr["time_ns"].tolist()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_results_load_bad_path(tmp_path, capsys):
    with pytest.raises(UserError, match="no such results"):
        load(tmp_path / "missing")
    with pytest.raises(UserError, match="no table.csv"):
        load(tmp_path)
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no such results folder" in capsys.readouterr().err


def test_plot_redraws_identical_figures(small_run, capsys):
    _, out = small_run
    figures = out / "figures"
    names = sorted(p.name for p in figures.iterdir())
    assert names == ["breakdown.png", "breakdown.svg", "cdf.png", "cdf.svg",
                     "slowdown.png", "slowdown.svg"]
    before = {n: (figures / n).read_bytes() for n in names}
    for n in names:
        (figures / n).unlink()
    assert main(["plot", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == names
    assert {n: (figures / n).read_bytes() for n in names} == before
    assert before["slowdown.png"].startswith(b"\x89PNG")
    assert b"<svg" in before["cdf.svg"]


def test_confidence_interval():
    assert t975_table(1) == 12.706 and t975_table(30) == 2.042
    assert 2.021 < t975_table(35) < 2.042 and t975_table(5000) == 1.96
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert hi - mean == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)


def test_progress_lines_and_bar():
    import io

    plain = io.StringIO()
    p = Progress(3, label="x", stream=plain, tty=False)
    p.update(True, "a")
    p.update(False, "b: boom")
    assert plain.getvalue().splitlines()[0].startswith("x 1/3")
    assert "FAILED b: boom" in plain.getvalue()
    bar = io.StringIO()
    p = Progress(2, label="x", stream=bar, tty=True)
    p.update(True)
    p.update(True)
    p.close()
    assert "\r" in bar.getvalue() and "[" + "#" * Progress.WIDTH + "]" in bar.getvalue()
    assert "2/2" in bar.getvalue()


# Last: a Dask cluster leaves threads behind in this process.
def test_dask_cluster_gives_identical_results(tmp_path, small_run, capsys):
    distributed = pytest.importorskip("distributed")
    path, local = small_run
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        code = main(["run", str(path), "--scheduler", cluster.scheduler_address,
                     "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "on dask x2" in text
    assert _snapshot(out) == _snapshot(local)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["executor"] == "dask" and manifest["workers"] == 2


WARM = """
[experiment]
name = "warm"
{warmup}

[base]
model = "client-1s"

[base.workload]
pattern = "sequential"
access_bytes = 64
working_set_kib = 512
accesses = 8192

[sweep]
grid."workload.read_fraction" = [1.0]
{sweep}

[metrics]
record = ["dram_reads", "accesses"]
"""


@pytest.mark.parametrize("warmup, sweep, expect", [
    ("", 'grid."workload.warmup" = [0, 8192]', {0: 8192, 8192: 0}),
    ("warmup = 8192", "", {None: 0}),
])
def test_workload_warm_up_from_the_sweep_or_the_experiment(tmp_path, warmup, sweep, expect):
    path = tmp_path / "warm.toml"
    path.write_text(WARM.format(warmup=warmup, sweep=sweep))
    out = tmp_path / "results"
    summary = run_experiment(path, workers=1, out=out, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert summary.exit_code == 0, summary.text()
    rows = [line.split(",") for line in (out / "table.csv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    got = {}
    for r in rows:
        rec = dict(zip(header, r, strict=True))
        assert rec["accesses"] == "8192"  # warm-up accesses are not counted
        got[int(rec["workload.warmup"]) if "workload.warmup" in rec else None] = int(rec["dram_reads"])
    assert got == expect


EXPLORE = """
[experiment]
name = "x"
driver = "explore"
seed = 1

[base]
runs = 30

[sweep]
grid.jitter_ns = [100, 2000]
points = [
  {{ "scenario" = "s2-stale-writeback-flush" }},
  {{ "scenario" = "{race}" }},
]

[metrics]
record = ["p_fail", "failed", "outcomes", "p_fail_low", "p_fail_high"]
"""


def test_explore_driver_separates_orders_from_races(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(EXPLORE.format(race="s7-hotplug-race-unsafe"))
    out = tmp_path / "results"
    summary = run_experiment(path, workers=1, out=out, stream=open(os.devnull, "w"))  # noqa: SIM115
    assert summary.exit_code == 0, summary.text()
    lines = (out / "table.csv").read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]
    got = {(r["scenario"], float(r["jitter_ns"])): r for r in rows}
    for jitter in (100.0, 2000.0):
        safe = got[("s2-stale-writeback-flush", jitter)]
        assert safe["failed"] == "0" and safe["outcomes"] == "1"
    assert got[("s7-hotplug-race-unsafe", 100.0)]["failed"] == "0"
    wide = got[("s7-hotplug-race-unsafe", 2000.0)]
    assert int(wide["failed"]) > 0 and wide["outcomes"] == "2"
    assert float(wide["p_fail_low"]) < float(wide["p_fail"]) < float(wide["p_fail_high"])


def test_explore_driver_unknown_scenario_names_the_sweep_entry(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(EXPLORE.format(race="s99-nothing"))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert "sweep.points[1]" in str(err.value) and "s99-nothing" in str(err.value)


def test_pconfig_driver_offline_cost_grows_with_the_pages_migrated():
    from mktme_des.config.schema import Context

    driver = drivers.get("pconfig")
    out = {}
    for pages in (2, 6):
        config = driver.resolve_config({"model": "server-2s", "measure": "offline",
                                        "pages": pages, "keys": 2}, Context("test", "base"))
        assert config["policy_resolved"]["migrate_on_offline"]
        out[pages] = driver.fn(config, 1)
        assert out[pages]["pages"] == pages and out[pages]["online_ns"] is None
    # Each page is read line by line from its old home before it is written at the new one:
    # at least 64 DRAM accesses (55 ns each in server-2s) per page, one after another.
    per_page = (out[6]["offline_ns"] - out[2]["offline_ns"]) / 4
    assert per_page > 64 * 55


def test_calibrate_names_the_fitted_parameter_and_its_sensitivity(tmp_path, capsys):
    """(b) is fitted through compute_ns_per_page: calibrate says so and shows how the figure
    moves with it (less work per page, a larger share of flushing) and with the 2019 flush."""
    assert main(["calibrate", "--out", str(tmp_path / "cal")]) == 0
    out = capsys.readouterr().out
    assert "fitted, not validated: compute_ns_per_page" in out
    import csv

    rows = {r["figure"]: r for r in csv.DictReader(open(tmp_path / "cal" / "table.csv"))}  # noqa: SIM115
    b = rows["b"]
    model, half, double = (float(b[k]) for k in ("model_pct", "model_pct_at_half",
                                                 "model_pct_at_double"))
    assert half > model > double > 0
    assert float(b["model_pct_alloc_flush_keyid0"]) > model  # a flush on every allocation
    assert rows["a"]["fitted"] == "" and rows["c"]["fitted"] == ""
