"""Kernel-level scenario ops are declared schema sections: every op has a handler, every field
a doc, and the schema refuses what the declarations say, for each op alike (random fields and
values against the declarations)."""

from __future__ import annotations

import dataclasses
import random
import types
import typing

import pytest

from mktme_des.errors import ConfigError
from mktme_des.scenarios.actors import HANDLERS
from mktme_des.scenarios.kernel_ops import PROCESS_OPS, SYSTEM_OPS, KernelOp
from mktme_des.scenarios.spec import scenario_from

TABLES = {"process": PROCESS_OPS, "system": SYSTEM_OPS}


def test_every_op_is_declared_documented_and_handled():
    for table in TABLES.values():
        for name, cls in table.items():
            assert issubclass(cls, KernelOp) and name in HANDLERS
            for f in dataclasses.fields(cls):
                assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"
    assert set(HANDLERS) == set(PROCESS_OPS) | set(SYSTEM_OPS)


def _required(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "op" and
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _valid(cls) -> dict:
    """A valid value for each declared field: its first choice, or a count, a time, a flag or
    a name any op accepts."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = typing.get_args(tp)[0]
        choices = f.metadata.get("choices")
        out[f.name] = choices[0] if choices else {int: 0, float: 1.0, bool: True, str: "x"}[tp]
    return out


def _load(kind: str, op: dict) -> None:
    doc = {"scenario": {"name": "T", "title": "t", "model": "client-1s"},
           kind: [{"name": "a", "ops": [op]}]}
    scenario_from(doc, "t.toml")


@pytest.mark.parametrize("kind", list(TABLES))
def test_the_declarations_decide_what_is_refused(kind):
    """Property, over every op and random choices: a missing required field, an undeclared
    field and a value of the wrong type are refused naming that field; the op's name and
    allowed fields come from its declaration."""
    rng = random.Random(1515)
    for name, cls in TABLES[kind].items():
        valid = _valid(cls)
        required = _required(cls)
        if required:
            missing = rng.choice(required)
            op = {"op": name} | {f: valid[f] for f in required if f != missing}
            with pytest.raises(ConfigError) as err:
                _load(kind, op)
            assert err.value.field == f"{kind}[0].ops[0].{missing}"
            assert f"required for op {name!r}" in err.value.reason
        op = {"op": name} | {f: valid[f] for f in required} | {"bogus": 1}
        with pytest.raises(ConfigError) as err:
            _load(kind, op)
        assert err.value.field == f"{kind}[0].ops[0].bogus"
        for f in dataclasses.fields(cls):
            if f.name != "op":
                assert f.name in err.value.reason
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "op"]
        if fields:
            wrong = rng.choice(fields)
            op = {"op": name} | {f: valid[f] for f in required}
            op[wrong] = [1]  # no declared type is an array
            with pytest.raises(ConfigError) as err:
                _load(kind, op)
            assert err.value.field == f"{kind}[0].ops[0].{wrong}", err.value


def test_an_op_of_the_other_actor_kind_is_refused():
    with pytest.raises(ConfigError) as err:
        _load("process", {"op": "pconfig", "keyid": 1, "command": "SET_KEY_RANDOM"})
    assert "not a process op" in err.value.reason and "mmap" in err.value.reason
    with pytest.raises(ConfigError) as err:
        _load("system", {"op": "add_key", "key": "k", "options": "type=cpu", "capable": False})
    assert err.value.field == "system[0].ops[0].capable"
