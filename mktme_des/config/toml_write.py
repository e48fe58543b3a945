"""Writing TOML: the subset our own files use, so a program can hand a user a file to run.

:func:`dumps` writes tables as ``[name]`` (nested tables as ``[name.sub]``), top-level lists of
tables as ``[[name]]``, and lists of tables inside a table (a scenario actor's ``ops``) as an
inline array with one inline table per line, the way the shipped scenario files are written.
Integers named in ``hex_keys`` are written in hex. ``tomllib.loads(dumps(d)) == d`` for every
such document (the tests check this on every shipped scenario).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any, key: str, hex_keys: frozenset[str]) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return hex(v) if key in hex_keys and v >= 0 else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        if "\n" in v and '"""' not in v and "\\" not in v:
            return '"""' + v + '"""'
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x, k, hex_keys)}"
                                for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, list | tuple):
        if v and all(isinstance(x, dict) for x in v):
            return "[\n" + "".join(f"  {_value(x, key, hex_keys)},\n" for x in v) + "]"
        return "[" + ", ".join(_value(x, key, hex_keys) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _table(lines: list[str], header: str | None, table: dict, hex_keys: frozenset[str],
           prefix: str) -> None:
    """Write one table's scalars and inline values, then its sub-tables."""
    if header is not None:
        lines.append(header)
    subs = []
    for k, v in table.items():
        if isinstance(v, dict) and v:
            subs.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_value(v, k, hex_keys)}")
    for k, v in subs:
        name = f"{prefix}{_key(k)}"
        lines.append("")
        _table(lines, f"[{name}]", v, hex_keys, name + ".")


def dumps(data: dict[str, Any], hex_keys: tuple[str, ...] = (), header: str = "") -> str:
    """``data`` as a TOML document, with ``header`` (lines of text) as a leading comment."""
    hx = frozenset(hex_keys)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_list(v)}
    if scalars:
        if lines:
            lines.append("")
        _table(lines, None, scalars, hx, "")
    for k, v in data.items():
        if _is_table(v):
            lines.append("")
            _table(lines, f"[{_key(k)}]", v, hx, _key(k) + ".")
        elif _is_table_list(v):
            for item in v:
                lines.append("")
                _table(lines, f"[[{_key(k)}]]", item, hx, _key(k) + ".")
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(v: Any) -> bool:
    return isinstance(v, dict)


def _is_table_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)
