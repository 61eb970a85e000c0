"""Paths dfbench writes: names made from sample ids and cell ids stay inside the folder the user named.

A sample id is checked once, where the dataset is loaded (`sample_id_problem`): it must be a relative path with
no empty, ``.`` or ``..`` part and no NUL character, so that ``OUT/<cell>/<sample id>`` can never leave
``OUT``. A name part longer than the file system allows (long chains, long ids) is mapped by `safe_part` to a
shortened name that ends in a hash of the whole part: safe, unique, and reversible through the manifest that
records the original (`dfbench perturb` writes the cell id and the sample id next to every copy).
`inside` is the last guard before a write: it resolves both paths and refuses one that escapes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from dfbench.errors import ConfigError

NAME_MAX = 255          # bytes per path component on ext4, XFS, btrfs, APFS and NTFS (UTF-16 units there)
_HASH_DIGITS = 16


def sample_id_problem(sample_id: str) -> str | None:
    """Why `sample_id` cannot name a file below an output folder, or None when it can.

    Example:
        >>> sample_id_problem("fake/clip_003") is None
        True
        >>> sample_id_problem("fake/../../x")
        "has a '..' part"
    """
    if not sample_id:
        return "is empty"
    if "\0" in sample_id:
        return "holds a NUL character"
    if sample_id.startswith(("/", "\\")) or PurePosixPath(sample_id).is_absolute():
        return "is an absolute path"
    for part in sample_id.replace("\\", "/").split("/"):
        if part in ("", ".", ".."):
            return "has an empty part" if not part else f"has a {part!r} part"
    return None


def safe_part(name: str, limit: int = NAME_MAX) -> str:
    """`name` as one path component: unchanged when it fits and holds no separator, else shortened to
    ``<start>~<sha256 of name, 16 hex digits><suffix>`` within `limit` bytes (the suffix is kept, so a
    copy's type still shows).

    Example:
        >>> safe_part("h264_crf-23")
        'h264_crf-23'
        >>> len(safe_part("x" * 300 + ".mp4").encode())
        255
    """
    if len(name.encode()) <= limit and name not in ("", ".", "..") and "/" not in name and "\0" not in name:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_DIGITS]
    stem, dot, suffix = name.rpartition(".")
    tail = f".{suffix}" if dot and stem and len(suffix) <= 8 and "/" not in suffix else ""
    room = limit - len(f"~{digest}{tail}".encode())
    start = (stem if tail else name).replace("/", "_").replace("\0", "_").encode()[:room].decode(errors="ignore")
    return f"{start}~{digest}{tail}"


def safe_relative(path: str | Path) -> Path:
    """A relative path with every part passed through `safe_part`; refuses '..' and absolute paths."""
    text = Path(path).as_posix()
    problem = sample_id_problem(text)
    if problem:
        raise ConfigError(f"Path {text!r} {problem}; it cannot name a file below the output folder.")
    return Path(*(safe_part(part) for part in text.split("/")))


def inside(base: Path, path: Path) -> Path:
    """`path` (relative to `base`, or absolute) once checked to lie inside `base` after resolving links."""
    target = (base / path).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ConfigError(f"Refusing to write {str(path)!r}: it lies outside the output folder {str(base)!r}.")
    return target


def overlap(a: Path, b: Path) -> bool:
    """Whether one folder lies inside the other (or they are the same), after resolving links."""
    ra, rb = Path(os.path.realpath(a)), Path(os.path.realpath(b))
    return ra.is_relative_to(rb) or rb.is_relative_to(ra)
