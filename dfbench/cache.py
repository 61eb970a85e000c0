"""Where dfbench keeps what it builds once: the demo set and converted checkpoints."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$DFBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/dfbench``, else ``~/.cache/dfbench``."""
    if os.environ.get("DFBENCH_CACHE_DIR"):
        return Path(os.environ["DFBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dfbench"
