"""Scenario files: ``experiments/scenarios/*.toml``.

A scenario names a model and a seed, sets up key tables, and gives each CPU (``[[cpu]]``) and
each agent outside the CPUs (``[[agent]]``: a DRAM probe, an attacker with an interposer, the
firmware) a list of operations; kernel-level actors (``[[process]]``, ``[[system]]``) have
ops declared in :mod:`mktme_des.scenarios.kernel_ops`. Each operation may carry a start time
``at``: absolute, in ns, or relative to a labelled op (``"LABEL+5ns"``, ``"LABEL+1us"``,
``"LABEL"``: that long after the labelled op *completes*, see :func:`relative_at`); either way
it also follows the previous op of its actor. Without one it follows the previous op. Any op
may carry a ``label``, and any op an ``after`` naming a label, or a list of labels: it then
starts no earlier than every labelled op (of any actor) has completed. That is how software
orders actors (a lock, a flag, the kernel freeing a page only after the flush): times say when
things are *meant* to happen, ``after`` says what *must* come first, and ``scenario explore``,
which moves the times, keeps it.

Reads may carry an expectation (``expect``): exact bytes in hex, or a class the simulator
assigns (``expected``, ``zero``, ``stale``, ``plaintext``, ``garbage``; for raw DRAM reads also
``ciphertext``); where they were served (``served_by``, :data:`SERVED_BY`); and that they
returned the same bytes as another labelled read, or not (``same_as``, ``differs_from``).
System calls may expect an errno or ``blocked`` (still waiting when the run ends), and
``add_key`` the KeyID it allocates (``expect_keyid``). A process op may name the physical
page it reaches (``page = "P"``) for agents' ``addr = "P"``, and a raw read with a ``key``
returns what it read decrypted with the tweak in force. Nothing in the file states an outcome
except these expectations: the verdict is computed by the simulator.

Example::

    [scenario]
    name = "S1"
    title = "alias read"
    model = "server-2s"
    seed = 1

    [[keys]]
    keyid = 1
    mode = "key"

    [[cpu]]
    id = 0
    ops = [
      { op = "write", keyid = 1, addr = 0x1000, data = "41" },
      { op = "read", keyid = 2, addr = 0x1000, name = "alias", expect = "garbage" },
    ]
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktme_des import catalog, redact
from mktme_des.config.schema import Context, Section, build, param, read_toml
from mktme_des.engine.time import MAX_NS, ns
from mktme_des.errors import ConfigError
from mktme_des.hw import ops as O
from mktme_des.scenarios.kernel_ops import (
    BLOCKED,
    PAGE_BYTES,
    PROCESS_OPS,
    SYSTEM_OPS,
    AddKey,
    Judged,
    Pconfig,
    ReadLike,
    Step,
    Write,
)

READ_CLASSES = ("expected", "zero", "stale", "plaintext", "garbage")
# An expectation is one of these classes, hex bytes, or "not:" and hex bytes.
RAW_CLASSES = ("ciphertext", "plaintext", "zero")
# Any op may carry these: ``label`` names it, ``after`` makes it wait for a labelled op.
SYNC_FIELDS = frozenset({"label", "after"})
KEY_MODES = ("key", "random", "no-encrypt", "tme")
KEY_FIELDS = frozenset({"key", "tweak", "key_field", "tweak_field", "preimage_key"})
"""Hex fields holding key material: never quoted in a message (:mod:`mktme_des.redact`)."""


@dataclass(frozen=True, kw_only=True)
class ScenarioInfo(Section):
    name: str = param(doc="short id, e.g. S2")
    title: str = param(doc="one line: what happens")
    source: str = param("", doc="where in the thread it is argued")
    description: str = param("", doc="what to look for")
    model: str = param(doc="model name in models/ or a path")
    seed: int = param(0, doc="run seed", min=0)
    tie_seed: int = param(0, doc="order of events due at the same instant: 0 keeps the order "
                          "they were scheduled in; another value shuffles them with that seed "
                          "(scenario explore varies it)", min=0)
    tie_choices: list[int] = param([], doc="the order of events due at the same instant, "
                                   "as one choice per tie (what scenario explore --exhaustive "
                                   "enumerates); not with tie_seed")
    policy: str = param("rfc-v2", doc="kernel policy (models/kernel/NAME.toml), used when the "
                        "scenario has [[process]] or [[system]] actors")

    def check(self, ctx: Context) -> None:
        if self.tie_seed and self.tie_choices:
            raise ctx.error("tie_choices", "give tie_seed or tie_choices, not both")
        if any(c < 0 for c in self.tie_choices):
            raise ctx.error("tie_choices", "choices count tied events from 0")


@dataclass(frozen=True, kw_only=True)
class KeySetup(Section):
    keyid: int = param(doc="KeyID to program before the run", min=1)
    mode: str = param(doc="key: a key (random from the seed unless given); random: a "
                      "CPU-generated key, different per package; no-encrypt; tme",
                      choices=KEY_MODES)
    key: str = param("", doc="hex of the data key then the tweak key (32 or 64 bytes)")
    packages: list[int] = param([], doc="packages to program (empty: all)")


@dataclass(frozen=True, kw_only=True)
class Expectations(Section):
    violations: str = param("any", doc="oracle violations the run must show",
                            choices=("any", "none", "some"))
    invariants: str = param("any", doc="the kernel's invariants (kernel/invariants.py) at the "
                            "end of the run: any, hold, or broken (at least one)",
                            choices=("any", "hold", "broken"))


@dataclass(frozen=True, kw_only=True)
class Actor(Section):
    id: int = param(-1, doc="CPU number ([[cpu]] only)", min=-1)
    name: str = param("", doc="actor name ([[agent]], [[process]], [[system]])")
    cpu: int = param(0, doc="CPU a [[process]] or [[system]] actor runs on", min=0)
    ops: list[dict[str, Any]] = param([], doc="operations in program order")


@dataclass(frozen=True, kw_only=True)
class ScenarioFile(Section):
    scenario: ScenarioInfo = param(doc="what the scenario is")
    model_overrides: dict[str, Any] = param({}, doc="model fields to override (nested tables)")
    keys: list[KeySetup] = param([], doc="key-table setup before t = 0")
    cpu: list[Actor] = param([], doc="operations of each CPU")
    agent: list[Actor] = param([], doc="operations of agents outside the CPUs")
    process: list[Actor] = param([], doc="user processes: system calls and memory accesses "
                                 "by virtual address")
    system: list[Actor] = param([], doc="the administrator: hotplug, raw PCONFIG, key-table "
                                "checks")
    policy_overrides: dict[str, Any] = param({}, doc="kernel policy switches to override")
    expect: Expectations = param(Expectations(), doc="expectations on the whole run")


@dataclass
class ReadCheck:
    """A read op with a name or an expectation, matched to its result after the run."""

    actor: str
    index: int  # op index in its actor's list
    name: str
    expect: str
    field: str  # where in the file, for messages
    served_by: str = ""  # where the read must have been served (SERVED_BY, a cache's name)
    same_as: str = ""  # the label of a read whose bytes this one must equal
    differs_from: str = ""  # ... or must differ from
    keyid: int | None = None  # the KeyID add_key must have allocated (expect_keyid)

    @property
    def extra(self) -> bool:
        """Whether the op carries one of the expectations besides ``expect``."""
        return bool(self.served_by or self.same_as or self.differs_from) or self.keyid is not None


@dataclass
class Scenario:
    """A validated scenario, its ops turned into op tuples."""

    path: str
    file: ScenarioFile
    cpu_ops: dict[int, list[tuple]] = field(default_factory=dict)
    agent_ops: dict[str, list[tuple]] = field(default_factory=dict)
    # Kernel-level actors: name -> (kind "process"/"system", cpu, [steps])
    kernel_ops: dict[str, tuple[str, int, list[Step]]] = field(default_factory=dict)
    checks: list[ReadCheck] = field(default_factory=list)
    labels: dict[str, tuple[str, int]] = field(default_factory=dict)  # label -> (actor, op)

    @property
    def info(self) -> ScenarioInfo:
        return self.file.scenario


# -- op parsing ---------------------------------------------------------------------------------
SERVED_BY = ("peer", "remote", "DRAM", "DRAM-remote", "prefetch", "fill-buffer")
"""Where a read is served besides a cache level of the model (named as in the model file, e.g.
L1D, L2, LLC): ``peer`` another core's cache in the package, ``remote`` a cache of another
package, ``DRAM`` / ``DRAM-remote`` the local / another package's memory, ``prefetch`` a
prefetch of the line on its way, ``fill-buffer`` a load joining a fill in flight. A read may
state it: ``served_by = "LLC"``."""
COMPARE_FIELDS = ("same_as", "differs_from")
"""A read may name another read by label: its bytes must equal (``same_as``) or differ from
(``differs_from``) what that read returned (whenever each ran)."""
READ_OPS = frozenset({"read", "raw_read", "device_read", "direct_map_read"})
"""The ops ``same_as`` and ``differs_from`` can name: those that return bytes."""
CHECK_FIELDS = frozenset({"served_by", *COMPARE_FIELDS})
CPU_OPS = {
    "read": {"keyid", "addr", "size", "at", "name", "expect", *CHECK_FIELDS},
    "write": {"keyid", "addr", "data", "from", "preimage_key", "at", "name"},
    "clflush": {"keyid", "addr", "at"},
    "clflushopt": {"keyid", "addr", "at"},
    "clwb": {"keyid", "addr", "at"},
    "prefetch": {"keyid", "addr", "at"},
    "sfence": {"at"},
    "mfence": {"at"},
    "fence": {"at"},
    "wbinvd": {"at"},
    "compute": {"ns", "at"},
}
AGENT_OPS = {
    "raw_read": {"addr", "offset", "size", "key", "at", "name", "expect", *COMPARE_FIELDS},
    "raw_write": {"addr", "offset", "data", "from", "at"},
    "raw_copy": {"addr", "to", "size", "at"},
    "set_key": {"keyid", "mode", "key", "packages", "at"},
    "reboot": {"persistent", "flush", "at"},
    "wait": {"ns", "at"},
}


def _get(op: dict, name: str, kind: type, ctx: Context, default: Any = None, required: bool = False):
    if name not in op:
        if required:
            raise ctx.error(name, f"is required for op {op.get('op')!r}")
        return default
    v = op[name]
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ctx.error(name, f"expected an integer, got {v!r}")
    if kind is float:  # a time in ns: finite, 0..MAX_NS
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or not 0 <= v <= MAX_NS:
            raise ctx.error(name, f"expected a number of ns from 0 to {MAX_NS:g} (the longest "
                            f"simulated time), got {v!r}")
        return float(v)
    if kind is str and not isinstance(v, str):
        raise ctx.error(name, f"expected a string, got {v!r}")
    if kind is str and "\0" in v:
        raise ctx.error(name, "a string may not contain a NUL byte")
    if kind is bool and not isinstance(v, bool):
        raise ctx.error(name, f"expected true or false, got {v!r}")
    return v


def _hex(op: dict, name: str, ctx: Context, required: bool = True) -> bytes | None:
    text = _get(op, name, str, ctx, required=required)
    if text is None:
        return None
    try:
        data = bytes.fromhex(text)
    except ValueError:
        shown = redact.fingerprint(text) if name in KEY_FIELDS else repr(text)
        raise ctx.error(name, f"{shown} is not hex bytes (e.g. \"41424344\")") from None
    if not data:
        raise ctx.error(name, "must not be empty")
    return data


def _expect(op: dict, ctx: Context, classes: tuple[str, ...]) -> str:
    exp = _get(op, "expect", str, ctx, default="")
    if not exp or exp in classes:
        return exp
    try:
        bytes.fromhex(exp.removeprefix("not:"))
    except ValueError:
        raise ctx.error("expect", f"{exp!r} is neither hex bytes nor one of "
                        f"{', '.join(classes)}") from None
    return exp.lower()


def _op_header(op: Any, ctx: Context, table: dict, kind: str, hint: str = "") -> tuple[str, int | None]:
    """Check an op's name and fields against ``table`` (name -> allowed fields); returns the
    name and its ``at`` time in ticks (None: after the previous op)."""
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise ctx.error(None, "each op is a table with a string field 'op'")
    name = op["op"]
    if name not in table:
        raise ctx.error("op", f"{name!r} is not {kind} op; choose one of {', '.join(table)}{hint}")
    extra = sorted(set(op) - table[name] - {"op"} - SYNC_FIELDS)
    if extra:
        raise ctx.error(extra[0], f"not a field of {name!r}; allowed: "
                        f"{', '.join(sorted(table[name] | SYNC_FIELDS))}")
    _sync_fields(op, ctx)
    return name, _absolute_at(op, ctx)


RELATIVE_UNITS_NS = {"ns": 1.0, "us": 1000.0}
"""Units of a relative time's delay."""
_RELATIVE = re.compile(r"(?P<label>.+)\+(?P<n>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                       r"(?P<unit>ns|us)")
RELATIVE_FORMAT = 'a relative time is "LABEL" or "LABEL+N" with N in ns or us, e.g. "flush+5ns"'


def relative_at(at: str) -> tuple[str, float]:
    """A relative ``at``: the label it names and the delay in ns. ``"LABEL+5ns"`` (or ``us``):
    the op starts 5 ns after the op labelled LABEL *completes*; ``"LABEL"``: when it completes.
    The text is read as LABEL+N first, so a label that itself ends in ``+5ns`` cannot be named
    this way. The delay may be out of range (infinite): :func:`_absolute_at` refuses that."""
    m = _RELATIVE.fullmatch(at)
    if m is None:
        return at, 0.0
    return m["label"], float(m["n"]) * RELATIVE_UNITS_NS[m["unit"]]


def _absolute_at(op: dict, ctx: Context) -> int | None:
    """An op's absolute ``at`` in ticks; None when it has none or a relative one (a string,
    checked here for its delay; its label is checked with the others, in :func:`_link`)."""
    at = op.get("at")
    if isinstance(at, str):
        if "\0" in at or not at:
            raise ctx.error("at", f"{RELATIVE_FORMAT}, got {at!r}"[:300])
        _label, delay = relative_at(at)
        if not math.isfinite(delay) or delay > MAX_NS:
            raise ctx.error("at", f"{at!r}: the delay must be finite and at most {MAX_NS:g} ns "
                            "(the longest simulated time)"[:300])
        return None
    at = _get(op, "at", float, ctx)
    return None if at is None else ns(at)


def at_label(op: dict) -> tuple[str, int] | None:
    """A relative ``at`` as the label and the delay in ticks; None for none or an absolute
    one."""
    at = op.get("at")
    if not isinstance(at, str):
        return None
    label, delay = relative_at(at)
    return label, ns(delay)


def _sync_fields(op: dict, ctx: Context) -> None:
    if "label" in op and not _get(op, "label", str, ctx):
        raise ctx.error("label", "must not be empty")
    if "after" in op:
        after = op["after"]
        labels = after if isinstance(after, list) else [after]
        if not labels or not all(isinstance(x, str) and x and "\0" not in x for x in labels):
            raise ctx.error("after", "expected a label or a non-empty list of labels "
                            f"(non-empty strings), got {after!r}"[:300])
        if len(set(labels)) < len(labels):
            raise ctx.error("after", "names a label twice")


def after_labels(op: dict) -> list[str]:
    """The labels an op's ``after`` names: one string or a list of them (all must complete
    before the op starts)."""
    after = op.get("after")
    if not after:
        return []
    return list(after) if isinstance(after, list) else [after]


def _read_checks(op: dict, ctx: Context, model) -> dict[str, Any]:
    """The ``served_by``, ``same_as`` and ``differs_from`` of a read (``model``: None for an op
    that is not served by caches). Labels are checked with the others, in :func:`_link`."""
    out: dict[str, Any] = {}
    if "served_by" in op:
        where = _get(op, "served_by", str, ctx)
        allowed = [c.name for c in model.cache] + list(SERVED_BY)
        if where not in allowed:
            raise ctx.error("served_by", f"{where!r} is not one of {', '.join(allowed)}"[:300])
        out["served_by"] = where
    for f in COMPARE_FIELDS:
        if f in op:
            label = _get(op, f, str, ctx)
            if not label:
                raise ctx.error(f, "names the label of another read")
            out[f] = label
    return out


def _cpu_op(op: Any, ctx: Context, amap, checks: list, actor: str, index: int,
            model=None) -> tuple:
    hint = " (raw DRAM ops belong to an [[agent]])" if isinstance(op, dict) and \
        isinstance(op.get("op"), str) and op["op"] in AGENT_OPS else ""
    name, at = _op_header(op, ctx, CPU_OPS, "a CPU", hint)
    code = O.CODES[name]
    if name in ("sfence", "mfence", "fence", "wbinvd"):
        return (code, 0, 0, None, at)
    if name == "compute":
        return (code, 0, 0, ns(_get(op, "ns", float, ctx, required=True)), at)
    keyid = _get(op, "keyid", int, ctx, default=0)
    if not amap.valid_keyid(keyid):
        raise ctx.error("keyid", f"{keyid} is not a KeyID of this model (0..{amap.max_keyid})")
    addr = _get(op, "addr", int, ctx, required=True)
    if not amap.valid_pa(addr):
        raise ctx.error("addr", f"{addr:#x} is outside physical memory (0..{amap.memory_bytes - 1:#x})")
    off = addr & 63
    if name == "read":
        size = _get(op, "size", int, ctx, default=64 - off)
        if not 1 <= size <= 64 - off:
            raise ctx.error("size", f"{size} bytes at offset {off} cross the 64-byte line; "
                            f"allowed 1..{64 - off}")
        expect = _expect(op, ctx, READ_CLASSES)
        hexpart = expect.removeprefix("not:")
        if expect and expect not in READ_CLASSES and len(hexpart) // 2 != size:
            raise ctx.error("expect", f"{len(expect) // 2} bytes expected but the read is {size}")
        label = _get(op, "name", str, ctx, default="")
        chk = ReadCheck(actor, index, label or f"{actor} op {index}", expect, ctx.path,
                        **_read_checks(op, ctx, model))
        if expect or label or chk.extra:
            checks.append(chk)
        return (code, keyid, addr, size, at)
    if name == "write" and "from" in op:
        label = _get(op, "from", str, ctx)
        key = _hex(op, "preimage_key", ctx, required=False)
        if key is not None and len(key) not in (32, 64):
            raise ctx.error("preimage_key", "a key is 32 or 64 bytes: data key then tweak key")
        if off:
            raise ctx.error("addr", "a captured line is written to a line-aligned address")
        return (O.WRITE_CAPTURE, keyid, addr, (label, key), at)
    if name == "write":
        data = _hex(op, "data", ctx)
        if len(data) > 64 - off:
            raise ctx.error("data", f"{len(data)} bytes at offset {off} cross the 64-byte line")
        return (code, keyid, addr, data, at)
    return (code, keyid, addr, None, at)


def _agent_op(op: Any, ctx: Context, amap, checks: list, actor: str, index: int, captures: set,
              max_keys: int) -> tuple:
    name, at = _op_header(op, ctx, AGENT_OPS, "an agent")

    def addr_of(field_name: str, size: int) -> int | tuple[str, int]:
        if field_name == "addr" and isinstance(op.get("addr"), str):
            page = _get(op, "addr", str, ctx)
            if not page:
                raise ctx.error("addr", "names a process page (its page = \"NAME\") or is a "
                                "physical address")
            off = _get(op, "offset", int, ctx, default=0)
            if off < 0 or off + size > PAGE_BYTES:
                raise ctx.error("offset", f"{off}+{size} bytes leave the 4096-byte page "
                                f"{page!r}")
            return page, off
        if "offset" in op:
            raise ctx.error("offset", "goes with addr = \"PAGE\", a named process page")
        a = _get(op, field_name, int, ctx, required=True)
        if not amap.valid_pa(a) or not amap.valid_pa(a + size - 1):
            raise ctx.error(field_name, f"{a:#x}+{size} is outside physical memory")
        return a

    if name == "raw_read":
        size = _get(op, "size", int, ctx, default=64)
        if not 1 <= size <= 1 << 20:
            raise ctx.error("size", f"{size} is out of range 1..1048576")
        addr = addr_of("addr", size)
        key = _hex(op, "key", ctx, required=False)
        if key is not None:
            if len(key) not in (32, 64):
                raise ctx.error("key", f"{len(key)} bytes; a key is the data key then the "
                                "tweak key: 32 or 64 bytes")
            start = addr[1] if isinstance(addr, tuple) else addr
            if start % 64 or size % 64:
                raise ctx.error("key", f"decrypting reads whole 64-byte lines: the address "
                                f"({start:#x}) and size ({size}) must be multiples of 64")
        label = _get(op, "name", str, ctx, default="")
        expect = _expect(op, ctx, RAW_CLASSES)
        if label:
            captures.add(label)
        chk = ReadCheck(actor, index, label or f"{actor} op {index}", expect, ctx.path,
                        **_read_checks(op, ctx, None))
        if expect or label or chk.extra:
            checks.append(chk)
        return (O.RAW_READ, 0, addr, (size, label, key), at)
    if name == "raw_write":
        src = _get(op, "from", str, ctx)
        if src is not None:
            if src not in captures:
                raise ctx.error("from", f"no earlier raw_read named {src!r} in this agent")
            return (O.RAW_WRITE, 0, addr_of("addr", 1), ("capture", src), at)
        data = _hex(op, "data", ctx)
        return (O.RAW_WRITE, 0, addr_of("addr", len(data)), data, at)
    if name == "raw_copy":
        size = _get(op, "size", int, ctx, default=64)
        return (O.RAW_COPY, 0, addr_of("addr", size), (addr_of("to", size), size), at)
    if name == "wait":
        return (O.COMPUTE, 0, 0, ns(_get(op, "ns", float, ctx, required=True)), at)
    if name == "set_key":
        keyid = _get(op, "keyid", int, ctx, required=True)
        limit = min(amap.max_keyid, max_keys)
        if not 1 <= keyid <= limit:
            raise ctx.error("keyid", f"{keyid} is not a programmable KeyID of this model "
                            f"(1..{limit}: max_keys is {max_keys})")
        mode = _get(op, "mode", str, ctx, required=True)
        if mode not in KEY_MODES:
            raise ctx.error("mode", f"{mode!r} is not one of {', '.join(KEY_MODES)}")
        key = _hex(op, "key", ctx, required=False)
        if key is not None and len(key) not in (32, 64):
            raise ctx.error("key", f"{len(key)} bytes; a key is 32 or 64 bytes (data then tweak)")
        pk = _get(op, "packages", list, ctx, default=[])
        return ("set_key", keyid, 0, (mode, key, tuple(pk)), at)
    persistent = _get(op, "persistent", bool, ctx, default=False)
    flush = _get(op, "flush", bool, ctx, default=True)
    return ("reboot", 0, 0, (persistent, flush), at)


PCONFIG_KEY_BYTES = {"aes-xts-128": 16, "aes-xts-256": 32}
"""Bytes of one AES-XTS key (the data key, and the tweak key) per algorithm."""


def _pconfig_keys(op: dict, ctx: Context) -> None:
    """Check a ``pconfig`` op's key material (:class:`~mktme_des.scenarios.kernel_ops.Pconfig`
    turns it into PCONFIG's KEY_FIELD_1 and KEY_FIELD_2, zero-padded to 64 bytes).

    ``key`` is spelt as ``[[keys]]`` and ``set_key`` spell it: the data key then the tweak key
    in one string, 32 bytes for aes-xts-128 and 64 for aes-xts-256 (either, halved, for an
    algorithm PCONFIG does not know). ``key_field`` and ``tweak_field`` give the instruction's
    two fields as they are, up to 64 bytes each: what the SDM's reserved-bytes #GP is about.
    The separate ``tweak`` of earlier files is refused: with it, a 32-byte ``key`` could mean
    a 32-byte data key or a data key and a tweak key."""
    if "tweak" in op:
        raise ctx.error("tweak", "pconfig spells a key as [[keys]] does: key = data key then "
                        "tweak key in one string; or give PCONFIG's raw fields as key_field "
                        "and tweak_field")
    if "key" in op and ("key_field" in op or "tweak_field" in op):
        raise ctx.error("key", "give key (data key then tweak key) or the raw key_field and "
                        "tweak_field, not both")
    if "key" in op:
        key = _hex(op, "key", ctx)
        alg = op.get("alg", "aes-xts-128")
        size = PCONFIG_KEY_BYTES.get(alg)
        allowed = (2 * size,) if size else (32, 64)
        if len(key) not in allowed:
            raise ctx.error("key", f"{len(key)} bytes; a key is the data key then the tweak "
                            f"key: {' or '.join(map(str, allowed))} bytes for {alg}")
    for f in ("key_field", "tweak_field"):
        if f in op and len(_hex(op, f, ctx)) > 64:
            raise ctx.error(f, f"{len(_hex(op, f, ctx))} bytes; a PCONFIG key field is at most 64")


def _kernel_op(op: Any, ctx: Context, kind: str, model, checks: list, actor: str,
               index: int) -> Step:
    """Validate one [[process]] / [[system]] op against its declared section
    (:mod:`mktme_des.scenarios.kernel_ops`) and the model; returns it ready to run."""
    table = PROCESS_OPS if kind == "process" else SYSTEM_OPS
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise ctx.error(None, "each op is a table with a string field 'op'")
    name = op["op"]
    if name not in table:
        raise ctx.error("op", f"{name!r} is not a {kind} op; choose one of {', '.join(table)}")
    cls = table[name]
    declared = {f.name: f for f in dataclasses.fields(cls)}
    for f in sorted(n for n, d in declared.items() if n != "op" and
                    d.default is dataclasses.MISSING and
                    d.default_factory is dataclasses.MISSING):
        if f not in op:
            raise ctx.error(f, f"is required for op {name!r}")
    extra = sorted(set(op) - set(declared) - SYNC_FIELDS - {"at"})
    if extra:
        raise ctx.error(extra[0], f"not a field of {name!r}; allowed: "
                        f"{', '.join(sorted((set(declared) - {'op'}) | SYNC_FIELDS | {'at'}))}")
    _sync_fields(op, ctx)
    at = _absolute_at(op, ctx)
    spec = build(cls, {k: v for k, v in op.items() if k not in SYNC_FIELDS and k != "at"}, ctx)
    spec.check_model(model, ctx)
    exp = ""
    if isinstance(spec, Judged):
        spec.check_expect(ctx)
        exp = spec.expect
        if exp and exp != BLOCKED and spec.EXPECTS == "read":
            exp = _expect(op, ctx, READ_CLASSES)
        if exp == "ok" and spec.EXPECTS == "pconfig":
            exp = "PROG_SUCCESS"  # the instruction's success, as for the other ops
    if "page" in op and not op["page"]:
        raise ctx.error("page", "names the physical page for agents' addr; must not be empty")
    if isinstance(spec, Write) and len(_hex(op, "data", ctx)) > PAGE_BYTES:
        raise ctx.error("data", "at most one page (4096 bytes) per write")
    if isinstance(spec, Pconfig):
        _pconfig_keys(op, ctx)
    extra_checks: dict[str, Any] = {}
    if isinstance(spec, ReadLike):
        extra_checks = _read_checks(op, ctx, model)
    if isinstance(spec, AddKey) and spec.expect_keyid is not None:
        extra_checks["keyid"] = spec.expect_keyid
    label = spec.name if isinstance(spec, Judged) else ""
    chk = ReadCheck(actor, index, label or f"{actor} op {index} ({name})", exp, ctx.path,
                    **extra_checks)
    if exp or label or chk.extra or name in ("read", "device_read", "swap_read",
                                             "direct_map_read", "keytable"):
        checks.append(chk)
    return Step(spec, at, at_label(op), after_labels(op), op.get("label", ""))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read and validate a scenario file (by path, name or short id: see
    :mod:`mktme_des.catalog`)."""
    path = find_scenario(name_or_path)
    return scenario_from(read_toml(path), str(path))


def scenario_from(data: dict[str, Any], path: str) -> Scenario:
    """Validate a scenario's parsed TOML ``data``; errors name ``path``."""
    from mktme_des.config.model import load_model
    from mktme_des.hw.address import AddressMap

    ctx = Context(path)
    file = build(ScenarioFile, data, ctx)
    try:
        model = load_model(file.scenario.model, file.model_overrides or None)
    except ConfigError as err:
        if err.file == path:
            raise
        raise ctx.error("scenario.model", f"{file.scenario.model!r}: {err}") from None
    amap = AddressMap(model)
    sc = Scenario(path, file)
    sequences: list[tuple[str, Context, list]] = []  # actor, its context, its op tables
    ncpu = model.topology.packages * model.topology.cores_per_package
    for i, k in enumerate(file.keys):
        kctx = ctx.child("keys").child(i)
        if k.keyid > model.mktme.max_keys:
            raise kctx.error("keyid", f"{k.keyid} exceeds the model's max_keys "
                             f"({model.mktme.max_keys})")
        if k.key:
            _hex({"key": k.key}, "key", kctx)
            if len(bytes.fromhex(k.key)) not in (32, 64):
                raise kctx.error("key", "a key is 32 or 64 bytes: data key then tweak key")
        for p in k.packages:
            if not 0 <= p < model.topology.packages:
                raise kctx.error("packages", f"package {p} does not exist")
    for i, actor in enumerate(file.cpu):
        actx = ctx.child("cpu").child(i)
        if not 0 <= actor.id < ncpu:
            raise actx.error("id", f"{actor.id} is not a CPU of {model.platform.name} (0..{ncpu - 1})")
        if actor.id in sc.cpu_ops:
            raise actx.error("id", f"cpu {actor.id} appears twice")
        sc.cpu_ops[actor.id] = [
            _cpu_op(op, actx.child("ops").child(j), amap, sc.checks, f"cpu{actor.id}", j, model)
            for j, op in enumerate(actor.ops)
        ]
        sequences.append((f"cpu{actor.id}", actx, actor.ops))
    for i, actor in enumerate(file.agent):
        actx = ctx.child("agent").child(i)
        name = actor.name or f"agent{i}"
        if name in sc.agent_ops or name.startswith("cpu"):
            raise actx.error("name", f"{name!r} is taken; agent names are unique and not cpuN")
        captures: set[str] = set()
        sc.agent_ops[name] = [
            _agent_op(op, actx.child("ops").child(j), amap, sc.checks, name, j, captures,
                      model.mktme.max_keys)
            for j, op in enumerate(actor.ops)
        ]
        sequences.append((name, actx, actor.ops))
    for kind, actors in (("process", file.process), ("system", file.system)):
        for i, actor in enumerate(actors):
            actx = ctx.child(kind).child(i)
            name = actor.name or f"{kind}{i}"
            if name in sc.agent_ops or name in sc.kernel_ops or name.startswith("cpu"):
                raise actx.error("name", f"{name!r} is taken; actor names are unique and not cpuN")
            if actor.cpu >= ncpu:
                raise actx.error("cpu", f"{actor.cpu} is not a CPU of {model.platform.name}")
            sc.kernel_ops[name] = (kind, actor.cpu, [
                _kernel_op(op, actx.child("ops").child(j), kind, model, sc.checks, name, j)
                for j, op in enumerate(actor.ops)
            ])
            sequences.append((name, actx, actor.ops))
    if sc.kernel_ops:
        from mktme_des.kernel.policy import load_policy

        try:
            load_policy(file.scenario.policy, file.policy_overrides or None)
        except ConfigError as err:
            if err.file == path:
                raise
            raise ctx.error("scenario.policy", f"{file.scenario.policy!r}: {err}") from None
    if not sc.cpu_ops and not sc.agent_ops and not sc.kernel_ops:
        raise ctx.error("cpu", "a scenario needs at least one [[cpu]] or [[agent]] with ops")
    _link(sc, sequences)
    return sc


def _link(sc: Scenario, sequences: list[tuple[str, Context, list]]) -> None:
    """Check ``label``/``after`` across actors and wire them: an op with ``after`` waits for
    the labelled op to complete (an AWAIT before it), a labelled op announces its completion
    (a SIGNAL after it). Kernel-level actors read the two fields from their op tables."""
    owner: dict[str, tuple[str, int]] = {}
    for actor, actx, ops in sequences:
        for j, op in enumerate(ops):
            label = op.get("label")
            if label in owner:
                other = owner[label]
                raise actx.child("ops").child(j).error(
                    "label", f"{label!r} already labels op {other[1]} of {other[0]}")
            if label:
                owner[label] = (actor, j)
    # Every op waits for its predecessor and for the ops it names (``after``, a relative
    # ``at``): that graph must be acyclic.
    waits_for: dict[tuple[str, int], list[tuple[str, int]]] = {}
    named: dict[tuple[str, int], dict[tuple[str, int], str]] = {}  # op -> op it names -> field
    for actor, actx, ops in sequences:
        for j, op in enumerate(ops):
            deps = [(actor, j - 1)] if j else []
            names = [(after, "after") for after in after_labels(op)]
            rel = at_label(op)
            if rel is not None:
                names.append((rel[0], "at"))
            for label, fname in names:
                if label not in owner:
                    known = ", ".join(sorted(owner)) or "none"
                    hint = f"; {RELATIVE_FORMAT}" if fname == "at" else ""
                    raise actx.child("ops").child(j).error(
                        fname, f"no op is labelled {label!r} (labels: {known}){hint}"[:400])
                deps.append(owner[label])
                named.setdefault((actor, j), {})[owner[label]] = fname
            waits_for[(actor, j)] = deps
    order = {actor: i for i, (actor, _, _) in enumerate(sequences)}
    contexts = {actor: actx for actor, actx, _ in sequences}
    # Kahn's algorithm: linear in the number of ops.
    dependents: dict[tuple[str, int], list[tuple[str, int]]] = {}
    remaining = {}
    for n, deps in waits_for.items():
        remaining[n] = len(deps)
        for d in deps:
            dependents.setdefault(d, []).append(n)
    ready = [n for n, k in remaining.items() if not k]
    done: set[tuple[str, int]] = set()
    while ready:
        n = ready.pop()
        done.add(n)
        for m in dependents.get(n, ()):
            remaining[m] -= 1
            if not remaining[m]:
                ready.append(m)
    if len(done) < len(waits_for):
        # Each op left waits for another op left: walking back must close a cycle.
        pending = {n: deps for n, deps in waits_for.items() if n not in done}
        node, path, seen = min(pending), [], set()
        while node not in seen:
            path.append(node)
            seen.add(node)
            node = next(d for d in pending[node] if d in pending)
        cycle = path[path.index(node):]
        nxt = {n: cycle[(i + 1) % len(cycle)] for i, n in enumerate(cycle)}
        actor, j = min((n for n in cycle if nxt[n] in named.get(n, {})),
                       key=lambda n: (order[n[0]], n[1]))
        raise contexts[actor].child("ops").child(j).error(
            named[actor, j][nxt[actor, j]],
            "can never be satisfied: these ops wait for each other in a cycle")
    _check_captures(sequences, waits_for)
    _check_pages(sequences, waits_for)
    tables = {actor: ops for actor, _, ops in sequences}
    sc.labels = owner
    for chk in sc.checks:
        for f in COMPARE_FIELDS:
            label = getattr(chk, f)
            if not label:
                continue
            if label not in owner:
                known = ", ".join(sorted(owner)) or "none"
                raise ConfigError(sc.path, f"{chk.field}.{f}",
                                  f"no op is labelled {label!r} (labels: {known})"[:400])
            actor, j = owner[label]
            if tables[actor][j].get("op") not in READ_OPS:
                raise ConfigError(sc.path, f"{chk.field}.{f}",
                                  f"{label!r} labels a {tables[actor][j].get('op')!r}, not a "
                                  f"read ({', '.join(sorted(READ_OPS))})")
            if (actor, j) == (chk.actor, chk.index):
                raise ConfigError(sc.path, f"{chk.field}.{f}", "names the read itself")
    for lists, name in ((sc.cpu_ops, "cpu{}".format), (sc.agent_ops, str)):
        for actor, ops in lists.items():
            wired = []
            for op, spec in zip(ops, tables[name(actor)], strict=True):
                for after in after_labels(spec):
                    wired.append((O.AWAIT, 0, 0, after, None))
                rel = at_label(spec)
                if rel is not None:  # waits, unlogged, like ``after``: then the op, untimed
                    wired.append((O.AWAIT, 0, 0, rel if rel[1] else rel[0], None))
                wired.append(op)
                if spec.get("label"):
                    wired.append((O.SIGNAL, 0, 0, spec["label"], None))
            lists[actor] = wired


Sequences = list[tuple[str, Context, list]]
WaitsFor = dict[tuple[str, int], list[tuple[str, int]]]


def _check_captures(sequences: Sequences, waits_for: WaitsFor) -> None:
    """Every CPU ``write`` ``from`` a capture names a ``raw_read`` of an [[agent]], and waits
    for it (through program order and ``after``): otherwise, whatever the times say, a run
    (or ``scenario explore``, which moves them) could use the capture before it exists."""
    _check_made_first(
        sequences, waits_for,
        made=lambda op: op["name"] if op.get("op") == "raw_read" and op.get("name") else None,
        used=lambda actor, op: op["from"] if actor.startswith("cpu") and
        op.get("op") == "write" and "from" in op else None,
        field="from",
        unknown=lambda name, known: f"no raw_read of an [[agent]] is named {name!r} "
                                    f"(captures: {known})",
        what=lambda name: f"the capture {name!r} is made")


def _check_pages(sequences: Sequences, waits_for: WaitsFor) -> None:
    """Every agent op whose ``addr`` names a page (``addr = "P"``) waits, through program
    order and ``after`` or a relative ``at``, for a [[process]] op that names it (``page =
    "P"``): the physical page is known only once that op has run."""
    _check_made_first(
        sequences, waits_for,
        made=lambda op: op["page"] if isinstance(op.get("page"), str) else None,
        used=lambda actor, op: op["addr"] if op.get("op") in ("raw_read", "raw_write") and
        isinstance(op.get("addr"), str) else None,
        field="addr",
        unknown=lambda name, known: (f"no [[process]] op names a page {name!r} (pages: "
                                     f"{known}; a process read, write or pin names one with "
                                     "page = \"NAME\")")[:400],
        what=lambda name: f"page {name!r} is named")


def _check_made_first(sequences: Sequences, waits_for: WaitsFor, *, made, used, field: str,
                      unknown, what) -> None:
    """Every op that uses a name (``used(actor, op)``) finds an op that makes it
    (``made(op)``) and waits for one of them, through program order, ``after`` or a relative
    ``at``; otherwise the error names the op's ``field``."""
    makers: dict[str, list[tuple[str, int]]] = {}
    for actor, _, ops in sequences:
        for j, op in enumerate(ops):
            name = made(op) if isinstance(op, dict) else None
            if name is not None:
                makers.setdefault(name, []).append((actor, j))
    for actor, actx, ops in sequences:
        for j, op in enumerate(ops):
            name = used(actor, op) if isinstance(op, dict) else None
            if name is None:
                continue
            where = actx.child("ops").child(j)
            if name not in makers:
                raise where.error(field, unknown(name, ", ".join(sorted(makers)) or "none"))
            if not _waits_for_any((actor, j), set(makers[name]), waits_for):
                a, k = makers[name][0]
                raise where.error(field, f"may run before {what(name)} (op {k} of {a}): label "
                                  "that op and give this op, or one before it, an 'after' "
                                  "naming the label")


def _waits_for_any(node: tuple[str, int], targets: set[tuple[str, int]],
                   waits_for: dict[tuple[str, int], list[tuple[str, int]]]) -> bool:
    """True when ``node`` waits, directly or through others, for one of ``targets``."""
    stack, seen = list(waits_for[node]), set()
    while stack:
        n = stack.pop()
        if n in targets:
            return True
        if n not in seen:
            seen.add(n)
            stack.extend(waits_for[n])
    return False


def find_scenario(name_or_path: str | Path) -> Path:
    """A scenario file by path, name or short id (:func:`mktme_des.catalog.find`)."""
    return catalog.find("scenario", name_or_path)


def list_scenarios() -> list[Path]:
    """Every scenario file (:func:`mktme_des.catalog.entries`), S1 before S2 before S10."""
    return [e.path for e in catalog.entries("scenario")]
