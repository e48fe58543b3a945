"""Every input channel refuses a mistake with one line naming the file, the field and what is
allowed, and exit status 2: never a traceback (the cases a fuzzer found, one test each)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mktme_des.cli import main
from mktme_des.engine.time import MAX_NS
from mktme_des.limits import MAX_DEPTH, MAX_FILE_BYTES, max_workers

HEAD = """[scenario]
name = "T"
title = "t"
model = "client-1s"
"""


def refused(capsys, *argv: str, where: str = "", says: tuple[str, ...] = ()) -> str:
    """Run the CLI; assert exit 2 and one clear line (naming ``where``, saying ``says``)."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mktme-des: error: ")
    assert where in lines[0], err
    for text in says:
        assert text in lines[0], err
    return lines[0]


def scenario(tmp_path: Path, body: str, name: str = "t.toml") -> str:
    path = tmp_path / name
    path.write_text(HEAD + body)
    return str(path)


def cpu_read_at(at: str) -> str:
    return f'[[cpu]]\nid = 0\nops = [ {{ op = "read", keyid = 0, addr = 0x1000, at = {at} }} ]\n'


# -- numbers: finite and bounded ------------------------------------------------------------------
@pytest.mark.parametrize("at", ["inf", "nan", "-inf", "1e16"])
def test_scenario_time_is_finite_and_bounded(capsys, tmp_path, at):
    path = scenario(tmp_path, cpu_read_at(at))
    refused(capsys, "scenario", "run", path, where=f"{path}: cpu[0].ops[0].at",
            says=(f"0 to {MAX_NS:g}",))


def test_scenario_time_at_the_bound_is_accepted(capsys, tmp_path):
    path = scenario(tmp_path, cpu_read_at(f"{MAX_NS:.0f}"))
    assert main(["scenario", "run", path, "--json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("setting, field, says", [
    ("mktme.aes_latency_ns=1e308", "mktme.aes_latency_ns", f"at most {MAX_NS:g} ns"),
    ("mktme.aes_latency_ns=inf", "mktme.aes_latency_ns", "finite"),
    ("dram.bandwidth_gbps=1e-300", "dram.bandwidth_gbps", "at least 0.01"),
    ("pconfig.latency_ns=nan", "pconfig.latency_ns", "finite"),
])
def test_model_override_bounds(capsys, setting, field, says):
    refused(capsys, "simulate", "client-1s", "-m", setting, "-w", "accesses=10",
            where=f"client-1s: {field}", says=(says,))


def test_cycles_field_has_an_upper_bound(capsys, tmp_path):
    text = Path("models/client-1s.toml").read_text()
    at = text.index("hit_latency_cycles")
    end = text.index("\n", at)
    model = tmp_path / "m.toml"
    model.write_text(text[:at] + "hit_latency_cycles = 1000000000000000" + text[end:])
    line = refused(capsys, "simulate", str(model), "-w", "accesses=10",
                   where=f"{model}: cache[0].hit_latency_cycles", says=("at most",))
    assert "cycles" in line


def test_jitter_must_be_finite(capsys):
    refused(capsys, "scenario", "explore", "s1-alias-read", "--jitter-ns", "inf", "--runs", "2",
            where="--jitter-ns", says=(f"{MAX_NS:g}",))


def test_experiment_value_that_would_fail_every_run_is_refused(capsys, tmp_path):
    exp = tmp_path / "e.toml"
    exp.write_text('[experiment]\nname = "x"\n[base]\nmodel = "client-1s"\n'
                   "model_overrides.mktme.aes_latency_ns = 1e308\n[base.workload]\n"
                   'accesses = 10\n[metrics]\nrecord = ["time_ns"]\n')
    refused(capsys, "run", str(exp), "--workers", "0", "--out", str(tmp_path / "out"),
            where=f"{exp}: base.model_overrides.mktme.aes_latency_ns", says=("at most",))
    assert not (tmp_path / "out").exists()


# -- command-line values ---------------------------------------------------------------------------
def test_negative_seed(capsys):
    refused(capsys, "simulate", "client-1s", "--seed", "-1", "-w", "accesses=10",
            where="--seed -1", says=("0..",))


def test_value_and_fields_for_the_same_key(capsys):
    refused(capsys, "simulate", "client-1s", "-w", "a=1", "-w", "a.b=2", where="-w 'a.b=2'",
            says=("a is already given a value",))
    refused(capsys, "simulate", "client-1s", "-w", "a.b=1", "-w", "a=2", where="-w 'a=2'",
            says=("already has fields",))


def test_workers_are_capped_by_the_cpus(capsys, tmp_path):
    cap = max_workers()
    line = refused(capsys, "scenario", "explore", "s1-alias-read", "--workers", str(cap + 1),
                   "--runs", "2", where="--workers", says=(f"1..{cap}", "per CPU"))
    assert str(os.cpu_count()) in line
    refused(capsys, "run", "demo-sweep", "--workers", "100000", "--out", str(tmp_path / "o"),
            where="--workers 100000", says=(f"0..{cap}",))
    assert not (tmp_path / "o").exists()


def test_bogus_scheduler_fails_at_once(capsys, tmp_path):
    start = time.monotonic()
    refused(capsys, "run", "demo-sweep", "--scheduler", "bogus", "--out", str(tmp_path / "o"),
            where="--scheduler 'bogus'", says=("HOST:PORT",))
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("argv, where", [
    (["scenario", "run", "s1\0x"], "NAME"),
    (["simulate", "client\0-1s"], "MODEL"),
    (["run", "demo\0"], "EXPERIMENT"),
    (["simulate", "client-1s", "-w", "pattern=a\0b"], "-w"),
])
def test_nul_byte_in_a_name(capsys, argv, where):
    refused(capsys, *argv, where=where, says=("NUL byte",))


def test_nul_byte_in_a_file_field(capsys, tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(HEAD.replace('"client-1s"', '"client\\u0000-1s"') + cpu_read_at("1"))
    refused(capsys, "scenario", "run", str(path), where=f"{path}: scenario.model",
            says=("NUL byte",))


# -- scenario checks at load -----------------------------------------------------------------------
def test_op_name_not_a_string(capsys, tmp_path):
    path = scenario(tmp_path, '[[cpu]]\nid = 0\nops = [ { op = [1] } ]\n')
    refused(capsys, "scenario", "run", path, where=f"{path}: cpu[0].ops[0]",
            says=("string field 'op'",))


def test_write_from_an_unknown_capture(capsys, tmp_path):
    path = scenario(tmp_path, '[[cpu]]\nid = 0\nops = [ { op = "write", keyid = 0, '
                    'addr = 0x1000, from = "nope" } ]\n')
    refused(capsys, "scenario", "run", path, where=f"{path}: cpu[0].ops[0].from",
            says=("'nope'",))


CAPTURE = ('[[cpu]]\nid = 0\nops = [ {{ op = "write", keyid = 0, addr = 0x1000, from = "c"{after} '
           '}} ]\n[[agent]]\nname = "a"\nops = [ {{ op = "raw_read", addr = 0x2000, name = "c", '
           'at = 500, label = "made" }} ]\n')


def test_capture_used_before_it_is_made(capsys, tmp_path):
    path = scenario(tmp_path, CAPTURE.format(after=""))
    refused(capsys, "scenario", "run", path, where=f"{path}: cpu[0].ops[0].from",
            says=("before the capture 'c' is made", "after"))


def test_capture_used_after_it_is_made(capsys, tmp_path):
    path = scenario(tmp_path, CAPTURE.format(after=', after = "made"'))
    assert main(["scenario", "run", path]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("body, where, says", [
    ('[[system]]\nname = "s"\nops = [ { op = "keytable", package = 0, keyid = 99 } ]\n',
     "system[0].ops[0].keyid", ("0..15",)),
    ('[[system]]\nname = "s"\nops = [ { op = "keytable", package = 0, keyid = 1, '
     'expect = "same-as-package-7" } ]\n',
     "system[0].ops[0].expect", ("package 7 does not exist", "0..0")),
    ('[[process]]\nname = "p"\nops = [ { op = "mmap", vma = "r", pages = 1 }, '
     '{ op = "read", vma = "r", offset = 60, size = 16 } ]\n',
     "process[0].ops[1].size", ("1..4",)),
    ('[model_overrides.mktme]\nmax_keys = 8\n[[agent]]\nname = "a"\n'
     'ops = [ { op = "set_key", keyid = 9, mode = "key" } ]\n',
     "agent[0].ops[0].keyid", ("1..8", "max_keys")),
], ids=["keytable-keyid", "keytable-missing-package", "read-crossing-a-line",
        "set-key-above-max-keys"])
def test_scenario_ops_out_of_range_are_refused_at_load(capsys, tmp_path, body, where, says):
    path = scenario(tmp_path, body)
    refused(capsys, "scenario", "run", path, where=f"{path}: {where}", says=says)


PCONFIG = ('[model_overrides.pconfig]\nerror_model = "{model}"\n[[system]]\nname = "s"\n'
           'ops = [ {{ op = "pconfig", keyid = 1, command = "SET_KEY_DIRECT", key_field = "{key}", '
           'tweak_field = "{tweak}", expect = "{expect}" }} ]\n')


@pytest.mark.parametrize("model, key, expect", [
    ("sdm", "11" * 32, "#GP"),              # AES-XTS-128 uses 16 bytes: the rest is reserved
    ("sdm", "11" * 16 + "00" * 16, "ok"),   # reserved bytes zero: programmed
    ("rfc", "11" * 32, "ok"),               # the rev 1.3 error model has no code for it
])
def test_pconfig_reserved_key_bytes(capsys, tmp_path, model, key, expect):
    path = scenario(tmp_path, PCONFIG.format(model=model, key=key, tweak="22" * 16,
                                             expect=expect))
    assert main(["scenario", "run", path]) == 0, capsys.readouterr().out
    capsys.readouterr()


# -- input files -----------------------------------------------------------------------------------
def test_file_size_is_capped(capsys, tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    refused(capsys, "scenario", "run", str(big), where=str(big), says=("16 MiB",))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero on this system")
def test_endless_device_is_not_read_without_limit(capsys):
    refused(capsys, "scenario", "run", "/dev/zero", where="/dev/zero", says=("16 MiB",))


def test_deep_nesting(capsys, tmp_path):
    path = scenario(tmp_path, "[model_overrides]\nx = " + "[" * 1000 + "]" * 1000 + "\n")
    refused(capsys, "scenario", "run", path, where=path, says=(f"{MAX_DEPTH} deep",))
    path = scenario(tmp_path, "[model_overrides]\nx = " + "[" * 40 + "]" * 40 + "\n", "u.toml")
    refused(capsys, "scenario", "run", path, where=path, says=(f"{MAX_DEPTH} deep",))


def test_deep_nesting_on_the_command_line(capsys):
    refused(capsys, "simulate", "client-1s", "-w", "x=" + "[" * 1000 + "]" * 1000,
            where="-w", says=("deep",))


def test_policy_file_whose_policy_is_not_a_table(capsys, tmp_path):
    pol = tmp_path / "pol.toml"
    pol.write_text("policy = 3\n")
    path = scenario(tmp_path, f'policy = "{pol}"\n[policy_overrides]\nretries = 1\n'
                    '[[system]]\nname = "s"\nops = [ { op = "wbinvd" } ]\n')
    refused(capsys, "scenario", "run", path, where=f"{pol}: policy", says=("expected a table",))


@pytest.mark.parametrize("text, says", [
    ("[1, 2]", "expected a JSON object"),
    ('{"params": 3}', "params: expected a list"),
    ("[" * 5000 + "]" * 5000, "spec.json"),
    ("not json", "unreadable"),
])
def test_plot_on_a_malformed_spec(capsys, tmp_path, text, says):
    (tmp_path / "spec.json").write_text(text)
    refused(capsys, "plot", str(tmp_path), where=str(tmp_path / "spec.json"), says=(says,))


# -- experiment files ------------------------------------------------------------------------------
def test_experiment_driver_never_imports_what_a_file_names(capsys, tmp_path):
    import sys

    exp = tmp_path / "e.toml"
    exp.write_text('[experiment]\nname = "x"\ndriver = "this:x"\n[metrics]\n'
                   'record = ["time_ns"]\n')
    sys.modules.pop("this", None)
    refused(capsys, "run", str(exp), "--workers", "0", "--out", str(tmp_path / "o"),
            where=f"{exp}: experiment.driver", says=("registered drivers: ", "workload"))
    assert "this" not in sys.modules


def test_label_checks_are_linear(tmp_path):
    """10,000 chained ops (each after the previous label) validate in well under a second per
    thousand: the label/after graph is walked once, not once per op."""
    from mktme_des.scenarios.spec import load_scenario

    ops = ",\n".join(f'{{ op = "sfence", label = "l{i}"' + (f', after = "l{i - 1}"' if i else "")
                     + " }" for i in range(10_000))
    path = scenario(tmp_path, f"[[cpu]]\nid = 0\nops = [\n{ops}\n]\n")
    start = time.monotonic()
    sc = load_scenario(path)
    assert time.monotonic() - start < 10
    assert len(sc.cpu_ops[0]) == 10_000 * 2 + 9_999  # each op, its SIGNAL, and AWAITs
