"""Key material is never printed or stored as bytes: a short fingerprint stands for it.

A fingerprint is ``key#`` and the first 8 hex digits of the SHA-256 of the key's text: enough
to tell two keys apart in a message or a result file, useless for recovering them.

Key material is: a ``[[keys]]`` entry's ``key``; the ``key`` of an agent's ``set_key``; the
``key``, ``key_field`` and ``tweak_field`` (and a refused ``tweak``) of a system ``pconfig``; a
CPU write's ``preimage_key``; an agent's decrypting ``raw_read`` ``key``; and the values of every option of an ``add_key``/``update_key`` option string other than ``type`` and
``algorithm`` (``key=``, ``tweak=``, and a misspelt ``tweek=`` too). (The ``key`` of the
kernel-level ops ``add_key``, ``revoke``, ``encrypt_mprotect`` and so on is a key's
description, a name, and is kept.)

The one place that keeps keys is ``scenario explore --save``: a saved scenario must replay its
run, keys included, so those files are written readable by their owner only.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

PUBLIC_OPTIONS = frozenset({"type", "algorithm"})
"""Options of an ``add_key`` payload whose values are not secret."""
MATERIAL_FIELDS = {"set_key": ("key",), "pconfig": ("key", "tweak", "key_field", "tweak_field"),
                   "write": ("preimage_key",), "raw_read": ("key",)}
"""Per op name, the fields holding key material."""
OPTION_OPS = ("add_key", "update_key")


def fingerprint(secret: str | bytes) -> str:
    """``key#`` and 8 hex digits of the SHA-256 of ``secret`` (text or bytes)."""
    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    return "key#" + hashlib.sha256(data).hexdigest()[:8]


def option_token(token: str) -> str:
    """One ``name=value`` token of an option string, its value fingerprinted unless the option
    is public."""
    name, sep, value = token.partition("=")
    if not sep or name in PUBLIC_OPTIONS:
        return token
    return f"{name}=<{fingerprint(value)}>"


def options(payload: str) -> str:
    """An ``add_key`` option string with every secret value fingerprinted."""
    return " ".join(option_token(t) for t in payload.split())


def scenario(data: Any) -> Any:
    """A copy of a scenario's parsed TOML with every piece of key material (see the module
    docstring) fingerprinted; anything not shaped like a scenario is returned unchanged."""
    if not isinstance(data, dict):
        return data
    out = copy.deepcopy(data)
    for entry in out.get("keys", []) if isinstance(out.get("keys"), list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("key"), str) and entry["key"]:
            entry["key"] = fingerprint(entry["key"])
    for kind in ("cpu", "agent", "process", "system"):
        actors = out.get(kind)
        for actor in actors if isinstance(actors, list) else []:
            ops = actor.get("ops") if isinstance(actor, dict) else None
            for op in ops if isinstance(ops, list) else []:
                if not isinstance(op, dict):
                    continue
                name = op.get("op")
                for f in MATERIAL_FIELDS.get(name, ()) if isinstance(name, str) else ():
                    if isinstance(op.get(f), str):
                        op[f] = fingerprint(op[f])
                if name in OPTION_OPS and isinstance(op.get("options"), str):
                    op["options"] = options(op["options"])
    return out
