"""``manifest.json``: what produced a results folder.

It records the versions of Python and of the packages results depend on, the git revision of
the source tree when it is a git checkout (read from ``.git`` directly; no git command runs),
the experiment seed and every run's seed, status and wall time, the executor and its workers,
and the run's wall time. Unlike the point files and the table, the manifest changes from run to
run (times, executor), so it is kept apart from them.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from mktme_des import catalog

PACKAGES = ("mktme-des", "simpy", "numpy", "pycryptodome", "matplotlib")
OPTIONAL = ("dask", "distributed", "pandas", "pyarrow", "scipy")


def versions() -> dict[str, str | None]:
    """Python and package versions (None for a package that is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES + OPTIONAL:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in PACKAGES:
                out[name] = None
    return out


def git_revision(root: Path | None = None) -> str | None:
    """The commit ``HEAD`` points to, read from ``root/.git`` (default: the source checkout
    this package runs from); None when unavailable (an installed package has none)."""
    root = root if root is not None else catalog.source_checkout()
    if root is None:
        return None
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except (OSError, IndexError):
        return None
    return None


def now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def manifest(exp: Any, *, started: str, wall_s: float, backend: Any,
             runs: list[dict[str, Any]], interrupted: bool) -> dict[str, Any]:
    """The manifest of one run of experiment ``exp`` (see the module docstring)."""
    statuses = [r["status"] for r in runs]
    return {
        "experiment": exp.name,
        "title": exp.info.title,
        "file": str(exp.path),
        "driver": exp.driver.name,
        "seed": exp.info.seed,
        "replications": exp.info.replications,
        "points": len(exp.points),
        "runs": len(runs),
        "ok": statuses.count("ok"),
        "failed": statuses.count("failed"),
        "missing": statuses.count("missing"),
        "interrupted": interrupted,
        "started": started,
        "wall_s": round(wall_s, 3),
        "executor": backend.name if backend is not None else None,
        "scheduler": getattr(backend, "address", None),
        "workers": getattr(backend, "workers", None),
        "versions": versions(),
        "git_revision": git_revision(),
        "platform": platform.platform(),
        "run_list": runs,
    }
