"""The tidy results table: ``table.csv`` (and ``table.parquet``), one row per run.

Columns, in this order: the parameter columns (the sweep's dotted names), ``replication``,
``seed``, ``point`` (the run's key: its result file is ``points/<point>.json``), the recorded
metrics, then the derived columns. Rows follow the experiment's point order, then replication,
whatever order the runs finished in; failed runs have no row (the run's summary and
``manifest.json`` list them).

Cells: integers and strings as they are, floats in Python's shortest round-trip form
(``repr``), booleans as ``true``/``false``, a missing value as an empty cell. Reading the table
back (:func:`read_table`) types each column from its cells: all ``true``/``false`` -> bool,
all integers -> int, all numbers -> float (an empty cell is NaN), otherwise str.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from mktme_des.experiments import derive
from mktme_des.experiments.spec import Experiment
from mktme_des.experiments.store import write_bytes, write_text

_INT = re.compile(r"-?[0-9]+")


def build_rows(exp: Experiment, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (column -> value) of every successful run, derived columns included."""
    rows = []
    for run in exp.runs:
        rec = records.get(run.key)
        if not rec or rec.get("status") != "ok":
            continue
        row = dict(run.point.params)
        row.update(replication=run.replication, seed=run.seed, point=run.key)
        metrics = rec.get("metrics") or {}
        for m in exp.metrics:
            row[m] = metrics.get(m)
        rows.append(row)
    derive.apply(exp.spec.derive, exp.params, rows)
    return rows


def cell(value: Any) -> str:
    """The CSV text of one value (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def csv_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    write_text(path, csv_text(columns, rows))
    return path


def write_parquet(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path | None:
    """``table.parquet`` with the same typed columns :func:`read_table` gives; None when
    pyarrow is not importable."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    typed = parse_columns(columns, [[cell(r.get(c)) for c in columns] for r in rows])
    table = pa.table({c: pa.array(v) for c, v in typed.items()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    write_bytes(path, buf.getvalue().to_pybytes())
    return path


def _typed(cells: list[str]) -> list[Any]:
    present = [c for c in cells if c != ""]
    if present and all(c in ("true", "false") for c in present) and len(present) == len(cells):
        return [c == "true" for c in cells]
    if present and all(_INT.fullmatch(c) for c in present):
        if len(present) == len(cells):
            return [int(c) for c in cells]
        return [float(c) if c else math.nan for c in cells]
    try:
        return [float(c) if c else math.nan for c in cells]
    except ValueError:
        return list(cells)


def parse_columns(columns: list[str], cells: list[list[str]]) -> dict[str, list[Any]]:
    """Typed columns from the CSV cells of every row."""
    return {c: _typed([row[i] for row in cells]) for i, c in enumerate(columns)}


def read_table(path: str | Path) -> tuple[list[str], dict[str, list[Any]]]:
    """(column names, column -> typed values) of a ``table.csv``."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        try:
            columns = next(reader)
        except StopIteration:
            raise ValueError("empty file") from None
        cells = [row for row in reader if row]
    for i, row in enumerate(cells):
        if len(row) != len(columns):
            raise ValueError(f"row {i + 2} has {len(row)} cells, the header {len(columns)}")
    return columns, parse_columns(columns, cells)


def rows_of(columns: list[str], data: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Typed columns back to rows (column -> value); NaN becomes None."""
    n = len(data[columns[0]]) if columns else 0
    rows = []
    for i in range(n):
        row = {}
        for c in columns:
            v = data[c][i]
            row[c] = None if isinstance(v, float) and math.isnan(v) else v
        rows.append(row)
    return rows
