"""The command line: listing, simulate, determinism, errors as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mktme_des.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_list_json(capsys):
    code, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    assert code == 0
    assert {m["name"] for m in data["models"]} >= {"client-1s", "server-2s", "server-4s"}
    assert any(s["id"] == "S2-no-flush" for s in data["scenarios"])


def test_list_text(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "server-2s" in out and "s9-replay" in out


SMALL = ["-w", "pattern=random", "-w", "accesses=3000", "-w", "working_set_kib=8192",
         "-w", "cores=2"]


def test_simulate_json_is_deterministic(capsys):
    _, a, _ = run(capsys, "simulate", "server-2s", *SMALL, "--seed", "3", "--json")
    _, b, _ = run(capsys, "simulate", "server-2s", *SMALL, "--seed", "3", "--json")
    _, c, _ = run(capsys, "simulate", "server-2s", *SMALL, "--seed", "4", "--json")
    assert a == b
    assert a != c
    stats = json.loads(a)
    assert stats["accesses"] == 6000
    assert stats["oracle"]["counts"]["violations"] == 0
    assert sum(stats["served_by"].values()) == 6000


def test_simulate_text_summary(capsys):
    code, out, _ = run(capsys, "simulate", "client-1s", *SMALL)
    assert code == 0 and "read latency" in out and "oracle" in out


def test_simulate_lackey_trace(capsys):
    code, out, _ = run(capsys, "simulate", "server-2s", "-w", "kind=lackey", "-w",
                       "accesses=20000", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["accesses"] == 20000
    assert stats["oracle"]["counts"]["checked"] > 0
    assert stats["oracle"]["counts"]["violations"] == 0


@pytest.mark.parametrize("args, needle", [
    (["-w", "pattern=spiral"], "workload.pattern"),
    (["-w", "read_fraction=1.5"], "workload.read_fraction"),
    (["-w", "acesses=10"], "workload.acesses"),
    (["-w", "cores=100"], "workload.cores = 100"),
    (["-w", "kind=lackey", "-w", "trace=missing.lackey"], "workload.trace"),
    (["-m", "dram.banks=0"], "dram.banks"),
    (["-w", "mktme_keys=100"], "KeyIDs"),
])
def test_simulate_bad_input(capsys, args, needle):
    code, out, err = run(capsys, "simulate", "server-2s", "-w", "accesses=10", *args)
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert out == ""


def test_simulate_unknown_model(capsys):
    code, _, err = run(capsys, "simulate", "server-9s")
    assert code == 2 and "server-9s" in err and "no such model" in err
    assert "client-1s" in err  # what is available


def test_demo_writes_results(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path))
    assert code == 0
    for name in ("read_latency_cdf.png", "read_latency.csv", "summary.json",
                 "s2-stale-writeback-no-flush.png", "s2-stale-writeback-no-flush.txt"):
        assert (tmp_path / name).stat().st_size > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["config"]: r for r in summary["latency"]}
    # Encryption adds latency on DRAM reads: MKTME reads are slower on average.
    assert rows["MKTME (KeyID 1)"]["mean_ns"] > rows["no encryption (NO_ENCRYPT KeyID)"]["mean_ns"]
    assert summary["scenarios"]["s2-stale-writeback-no-flush"]["violations"] >= 1
    # The S4 race shows both outcomes, each saved as a file that reproduces it.
    outcomes = summary["explore"]["outcomes"]
    assert {o["ok"] for o in outcomes} == {True, False}
    assert all(Path(o["file"]).exists() for o in outcomes)
    assert not list(tmp_path.glob(".*.tmp"))
    # The small sweep ran through the experiment runner and left its table and figures.
    table = (tmp_path / "sweep" / "table.csv").read_text().splitlines()
    assert len(table) == 1 + 12
    assert (tmp_path / "sweep" / "figures" / "demo-slowdown.png").stat().st_size > 0


def test_bench_json_reports_each_workload_against_simpy(capsys):
    """The shape of ``bench --json`` (speed itself is measured, not tested): every workload's
    accesses are the ones it simulated, and its ratio is the median of its rounds' ratios."""
    code, out, _ = run(capsys, "bench", "--quick", "--rounds", "3", "--json")
    assert code == 0
    result = json.loads(out)
    import mktme_des

    assert result["compiled"] is mktme_des.compiled()
    assert set(result["workloads"]) >= {"hits", "dram", "trace", "hits_16cores", "dram_16cores"}
    assert result["rounds"] == 3 and result["clock"] == "cpu"
    assert result["simpy_timeouts_per_s"] == result["workloads"]["hits"]["simpy_timeouts_per_s"]
    for w in result["workloads"].values():
        assert w["accesses"] >= 1000 and w["accesses_per_s"] > 0
        assert w["ratio_min"] <= w["ratio"] <= w["ratio_max"]


def test_bench_rounds_out_of_range_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exc:
        run(capsys, "bench", "--rounds", "0")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "rounds from 1 to 50" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["list"], ["scenario", "run", "s1-alias-read", "--json"]])
def test_light_commands_do_not_import_what_they_do_not_need(argv):
    """``list`` needs no numpy, simpy, matplotlib or Dask; ``scenario run`` no matplotlib or
    Dask (startup time is what a user waits for on every call)."""
    import subprocess
    import sys

    heavy = ["matplotlib", "dask", "distributed"] + (["numpy", "simpy"] if argv == ["list"] else [])
    code = ("import sys, io, contextlib\nfrom mktme_des.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main({argv!r})\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
