"""Output paths, checked before any work: a folder or file the user named for dfbench to write.

Every command checks its outputs before it loads a model or reads a dataset, so that a path that cannot be
written (an existing file where a folder is wanted, a folder below a file, a read-only file system, a name too
long) is one line and exit 1 instead of a traceback after minutes of work. `os_error_line` words any OSError
that still happens later (a full disk, a folder removed mid-run) the same way.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from dfbench.errors import OutputPathError

_WHY = {errno.EEXIST: "a file exists there", errno.ENOTDIR: "a part of it is a file, not a folder",
        errno.EISDIR: "it is a folder", errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.ENOSPC: "no space left",
        errno.ENAMETOOLONG: "the name is too long", errno.EDQUOT: "the disk quota is exceeded"}


def os_error_line(exc: OSError, what: str = "") -> str:
    """One line for an OSError: the path, why in plain words, and the system's own message."""
    path = exc.filename if exc.filename is not None else what
    why = _WHY.get(exc.errno or 0, exc.strerror or exc.__class__.__name__)
    detail = f" ({exc.strerror})" if exc.strerror and exc.strerror.lower() != why else ""
    return f"{str(path)!r}: {why}{detail}."


def prepare_folder(folder: Path, flag: str) -> Path:
    """Create `folder` (and its parents) and prove a file can be written in it; OutputPathError otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{flag} {str(folder)!r} is a file, not a folder; choose a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputPathError(f"Cannot write {flag} {os_error_line(exc, str(folder))}") from None
    return folder


def prepare_file(path: Path, flag: str) -> Path:
    """Check that `path` can be written as a file (its folder is created), before any work; returns it."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} {str(path)!r} is a folder; give a file name (e.g. {str(path / 'out')!r}).")
    if len(path.name.encode()) > 255:
        raise OutputPathError(f"{flag} {str(path)!r}: the file name is longer than 255 bytes.")
    prepare_folder(path.parent, f"{flag} (its folder)")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {str(path)!r} exists and cannot be written (permission denied).")
    return path
