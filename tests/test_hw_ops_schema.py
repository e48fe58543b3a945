"""[[cpu]] and [[agent]] scenario ops are declared schema sections, as the kernel-level ops
are: every field has a doc, and the schema refuses what the declarations say, for each op
alike (random fields and values against the declarations), including a field spelt ``from``
in the file and an ``addr`` that is an address or a page name."""

from __future__ import annotations

import dataclasses
import itertools
import random
import types
import typing

import pytest

from mktme_des.config.schema import Context, build, file_key, resolved
from mktme_des.errors import ConfigError
from mktme_des.hw import ops as O
from mktme_des.scenarios.hw_ops import AGENT_OPS, CPU_OPS, CpuWrite, HwOp, RawOp, RawWrite
from mktme_des.scenarios.spec import scenario_from

TABLES = {"cpu": CPU_OPS, "agent": AGENT_OPS}
ACTOR = {"cpu": {"id": 0}, "agent": {"name": "a"}}


def test_every_op_is_declared_and_documented():
    for table in TABLES.values():
        for name, cls in table.items():
            assert issubclass(cls, HwOp)
            for f in dataclasses.fields(cls):
                assert f.metadata.get("doc"), f"{name}.{f.name} has no doc"
    assert all(name in O.CODES for name in CPU_OPS)
    assert not set(CPU_OPS) & set(AGENT_OPS)


def _fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name != "op"]


def _required(cls) -> list[str]:
    return [file_key(f) for f in _fields(cls) if f.default is dataclasses.MISSING and
            f.default_factory is dataclasses.MISSING]


def _types(cls, f: dataclasses.Field) -> list:
    """The types a field's value may have (None left out)."""
    tp = typing.get_type_hints(cls)[f.name]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def _valid(cls, rng: random.Random) -> dict:
    """A value of a declared type for each field (its first choice for a string with
    choices; either type of a union)."""
    out = {}
    for f in _fields(cls):
        tp = rng.choice(_types(cls, f))
        choices = f.metadata.get("choices")
        if choices:
            out[file_key(f)] = choices[0]
        elif typing.get_origin(tp) is list:
            out[file_key(f)] = []
        else:
            out[file_key(f)] = {int: 0, float: 1.0, bool: True, str: "x"}[tp]
    return out


def _mistyped(cls, f: dataclasses.Field, rng: random.Random):
    """A value of no type the field declares: a table, or a scalar of another type."""
    allowed = _types(cls, f)
    wrong = [{"k": 1}, True, 4, 1.5, "4"]

    def fits(v) -> bool:
        for tp in allowed:
            if typing.get_origin(tp) is list:
                continue
            if tp is bool and isinstance(v, bool):
                return True
            if tp is int and isinstance(v, int) and not isinstance(v, bool):
                return True
            if tp is float and isinstance(v, int | float) and not isinstance(v, bool):
                return True
            if tp is str and isinstance(v, str):
                return True
        return False

    return rng.choice([v for v in wrong if not fits(v)])


def _load(kind: str, op: dict) -> None:
    doc = {"scenario": {"name": "T", "title": "t", "model": "client-1s"},
           kind: [ACTOR[kind] | {"ops": [op]}]}
    scenario_from(doc, "t.toml")


@pytest.mark.parametrize("kind", list(TABLES))
def test_the_declarations_decide_what_is_refused(kind):
    """Property, over every op and random choices: a missing required field, an undeclared
    field and a value of a type the field does not declare are refused naming that field (as
    the file spells it) and the op's index; the op's allowed fields come from its
    declaration."""
    rng = random.Random(1516)
    where = f"{kind}[0].ops[0]"
    for _ in range(5):
        for name, cls in TABLES[kind].items():
            valid = _valid(cls, rng)
            required = _required(cls)
            if required:
                missing = rng.choice(required)
                op = {"op": name} | {f: valid[f] for f in required if f != missing}
                with pytest.raises(ConfigError) as err:
                    _load(kind, op)
                assert err.value.file == "t.toml"
                assert err.value.field == f"{where}.{missing}"
                assert f"required for op {name!r}" in err.value.reason
            bogus = rng.choice(["bogus", "from_", "adr", "expect_keyid"])
            op = {"op": name} | {f: valid[f] for f in required} | {bogus: 1}
            with pytest.raises(ConfigError) as err:
                _load(kind, op)
            assert err.value.field == f"{where}.{bogus}"
            assert f"not a field of {name!r}" in err.value.reason
            for f in _fields(cls):
                assert file_key(f) in err.value.reason
            if _fields(cls):
                f = rng.choice(_fields(cls))
                op = {"op": name} | {k: valid[k] for k in required}
                op[file_key(f)] = _mistyped(cls, f, rng)
                with pytest.raises(ConfigError) as err:
                    _load(kind, op)
                assert err.value.field == f"{where}.{file_key(f)}", err.value
                assert err.value.reason.startswith(("expected", f"{op[file_key(f)]!r} is not "
                                                    "allowed")), err.value


def test_an_op_of_the_other_actor_kind_is_refused():
    with pytest.raises(ConfigError) as err:
        _load("cpu", {"op": "raw_read", "addr": 0})
    assert "not a CPU op" in err.value.reason and "[[agent]]" in err.value.reason
    with pytest.raises(ConfigError) as err:
        _load("agent", {"op": "clflush", "addr": 0})
    assert "not an agent op" in err.value.reason and "raw_read" in err.value.reason


def test_from_is_spelt_as_in_the_file():
    """``from`` is the field's name in files, messages and resolved data; its Python name
    ``from_`` is not a field of the file."""
    ctx = Context("t.toml")
    w = build(CpuWrite, {"op": "write", "addr": 0, "from": "E"}, ctx)
    assert w.from_ == "E" and resolved(w)["from"] == "E" and "from_" not in resolved(w)
    with pytest.raises(ConfigError) as err:
        build(CpuWrite, {"op": "write", "addr": 0, "from": 3}, ctx)
    assert err.value.field == "from" and "expected a string" in err.value.reason
    with pytest.raises(ConfigError) as err:
        build(CpuWrite, {"op": "write", "addr": 0, "from_": "E"}, ctx)
    assert err.value.field == "from_" and "from" in err.value.reason


@pytest.mark.parametrize("value", [True, 1.5, {"k": 1}, [0]])
def test_addr_is_an_address_or_a_page_name(value):
    """A raw op's ``addr`` takes an integer or a string; anything else is refused naming
    both; an integer is bounded as declared."""
    ctx = Context("t.toml")
    assert build(RawWrite, {"op": "raw_write", "addr": 64, "data": "41"}, ctx).addr == 64
    assert build(RawWrite, {"op": "raw_write", "addr": "P", "data": "41"}, ctx).addr == "P"
    with pytest.raises(ConfigError) as err:
        build(RawWrite, {"op": "raw_write", "addr": value, "data": "41"}, ctx)
    assert err.value.field == "addr"
    assert "expected an integer or a string" in err.value.reason
    with pytest.raises(ConfigError) as err:
        build(RawWrite, {"op": "raw_write", "addr": -1, "data": "41"}, ctx)
    assert err.value.field == "addr" and "at least 0" in err.value.reason


def test_the_cross_field_rules_of_writes():
    """Property, over every combination of the fields involved: a write gives ``data`` or
    ``from``, exactly one; a CPU write's ``preimage_key`` goes with ``from``; a raw op's
    ``offset`` goes with a page name. Any other combination is refused naming a field."""
    ctx = Context("t.toml")
    values = {"data": "41", "from": "E", "preimage_key": "00" * 32}
    for present in itertools.product((False, True), repeat=3):
        chosen = {k: v for (k, v), on in zip(values.items(), present, strict=True) if on}
        ok = ("data" in chosen) != ("from" in chosen) and \
            ("preimage_key" not in chosen or "from" in chosen)
        op = {"op": "write", "addr": 0} | chosen
        if ok:
            build(CpuWrite, op, ctx)
        else:
            with pytest.raises(ConfigError) as err:
                build(CpuWrite, op, ctx)
            assert err.value.field in values
    for page, offset, data, src in itertools.product((False, True), repeat=4):
        op = {"op": "raw_write", "addr": "P" if page else 0}
        op |= {"offset": 8} if offset else {}
        op |= {"data": "41"} if data else {}
        op |= {"from": "E"} if src else {}
        ok = (page or not offset) and data != src
        if ok:
            assert isinstance(build(RawWrite, op, ctx), RawOp)
        else:
            with pytest.raises(ConfigError) as err:
                build(RawWrite, op, ctx)
            assert err.value.field in ("offset", "data", "from")
