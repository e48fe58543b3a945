"""The expectations users could only write as comments: the KeyID add_key allocated
(``expect_keyid``), where a read was served (``served_by``), two reads returning the same or
different bytes (``same_as``, ``differs_from``), a system call that must not complete
(``expect = "blocked"``) and EKEYREVOKED. Each one holds where it should and fails where it
should not; a bad one is refused at load with file, op and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mktme_des.cli import main

HEAD = """[scenario]
name = "X"
title = "expectations"
model = "client-1s"

[model_overrides]
mktme.keyid_bits = 2
mktme.max_keys = 3

[policy_overrides]
on_exhaustion = "wait"
"""

CPU = """
[[cpu]]
id = 0
ops = [
  { op = "write", keyid = 0, addr = 0x1000, data = "41424344" },
  { op = "read", keyid = 0, addr = 0x1000, size = 4, label = "first", READ1 },
  { op = "clflush", keyid = 0, addr = 0x1000, label = "flush" },
  { op = "read", keyid = 0, addr = 0x1000, size = 4, label = "second", READ2 },
]

[[agent]]
name = "probe"
ops = [ { op = "raw_read", addr = 0x1000, size = 4, after = "flush", label = "dram", RAW } ]
"""

KEYS = """
[[system]]
name = "admin"
cpu = 0
ops = [
  { op = "add_key", key = "a", options = "type=cpu algorithm=aes-xts-128", ADD1 },
  { op = "add_key", key = "b", options = "type=cpu algorithm=aes-xts-128", ADD2 },
  { op = "add_key", key = "d", options = "type=cpu algorithm=aes-xts-128", label = "full" },
  { op = "RELEASE", key = "a", label = "released" },
  { op = "update_key", key = "a", options = "type=cpu algorithm=aes-xts-128", UPDATE },
]

[[system]]
name = "late"
cpu = 1
ops = [ { op = "add_key", key = "c", options = "type=cpu algorithm=aes-xts-128", after = "full", LATE } ]
"""

DEFAULTS = {"READ1": 'name = "r1"', "READ2": 'name = "r2"', "RAW": 'name = "raw"',
            "ADD1": 'name = "a1"', "ADD2": 'name = "a2"',
            "RELEASE": "update_key", "UPDATE": 'name = "u"',
            "LATE": 'name = "late add", expect = "blocked"'}


def _file(tmp_path: Path, **fields: str) -> Path:
    text = HEAD + CPU + KEYS
    for slot, default in DEFAULTS.items():
        text = text.replace(slot, fields.get(slot, default))
    text = text.replace('{ op = "update_key", key = "a", label = "released" }',
                        '{ op = "update_key", key = "a", options = "type=cpu algorithm='
                        'aes-xts-128", label = "released" }')
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


def _run(capsys, path: Path) -> tuple[int, dict]:
    code = main(["scenario", "run", str(path), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out else {}


def _check(res: dict, name: str) -> dict:
    return next(c for c in res["checks"] if c["name"] == name)


@pytest.mark.parametrize("slot, text, name, holds", [
    ("ADD1", 'name = "a1", expect_keyid = 1', "a1", True),
    ("ADD1", 'name = "a1", expect_keyid = 2', "a1", False),
    ("ADD2", 'name = "a2", expect_keyid = 2, expect = "ok"', "a2", True),
    ("READ2", 'name = "r2", served_by = "DRAM"', "r2", True),
    ("READ2", 'name = "r2", served_by = "L1D"', "r2", False),
    ("READ1", 'name = "r1", served_by = "L1D", expect = "41424344"', "r1", True),
    ("READ1", 'name = "r1", served_by = "LLC", expect = "41424344"', "r1", False),
    ("READ2", 'name = "r2", same_as = "first"', "r2", True),
    ("READ2", 'name = "r2", differs_from = "first"', "r2", False),
    ("RAW", 'name = "raw", differs_from = "second"', "raw", True),
    ("RAW", 'name = "raw", same_as = "second"', "raw", False),
    ("LATE", 'name = "late add", expect = "blocked"', "late add", True),
    ("LATE", 'name = "late add"', "late add", False),
])
def test_an_expectation_holds_or_fails(capsys, tmp_path, slot, text, name, holds):
    code, res = _run(capsys, _file(tmp_path, **{slot: text}))
    chk = _check(res, name)
    assert chk["ok"] is holds, chk
    assert code == (0 if holds else 1)
    assert all(c["ok"] for c in res["checks"] if c["name"] != name)


def test_blocked_fails_when_the_op_completes(capsys, tmp_path):
    """Every KeyID is in use, so the late add waits; an invalidate frees one at once, so the
    same add completes and "blocked" fails. A revoke frees it only when the keyring's garbage
    collector destroys the key, so the add completes then, and fails "blocked" too."""
    for release in ("invalidate", "revoke"):
        code, res = _run(capsys, _file(tmp_path, RELEASE=release))
        chk = _check(res, "late add")
        assert code == 1 and not chk["ok"] and chk["detail"].startswith("completed at"), chk


@pytest.mark.parametrize("expect, holds", [("EKEYREVOKED", True), ("ENOKEY", False),
                                           ("ok", False)])
def test_ekeyrevoked_is_an_errno(capsys, tmp_path, expect, holds):
    path = _file(tmp_path, RELEASE="revoke", UPDATE=f'name = "u", expect = "{expect}"',
                 LATE='name = "late add"')
    code, res = _run(capsys, path)
    assert _check(res, "u")["ok"] is holds
    assert _check(res, "u")["detail"].startswith("returned EKEYREVOKED")


def test_an_op_that_never_completes_fails_its_expectation(capsys, tmp_path):
    code, res = _run(capsys, _file(tmp_path, LATE='name = "late add", expect = "ok"'))
    chk = _check(res, "late add")
    assert code == 1 and not chk["ok"] and "never completed" in chk["detail"]


def test_expectations_are_shown_in_the_verdict(capsys, tmp_path):
    path = _file(tmp_path, READ2='name = "r2", served_by = "DRAM", same_as = "first"')
    assert main(["scenario", "run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "expected served by DRAM; same as first; served by DRAM; same bytes as first" in out


@pytest.mark.parametrize("slot, text, field, says", [
    ("ADD1", "expect_keyid = 4", "system[0].ops[0].expect_keyid", "1..3"),
    ("ADD1", 'expect_keyid = 1, expect = "ENOKEY"', "system[0].ops[0].expect_keyid",
     "only when add_key succeeds"),
    ("READ1", 'served_by = "L9"', "cpu[0].ops[1].served_by", "L1D, L2, LLC, peer"),
    ("READ1", 'same_as = "nope"', "cpu[0].ops[1].same_as", "no op is labelled 'nope'"),
    ("READ1", 'differs_from = "flush"', "cpu[0].ops[1].differs_from", "not a read"),
    ("READ1", 'same_as = "first"', "cpu[0].ops[1].same_as", "the read itself"),
    ("RAW", 'served_by = "DRAM"', "agent[0].ops[0].served_by", "not a field of 'raw_read'"),
    ("READ1", 'expect = "blocked"', "cpu[0].ops[1].expect", "neither hex bytes"),
])
def test_bad_expectations_are_refused_at_load(capsys, tmp_path, slot, text, field, says):
    path = _file(tmp_path, **{slot: text})
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {field}" in err and says in err and "Traceback" not in err, err


# -- pconfig spells keys as [[keys]] does --------------------------------------------------------
SAME_KEY = """[scenario]
name = "K"
title = "one key, two spellings"
model = "client-1s"

[[keys]]
keyid = 2
mode = "key"
key = "{keys_key}"

[[system]]
name = "admin"
cpu = 3
ops = [ {{ op = "pconfig", keyid = 1, command = "SET_KEY_DIRECT", {pconfig}, label = "programmed" }} ]

[[cpu]]
id = 0
ops = [
  {{ op = "write", keyid = 1, addr = 0x2000, data = "{data}", after = "programmed" }},
  {{ op = "clflush", keyid = 1, addr = 0x2000, label = "one" }},
  {{ op = "write", keyid = 2, addr = 0x2000, data = "{data}", after = "a" }},
  {{ op = "clflush", keyid = 2, addr = 0x2000, label = "two" }},
]

[[agent]]
name = "probe"
ops = [
  {{ op = "raw_read", addr = 0x2000, after = "one", label = "a" }},
  {{ op = "raw_read", addr = 0x2000, after = "two", name = "b", {compare} = "a" }},
]
"""
DATA_KEY, TWEAK_KEY = "0f" * 16, "a5" * 16


@pytest.mark.parametrize("pconfig, compare", [
    (f'key = "{DATA_KEY}{TWEAK_KEY}"', "same_as"),          # [[keys]]'s spelling: same key
    (f'key = "{TWEAK_KEY}{DATA_KEY}"', "differs_from"),     # halves swapped: another key
    (f'key_field = "{DATA_KEY}", tweak_field = "{TWEAK_KEY}"', "same_as"),  # raw fields
])
def test_pconfig_key_is_spelt_as_in_keys(capsys, tmp_path, pconfig, compare):
    """DRAM bytes at one address depend only on the key (the tweak is the address), so two
    KeyIDs programmed with the same key leave the same ciphertext, and different keys not."""
    path = tmp_path / "k.toml"
    path.write_text(SAME_KEY.format(keys_key=DATA_KEY + TWEAK_KEY, pconfig=pconfig,
                                    data="5a" * 64, compare=compare))
    code, res = _run(capsys, path)
    assert code == 0, res["checks"]
    flipped = "differs_from" if compare == "same_as" else "same_as"
    path.write_text(SAME_KEY.format(keys_key=DATA_KEY + TWEAK_KEY, pconfig=pconfig,
                                    data="5a" * 64, compare=flipped))
    code, res = _run(capsys, path)
    assert code == 1 and not _check(res, "b")["ok"]


@pytest.mark.parametrize("pconfig, field, says", [
    (f'key = "{DATA_KEY}", tweak = "{TWEAK_KEY}"', "tweak", "data key then tweak key"),
    (f'key = "{DATA_KEY}"', "key", "32 bytes for aes-xts-128"),
    (f'key = "{DATA_KEY}{TWEAK_KEY}", alg = "aes-xts-256"', "key", "64 bytes for aes-xts-256"),
    (f'key = "{DATA_KEY}{TWEAK_KEY}", key_field = "{DATA_KEY}"', "key", "not both"),
    ('key_field = "' + "11" * 65 + '"', "key_field", "at most 64"),
])
def test_ambiguous_pconfig_keys_are_refused(capsys, tmp_path, pconfig, field, says):
    path = tmp_path / "k.toml"
    path.write_text(SAME_KEY.format(keys_key=DATA_KEY + TWEAK_KEY, pconfig=pconfig,
                                    data="5a" * 64, compare="same_as"))
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: system[0].ops[0].{field}" in err and says in err, err
    assert TWEAK_KEY not in err and DATA_KEY not in err
