"""Stable hashes: the same value gives the same digest on every machine and in every process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of `obj` (sorted keys), first 16 hex digits.

    Example:
        >>> stable_hash({"b": 1, "a": [2, 3]}) == stable_hash({"a": [2, 3], "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (recorded with every result); for a folder, of its files' names and hashes."""
    path = Path(path)
    if path.is_dir():
        listing = "".join(f"{p.relative_to(path).as_posix()}\t{file_sha256(p)}\n"
                          for p in sorted(path.rglob("*")) if p.is_file())
        return hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
