"""Writing output files: checked before the work, written whole or not at all.

Every file this package writes (result files, figures, traces, saved scenarios) goes through
:func:`write_file`:

* The path is checked first (:func:`check_output`): it must not be a folder, must have a
  suffix the writer can produce, and its folder must exist or lie under the current folder
  (where missing folders are created; elsewhere a mistyped path is an error, never a new folder
  at the filesystem root), unless the file goes inside a folder the user named (a results
  folder's ``figures/``).
* A symbolic link is written through: the file it points to is replaced, the link stays. A
  path that exists and is not a regular file (a device such as ``/dev/stdout``, a FIFO) is
  refused rather than replaced.
* The bytes go to a temporary file beside the target (``.NAME.PID.tmp``), are flushed to disk
  and renamed over the target (``os.replace``), so a reader, or a process killed at any
  instant, sees the old file or the new one, never half of one. On any failure (a full disk, a
  read-only folder) the temporary file is removed and a :class:`UserError` names the path and
  the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from mktme_des.errors import UserError


def _under_cwd(path: Path) -> bool:
    try:
        path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return False
    return True


def check_output(path: str | Path, what: str, suffixes: Iterable[str] | None = None,
                 parents: bool = False) -> Path:
    """The file ``path`` (named by the user as ``what``, e.g. ``--plot``) resolved through a
    symbolic link, after the checks in the module docstring; raises :class:`UserError`.
    ``parents``: missing folders may be created anywhere (a file inside a folder the user
    named, such as a results folder's ``figures/``)."""
    given = Path(path)
    if "\0" in str(path):
        raise UserError(f"{what}: a NUL byte is not allowed in a path")
    if str(path).endswith(("/", os.sep)) or given.is_dir():
        raise UserError(f"{what} {path}: is a folder; give a file name")
    allowed = tuple(suffixes or ())
    if allowed and given.suffix.lstrip(".").lower() not in allowed:
        raise UserError(f"{what} {path}: the file name must end in "
                        f"{', '.join('.' + s for s in allowed)}")
    target = given.resolve() if given.is_symlink() else given
    if target.exists() and not target.is_file():
        raise UserError(f"{what} {path}: exists and is not a regular file; give a file path")
    folder = target.parent
    if not folder.is_dir():
        if folder.exists():
            raise UserError(f"{what} {path}: {folder} is not a folder")
        if not parents and not _under_cwd(folder):
            raise UserError(f"{what} {path}: the folder {folder} does not exist (missing "
                            "folders are created only under the current folder)")
    return target


def write_file(path: str | Path, writer: Callable[[Path], None], what: str = "output",
               suffixes: Iterable[str] | None = None, parents: bool = False,
               mode: int | None = None) -> Path:
    """Write one file atomically: ``writer(tmp)`` writes the temporary file, which is then
    flushed and renamed over the target. Returns the path written (through a link, its
    target). Raises :class:`UserError` (the temporary file removed) when it cannot.
    ``parents`` as for :func:`check_output`; ``mode``: the file's permission bits (e.g.
    ``0o600`` for a file holding keys), set before it takes the target's name."""
    target = check_output(path, what, suffixes, parents)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode is not None:  # never readable by others, not even for an instant
            tmp.touch(mode=mode)
            os.chmod(tmp, mode)
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(f"{what} {path}: cannot write: {reason}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def write_bytes(path: str | Path, data: bytes, what: str = "output",
                parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`write_file`)."""
    return write_file(path, lambda tmp: tmp.write_bytes(data), what, parents=parents)


def write_text(path: str | Path, text: str, what: str = "output", parents: bool = False,
               mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_file`)."""
    data = text.encode()
    return write_file(path, lambda tmp: tmp.write_bytes(data), what, parents=parents, mode=mode)


def check_folder(path: str | Path, what: str) -> Path:
    """A folder the user names for output (``--save DIR``, ``--out DIR``): it may exist (as a
    folder) or be created, but only under the current folder unless its parent exists."""
    folder = Path(path)
    if "\0" in str(path):
        raise UserError(f"{what}: a NUL byte is not allowed in a path")
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {path}: exists and is not a folder")
    if not folder.exists() and not folder.parent.is_dir() and not _under_cwd(folder):
        raise UserError(f"{what} {path}: the folder {folder.parent} does not exist (missing "
                        "folders are created only under the current folder)")
    return folder


def make_folder(path: str | Path, what: str) -> Path:
    """:func:`check_folder`, then create it; a UserError when that fails."""
    folder = check_folder(path, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot create the folder: "
                        f"{exc.strerror or exc}") from None
    return folder
