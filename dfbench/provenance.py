"""What every result carries: versions, hashes and settings that produced it."""

from __future__ import annotations

import dataclasses
import functools
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfbench.version import __version__

if TYPE_CHECKING:
    from dfbench.config import SuiteConfig
    from dfbench.detectors import DetectorAdapter


@functools.lru_cache(maxsize=1)
def git_hash() -> str:
    """The commit of the dfbench source tree when it is a git checkout, else ''."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=False, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance(identity: dict, suite: SuiteConfig, adapter: DetectorAdapter, config: Any, batch_size: int) -> dict:
    """The run's provenance record (also written to run.json); `batch_size` is the resolved one."""
    import timm
    import torch

    from dfbench.video.ffmpeg import ffmpeg_version

    return {
        "dfbench_version": __version__, "git_hash": git_hash(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
        "ffmpeg": ffmpeg_version(), "suite": suite.to_dict(), "suite_hash": suite.hash,
        "ops": {op: version for c in suite.cells for op, version in c.versions.items()},
        "detector": adapter.card.key, "weights": adapter.weights_label, "weights_sha256": adapter.weights_sha256,
        "device": adapter.device, "precision": adapter.precision, "seed": suite.seed,
        "batch_size": batch_size,
        "identity": identity,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
    }
