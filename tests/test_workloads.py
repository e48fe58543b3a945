"""Workload warm-up: statistics restart together after every core's warm-up, state does not."""

from __future__ import annotations

import json

import pytest

from mktme_des.config.model import load_model
from mktme_des.errors import UserError
from mktme_des.hw.platform import Platform
from mktme_des.oracle import Oracle
from mktme_des.simulate import run_workload, simulate, workload_from
from mktme_des.workloads.synthetic import start

# 2 MiB per core fits the 24 MiB LLC of server-2s many times over, not its 1.25 MiB L2.
FITS_LLC = {"pattern": "sequential", "working_set_kib": 2048, "read_fraction": 0.7,
            "accesses": 4096, "access_bytes": 64, "cores": 2}
LINES = 2048 * 1024 // 64


def test_without_warm_up_a_first_pass_misses_to_dram():
    stats = simulate("server-2s", workload_from(FITS_LLC))
    assert stats["served_by"].get("DRAM", 0) == 2 * 4096  # every line touched once, cold
    assert "measured_from_ns" not in stats


def test_after_a_full_pass_of_warm_up_the_llc_serves_every_access():
    stats = simulate("server-2s", workload_from(dict(FITS_LLC, warmup=LINES)))
    assert stats["accesses"] == 2 * 4096  # only the measured accesses are counted
    assert stats["served_by"] == {"LLC": 2 * 4096}
    assert all(mc["reads"] == 0 for mc in stats["memory_controllers"].values())
    assert stats["memory_controllers"]["pkg0"]["aes_engine"]["jobs"] == 0


def test_every_core_starts_measuring_when_the_last_one_ends_its_warm_up():
    plat = Platform(load_model("server-2s"), seed=0, oracle=Oracle())
    for core in plat.cores:
        core.log = []
    # Random accesses: the two cores' warm-ups take different times.
    cpus = start(plat, workload_from(dict(FITS_LLC, pattern="random", warmup=1000,
                                          accesses=1000)))
    plat.run()
    t0 = plat.measured_from
    logs = [plat.cores[cpu].log for cpu in cpus]
    assert all(len(log) == 2000 for log in logs)
    warm_ends = [log[999][1] for log in logs]
    assert max(warm_ends) == t0 and min(warm_ends) < t0
    assert all(log[1000][0] == t0 for log in logs)
    stats = plat.stats()
    assert stats["measured_from_ns"] == t0 / 1000
    assert stats["time_ns"] == (max(c.finished_at for c in plat.cores) - t0) / 1000


def test_warm_up_statistics_are_gone_but_the_oracle_saw_every_read():
    spec = workload_from(dict(FITS_LLC, warmup=3000, accesses=1000))
    stats, _ = run_workload("server-2s", spec)
    reads = sum(c["read_latency"]["count"] for c in stats["cores"].values())
    oracle = stats["oracle"]["counts"]
    assert reads < 2 * 1000
    assert oracle["checked"] + oracle.get("unchecked", 0) > reads  # warm-up reads too
    assert oracle.get("violations", 0) == 0


def test_warm_up_is_deterministic_and_changes_the_measured_phase():
    spec = workload_from(dict(FITS_LLC, pattern="random", warmup=2000, accesses=2000))
    a = json.dumps(simulate("server-2s", spec, seed=5), sort_keys=True)
    b = json.dumps(simulate("server-2s", spec, seed=5), sort_keys=True)
    cold = json.dumps(simulate("server-2s", workload_from(dict(FITS_LLC, pattern="random",
                                                               accesses=2000)), seed=5))
    assert a == b
    assert a != cold


def test_compute_between_accesses_counts_whole_accesses_of_warm_up():
    spec = workload_from(dict(FITS_LLC, cores=1, compute_ns=2.0, warmup=LINES, accesses=500))
    stats = simulate("server-2s", spec)
    assert stats["cores"]["cpu0"]["ops"] == {"compute": 500}
    assert stats["served_by"] == {"LLC": 500}


def test_a_warm_up_as_long_as_the_trace_is_refused():
    spec = workload_from({"kind": "lackey", "accesses": 1000, "warmup": 500_000})
    with pytest.raises(UserError, match="warmup = 500000 leaves nothing to measure of the "
                                        "458536-access trace"):
        simulate("server-2s", spec)


# -- prefetching ahead: overlapping misses ---------------------------------------------------

def test_prefetches_go_out_distance_accesses_ahead_and_other_ops_keep_their_place():
    from mktme_des.hw import ops as O
    from mktme_des.workloads.synthetic import prefetching

    a = [(O.READ, 1, 64 * i, 8, None) for i in range(4)]
    compute = (O.COMPUTE, 0, 0, 5, None)
    stream = list(prefetching(iter([a[0], a[1], compute, a[2], a[3]]), 2))

    def p(i):
        return (O.PREFETCH, 1, 64 * i, None, None)

    assert stream == [p(0), p(1), p(2), a[0], p(3), a[1], compute, a[2], a[3]]
    assert list(prefetching(iter(a), 0)) == a


def test_prefetching_ahead_overlaps_misses_without_extra_dram_reads():
    random = {"pattern": "random", "working_set_kib": 65536, "accesses": 6000, "cores": 1}
    base = simulate("server-2s", workload_from(random))
    ahead = simulate("server-2s", workload_from(dict(random, prefetch_distance=8)))
    assert ahead["accesses"] == base["accesses"] == 6000
    assert ahead["served_by"].get("prefetch", 0) > 3000  # loads that met their line in flight
    assert ahead["time_ns"] < base["time_ns"] / 4  # up to 8 misses overlap
    dram = [sum(mc["reads"] for mc in s["memory_controllers"].values()) for s in (base, ahead)]
    assert dram[0] == dram[1]  # the same lines, each fetched once
    assert ahead["oracle"]["counts"]["violations"] == 0


@pytest.mark.parametrize("overlap", ["prefetch", "fill buffers"])
@pytest.mark.parametrize("engine_x_channel", [0.375, 1.0])
def test_with_enough_misses_in_flight_encrypted_reads_run_at_the_engine_rate(overlap,
                                                                              engine_x_channel):
    """16 cores x 32 misses in flight, from prefetching ahead or from load misses the cores go
    on under. An engine slower than the channel (0.375x: 1.2 lines/ns on server-2s) holds
    encrypted reads to its rate while plaintext reads outrun it; one that keeps up with the
    channel (the default) lets encrypted reads go nearly as fast as plaintext ones."""
    flood = {"pattern": "random", "working_set_kib": 16384, "accesses": 1000, "cores": 16,
             "spread": "fill", "read_fraction": 1.0}
    over = {"mktme": {"aes_throughput_x_channel": engine_x_channel}}
    if overlap != "prefetch":
        over["core"] = {"fill_buffers": 32}
    model = load_model("server-2s", over)
    engine_rate = model.aes_lines_per_ns
    if overlap == "prefetch":
        flood["prefetch_distance"] = 32
    rate = {}
    for name, mk in (("plain", 0.0), ("mktme", 1.0)):
        stats = simulate(model, workload_from(dict(flood, mktme_fraction=mk,
                                                   no_encrypt_fraction=1.0 - mk)))
        mc = stats["memory_controllers"]["pkg0"]
        rate[name] = mc["reads"] / stats["time_ns"]
        if name == "mktme" and engine_x_channel < 1:
            assert mc["aes_engine"]["utilisation"] > 0.95
            assert mc["aes_engine"]["queue_delay_mean_ns"] > 20
    assert rate["plain"] > 1.5 * 1.2
    if engine_x_channel < 1:
        assert rate["mktme"] <= engine_rate * 1.01
    else:
        assert rate["mktme"] > 0.9 * rate["plain"]


def test_a_long_simulation_shows_its_progress_and_the_same_results():
    """A watcher thread draws accesses handed out / total with an ETA; the run's results
    are byte for byte those of a run without it."""
    import io
    import json

    from mktme_des.simulate import run_workload, workload_from

    spec = workload_from({"pattern": "random", "working_set_kib": 4096, "accesses": 40_000,
                          "cores": 2})
    quiet, _ = run_workload("server-2s", spec, seed=3)
    stream = io.StringIO()
    shown, _ = run_workload("server-2s", spec, seed=3, progress=stream, after_s=0.0)
    assert json.dumps(shown, sort_keys=True) == json.dumps(quiet, sort_keys=True)
    text = stream.getvalue()
    assert text.startswith("\rsimulate [") and text.endswith("\n")
    assert "80000/80000  100%" in text  # the last redraw counts every access of both cores


@pytest.mark.parametrize("placement", ["local", "remote"])
def test_a_memoryless_packages_cores_work_on_the_nearest_memory(placement):
    """On server-2s-memoryless both cores' working sets land on package 0's memory, whatever
    the placement (it is the only package with some), and the oracle finds nothing wrong;
    package 1's core reaches it over the socket hop only."""
    w = {"pattern": "random", "working_set_kib": 4096, "accesses": 3000, "cores": 2,
         "spread": "packages", "placement": placement}
    stats = simulate("server-2s-memoryless", workload_from(w), oracle=True)
    mcs = stats["memory_controllers"]
    assert mcs["pkg1"]["reads"] == 0 and mcs["pkg0"]["reads"] > 0
    assert "DRAM" not in stats["cores"]["cpu16"]["served_by"]
    assert stats["cores"]["cpu0"]["served_by"].get("DRAM", 0) > 0
    assert stats["oracle"]["counts"]["violations"] == 0
