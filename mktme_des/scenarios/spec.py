"""Scenario files: ``experiments/scenarios/*.toml``.

A scenario names a model and a seed, sets up key tables, and gives each CPU (``[[cpu]]``) and
each agent outside the CPUs (``[[agent]]``: a DRAM probe, an attacker with an interposer, the
firmware) a list of operations, declared in :mod:`mktme_des.scenarios.hw_ops`; kernel-level
actors (``[[process]]``, ``[[system]]``) have ops declared in
:mod:`mktme_des.scenarios.kernel_ops`. Each operation may carry a start time ``at``:
absolute, in ns, or relative to a labelled op (``"LABEL+5ns"``, ``"LABEL+1us"``, ``"LABEL"``:
that long after the labelled op *completes*, see :func:`relative_at`); either way
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
from mktme_des.config.schema import Context, Section, build, file_key, param, read_toml
from mktme_des.engine.time import MAX_NS, ns
from mktme_des.errors import ConfigError
from mktme_des.hw import ops as O
from mktme_des.scenarios.hw_ops import (
    AGENT_OPS,
    CPU_OPS,
    KEY_MODES,
    READ_CLASSES,
    Compute,
    CpuRead,
    CpuWrite,
    LineOp,
    RawCopy,
    RawRead,
    RawWrite,
    Reboot,
    SetKey,
)
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

# A read's expectation is one of its op's classes (READ_CLASSES, RAW_CLASSES), hex bytes,
# or "not:" and hex bytes.
# Any op may carry these: ``label`` names it, ``after`` makes it wait for a labelled op.
SYNC_FIELDS = frozenset({"label", "after"})
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


def _hex(text: str | None, name: str, ctx: Context) -> bytes | None:
    """The bytes of the hex field ``name`` (None when absent); key material is never quoted."""
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


def _expect(exp: str, ctx: Context, classes: tuple[str, ...]) -> str:
    """A read's expectation: one of ``classes``, or hex bytes (``not:`` and hex bytes), which
    are returned in lower case."""
    if not exp or exp in classes:
        return exp
    try:
        bytes.fromhex(exp.removeprefix("not:"))
    except ValueError:
        raise ctx.error("expect", f"{exp!r} is neither hex bytes nor one of "
                        f"{', '.join(classes)}") from None
    return exp.lower()


def _declared_op(op: Any, ctx: Context, table: dict[str, type[Section]], kind: str,
                 hint: str = "") -> tuple[str, Any, int | None]:
    """Check an op against its declared section in ``table`` (op name -> section) and build
    it: returns the op's name, the built section and its ``at`` time in ticks (None: after
    the previous op, or a relative ``at``). Besides its declared fields an op may carry
    ``at``, ``label`` and ``after``. An undeclared field is reported before a missing one
    (a misspelt field is both), each as a field of the op by name."""
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise ctx.error(None, "each op is a table with a string field 'op'")
    name = op["op"]
    if name not in table:
        raise ctx.error("op", f"{name!r} is not {kind} op; choose one of {', '.join(table)}{hint}")
    declared = {file_key(f): f for f in dataclasses.fields(table[name])}
    extra = sorted(set(op) - set(declared) - SYNC_FIELDS - {"at"})
    if extra:
        raise ctx.error(extra[0], f"not a field of {name!r}; allowed: "
                        f"{', '.join(sorted((set(declared) - {'op'}) | SYNC_FIELDS | {'at'}))}")
    for f in sorted(k for k, d in declared.items() if k != "op" and
                    d.default is dataclasses.MISSING and
                    d.default_factory is dataclasses.MISSING):
        if f not in op:
            raise ctx.error(f, f"is required for op {name!r}")
    _sync_fields(op, ctx)
    at = _absolute_at(op, ctx)
    fields = {k: v for k, v in op.items() if k not in SYNC_FIELDS and k != "at"}
    spec = build(table[name], fields, ctx)
    return name, spec, at


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
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) \
            or not 0 <= at <= MAX_NS:
        raise ctx.error("at", f"expected a number of ns from 0 to {MAX_NS:g} (the longest "
                        f"simulated time), or a relative time, got {at!r}"[:300])
    return ns(float(at))


def at_label(op: dict) -> tuple[str, int] | None:
    """A relative ``at`` as the label and the delay in ticks; None for none or an absolute
    one."""
    at = op.get("at")
    if not isinstance(at, str):
        return None
    label, delay = relative_at(at)
    return label, ns(delay)


def _sync_fields(op: dict, ctx: Context) -> None:
    if "label" in op:
        label = op["label"]
        if not isinstance(label, str) or "\0" in label:
            raise ctx.error("label", f"expected a string without NUL bytes, got {label!r}"[:300])
        if not label:
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
    if "served_by" in op:  # the op's declaration made every field here a string
        where = op["served_by"]
        allowed = [c.name for c in model.cache] + list(SERVED_BY)
        if where not in allowed:
            raise ctx.error("served_by", f"{where!r} is not one of {', '.join(allowed)}"[:300])
        out["served_by"] = where
    for f in COMPARE_FIELDS:
        if f in op:
            label = op[f]
            if not label:
                raise ctx.error(f, "names the label of another read")
            out[f] = label
    return out


def _cpu_op(op: Any, ctx: Context, amap, checks: list, actor: str, index: int,
            model=None) -> tuple:
    """Validate one [[cpu]] op against its declared section (:data:`CPU_OPS`) and the model;
    returns the op tuple the CPU runs ``(code, keyid, addr, arg, at)``."""
    hint = " (raw DRAM ops belong to an [[agent]])" if isinstance(op, dict) and \
        isinstance(op.get("op"), str) and op["op"] in AGENT_OPS else ""
    name, spec, at = _declared_op(op, ctx, CPU_OPS, "a CPU", hint)
    code = O.CODES[name]
    if isinstance(spec, Compute):
        return (code, 0, 0, ns(spec.ns), at)
    if not isinstance(spec, LineOp):
        return (code, 0, 0, None, at)
    keyid, addr = spec.keyid, spec.addr
    if not amap.valid_keyid(keyid):
        raise ctx.error("keyid", f"{keyid} is not a KeyID of this model (0..{amap.max_keyid})")
    if not amap.valid_pa(addr):
        raise ctx.error("addr", f"{addr:#x} is outside physical memory (0..{amap.memory_bytes - 1:#x})")
    off = addr & 63
    if isinstance(spec, CpuRead):
        size = 64 - off if spec.size is None else spec.size
        if not 1 <= size <= 64 - off:
            raise ctx.error("size", f"{size} bytes at offset {off} cross the 64-byte line; "
                            f"allowed 1..{64 - off}")
        expect = _expect(spec.expect, ctx, spec.EXPECT_CLASSES)
        hexpart = expect.removeprefix("not:")
        if expect and expect not in READ_CLASSES and len(hexpart) // 2 != size:
            raise ctx.error("expect", f"{len(expect) // 2} bytes expected but the read is {size}")
        chk = ReadCheck(actor, index, spec.name or f"{actor} op {index}", expect, ctx.path,
                        **_read_checks(op, ctx, model))
        if expect or spec.name or chk.extra:
            checks.append(chk)
        return (code, keyid, addr, size, at)
    if isinstance(spec, CpuWrite) and spec.from_ is not None:
        key = _hex(spec.preimage_key, "preimage_key", ctx)
        if key is not None and len(key) not in (32, 64):
            raise ctx.error("preimage_key", "a key is 32 or 64 bytes: data key then tweak key")
        if off:
            raise ctx.error("addr", "a captured line is written to a line-aligned address")
        return (O.WRITE_CAPTURE, keyid, addr, (spec.from_, key), at)
    if isinstance(spec, CpuWrite):
        data = _hex(spec.data, "data", ctx)
        if len(data) > 64 - off:
            raise ctx.error("data", f"{len(data)} bytes at offset {off} cross the 64-byte line")
        return (code, keyid, addr, data, at)
    return (code, keyid, addr, None, at)


def _agent_op(op: Any, ctx: Context, amap, checks: list, actor: str, index: int, captures: set,
              max_keys: int) -> tuple:
    """Validate one [[agent]] op against its declared section (:data:`AGENT_OPS`) and the
    model; returns the op tuple the agent runs. A raw op's ``addr`` is a physical address
    (the whole access within memory) or a process page's name, then ``(name, offset)`` with
    the access within the page's 4096 bytes."""
    name, spec, at = _declared_op(op, ctx, AGENT_OPS, "an agent")

    def addr_of(a: int | str, field_name: str, size: int) -> int | tuple[str, int]:
        if isinstance(a, str):
            off = getattr(spec, "offset", None) or 0
            if off + size > PAGE_BYTES:
                raise ctx.error("offset", f"{off}+{size} bytes leave the 4096-byte page {a!r}")
            return a, off
        if not amap.valid_pa(a) or not amap.valid_pa(a + size - 1):
            raise ctx.error(field_name, f"{a:#x}+{size} is outside physical memory")
        return a

    if isinstance(spec, RawRead):
        size = spec.size
        addr = addr_of(spec.addr, "addr", size)
        key = _hex(spec.key, "key", ctx)
        if key is not None:
            if len(key) not in (32, 64):
                raise ctx.error("key", f"{len(key)} bytes; a key is the data key then the "
                                "tweak key: 32 or 64 bytes")
            start = addr[1] if isinstance(addr, tuple) else addr
            if start % 64 or size % 64:
                raise ctx.error("key", f"decrypting reads whole 64-byte lines: the address "
                                f"({start:#x}) and size ({size}) must be multiples of 64")
        expect = _expect(spec.expect, ctx, spec.EXPECT_CLASSES)
        if spec.name:
            captures.add(spec.name)
        chk = ReadCheck(actor, index, spec.name or f"{actor} op {index}", expect, ctx.path,
                        **_read_checks(op, ctx, None))
        if expect or spec.name or chk.extra:
            checks.append(chk)
        return (O.RAW_READ, 0, addr, (size, spec.name, key), at)
    if isinstance(spec, RawWrite):
        if spec.from_ is not None:
            if spec.from_ not in captures:
                raise ctx.error("from", f"no earlier raw_read named {spec.from_!r} in this "
                                "agent")
            return (O.RAW_WRITE, 0, addr_of(spec.addr, "addr", 1), ("capture", spec.from_), at)
        data = _hex(spec.data, "data", ctx)
        return (O.RAW_WRITE, 0, addr_of(spec.addr, "addr", len(data)), data, at)
    if isinstance(spec, RawCopy):
        return (O.RAW_COPY, 0, addr_of(spec.addr, "addr", spec.size),
                (addr_of(spec.to, "to", spec.size), spec.size), at)
    if isinstance(spec, Compute):  # wait
        return (O.COMPUTE, 0, 0, ns(spec.ns), at)
    if isinstance(spec, SetKey):
        limit = min(amap.max_keyid, max_keys)
        if not 1 <= spec.keyid <= limit:
            raise ctx.error("keyid", f"{spec.keyid} is not a programmable KeyID of this model "
                            f"(1..{limit}: max_keys is {max_keys})")
        key = _hex(spec.key, "key", ctx)
        if key is not None and len(key) not in (32, 64):
            raise ctx.error("key", f"{len(key)} bytes; a key is 32 or 64 bytes (data then tweak)")
        return ("set_key", spec.keyid, 0, (spec.mode, key, tuple(spec.packages)), at)
    assert isinstance(spec, Reboot), name
    return ("reboot", 0, 0, (spec.persistent, spec.flush), at)


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
        key = _hex(op["key"], "key", ctx)
        alg = op.get("alg", "aes-xts-128")
        size = PCONFIG_KEY_BYTES.get(alg)
        allowed = (2 * size,) if size else (32, 64)
        if len(key) not in allowed:
            raise ctx.error("key", f"{len(key)} bytes; a key is the data key then the tweak "
                            f"key: {' or '.join(map(str, allowed))} bytes for {alg}")
    for f in ("key_field", "tweak_field"):
        if f in op and len(_hex(op[f], f, ctx)) > 64:
            raise ctx.error(f, f"{len(_hex(op[f], f, ctx))} bytes; a PCONFIG key field is at "
                            "most 64")


def _kernel_op(op: Any, ctx: Context, kind: str, model, checks: list, actor: str,
               index: int) -> Step:
    """Validate one [[process]] / [[system]] op against its declared section
    (:mod:`mktme_des.scenarios.kernel_ops`) and the model; returns it ready to run."""
    table = PROCESS_OPS if kind == "process" else SYSTEM_OPS
    name, spec, at = _declared_op(op, ctx, table, f"a {kind}")
    spec.check_model(model, ctx)
    exp = ""
    if isinstance(spec, Judged):
        spec.check_expect(ctx)
        exp = spec.expect
        if exp and exp != BLOCKED and spec.EXPECTS == "read":
            exp = _expect(exp, ctx, READ_CLASSES)
        if exp == "ok" and spec.EXPECTS == "pconfig":
            exp = "PROG_SUCCESS"  # the instruction's success, as for the other ops
    if "page" in op and not op["page"]:
        raise ctx.error("page", "names the physical page for agents' addr; must not be empty")
    if isinstance(spec, Write) and len(_hex(spec.data, "data", ctx)) > PAGE_BYTES:
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
            _hex(k.key, "key", kctx)
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
