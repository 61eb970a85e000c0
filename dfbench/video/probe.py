"""Probing media without ffprobe (the bundled ffmpeg has none): PyAV reads the container."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfbench.errors import MediaError

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def media_of(path: str | Path) -> str:
    """``frames`` for a folder of frames, ``image`` for image suffixes, else ``video`` (the decoder decides)."""
    if Path(path).is_dir():
        return "frames"
    return "image" if Path(path).suffix.lower() in IMAGE_SUFFIXES else "video"


@dataclass(frozen=True)
class VideoInfo:
    """What the engine needs to know about a video before decoding it.

    Attributes:
        width, height: coded frame size in pixels (before any rotation metadata is applied).
        frame_count: number of video packets, i.e. frames, in the first video stream, from its first keyframe on.
        fps: average frame rate in frames per second (0 when unknown).
        pix_fmt: the decoder's pixel format, e.g. ``yuv420p``.
    """

    width: int
    height: int
    frame_count: int
    fps: float
    pix_fmt: str


def probe_video(path: Path) -> VideoInfo:
    """Read size, frame count and frame rate of the first video stream; MediaError if there is none.

    The frame count comes from demuxing every packet (no decoding), which is exact for the usual
    one-frame-per-packet codecs, unlike the container's declared count.
    """
    import av

    if Path(path).is_dir():
        return _probe_frames(Path(path))
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            if not streams:
                raise MediaError(f"{path.name}: no video stream")
            stream = streams[0]
            ctx = stream.codec_context
            width, height, pix_fmt = ctx.width, ctx.height, ctx.format.name if ctx.format else "unknown"
            fps = float(stream.average_rate) if stream.average_rate else 0.0
            count = _decodable_count(container.demux(stream))
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path.name}: cannot read as video ({exc.__class__.__name__}: {exc})") from None
    if count == 0 or width <= 0 or height <= 0:
        raise MediaError(f"{path.name}: the video stream holds no frames")
    return VideoInfo(width, height, count, fps, pix_fmt)


def _decodable_count(packets) -> int:  # type: ignore[no-untyped-def]
    """Packets from the first keyframe on: a clip cut mid-GOP starts with frames that reference a keyframe it does
    not hold, and the decoder drops them, so sampling must spread over the frames it will output. A stream that
    marks no keyframe at all counts every packet."""
    total = decodable = 0
    for packet in packets:
        if packet.size == 0:
            continue
        total += 1
        if decodable or packet.is_keyframe:
            decodable += 1
    return decodable or total


def _probe_frames(folder: Path) -> VideoInfo:
    from PIL import Image, UnidentifiedImageError

    frames = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise MediaError(f"{folder.name}: the frame folder holds no images")
    try:
        with Image.open(frames[0]) as first:
            width, height = first.size
    except (UnidentifiedImageError, OSError) as exc:
        raise MediaError(f"{frames[0].name}: cannot read as an image ({exc})") from None
    return VideoInfo(width, height, len(frames), 0.0, "rgb24")


def sample_indices(frame_count: int, per_video: int) -> list[int]:
    """Frame indices spread uniformly over the video, first and last included, without repeats.

    Example:
        >>> sample_indices(10, 4)
        [0, 3, 6, 9]
        >>> sample_indices(3, 8)
        [0, 1, 2]
    """
    if frame_count <= 0:
        return []
    # Truncated linspace, as SBI's and DeepfakeBench's samplers do (`np.linspace(..., dtype=int)`).
    picks = np.linspace(0, frame_count - 1, num=min(per_video, frame_count), dtype=int)
    return sorted({int(x) for x in picks})
