"""Media helpers for tests: synthetic clips through the bundled ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def ffmpeg() -> str:
    from dfbench.video.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def make_video(path: Path, size: str = "160x120", frames: int = 20, rate: int = 10,
               source: str = "testsrc2", extra: list[str] | None = None, input_file: Path | None = None) -> Path:
    """A synthetic H.264 clip from ffmpeg's lavfi sources (or the first `frames` frames of `input_file`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    given = ["-i", str(input_file)] if input_file else ["-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}"]
    cmd = [ffmpeg(), "-v", "error", "-y", *given,
           "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
           *(extra or []), str(path)]
    subprocess.run(cmd, check=True)
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB arrays, through the engine's clean cell."""
    from dfbench.perturbations import OPERATIONS
    from dfbench.video.engine import CellPlan, SampledFrame, sample_frames

    plan = [CellPlan("none-0", OPERATIONS.get("none").steps(0, 0))]
    return [e.image for e in sample_frames(path, plan, None) if isinstance(e, SampledFrame)]
