"""Dotted names: how an experiment addresses one field of a point's nested configuration.

``workload.read_fraction`` names ``config["workload"]["read_fraction"]`` and
``model_overrides.mktme.aes_latency_ns`` names ``config["model_overrides"]["mktme"]
["aes_latency_ns"]``. A segment may end in list indices, ``cache[1]``; :func:`assign` keeps such
a segment as a plain key (the driver decides what it means: the workload driver applies
``model_overrides.cache[1].size_kib`` to the second cache level of the model), while
:func:`lookup` indexes lists with it.

The first segment ``tag`` is reserved: ``tag.NAME`` is a free-form label column of the results
table (e.g. ``tag.config = "MKTME"``). It is not passed to the driver, does not change a point's
seed, and is not part of what a derived metric's baseline must match.

This module also holds the canonical JSON form used to hash configurations: sorted keys, no
whitespace, floats in Python's shortest round-trip form, so the same configuration always
hashes the same on every machine and in every process.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from typing import Any

TAG = "tag"
"""The reserved first segment of label columns."""

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\[[0-9]+\])*")
_INDEX = re.compile(r"\[([0-9]+)\]")

Scalar = str | int | float | bool


def split(name: str) -> list[str]:
    """The segments of a dotted name; raises ``ValueError`` with the reason when malformed."""
    if not isinstance(name, str) or not name:
        raise ValueError("a dotted name must be a non-empty string")
    parts = name.split(".")
    for part in parts:
        if not _SEGMENT.fullmatch(part):
            raise ValueError(
                f"{name!r} is not a dotted name (segments are identifiers, optionally with "
                f"[index], joined by '.')"
            )
    if parts[0] == TAG and len(parts) != 2:
        raise ValueError(f"{name!r}: a label column is 'tag.NAME', with one name")
    return parts


def is_tag(name: str) -> bool:
    """True for ``tag.NAME`` label columns."""
    return name.split(".", 1)[0] == TAG


def is_scalar(value: Any) -> bool:
    """Sweep values are strings, integers, finite floats or booleans."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def assign(tree: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``name`` set to ``value``, creating tables along the way.

    Raises ``ValueError`` when a segment on the way holds a value that is not a table."""
    parts = split(name)
    out = copy.deepcopy(tree)
    node = out
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            where = ".".join(parts[: i + 1])
            raise ValueError(f"{where} is {type(nxt).__name__} {nxt!r}, not a table, so "
                             f"{name} cannot be set")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)
    return out


def lookup(tree: Any, name: str) -> Any:
    """The value at ``name`` in ``tree`` (lists indexed by ``[i]``); ``KeyError`` if absent."""
    node = tree
    for part in split(name):
        base = part.split("[", 1)[0]
        if not isinstance(node, dict) or base not in node:
            raise KeyError(name)
        node = node[base]
        for idx in _INDEX.findall(part):
            if not isinstance(node, list) or int(idx) >= len(node):
                raise KeyError(name)
            node = node[int(idx)]
    return node


def related(a: str, b: str) -> bool:
    """True when one dotted path is the other or lies inside it (``x.y`` and ``x.y.z``)."""
    if a == b:
        return True
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return long.startswith(short + ".") or long.startswith(short + "[")


def leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every non-table value in a nested dict, in insertion order."""
    out: list[str] = []
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out.extend(leaves(value, name))
        else:
            out.append(name)
    return out


def canonical(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, no whitespace, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def display(value: Any) -> str:
    """A value as a person reads it in a legend or a message: booleans as TOML writes them
    (``true``/``false``), None as the empty string, everything else as ``str`` does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
