"""No user key bytes in any output or result file: a fingerprint stands for them. The one
exception, `scenario explore --save`, writes files only their owner can read."""

from __future__ import annotations

import json
import stat

from mktme_des import redact
from mktme_des.cli import main

DATA_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
TWEAK_KEY = "f1f2f3f4f5f6f7f8f9fafbfcfdfeff00"
SECRETS = (DATA_KEY, TWEAK_KEY, "d1d2d3d4d5d6d7d8d9dadbdcdddedfe0")

MISSPELT = f"""[scenario]
name = "K"
title = "a misspelt option carries a key"
model = "client-1s"

[[process]]
name = "p"
ops = [
  {{ op = "add_key", key = "tenant", options = "type=user algorithm=aes-xts-128 key={DATA_KEY} tweek={TWEAK_KEY}", expect = "EINVAL", at = 10 }},
  {{ op = "add_key", key = "other", options = "type=user algorithm=aes-xts-128 key={DATA_KEY} tweak={TWEAK_KEY}", at = 20, name = "ok" }},
]

[[keys]]
keyid = 3
mode = "key"
key = "{SECRETS[2] * 2}"
"""


def assert_no_key(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text.lower(), f"{where} holds key bytes"


def test_no_key_bytes_in_any_scenario_output(tmp_path, capsys):
    path = tmp_path / "k.toml"
    path.write_text(MISSPELT)
    chrome = tmp_path / "t.json"
    outputs = []
    for argv in (["scenario", "run", str(path), "--trace"],
                 ["scenario", "run", str(path), "--json", "--trace"],
                 ["scenario", "run", str(path), "--chrome-trace", str(chrome)],
                 ["scenario", "explore", str(path), "--runs", "3", "--trace"],
                 ["scenario", "explore", str(path), "--runs", "3", "--json", "--trace"]):
        code = main(argv)
        cap = capsys.readouterr()
        assert code == 0, cap.out + cap.err
        outputs.append(cap.out + cap.err)
    outputs.append(chrome.read_text())
    for i, text in enumerate(outputs):
        assert_no_key(text, f"output {i}")
    # What the user sees instead: the option's name and the fingerprint of its value.
    assert f"tweek=<{redact.fingerprint(TWEAK_KEY)}>" in outputs[0]


def test_a_malformed_key_is_not_quoted(tmp_path, capsys):
    secret = "zz" + DATA_KEY[2:]
    path = tmp_path / "k.toml"
    path.write_text(MISSPELT.replace(SECRETS[2] * 2, secret * 2))
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "keys[0].key" in err and redact.fingerprint(secret * 2) in err
    assert secret[2:] not in err


def test_experiment_result_files_hold_fingerprints(tmp_path, capsys):
    scenario = tmp_path / "k.toml"
    scenario.write_text(MISSPELT)
    exp = tmp_path / "e.toml"
    exp.write_text(f'[experiment]\nname = "k"\ndriver = "explore"\n[base]\nruns = 3\n'
                   f'scenario = "{scenario}"\n[metrics]\nrecord = ["p_fail"]\n')
    out = tmp_path / "out"
    assert main(["run", str(exp), "--workers", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "experiment.toml"]
    assert any(p.parent.name == "points" for p in files)
    for p in files:
        assert_no_key(p.read_bytes().decode(errors="replace"), str(p))
    (point,) = (out / "points").glob("*.json")
    stored = json.loads(point.read_text())["config"]["scenario_data"]
    assert stored["keys"][0]["key"] == redact.fingerprint(SECRETS[2] * 2)
    assert f"tweak=<{redact.fingerprint(TWEAK_KEY)}>" in stored["process"][0]["ops"][1]["options"]


def test_explore_save_keeps_keys_for_the_owner_only(tmp_path, capsys):
    scenario = tmp_path / "k.toml"
    scenario.write_text(MISSPELT)
    saved = tmp_path / "saved"
    assert main(["scenario", "explore", str(scenario), "--runs", "3", "--save", str(saved)]) == 0
    capsys.readouterr()
    files = list(saved.glob("*.toml"))
    assert files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert DATA_KEY in f.read_text()  # a saved run replays, keys included
        assert main(["scenario", "run", str(f)]) == 0
        capsys.readouterr()


def test_fingerprints_tell_keys_apart_and_are_short():
    a, b = redact.fingerprint(DATA_KEY), redact.fingerprint(TWEAK_KEY)
    assert a != b and a.startswith("key#") and len(a) == 12
    assert redact.options("type=user algorithm=aes-xts-128 key=00") == \
        f"type=user algorithm=aes-xts-128 key=<{redact.fingerprint('00')}>"
