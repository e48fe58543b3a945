"""The results folder of an experiment, and the atomic writes everything in it goes through.

Layout of ``results/<experiment>/``::

    experiment.toml   the experiment file as it was run
    spec.json         what `mktme-des plot` needs: columns, derived metrics, figure specs
    points/KEY.json   one file per run (point x replication), KEY = sha256 of its identity
    table.csv         the tidy table (and table.parquet when pyarrow is importable)
    manifest.json     versions, seeds, wall times, executor
    figures/          every [[figure]], as PNG and SVG

A point file holds the run's resolved configuration beside its result::

    {"format": 1, "key": ..., "experiment": ..., "driver": ..., "params": {...},
     "replication": 0, "seed": ..., "config": {...},
     "status": "ok", "metrics": {...}, "series": {...}}

or, for a run whose driver raised, ``"status": "failed"`` with ``"error"`` and ``"traceback"``.
Its bytes depend only on the run's identity and result, never on which process or machine ran
it or when. Every file is written to a temporary name in the same folder and renamed over the
target (``os.replace``), so a reader, or a run killed at any instant, sees either the old file
or the new one, never half of one. Temporary names start with ``.`` and end in ``.tmp``; a new
run deletes the ones a killed run left.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from mktme_des.errors import UserError

POINTS = "points"


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def json_text(obj: Any) -> str:
    """Deterministic JSON: sorted keys, one-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=1, allow_nan=False) + "\n"


def clean(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Store:
    """An experiment's results folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.points = self.root / POINTS

    def prepare(self) -> None:
        """Create the folders and remove temporary files a killed run left behind."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: exists and is not a folder")
        self.points.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.points, self.root / "figures"):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def point_path(self, key: str) -> Path:
        return self.points / f"{key}.json"

    def load_point(self, key: str) -> dict[str, Any] | None:
        """The stored record of run ``key``, or None when absent or unreadable."""
        try:
            rec = json.loads(self.point_path(key).read_text())
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and rec.get("key") == key else None

    def save_point(self, record: dict[str, Any]) -> Path:
        path = self.point_path(record["key"])
        write_text(path, json_text(clean(record)))
        return path

    def write_json(self, name: str, obj: Any) -> Path:
        path = self.root / name
        write_text(path, json_text(clean(obj)))
        return path


def is_complete(record: dict[str, Any] | None, metrics: list[str], series: list[str]) -> bool:
    """True when a stored run need not run again: it succeeded and has what is asked of it."""
    if not record or record.get("status") != "ok":
        return False
    have = record.get("metrics") or {}
    stored = record.get("series") or {}
    return all(m in have for m in metrics) and all(s in stored for s in series)
