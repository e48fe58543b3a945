"""Unbounded work: a workload beyond the simulated-time or memory cap, or a slots point
beyond the tenant cap, is refused in one line naming the field and the limit; a long run within
them says how long it may take before it starts (mktme_des/workloads/budget.py)."""

from __future__ import annotations

import random

import pytest
from test_edges import refused

from mktme_des import limits
from mktme_des.cli import main
from mktme_des.config.model import load_model
from mktme_des.engine.time import MAX_NS
from mktme_des.simulate import run_workload, workload_from
from mktme_des.workloads import budget
from mktme_des.workloads.synthetic import prepare, synthetic_ops


@pytest.mark.parametrize("field", ["accesses", "warmup"])
def test_work_beyond_the_longest_simulated_time_is_refused(capsys, field):
    line = refused(capsys, "simulate", "server-2s", "-w", f"{field}=1000000000000",
                   where=f"command line: workload.{field}", says=(f"{MAX_NS:g} ns", "at most "))
    model = load_model("server-2s")
    most = int(line.rsplit("at most ", 1)[1].split()[0])
    floor = model.cache[0].hit_latency_cycles / model.platform.frequency_ghz
    assert most * floor <= MAX_NS < (most + 2) * floor


def test_the_time_cap_counts_compute_between_accesses(capsys):
    # 10^9 accesses of 1 us of work each are 10^15 ns: refused although 10^9 L1 hits fit.
    refused(capsys, "simulate", "client-1s", "-w", "accesses=1000000000", "-w", "compute_ns=1000",
            where="workload.accesses", says=("compute_ns",))
    spec = workload_from({"accesses": 1_000_000_000})
    budget.check_budget(load_model("client-1s"), spec, None)  # within both caps: no error


@pytest.mark.parametrize("settings, field", [
    (("accesses=10000000", "cores=4", "working_set_kib=1000000"), "accesses"),
    (("accesses=20000000", "cores=16", "working_set_kib=1048576"), "working_set_kib"),
    (("accesses=100", "warmup=5000000", "cores=4", "working_set_kib=1048576"), "warmup"),
])
def test_work_beyond_the_memory_budget_names_the_binding_field(capsys, settings, field):
    argv = ["simulate", "server-2s"]
    for s in settings:
        argv += ["-w", s]
    refused(capsys, *argv, where=f"workload.{field}",
            says=(str(limits.MAX_LINES), f"{limits.MEMORY_BUDGET_BYTES >> 30} GiB"))


def test_a_shared_working_set_is_counted_once(capsys):
    spec = workload_from({"accesses": 10_000_000, "cores": 16, "sharing": "shared",
                          "working_set_kib": 65536})
    assert budget.lines_touched(spec) == 65536 * 1024 // 64
    budget.check_budget(load_model("server-2s"), spec, None)


def test_the_caps_apply_to_experiment_points(capsys, tmp_path):
    exp = tmp_path / "e.toml"
    exp.write_text('[experiment]\nname = "x"\n[base]\nmodel = "client-1s"\n[base.workload]\n'
                   'accesses = 1000000000000\n[metrics]\nrecord = ["time_ns"]\n')
    refused(capsys, "run", str(exp), "--workers", "0", "--out", str(tmp_path / "out"),
            where=f"{exp}: base.workload.accesses", says=(f"{MAX_NS:g} ns",))
    assert not (tmp_path / "out").exists()


def test_slots_tenants_are_capped(capsys, tmp_path):
    exp = tmp_path / "e.toml"
    exp.write_text('[experiment]\nname = "x"\ndriver = "slots"\n[base]\nmodel = "client-1s"\n'
                   'arrival_per_us = 1000.0\nduration_us = 1e7\n'
                   '[metrics]\nrecord = ["tenants"]\n')
    refused(capsys, "run", str(exp), "--workers", "0", "--out", str(tmp_path / "out"),
            where=f"{exp}: base.duration_us", says=(str(limits.MAX_TENANTS), "arrival_per_us"))
    exp.write_text(exp.read_text().replace("arrival_per_us = 1000.0", "arrival_per_us = 1e9"))
    refused(capsys, "run", str(exp), "--workers", "0", "--out", str(tmp_path / "out"),
            where=f"{exp}: base.arrival_per_us")


def _random_spec(rng: random.Random):
    return workload_from({
        "pattern": rng.choice(["sequential", "stride", "random", "zipf"]),
        "cores": rng.randint(1, 3), "sharing": rng.choice(["private", "shared"]),
        "accesses": rng.randint(1, 3000), "warmup": rng.choice([0, rng.randint(1, 500)]),
        "working_set_kib": rng.choice([4, 8, 64, 256]), "access_bytes": rng.choice([8, 64]),
        "read_fraction": rng.random(), "compute_ns": rng.choice([0.0, 3.5]),
        "stride_bytes": rng.choice([64, 4096])})


def test_lines_touched_bounds_every_stream():
    """Property: the distinct lines the op streams of a random workload touch never exceed
    :func:`budget.lines_touched`, and simulated time never undercuts the per-access floor."""
    from mktme_des.hw import ops as O
    from mktme_des.hw.platform import Platform

    rng = random.Random(15)
    model = load_model("client-1s")
    for _ in range(12):
        spec = _random_spec(rng)
        plat = Platform(model, seed=1)
        regions = prepare(plat, spec)
        lines = set()
        for cpu, region in regions.items():
            for op in synthetic_ops(spec, cpu, region, plat.streams.get(f"workload/cpu{cpu}")):
                if op[0] in (O.READ, O.WRITE):
                    lines.add(op[2] // 64)
        assert len(lines) <= budget.lines_touched(spec), spec
        _, ran = run_workload(model, spec, seed=2, oracle=False)
        per_core = spec.warmup + spec.accesses
        assert ran.now_ns >= per_core * budget.access_floor_ns(model, spec) * (1 - 1e-9)


def test_a_long_run_is_estimated_before_it_starts():
    small = workload_from({"accesses": 1000})
    assert budget.estimate_text(small) is None
    n = int(limits.ESTIMATE_ABOVE_S / limits.CPU_US_PER_ACCESS[1] * 1e6) + 1
    text = budget.estimate_text(workload_from({"accesses": n, "cores": 2}))
    assert text is not None and f"{2 * n:.4g} accesses" in text
    assert "Ctrl-C" in text
    assert budget.estimate_text(workload_from({"accesses": n - 2})) is None
    big = budget.estimate_text(workload_from({"accesses": 10**11, "cores": 4}))
    assert "days" in big


def test_simulate_prints_the_estimate_on_stderr_only(capsys, monkeypatch):
    """The estimate goes to stderr before the run; the statistics on stdout are unchanged."""
    monkeypatch.setattr(limits, "ESTIMATE_ABOVE_S", 0.0)
    assert main(["simulate", "client-1s", "-w", "accesses=200", "--json"]) == 0
    shown = capsys.readouterr()
    assert shown.err.startswith("simulate: 200 accesses")
    monkeypatch.setattr(limits, "ESTIMATE_ABOVE_S", 1e9)
    assert main(["simulate", "client-1s", "-w", "accesses=200", "--json"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == shown.out
