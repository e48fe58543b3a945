"""A small declarative schema for TOML documents.

Each section of a file is a frozen dataclass whose fields are declared with :func:`param`
(documentation, unit, bounds, allowed choices). :func:`build` turns a parsed TOML table into
such a dataclass and rejects, with file, dotted field path and reason:

* keys the section does not declare (a misspelt parameter is an error, never ignored);
* values of the wrong type (``"4"`` for an integer, ``1`` for a boolean; a field typed as a
  union of scalars, such as ``int | str``, takes a value of any of them and names them all
  when it gets another);
* numbers out of bounds and strings outside their choices (numbers must be finite, and a
  field whose unit is a time, ``ns``, ``us``, ``s`` or ``cycles``, is at most
  :data:`mktme_des.engine.time.MAX_NS` even when it declares no upper bound);
* whatever a section's ``check`` method finds wrong across fields.

:func:`resolved` turns a built section back into plain data with every default made
explicit, which is what runs write beside their results.

A field is spelt in the file as it is named in Python, unless it declares ``key``: a key
that is a Python keyword (``from``) is declared as ``from_: str = param(key="from", ...)``,
and every message and :func:`resolved` use the file's spelling.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from mktme_des.engine.time import MAX_NS, TIME_UNITS_NS, max_in
from mktme_des.errors import ConfigError
from mktme_des.limits import MAX_DEPTH, MAX_FILE_BYTES

T = TypeVar("T", bound="Section")


def param(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    unit: str | None = None,
    min: float | None = None,  # noqa: A002 - reads naturally at the call site
    max: float | None = None,  # noqa: A002
    min_exclusive: bool = False,
    choices: tuple[Any, ...] | None = None,
    key: str | None = None,
) -> Any:
    """Declare a schema field: its default (omit for a required field), doc and bounds, and
    ``key``, its spelling in the file when that is not the field's name (a Python keyword)."""
    meta = {
        "key": key,
        "doc": doc,
        "unit": unit,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "choices": choices,
    }
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def file_key(f: dataclasses.Field) -> str:
    """How field ``f`` is spelt in the file: its declared ``key``, else its name."""
    return f.metadata.get("key") or f.name


class Context:
    """Where a value came from: the file and the dotted path of the current section."""

    def __init__(self, file: str, path: str = "") -> None:
        self.file = file
        self.path = path

    def child(self, name: str | int) -> Context:
        if isinstance(name, int):
            return Context(self.file, f"{self.path}[{name}]")
        return Context(self.file, f"{self.path}.{name}" if self.path else name)

    def error(self, field: str | None, reason: str) -> ConfigError:
        path = self.child(field).path if field else self.path
        return ConfigError(self.file, path, reason)


class Section:
    """Base of every schema section. Override :meth:`check` for cross-field rules."""

    def check(self, ctx: Context) -> None:  # pragma: no cover - default is no rule
        """Raise ``ctx.error(field, reason)`` when fields disagree with each other."""


def _convert(tp: Any, value: Any, ctx: Context, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        # ``X | None``: None or an X. ``X | list[Y]``: an array is read as list[Y], anything
        # else as X (a scalar or an array of scalars, such as gib_per_package).
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        lists = [a for a in args if typing.get_origin(a) is list]
        scalars = [a for a in args if typing.get_origin(a) is not list]
        if len(scalars) > 1 and not lists:
            return _convert(_scalar_of(scalars, value, ctx), value, ctx, meta)
        if lists and scalars:
            return _convert(lists[0] if isinstance(value, list) else scalars[0], value, ctx, meta)
        return _convert(args[0], value, ctx, meta)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ctx.error(None, f"expected an array, got {_describe(value)}")
        out = [_convert(item_tp, v, ctx.child(i), meta) for i, v in enumerate(value)]
        return out
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ctx.error(None, f"expected a table, got {_describe(value)}")
        return {k: _convert(item_tp, v, ctx.child(k), meta) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Section):
        return build(tp, value, ctx)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(None, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(None, f"expected an integer, got {_describe(value)}")
        _check_bounds(value, ctx, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ctx.error(None, f"expected a number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ctx.error(None, f"expected a finite number, got {value}")
        _check_bounds(value, ctx, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(None, f"expected a string, got {_describe(value)}")
        if "\0" in value:
            raise ctx.error(None, "a string may not contain a NUL byte")
        choices = meta.get("choices")
        if choices and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ctx.error(None, f"{value!r} is not allowed; choose one of {allowed}")
        return value
    raise TypeError(f"unsupported schema type {tp!r}")  # a bug in a schema, not user input


_SCALAR_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _scalar_of(scalars: list[Any], value: Any, ctx: Context) -> Any:
    """The type of a union of scalars (``int | str``) that ``value`` is read as: the one it
    is an instance of (a boolean is no integer, an integer is also a number); an error
    naming every allowed type otherwise."""
    for tp in scalars:
        if tp is bool and isinstance(value, bool):
            return tp
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return tp
        if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
            return tp
        if tp is str and isinstance(value, str):
            return tp
    names = [_SCALAR_NAMES.get(tp, getattr(tp, "__name__", str(tp))) for tp in scalars]
    raise ctx.error(None, f"expected {' or '.join(names)}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value!r}"


def _check_bounds(value: float, ctx: Context, meta: Mapping[str, Any]) -> None:
    lo, hi, unit = meta.get("min"), meta.get("max"), meta.get("unit")
    suffix = f" {unit}" if unit else ""
    if hi is None and unit in TIME_UNITS_NS:  # every time-like field is bounded
        hi = max_in(unit)
        if value > hi:
            raise ctx.error(None, f"{value:g}{suffix} is out of range; a time may be at most "
                            f"{hi:g}{suffix}" + ("" if unit == "ns" else f" ({MAX_NS:g} ns)")
                            + ", the longest simulated time")
    if lo is not None:
        if meta.get("min_exclusive") and value <= lo:
            raise ctx.error(None, f"{value}{suffix} is out of range; must be greater than {lo}")
        if value < lo:
            raise ctx.error(None, f"{value}{suffix} is out of range; must be at least {lo}")
    if hi is not None and value > hi:
        raise ctx.error(None, f"{value}{suffix} is out of range; must be at most {hi}")


def build(cls: type[T], data: Any, ctx: Context) -> T:
    """Build section ``cls`` from the TOML table ``data``, validating as described above."""
    if not isinstance(data, dict):
        raise ctx.error(None, f"expected a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {file_key(f): f for f in dataclasses.fields(cls)}  # by the file's spelling
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ctx.error(unknown[0], f"unknown key; allowed keys here are: {allowed}")
    kwargs = {}
    for key, f in fields.items():
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ctx.error(key, f"is required ({f.metadata.get('doc', '')})")
            continue
        kwargs[f.name] = _convert(hints[f.name], data[key], ctx.child(key), f.metadata)
    obj = cls(**kwargs)
    obj.check(ctx)
    return obj


def resolved(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a built section, every default explicit."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {file_key(f): resolved(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [resolved(v) for v in obj]
    if isinstance(obj, dict):
        return {k: resolved(v) for k, v in obj.items()}
    return obj


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, turning every way the file can be wrong into a ConfigError naming it:
    missing, a folder, larger than :data:`~mktme_des.limits.MAX_FILE_BYTES` (a device such as
    ``/dev/zero`` included), not UTF-8, not TOML, or nested deeper than
    :data:`~mktme_des.limits.MAX_DEPTH`."""
    path = Path(path)
    return parse_toml(read_text(path), str(path))


def read_text(path: str | Path) -> str:
    """A UTF-8 input file's text, at most :data:`~mktme_des.limits.MAX_FILE_BYTES` of it; a
    ConfigError naming the file otherwise."""
    name = str(path)
    try:
        with Path(path).open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(name, "", "is a directory, expected a file") from None
    except ValueError:  # an embedded NUL byte
        raise ConfigError(name.replace("\0", "\\0"), "", "a file name may not contain a NUL "
                          "byte") from None
    except OSError as exc:
        raise ConfigError(name, "", f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(name, "", f"larger than {MAX_FILE_BYTES >> 20} MiB, the largest "
                          "input file read")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "", f"not UTF-8 text: {exc}") from None


def parse_toml(text: str, name: str) -> dict[str, Any]:
    """Parse TOML ``text`` (from the file ``name``); a ConfigError naming it when it is not
    TOML or is nested deeper than :data:`~mktme_des.limits.MAX_DEPTH`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "", f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(name, "", f"nested more than {MAX_DEPTH} deep") from None
    check_depth(data, name)
    return data


def check_depth(data: Any, name: str) -> None:
    """A ConfigError naming ``name`` when tables and arrays nest deeper than
    :data:`~mktme_des.limits.MAX_DEPTH` (checked without recursion)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(name, "", f"tables and arrays nest more than {MAX_DEPTH} deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
