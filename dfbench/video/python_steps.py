"""Python steps inside an ffmpeg chain: frames leave ffmpeg as raw RGB, go through the Python functions, and
re-enter ffmpeg for what follows (filters, the stored pixel format, an encoder).

Every colour conversion stays in ffmpeg, in both directions and with the same flags, so a frame sampled in
process and the same frame of a written copy are bit-identical.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfbench.perturbations.base import EncodeStep, FrameStep
from dfbench.video.ffmpeg import SWS_FLAGS, base_command, input_url, last_error_line


def apply_steps(steps: Sequence[FrameStep], frame: np.ndarray, index: int) -> np.ndarray:
    """Frame `index` after every Python step in order."""
    for step in steps:
        frame = step.apply(frame, index)
    return frame


def _raw_input(frame: np.ndarray, fps: float) -> list[str]:
    height, width = frame.shape[:2]
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{fps:g}",
            "-i", "pipe:0"]


@dataclass
class FinishSink:
    """Sampled frames of one cell: processed in Python, then finished by ffmpeg (later filters, the stored
    pixel format, RGB out)."""

    cell_id: str
    steps: tuple[FrameStep, ...]
    chain: str
    fps: float
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def push(self, index: int, frame: np.ndarray) -> None:
        self.frames.append((index, apply_steps(self.steps, frame, index)))

    def finish(self) -> tuple[list[tuple[int, np.ndarray]], str]:
        """The finished frames in push order, or an empty list and the error message."""
        if not self.frames:
            return [], ""
        import av

        cmd = base_command() + _raw_input(self.frames[0][1], self.fps) + [
            "-filter_complex", f"sws_flags={SWS_FLAGS};[0:v]{self.chain},format=rgb24[o]", "-map", "[o]",
            "-c:v", "rawvideo", "-fps_mode", "passthrough", "-f", "nut", "pipe:1"]
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
            writer = threading.Thread(target=_feed, args=(proc, [f for _, f in self.frames]), daemon=True)
            writer.start()
            try:
                assert proc.stdout is not None
                with av.open(f"pipe:{proc.stdout.fileno()}", format="nut", mode="r") as container:
                    out = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            except (av.error.FFmpegError, EOFError, ValueError) as exc:
                out, reason = [], f"{exc.__class__.__name__}: {exc}"
            else:
                reason = ""
            finally:
                writer.join()
                code = proc.wait()
            if code != 0 or len(out) != len(self.frames):
                err.seek(0)
                return [], last_error_line(err.read().decode(errors="replace")) if code else (
                    reason or f"ffmpeg returned {len(out)} of {len(self.frames)} frames")
        return [(index, image) for (index, _), image in zip(self.frames, out, strict=True)], ""


def _feed(proc: subprocess.Popen, frames: list[np.ndarray]) -> None:
    assert proc.stdin is not None
    try:
        for frame in frames:
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # ffmpeg died; its exit code tells why


@dataclass
class WriterSink:
    """Every frame of one cell: processed in Python and piped into an ffmpeg process that writes a file
    (a lossless copy, or an encode that later rounds decode)."""

    cell_id: str
    steps: tuple[FrameStep, ...]
    chain: str
    args: tuple[str, ...]
    path: Path
    fps: float
    _proc: subprocess.Popen | None = None
    _err: object = None
    _count: int = 0

    def push(self, index: int, frame: np.ndarray) -> None:
        processed = apply_steps(self.steps, frame, index)
        if self._proc is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._err = tempfile.TemporaryFile()  # noqa: SIM115 - open while ffmpeg runs, closed in finish()
            args = EncodeStep(self.args).resolved_args(processed.shape[1], processed.shape[0], self.fps)
            cmd = base_command() + _raw_input(processed, self.fps) + [
                "-filter_complex", f"sws_flags={SWS_FLAGS};[0:v]{self.chain}[o]", "-map", "[o]", *args,
                "-fps_mode", "passthrough", "-an", input_url(self.path)]
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # ffmpeg died; finish() reports why
            self._proc.stdin.write(processed.tobytes())
        self._count += 1

    def finish(self) -> str:
        """'' when the file was written, else ffmpeg's error."""
        if self._proc is None:
            return "no frames reached the writer"
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        code = self._proc.wait()
        err = self._err
        assert err is not None
        err.seek(0)  # type: ignore[attr-defined]
        message = err.read().decode(errors="replace")  # type: ignore[attr-defined]
        err.close()  # type: ignore[attr-defined]
        return "" if code == 0 else last_error_line(message)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
