"""Reading experiment results back: ``load("results/e1-aes-latency")``.

:func:`load` returns an experiment's tidy table (``table.csv``: one row per run, parameter
columns by dotted name, ``replication``, ``seed``, ``point``, the metrics, the derived
columns; see :mod:`mktme_des.experiments.table`) as a pandas DataFrame when pandas is
installed, otherwise as a numpy structured array with one field per column. Columns are typed
the same way in both: bool, int64, float64 (an empty cell is NaN) or str.

    >>> from mktme_des.results import load
    >>> t = load("results/e1-aes-latency")
    >>> t[t["tag.config"] == "MKTME (KeyID 1)"]["slowdown"].mean()      # with pandas
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mktme_des.errors import UserError


def table_path(path: str | Path) -> Path:
    """The ``table.csv`` of a results folder (or the file itself); UserError if absent."""
    p = Path(path)
    if p.is_dir():
        p = p / "table.csv"
        if not p.is_file():
            raise UserError(f"{path}: no table.csv in this folder; is it a results folder "
                            "(results/NAME) of a finished `mktme-des run`?")
        return p
    if not p.exists():
        raise UserError(f"{path}: no such results folder or table file")
    if p.suffix != ".csv":
        raise UserError(f"{path}: expected a results folder or its table.csv")
    return p


def _columns(path: str | Path) -> tuple[list[str], dict[str, list[Any]]]:
    from mktme_des.experiments.table import read_table

    p = table_path(path)
    try:
        return read_table(p)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: not a results table: {exc}") from None


def _numpy(columns: list[str], data: dict[str, list[Any]]) -> np.ndarray:
    dtypes = []
    for c in columns:
        values = data[c]
        if values and all(isinstance(v, bool) for v in values):
            dt: Any = np.bool_
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            dt = np.int64
        elif all(isinstance(v, float) for v in values):
            dt = np.float64
        else:
            dt = f"U{max((len(str(v)) for v in values), default=1) or 1}"
        dtypes.append((c, dt))
    n = len(data[columns[0]]) if columns else 0
    out = np.zeros(n, dtype=dtypes)
    for c in columns:
        out[c] = data[c]
    return out


def load(path: str | Path) -> Any:
    """The results table of ``path`` (a results folder or its ``table.csv``): a pandas
    DataFrame when pandas is importable, else a numpy structured array."""
    columns, data = _columns(path)
    try:
        import pandas as pd
    except ImportError:
        return _numpy(columns, data)
    return pd.DataFrame({c: data[c] for c in columns}, columns=columns)


__all__ = ["load", "table_path"]
