"""Every shipped scenario, reached through the CLI; plus what S1 returns, recomputed
independently with the `cryptography` package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mktme_des.cli import main
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import list_scenarios, load_scenario

SHIPPED = [p.stem for p in list_scenarios()]
REQUIRED = {"S1", "S2-no-flush", "S2-flush", "S3-flush-only", "S3-flush-and-zero", "S8", "S9",
            "S11", "S13"}


def test_required_scenarios_ship():
    assert {load_scenario(p).info.name for p in list_scenarios()} >= REQUIRED


@pytest.mark.parametrize("name", SHIPPED)
def test_scenario_passes_through_cli(name, capsys):
    code = main(["scenario", "run", name, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out["checks"]
    assert out["ok"] is True
    assert out["checks"] and all(c["ok"] for c in out["checks"])
    assert {"ok", "checks", "reads", "oracle"} <= set(out)
    for r in out["reads"]:
        assert {"cpu", "time_ns", "keyid", "addr", "data"} <= set(r)


def xts(key: bytes, pa: int, data: bytes, encrypt: bool) -> bytes:
    c = Cipher(algorithms.AES(key), modes.XTS((pa // 64).to_bytes(16, "little")))
    op = c.encryptor() if encrypt else c.decryptor()
    return op.update(data) + op.finalize()


def test_s1_bytes_are_the_k2_decryption_of_k1_ciphertext():
    sc = load_scenario("s1-alias-read")
    res = run_scenario(sc)
    k1, k2 = (bytes.fromhex(k.key) for k in sc.file.keys)
    pa = 0x10000
    plain = bytes.fromhex(sc.file.cpu[0].ops[0]["data"])
    by_name = {c["name"]: c for c in res.checks}
    before = bytes.fromhex(by_name["K2 read, K1 line still dirty in cache"]["data"])
    after = bytes.fromhex(by_name["K2 read after the flush"]["data"])
    # Before the flush DRAM holds nothing: K2 decrypts zero bytes.
    assert before == xts(k2, pa, bytes(64), False)
    # After it, K2 decrypts K1's ciphertext: garbage, and never the plaintext.
    assert after == xts(k2, pa, xts(k1, pa, plain, True), False)
    assert after != plain
    assert bytes.fromhex(by_name["DRAM after the flush"]["data"]) == xts(k1, pa, plain, True)


def test_s2_violation_names_the_stale_writeback():
    res = run_scenario("s2-stale-writeback-no-flush")
    (v,) = res.violations
    assert v["cpu"] == 1 and v["keyid"] == 2
    assert "writeback of (K1, 0x20000)" in v["cause"] and "via (K2, 0x20000)" in v["cause"]
    assert v["expected"] != v["actual"]


def test_failed_expectation_exits_1(tmp_path, capsys):
    text = Path(load_scenario("s8-relocation").path).read_text()
    bad = tmp_path / "s8-wrong.toml"
    bad.write_text(text.replace('name = "same key, moved ciphertext", expect = "garbage"',
                                'name = "same key, moved ciphertext", expect = "expected"'))
    assert main(["scenario", "run", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] same key, moved ciphertext" in out


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('op = "clflush"', 'op = "clflsh"', 1), "cpu[0].ops[1].op"),
    (lambda t: t.replace("addr = 0x40000, data", "addr = 0x40000, dta", 1), "cpu[0].ops[0].dta"),
    (lambda t: t.replace('model = "server-2s"', 'model = "no-such-model"'), "scenario.model"),
    (lambda t: t.replace("seed = 8", 'seed = "8"'), "scenario.seed"),
    (lambda t: t.replace('expect = "garbage"', 'expect = "rubbish"'), "cpu[0].ops[2].expect"),
    (lambda t: t.replace("addr = 0x80000, name", "addr = 0x80000000000000, name"), "cpu[0].ops[2].addr"),
    (lambda t: t.replace("[[cpu]]\nid = 0", "[[cpu]]\nid = 99"), "cpu[0].id"),
    (lambda t: t.replace("mode = \"key\"", "mode = \"aes\""), "keys[0].mode"),
])
def test_bad_scenario_file_exits_2_naming_field(tmp_path, capsys, edit, field):
    text = Path(load_scenario("s8-relocation").path).read_text()
    bad = tmp_path / "bad.toml"
    new = edit(text)
    assert new != text
    bad.write_text(new)
    assert main(["scenario", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and field in err
    assert "Traceback" not in err


def test_unknown_scenario_name(capsys):
    assert main(["scenario", "run", "no-such-scenario"]) == 2
    assert "no such scenario" in capsys.readouterr().err


def test_timeline_picture(tmp_path, capsys):
    out = tmp_path / "s3.png"
    assert main(["scenario", "run", "s3-speculative-stale-line", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_is_numbered_and_ordered(capsys):
    main(["scenario", "run", "s9-replay", "--json", "--trace"])
    trace = json.loads(capsys.readouterr().out)["trace"]
    assert [e["n"] for e in trace] == list(range(1, len(trace) + 1))
    assert [e["start_ns"] for e in trace] == sorted(e["start_ns"] for e in trace)
    assert any(e["op"] == "raw_write" for e in trace)


def test_chrome_trace_export(tmp_path, capsys):
    out = tmp_path / "s4.json"
    assert main(["scenario", "run", "s4-pconfig-vs-writeback-wb-first", "--chrome-trace",
                 str(out)]) == 0
    data = json.loads(out.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in data if e["ph"] == "M"}
    assert {"cpu0", "admin", "mc0"} <= names
    ops = [e for e in data if e["ph"] in ("X", "i")]
    assert any(e["name"].startswith("writeback arrives (K1") for e in ops)
    assert all(e["ts"] >= 0 for e in ops)
    assert any(e["ph"] == "X" and e["dur"] > 0 for e in ops)
    # A flow arrow runs from cpu0's flush to the writeback's arrival at mc0.
    tids = {e["args"]["name"]: e["tid"] for e in data if e["ph"] == "M"}
    starts = {e["id"]: e for e in data if e["ph"] == "s"}
    ends = {e["id"]: e for e in data if e["ph"] == "f"}
    assert starts and starts.keys() == ends.keys()
    flush = next(e for e in ops if e["name"].startswith("clflush"))
    arrival = next(e for e in ops if e["name"].startswith("writeback arrives (K1"))
    (fid,) = [i for i, s in starts.items() if ends[i]["ts"] == arrival["ts"]]
    assert (starts[fid]["tid"], ends[fid]["tid"]) == (tids["cpu0"], tids["mc0"])
    assert flush["ts"] <= starts[fid]["ts"] <= flush["ts"] + flush["dur"] < arrival["ts"] + 1e-9


SYSTEM_OPS_WITHOUT_EXPECT = """
[scenario]
name = "pconfig-unjudged"
title = "system ops without an expectation"
model = "server-2s"
seed = 1

[[system]]
name = "admin"
cpu = 0
ops = [
  {{ op = "pconfig", keyid = 5, command = "SET_KEY_RANDOM"{pconfig} }},
  {{ op = "keytable", package = 0, keyid = 5, at = 10000 }},
]
"""


@pytest.mark.parametrize("pconfig, verdict", [
    ("", True),  # succeeded, no expectation: recorded, not judged
    (', expect = "ok"', True),  # "ok" is PCONFIG's success, as for system calls
    (', expect = "PROG_SUCCESS"', True),
    (', expect = "DEVICE_BUSY"', False),  # an expectation is judged
    (', alg = "aes-xts-512"', False),  # a failure nobody expected fails the scenario
])
def test_a_system_op_without_expectation_is_recorded_not_judged(tmp_path, pconfig, verdict):
    path = tmp_path / "ops.toml"
    path.write_text(SYSTEM_OPS_WITHOUT_EXPECT.format(pconfig=pconfig))
    res = run_scenario(str(path))
    assert res.ok is verdict, [c for c in res.checks if not c["ok"]]
    table = next(c for c in res.checks if c["op"] == 1)
    assert table["ok"] and "recorded" in table["detail"]
