"""Where named models, policies, experiments, scenarios and traces are found: the one place
that turns a name into a file.

A name is looked up in these roots, in order; the first root that has it wins, so a user's own
file overrides or extends the shipped one of the same name:

1. the current folder;
2. each folder listed in the environment variable ``MKTME_DES_PATH`` (separated by ``:``, or
   ``;`` on Windows), in order;
3. the shipped files: the package data of an installed ``mktme_des`` (found through
   :mod:`importlib.resources`), or, in a source checkout, the repository's own folders.

Every root is laid out like the repository: ``models/NAME.toml`` (models),
``models/kernel/NAME.toml`` (kernel policies), ``experiments/NAME.toml`` (experiments),
``experiments/scenarios/NAME.toml`` (scenarios) and ``experiments/traces/`` (traces). A path (a
``.toml`` name, anything with a folder separator, or a file that exists) is taken as it is.
Results always go under the current folder, wherever the inputs came from.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mktme_des.errors import ConfigError, UserError

PATH_VARIABLE = "MKTME_DES_PATH"
KINDS = {
    "model": "models",
    "policy": "models/kernel",
    "experiment": "experiments",
    "scenario": "experiments/scenarios",
}
"""Each kind of named file and its folder inside a root."""
SHIPPED_DIR = "shipped"
"""The package-data folder of an installed ``mktme_des`` (setup.py copies the repository's
``models/`` and ``experiments/`` there when it builds)."""


@dataclass(frozen=True)
class Root:
    """A folder names are looked up in, and where it came from (for ``list``)."""

    origin: str  # "current folder", "MKTME_DES_PATH", "shipped"
    path: Path


@dataclass(frozen=True)
class Entry:
    """One named file: its name, its path and the root it was found in."""

    name: str
    path: Path
    origin: str


def source_checkout() -> Path | None:
    """The repository this package runs from, when it runs from a source checkout (an
    editable install or the source tree itself); None when it is installed."""
    top = Path(__file__).resolve().parent.parent
    if (top / "pyproject.toml").is_file() and (top / "models").is_dir():
        return top
    return None


def shipped_root() -> Path | None:
    """The folder holding the shipped files (None when there is none)."""
    data = resources.files("mktme_des").joinpath(SHIPPED_DIR)
    if data.is_dir():
        return Path(str(data))
    return source_checkout()


def roots() -> list[Root]:
    """The roots names are looked up in, in order (see the module docstring). A folder listed
    twice is looked in once, at its first place; the shipped folder is called "shipped"
    wherever it comes (in a source checkout, the current folder often is it)."""
    shipped = shipped_root()
    candidates = [Root("current folder", Path.cwd())]
    for entry in os.environ.get(PATH_VARIABLE, "").split(os.pathsep):
        if entry:
            candidates.append(Root(PATH_VARIABLE, Path(entry).expanduser()))
    if shipped is not None:
        candidates.append(Root("shipped", shipped))
    out, seen = [], set()
    for root in candidates:
        real = root.path.resolve()
        if real in seen:
            continue
        seen.add(real)
        if shipped is not None and real == shipped.resolve():
            root = Root("shipped", root.path)
        out.append(root)
    return out


def natural_key(name: str) -> list:
    """Sort key that puts s2 before s10."""
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name)]


def entries(kind: str) -> list[Entry]:
    """Every file of ``kind`` across the roots, one per name (the first root's), sorted by
    name (s2 before s10)."""
    found: dict[str, Entry] = {}
    for root in roots():
        folder = root.path / KINDS[kind]
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            found.setdefault(path.stem, Entry(path.stem, path, root.origin))
    return sorted(found.values(), key=lambda e: natural_key(e.name))


def names(kind: str) -> list[str]:
    """The names of every file of ``kind`` (see :func:`entries`)."""
    return [e.name for e in entries(kind)]


def is_path(name_or_path: str | Path) -> bool:
    """True when ``name_or_path`` is meant as a path rather than a name."""
    text = str(name_or_path)
    if "\0" in text:
        raise UserError(f"{text!r}: a NUL byte is not allowed in a name or path")
    return (isinstance(name_or_path, Path) or text.endswith(".toml") or os.sep in text
            or "/" in text or _is_file(Path(text)))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the system refuses the question (a name too long)."""
    try:
        return path.is_file()
    except OSError:
        return False


def find(kind: str, name_or_path: str | Path) -> Path:
    """The file for a name or path of ``kind``.

    A path is returned as it is (reading it reports a missing file). A name is looked up in
    :func:`roots`; a scenario may also be named by its short id (``S2``: the first file whose
    name starts with ``s2-``). Raises :class:`ConfigError` (file: the name) naming what
    exists when nothing has that name."""
    if is_path(name_or_path):
        return Path(name_or_path)
    name = str(name_or_path)
    for root in roots():
        path = root.path / KINDS[kind] / f"{name}.toml"
        if _is_file(path):
            return path
    if kind == "scenario":
        prefix = f"{name.lower()}-"
        for e in entries(kind):
            if e.name.startswith(prefix):
                return e.path
    known = ", ".join(names(kind)) or "(none)"
    where = ", ".join(f"{r.origin} ({r.path / KINDS[kind]})" if r.origin != "shipped"
                      else "the shipped files" for r in roots())
    raise ConfigError(name, "", f"no such {kind}; looked in {where}; available: {known}")


def trace_path(path: str) -> Path:
    """A trace file: a path that exists (or is absolute) as it is, otherwise relative to the
    first root that has it (so ``experiments/traces/kernel_mix.lackey.gz`` is the shipped
    trace unless the current folder has its own)."""
    p = Path(path)
    if p.is_absolute() or _is_file(p):
        return p
    for root in roots():
        if _is_file(root.path / p):
            return root.path / p
    return p
