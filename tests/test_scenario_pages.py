"""Kernel-level scenarios check DRAM bytes exactly: a process op names the physical page the
kernel gave it (``page = "P"``), an agent reads that frame (``addr = "P"``, ``offset``), and
a raw read with a key decrypts what it read with the tweak the memory controller used, the
per-boot one included."""

from __future__ import annotations

import copy
import tomllib

import pytest
from helpers import xts

from mktme_des.config.model import load_model
from mktme_des.hw.platform import Platform
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import find_scenario, scenario_from

S18 = find_scenario("s18-user-key-exact-bytes")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def _doc() -> dict:
    with open(S18, "rb") as f:
        return tomllib.load(f)


def _checks(res) -> dict[str, dict]:
    return {c["name"]: c for c in res.checks}


@pytest.mark.parametrize("tweak", ["per-boot", "stable"])
def test_dram_holds_exactly_the_xts_of_the_line_under_the_boot_tweak(tweak):
    """The raw bytes at the named frame are AES-XTS of the stored line under the user's key
    with tweak (PA / 64) XOR the boot tweak, computed by an independent implementation; the
    keyed read decrypts them back whatever the boot tweak is."""
    doc = _doc()
    doc["model_overrides"] = {"mktme": {"boot_tweak": tweak}}
    res = run_scenario(scenario_from(doc, str(S18)))
    assert res.ok, [c for c in res.checks if not c["ok"]]
    boot = Platform(load_model("server-2s", {"mktme": {"boot_tweak": tweak}}),
                    seed=doc["scenario"]["seed"]).boot_tweak
    assert (boot == 0) == (tweak == "stable")
    raw = _checks(res)["DRAM holds ciphertext"]
    plain = bytes.fromhex(doc["process"][0]["ops"][3]["data"])
    pa = int(raw["addr"], 16)
    assert pa % 4096 == 0
    assert bytes.fromhex(raw["data"]) == xts(KEY, pa, plain, boot)


def test_a_wrong_key_decrypts_to_garbage():
    doc = _doc()
    probe = doc["agent"][0]["ops"][1]
    probe["key"] = KEY[16:].hex() + KEY[:16].hex()
    res = run_scenario(scenario_from(doc, str(S18)))
    chk = _checks(res)["with the key, DRAM decrypts to the stored line"]
    assert not chk["ok"] and not res.ok


def test_an_offset_reads_another_line_of_the_frame():
    doc = _doc()
    probe = doc["agent"][0]["ops"][1]
    probe["offset"] = 64  # the next line was never written: zeroes under the key, not the data
    res = run_scenario(scenario_from(doc, str(S18)))
    chk = _checks(res)["with the key, DRAM decrypts to the stored line"]
    assert not chk["ok"] and int(chk["addr"], 16) % 4096 == 64


def _refused(doc: dict, field: str, says: str) -> None:
    from mktme_des.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        scenario_from(doc, "f.toml")
    assert err.value.field == field and says in err.value.reason, str(err.value)


def test_bad_page_references_are_refused_at_load():
    doc = _doc()
    probe = doc["agent"][0]["ops"]
    bad = copy.deepcopy(doc)
    bad["agent"][0]["ops"][0]["addr"] = "nope"
    _refused(bad, "agent[0].ops[0].addr", "no [[process]] op names a page 'nope'")
    bad = copy.deepcopy(doc)
    del bad["agent"][0]["ops"][0]["at"]  # no longer waits for the store that names the page
    _refused(bad, "agent[0].ops[0].addr", "may run before page 'frame' is named")
    bad = copy.deepcopy(doc)
    bad["agent"][0]["ops"][1]["offset"] = 4090
    _refused(bad, "agent[0].ops[1].offset", "leave the 4096-byte page")
    bad = copy.deepcopy(doc)
    bad["agent"][0]["ops"][1]["offset"] = 8
    _refused(bad, "agent[0].ops[1].key", "multiples of 64")
    bad = copy.deepcopy(doc)
    bad["agent"][0]["ops"][1]["key"] = "00" * 16
    _refused(bad, "agent[0].ops[1].key", "32 or 64 bytes")
    bad = copy.deepcopy(doc)
    bad["agent"][0]["ops"][0]["addr"] = 0x1000
    bad["agent"][0]["ops"][0]["offset"] = 64
    _refused(bad, "agent[0].ops[0].offset", "named process page")
    bad = copy.deepcopy(doc)
    bad["process"][0]["ops"][3]["page"] = ""
    _refused(bad, "process[0].ops[3].page", "must not be empty")
    assert probe == doc["agent"][0]["ops"]  # nothing above changed the original


def test_no_key_bytes_in_outputs_or_stored_scenarios(capsys, tmp_path):
    from mktme_des import redact
    from mktme_des.cli import main

    secrets = (KEY[:16].hex(), KEY[16:].hex())
    trace = tmp_path / "c.json"
    assert main(["scenario", "run", str(S18), "--json", "--trace", "--chrome-trace",
                 str(trace)]) == 0
    shown = capsys.readouterr().out + trace.read_text()
    assert not any(s in shown for s in secrets)
    stored = repr(redact.scenario(_doc()))
    assert not any(s in stored for s in secrets)
