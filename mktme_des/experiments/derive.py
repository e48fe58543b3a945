"""Derived metrics: a metric of each row relative to a baseline row, as extra table columns.

An experiment's ``[[derive]]`` tables add columns computed from the recorded metrics when the
table is built (they are in ``table.csv`` and can be plotted like any metric)::

    [[derive]]
    name = "slowdown"                    # the new column
    metric = "time_ns"                   # a recorded metric
    op = "ratio"                         # ratio: x / b; difference: x - b; relative: x / b - 1
    baseline = { "workload.mktme_fraction" = 0.0, "workload.no_encrypt_fraction" = 1.0 }
    # match = ["model_overrides.mktme.aes_latency_ns"]   # optional, see below

For each row, its baseline row is the row whose parameter columns equal the ``baseline``
values, whose ``match`` columns equal the row's own, and whose replication is the row's own
(replication r is compared with baseline replication r, so confidence intervals over
replications stay paired). ``match`` defaults to every parameter column that is not named in
``baseline`` and is not a ``tag.*`` label. A row without a baseline row (or whose baseline
value is missing, or zero for ``ratio``/``relative``) gets an empty cell.

Before anything runs the experiment loader checks that the baseline columns are parameters,
that at least one point is a baseline, and that no row has two candidate baselines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mktme_des.experiments import dotted

OPS = ("ratio", "difference", "relative")


def match_columns(baseline: dict[str, Any], match: list[str] | None, params: Sequence[str]) -> list[str]:
    """The columns a row and its baseline must agree on."""
    if match is not None:
        return list(match)
    return [p for p in params if p not in baseline and not dotted.is_tag(p)]


def same(a: Any, b: Any) -> bool:
    """Equality of cell values that keeps booleans apart from numbers (``true != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _is_baseline(row: dict[str, Any], baseline: dict[str, Any]) -> bool:
    return all(same(row.get(k), v) for k, v in baseline.items())


def baseline_index(rows: Iterable[dict[str, Any]], baseline: dict[str, Any],
                   match: list[str], with_replication: bool = True) -> dict[tuple, list[dict]]:
    """Baseline rows keyed by their match-column values (and replication)."""
    index: dict[tuple, list[dict]] = {}
    for row in rows:
        if _is_baseline(row, baseline):
            key = tuple(_hashable(row.get(m)) for m in match)
            if with_replication:
                key += (row.get("replication"),)
            index.setdefault(key, []).append(row)
    return index


def _hashable(v: Any) -> Any:
    # true == 1 in Python; keep booleans apart from numbers in keys.
    return ("bool", v) if isinstance(v, bool) else v


def row_key(row: dict[str, Any], match: list[str], with_replication: bool = True) -> tuple:
    key = tuple(_hashable(row.get(m)) for m in match)
    return key + (row.get("replication"),) if with_replication else key


def compute(op: str, x: Any, b: Any) -> float | None:
    """``x`` relative to ``b`` by ``op``; None when either is missing or the ratio undefined."""
    if x is None or b is None or isinstance(x, str) or isinstance(b, str):
        return None
    if op == "difference":
        return float(x) - float(b)
    if b == 0:
        return None
    if op == "ratio":
        return float(x) / float(b)
    return float(x) / float(b) - 1.0


def apply(derives: Sequence[Any], params: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Add each derived column to every row (rows are dicts: column -> value), in place."""
    for d in derives:
        match = match_columns(d.baseline, d.match, params)
        index = baseline_index(rows, d.baseline, match)
        for row in rows:
            cands = index.get(row_key(row, match), [])
            base = cands[0] if len(cands) == 1 else None
            row[d.name] = None if base is None else compute(d.op, row.get(d.metric),
                                                             base.get(d.metric))
