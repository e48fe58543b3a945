"""The scenario format users asked for: `after` takes a list of labels."""

from __future__ import annotations

import json

import pytest

from mktme_des.cli import main

BOTH = """[scenario]
name = "A"
title = "after two labels"
model = "client-1s"

[[cpu]]
id = 0
ops = [ { op = "sfence", at = 100, label = "early" } ]

[[cpu]]
id = 1
ops = [ { op = "sfence", at = 3000, label = "late" } ]

[[agent]]
name = "probe"
ops = [ { op = "raw_read", addr = 0x1000, name = "r", after = AFTER } ]

[[process]]
name = "p"
cpu = 2
ops = [ { op = "compute", ns = 1, after = AFTER, label = "p done" } ]
"""


def _starts(capsys, tmp_path, after: str) -> dict[str, float]:
    path = tmp_path / "a.toml"
    path.write_text(BOTH.replace("AFTER", after))
    assert main(["scenario", "run", str(path), "--json", "--trace"]) == 0
    trace = json.loads(capsys.readouterr().out)["trace"]
    return {e["actor"]: e["start_ns"] for e in trace if e["actor"] in ("probe", "p")}


def test_after_a_list_waits_for_every_label(capsys, tmp_path):
    one = _starts(capsys, tmp_path, '"early"')
    both = _starts(capsys, tmp_path, '["early", "late"]')
    assert one["probe"] < 3000 and one["p"] < 3000
    assert both["probe"] >= 3000 and both["p"] >= 3000


@pytest.mark.parametrize("after, says", [
    ("[]", "non-empty list of labels"),
    ('["early", ""]', "non-empty list of labels"),
    ('["early", "early"]', "names a label twice"),
    ('["early", "nope"]', "no op is labelled 'nope'"),
    ("[1]", "non-empty list of labels"),
])
def test_bad_after_lists(capsys, tmp_path, after, says):
    path = tmp_path / "a.toml"
    path.write_text(BOTH.replace("AFTER", after))
    assert main(["scenario", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: agent[0].ops[0].after" in err and says in err and "Traceback" not in err
