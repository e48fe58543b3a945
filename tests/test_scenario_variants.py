"""Metamorphic tests over every shipped scenario: changes that must not change a verdict.

Each transform below is a function over a scenario file's parsed TOML. It rewrites every actor
kind the file uses (``[[cpu]]``, ``[[agent]]``, ``[[process]]``, ``[[system]]``) and
``[[keys]]``, and its docstring states the rule of the model that makes the change irrelevant.
The variant is written back as TOML, run, and judged against the original: every expectation
must get the same verdict, and where the file has ``[expect] violations`` the oracle must
report the same number of violations.

Where a transform is not well defined for a file, the file is excluded from it in
``EXCLUDED``, with the reason; a test checks that each exclusion is still needed, so the list
cannot silently go stale.

Hex expectations: in every shipped file they are plaintext a CPU or process stored (a test
checks this), so they do not depend on the key's bytes, the KeyID or the physical address;
raw DRAM reads are judged by class (``ciphertext``, ``plaintext``, ``zero``). Every transform
therefore keeps the hex expectations as they are.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktme_des.config.model import load_model
from mktme_des.config.toml_write import dumps
from mktme_des.hw.address import LINE, AddressMap
from mktme_des.scenarios.runner import run_scenario
from mktme_des.scenarios.spec import list_scenarios

FILES = {p.stem: p for p in list_scenarios()}
KINDS = ("cpu", "agent", "process", "system")
PAGE = 4096
HEX_FIELDS = ("addr", "to")
# Hypothesis examples per file and transform (a run takes ~20 ms), from a fixed seed. For a
# deeper search: VARIANT_EXAMPLES=50 VARIANT_RANDOM=1.
EXAMPLES = int(os.environ.get("VARIANT_EXAMPLES", "3"))
CHECK = settings(max_examples=EXAMPLES, deadline=None,
                 derandomize=not os.environ.get("VARIANT_RANDOM"),
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def load(stem: str) -> dict[str, Any]:
    with open(FILES[stem], "rb") as f:
        return tomllib.load(f)


def model_of(doc: dict[str, Any]):
    return load_model(doc["scenario"]["model"], doc.get("model_overrides") or None)


def actors(doc: dict[str, Any]):
    """Every actor table of the file, with its kind."""
    for kind in KINDS:
        for actor in doc.get(kind, []):
            yield kind, actor


def ops(doc: dict[str, Any]):
    """Every op of every actor, with the actor's kind."""
    for kind, actor in actors(doc):
        for op in actor.get("ops", []):
            yield kind, op


def actor_name(kind: str, actor: dict, index: int) -> str:
    """The name the runner gives the actor (and its checks)."""
    if kind == "cpu":
        return f"cpu{actor['id']}"
    return actor.get("name") or f"{kind}{index}"


def kernel_allocates_keyids(doc: dict[str, Any]) -> bool:
    return any(op["op"] == "add_key" for _, op in ops(doc))


# -- verdicts ------------------------------------------------------------------------------------

def verdict(path: Path, rename: dict[str, str] | None = None) -> dict:
    """Per expectation (keyed by actor and op index, actors renamed by ``rename``), whether it
    held; plus the oracle's violation count."""
    res = run_scenario(str(path))
    rename = rename or {}
    out = {}
    for c in res.checks:
        key = (rename.get(c["actor"], c["actor"]), c.get("op"))
        out[key] = c["ok"]
    out["violations"] = res.oracle_counts.get("violations", 0)
    return out


def compare(stem: str, variant: dict[str, Any], tmp_path: Path, rename: dict[str, str] | None
            = None, extra_actors: tuple[str, ...] = ()) -> None:
    """Run ``variant`` beside the shipped file and assert the same verdicts."""
    path = tmp_path / f"{stem}.toml"
    path.write_text(dumps(variant, HEX_FIELDS))
    want = verdict(FILES[stem], rename)
    got = verdict(path)
    if load(stem).get("expect", {}).get("violations", "any") == "any":
        want.pop("violations")
        got.pop("violations")
    for key in [k for k in got if k != "violations" and k[0] in extra_actors]:
        assert got.pop(key), f"{stem}: the added actor's op {key} failed"
    assert got == want, f"{stem}: verdicts differ\nshipped: {want}\nvariant: {got}"


# -- the transforms ------------------------------------------------------------------------------

def keyids_used(doc: dict[str, Any]) -> list[int]:
    """The non-zero KeyIDs the file names."""
    used = {k["keyid"] for k in doc.get("keys", [])}
    used |= {op["keyid"] for _, op in ops(doc) if "keyid" in op}
    return sorted(used - {0})


def rename_keyids(doc: dict[str, Any], perm: dict[int, int]) -> dict[str, Any]:
    """Rename the file's non-zero KeyIDs through ``perm`` (KeyID 0 stays 0).

    Rule: a KeyID is only a name for a key-table slot. Caches tag a line with (KeyID, PA) and
    index it by PA alone (``Cache.find`` masks the tag's line bits), DRAM and the AES tweak see
    only the PA, and a key table holds the same bytes in any slot. So a consistent renaming
    changes no set, no tweak and no key: hex expectations (stored plaintext) stay valid, and a
    key given as bytes is the same key under its new KeyID. Not for files whose KeyIDs the
    kernel allocates (``add_key``, first fit): there the file names the KeyID the kernel will
    pick, which a renaming cannot move.
    """
    out = copy.deepcopy(doc)
    for k in out.get("keys", []):
        k["keyid"] = perm.get(k["keyid"], k["keyid"])
    for _, op in ops(out):
        if "keyid" in op:
            op["keyid"] = perm.get(op["keyid"], op["keyid"])
    return out


def set_span(model) -> int:
    """Bytes after which every cache level's set index repeats: max(sets) x 64."""
    return max(c.sets for c in model.cache) * LINE


def shift_addresses(doc: dict[str, Any], delta: int) -> dict[str, Any]:
    """Move every physical address the file names (CPU ops, raw DRAM ops) by ``delta``.

    Rule: what an access does depends on the address only through its home package
    (``AddressMap.home``), its set in each cache level ((PA / 64) mod sets), its page, and the
    XTS tweak. ``delta`` is a multiple of the largest set span and of the page size and keeps
    every address in its home package, so homes, sets, page alignment and which lines alias
    which are all kept. The tweak changes, but no expectation names ciphertext bytes (raw reads
    are judged by class), so no verdict can depend on it. Addresses the kernel allocates
    (process memory, ``direct_map_read`` of a kernel frame) are not the file's to move: they
    stay, and the shifted addresses are kept clear of the kernel's frame pool.
    """
    out = copy.deepcopy(doc)
    amap = AddressMap(model_of(doc))
    for kind, op in ops(out):
        if kind not in ("cpu", "agent"):
            continue
        for f in ("addr", "to"):
            if f in op:
                assert amap.home(op[f] + delta) == amap.home(op[f]), "shift changes a home"
                op[f] += delta
    return out


def file_addresses(doc: dict[str, Any]) -> list[int]:
    return [op[f] for kind, op in ops(doc) if kind in ("cpu", "agent")
            for f in ("addr", "to") if f in op]


def swap_packages(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Exchange packages 0 and 1 of a two-package model: CPU c of one package becomes CPU c of
    the other, an address homed on one moves to the same offset on the other, and every
    package number (hotplug, key tables, key setup) follows. Returns the variant and the
    renaming of its CPU actors.

    Rule: the two packages of ``server-2s`` are identical (same caches, controller, DRAM, and
    the same local and remote latencies), and with NUMA homes (``interleave_bytes = 0``) an
    offset within a package's range has the same cache sets on either. The kernel's frame
    allocator is per package with the same base in each, so a process moved to the other
    package gets the frame at the same offset there, and a ``direct_map_read`` of it moves with
    it. Only where the model or the kernel treats a package by its number would the swap not be
    an isomorphism; no shipped two-package file hits such a place.
    """
    model = model_of(doc)
    assert model.topology.packages == 2 and model.memory.interleave_bytes == 0
    cpp = model.topology.cores_per_package
    pbytes = model.memory.gib_per_package << 30

    def cpu(c: int) -> int:
        return (c + cpp) % (2 * cpp)

    def pa(a: int) -> int:
        return a + pbytes if a < pbytes else a - pbytes

    out = copy.deepcopy(doc)
    rename = {}
    for k in out.get("keys", []):
        if k.get("packages"):
            k["packages"] = [1 - p for p in k["packages"]]
    for kind, actor in actors(out):
        if kind == "cpu":
            rename[f"cpu{actor['id']}"] = f"cpu{cpu(actor['id'])}"
            actor["id"] = cpu(actor["id"])
        elif kind in ("process", "system"):
            actor["cpu"] = cpu(actor.get("cpu", 0))
        for op in actor.get("ops", []):
            for f in ("addr", "to"):
                if f in op:
                    op[f] = pa(op[f])
            if "package" in op:
                op["package"] = 1 - op["package"]
            if op.get("packages"):
                op["packages"] = [1 - p for p in op["packages"]]
            if "target" in op:
                op["target"] = cpu(op["target"])
            exp = op.get("expect", "")
            for prefix in ("same-as-package-", "differs-from-package-"):
                if exp.startswith(prefix):
                    op["expect"] = f"{prefix}{1 - int(exp[len(prefix):])}"
    return out, rename


def shift_times(doc: dict[str, Any], delta: float) -> dict[str, Any]:
    """Start everything ``delta`` ns later: add it to every ``at``, and give each actor's first
    op ``at = delta`` when it had none (it started at 0).

    Rule: the model has no absolute clock. Everything that happens is caused by an op (or by
    ``[[keys]]`` setup, done before any op), so moving every op by the same amount keeps every
    relative time and every tie; reboots are ops with an ``at`` too and move with the rest.
    """
    out = copy.deepcopy(doc)
    for _, actor in actors(out):
        for i, op in enumerate(actor.get("ops", [])):
            if "at" in op:
                op["at"] = op["at"] + delta
            elif i == 0:
                op["at"] = delta
    return out


def add_unrelated_actor(doc: dict[str, Any], stem: str, near: bool = False,
                        phase: float = 0.0) -> tuple[dict[str, Any], str]:
    """Add a ``[[cpu]]`` actor that writes, reads and flushes lines nothing else touches, at
    times spread over the run. Returns the variant and the new actor's name.

    Rule: the new actor shares no line and no cache set with the file's. It runs on a CPU no
    actor uses or hotplugs, preferably on a package where no actor runs (then it shares no
    cache at all); its lines are homed on a package whose DRAM the run does not touch when
    there is one (then it shares no memory controller), and in any case lie in cache sets, at
    every level, that no line the run touches falls in, outside the kernel's frame pool. With
    ``near`` it is put as close as that allows instead: on a package where the file's actors
    run and with its lines homed where the file's are, so it shares the package's last-level
    cache (other sets) and the home controller's queues. Memory-system rule 4 (other tags see
    DRAM as it is) and set-associativity then still leave every line of the file's alone; its
    traffic can only delay the file's by a few ns, never reorder what ``after`` orders. Its
    eight write-read-flush groups start at (i + ``phase``) / 8 of the run's length. It uses
    KeyID 0,
    which every model has, reads only lines it has just written, and keeps clear of every
    absolute time the file names (a reboot in the middle of its write and read would make its
    own read a violation). Its reads expect their own data back, and must get it.
    """
    model = model_of(doc)
    amap = AddressMap(model)
    topo = model.topology
    cpp = topo.cores_per_package
    base = run_scenario(str(FILES[stem]))
    busy_cpus = set()
    busy_pkgs = set()
    for kind, actor in actors(doc):
        if kind == "cpu":
            busy_cpus.add(actor["id"])
        elif kind in ("process", "system"):
            busy_cpus.add(actor.get("cpu", 0))
        for op in actor.get("ops", []):
            if "target" in op:
                busy_cpus.add(op["target"])
            if op.get("op") in ("online", "offline"):
                busy_pkgs.add(op["package"])
    touched = {int(ev["addr"], 16) for ev in base.trace if ev.get("addr")}
    touched |= set(file_addresses(doc))
    dram = {amap.home(a) for a in touched}
    cpu_pkgs = {c // cpp for c in busy_cpus}
    pkgs = [p for p in range(topo.packages) if p not in busy_pkgs]
    free = [p for p in pkgs if any(c not in busy_cpus for c in range(p * cpp, (p + 1) * cpp))]
    sign = -1 if near else 1
    pkg = min(free, key=lambda p: (sign * (p in cpu_pkgs), sign * (p in dram), p))
    cpu = next(c for c in range(pkg * cpp, (pkg + 1) * cpp) if c not in busy_cpus)
    home = min((p for p in pkgs if amap.has_memory(p)),
               key=lambda p: (sign * (p in dram), p != pkg, p))
    span = set_span(model)
    # Sets in use: every line of every page the run touched (the kernel flushes and zeroes
    # whole pages), as offsets within the set span.
    used = {(a & ~(PAGE - 1)) % span + i * LINE for a in touched for i in range(PAGE // LINE)}
    origin = amap.range_start(home) + (1 << 30)  # far above the kernel's frame pool
    lines = [origin + off for off in range(0, span, 17 * LINE) if off not in used][:8]
    assert len(lines) == 8
    fixed = sorted({op["at"] for _, op in ops(doc) if "at" in op})
    end = max(base.end_ns, 1000.0)
    new_ops = []
    for i, line in enumerate(lines):
        t = end * (i + phase) / len(lines)
        while any(abs(t - f) < 2000 for f in fixed):
            t += 2000
        new_ops += [
            {"op": "write", "keyid": 0, "addr": line, "data": f"{i + 1:02x}" * 64, "at": t},
            {"op": "read", "keyid": 0, "addr": line, "expect": "expected"},
            {"op": "clflush", "keyid": 0, "addr": line},
        ]
    out = copy.deepcopy(doc)
    out.setdefault("cpu", []).append({"id": cpu, "ops": new_ops})
    return out, f"cpu{cpu}"


# -- where a transform does not apply ------------------------------------------------------------

def all_cpus_busy(doc) -> bool:
    topo = model_of(doc).topology
    busy = {a["id"] if k == "cpu" else a.get("cpu", 0) for k, a in actors(doc)}
    return len(busy) == topo.packages * topo.cores_per_package


def _needs_kernel_keyids(doc):
    return kernel_allocates_keyids(doc) or not keyids_used(doc)


def _no_file_addresses(doc):
    return not file_addresses(doc)


# transform -> {file: reason}. Each reason is checked by ``test_exclusions_are_needed``
# through the predicate beside it (None: excluded for what a run showed, see the reason).
EXCLUDED: dict[str, dict[str, str]] = {
    "keyids": {
        **{stem: "the kernel allocates its KeyIDs (add_key, first fit): the file cannot "
           "rename them" for stem in FILES if kernel_allocates_keyids(load(stem))},
        "s10-replay-tme-only": "TME only (keyid_bits = 0): no non-zero KeyID to rename",
    },
    "addresses": {
        stem: "every address is the kernel's (allocated frames): none is the file's to move"
        for stem in FILES if _no_file_addresses(load(stem))
    },
    "packages": {
        "s14-key-per-customer": "client-1s has one package",
        "s14-keyid-exhaustion": "client-1s has one package",
        "s14-keyid-wait": "client-1s has one package",
        "s7-hotplug-memoryless-2019": "package 1 of server-2s-memoryless has no memory: the "
        "two packages are not alike",
        "s7-hotplug-memoryless-rfc-v2": "package 1 of server-2s-memoryless has no memory: the "
        "two packages are not alike",
    },
    "unrelated": {
        "s14-key-per-customer": "its actors run on every CPU of client-1s: none is left",
    },
    "times": {},
}
PREDICATES: dict[str, Callable[[dict], bool] | None] = {
    "keyids": _needs_kernel_keyids,
    "addresses": _no_file_addresses,
    "packages": lambda doc: (model_of(doc).topology.packages != 2
                             or len(model_of(doc).memory_homes) != 2),
    "unrelated": lambda doc: all_cpus_busy(doc),
    "times": None,
}


def files_for(transform: str) -> list[str]:
    return [s for s in FILES if s not in EXCLUDED[transform]]


def test_exclusions_are_needed():
    """Every excluded file exists, and fails the precondition its reason states."""
    for transform, files in EXCLUDED.items():
        for stem in files:
            assert stem in FILES, f"{transform}: {stem} is not a shipped scenario"
            pred = PREDICATES[transform]
            if pred is not None:
                assert pred(load(stem)), f"{transform}: {stem} no longer needs excluding"


def test_hex_expectations_are_stored_plaintext():
    """The transforms keep hex expectations as they are: that is sound because each is (a
    part of) bytes the file itself stores, never ciphertext."""
    for stem in FILES:
        doc = load(stem)
        stored = [op["data"].lower() for _, op in ops(doc) if isinstance(op.get("data"), str)]
        for _, op in ops(doc):
            exp = op.get("expect", "").lower().removeprefix("not:")
            try:
                bytes.fromhex(exp)
            except ValueError:
                continue
            if exp:
                assert any(exp in s for s in stored), f"{stem}: {exp} is not stored plaintext"


# -- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", files_for("keyids"))
@CHECK
@given(data=st.data())
def test_keyid_renaming(stem, data, tmp_path):
    doc = load(stem)
    model = model_of(doc)
    top = min(model.mktme.max_keys, (1 << model.mktme.keyid_bits) - 1)
    used = keyids_used(doc)
    targets = data.draw(st.lists(st.integers(1, top), min_size=len(used), max_size=len(used),
                                 unique=True))
    perm = dict(zip(used, targets, strict=True))
    compare(stem, rename_keyids(doc, perm), tmp_path)


@pytest.mark.parametrize("stem", files_for("addresses"))
@CHECK
@given(data=st.data())
def test_address_shift(stem, data, tmp_path):
    doc = load(stem)
    model = model_of(doc)
    amap = AddressMap(model)
    step = math.lcm(set_span(model), PAGE)
    # Land above the kernel's frame pool (64 MiB + 16 MiB into each package) and below 4 GiB.
    lo = max(0, (128 << 20) - min(a % amap.package_bytes for a in file_addresses(doc)))
    k = data.draw(st.integers(-(-lo // step), (4 << 30) // step))
    compare(stem, shift_addresses(doc, k * step), tmp_path)


@pytest.mark.parametrize("stem", files_for("packages"))
def test_package_swap(stem, tmp_path):
    variant, rename = swap_packages(load(stem))
    compare(stem, variant, tmp_path, rename)


@pytest.mark.parametrize("near", [False, True], ids=["far", "near"])
@pytest.mark.parametrize("stem", files_for("unrelated"))
@CHECK
@given(phase=st.floats(0, 1))
def test_unrelated_access(stem, near, phase, tmp_path):
    variant, name = add_unrelated_actor(load(stem), stem, near, phase)
    compare(stem, variant, tmp_path, extra_actors=(name,))


@pytest.mark.parametrize("stem", files_for("times"))
@CHECK
@given(delta=st.integers(1, 10**6))
def test_time_shift(stem, delta, tmp_path):
    compare(stem, shift_times(load(stem), delta), tmp_path)


def test_a_relevant_change_is_caught(tmp_path):
    """The comparison can fail: moving S2's filler reads one page over (out of the stale
    line's cache sets) is *not* irrelevant, the stale line is never evicted, and the verdict
    changes."""
    doc = load("s2-stale-writeback-no-flush")
    variant = copy.deepcopy(doc)
    for op in variant["cpu"][0]["ops"][1:]:
        op["addr"] += PAGE
    with pytest.raises(AssertionError, match="verdicts differ"):
        compare("s2-stale-writeback-no-flush", variant, tmp_path)


def test_transforms_change_the_file():
    """Each transform really rewrites what it claims to (a transform that changed nothing
    would pass every comparison)."""
    doc = load("s1-alias-read")
    renamed = rename_keyids(doc, {1: 7, 2: 3})
    assert keyids_used(renamed) == [3, 7]
    shifted = shift_addresses(doc, 4 << 20)
    assert file_addresses(shifted) == [a + (4 << 20) for a in file_addresses(doc)]
    swapped, rename = swap_packages(doc)
    assert rename == {"cpu0": "cpu16"}
    assert all(a >= 64 << 30 for a in file_addresses(swapped))
    later = shift_times(doc, 100)
    assert [op.get("at") for op in later["cpu"][0]["ops"]][:3] == [100, None, 1100]
    extra, name = add_unrelated_actor(doc, "s1-alias-read")
    assert name == "cpu16" and len(extra["cpu"]) == 2
