"""Locating and running the ffmpeg binary. Every subprocess gets an argument list, never a shell string."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from dfbench.errors import MediaError

# Pinned scaler flags for every conversion ffmpeg does inside a filter graph (pixel formats, sizes):
# `accurate_rnd` and `bitexact` make the result independent of the CPU's SIMD paths, so a written
# copy and the in-process frames agree bit for bit on any machine.
SWS_FLAGS = "bicubic+accurate_rnd+full_chroma_int+bitexact"


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$DFBENCH_FFMPEG`` if set, else imageio-ffmpeg's bundled build."""
    override = os.environ.get("DFBENCH_FFMPEG")
    if override:
        if not Path(override).is_file():
            raise MediaError(f"DFBENCH_FFMPEG points to {override!r}, which is not a file.")
        return override
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise MediaError(f"No ffmpeg binary found ({exc}); reinstall dfbench or set DFBENCH_FFMPEG.") from None


@functools.lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    """The first line of ``ffmpeg -version`` (recorded with every run)."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def input_url(path: Path) -> str:
    """An ffmpeg input/output URL for a local path that no protocol prefix or leading dash can hijack."""
    return "file:" + str(Path(path).absolute())


def base_command() -> list[str]:
    """The start of every ffmpeg invocation: quiet, no stdin, overwrite."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y"]


def last_error_line(stderr: str) -> str:
    """The most informative line of ffmpeg's stderr, for one-line error messages."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg exited with an error and printed nothing"
