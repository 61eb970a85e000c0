"""The cache folder: where dfbench keeps what it builds once and reuses.

It holds the demo set, converted checkpoints, the face cache (``faces/``, `dfbench.faces.cache`) and training
crops (``crops/``). A run's work files (compression encodes, bounded by ``--work-limit``) are not kept here:
they live in ``OUT/.work`` and are removed when the run stops.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DFBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/dfbench``, else ``~/.cache/dfbench``."""
    if os.environ.get("DFBENCH_CACHE_DIR"):
        return Path(os.environ["DFBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dfbench"
