"""The results folder of an experiment, and the atomic writes everything in it goes through.

Layout of ``results/<experiment>/``::

    experiment.toml   the experiment file as it was run
    spec.json         what `mktme-des plot` needs: columns, derived metrics, figure specs
    points/KEY.json   one file per run (point x replication), KEY = sha256 of its identity
    table.csv         the tidy table (and table.parquet when pyarrow is importable)
    manifest.json     versions, seeds, wall times, executor
    .lock             held by the run writing the folder (the pid inside)
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

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mktme_des import outputs
from mktme_des.errors import UserError

POINTS = "points"
LOCK = ".lock"


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`mktme_des.outputs.write_file`)."""
    outputs.write_bytes(path, data, "results", parents=True)


def write_text(path: Path, text: str) -> None:
    outputs.write_bytes(path, text.encode(), "results", parents=True)


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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (``.lock``, an advisory ``flock``) for the block: a second
        ``mktme-des run`` into the same folder is refused, naming the process that holds it,
        instead of deleting the first one's temporary files. The lock goes with the process
        that holds it, however it ends."""
        outputs.make_folder(self.root, "results folder")
        path = self.root / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{path}: cannot open the lock: {exc.strerror or exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another"
                raise UserError(f"{self.root}: process {holder} is running an experiment into "
                                "this folder; wait for it to finish, or give --out another "
                                "folder") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def prepare(self) -> None:
        """Create the folders and remove temporary files a killed run left behind."""
        outputs.make_folder(self.root, "results folder")
        outputs.make_folder(self.points, "results folder")
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
