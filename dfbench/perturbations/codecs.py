"""The codecs video meets in 2026: HEVC (phones record it), VP9 and AV1 (YouTube serves both), each encoding the
whole video as the H.264 cells do, and an H.264 bit-rate ladder (one video at several target bit rates).

Levels. Each codec's two default CRFs are *measured* matches, in mean bit rate, of libx264 at CRF 23 and 40 (the
Lu & Ebrahimi levels, `h264_crf`) on six demo test clips (854x480, 20 fps; measured here on 2026-12-04 with the
bundled ffmpeg 9.0.2): x264 CRF 23 gave 621 kbit/s and CRF 40 93 kbit/s; x265 CRF 22 577 and CRF 33 93; VP9 CRF
30 595 and CRF 46 about 93 (CRF 42: 128, 48: 83); SVT-AV1 CRF 21 about 621 (18: 939, 24: 437) and CRF 54 92.
At a matched bit rate the newer codecs keep more quality (x265 CRF 33: 39.4 dB PSNR against x264 CRF 40's 35.6),
which is what a delivered video of the same size looks like. Other content gives other matches: any CRF in the
codec's range is a valid level.

Reproducibility. Every encoder's threading is pinned in its options, because the thread layout changes the
bitstream (x264 and x265 frame threads, libvpx tiles and row threads). With that, two encodes on this machine gave
identical packets whatever CPUs they were allowed. SVT-AV1 gave the same packets at lp 2 and lp 4. Byte equality
across CPU families (different SIMD paths) is not established for any of them; the decoded frames, and so the
scores, are what a run records.
"""

from __future__ import annotations

from dfbench.perturbations.base import EncodeStep, Level, Step, operation

MEASURED = "measured on the demo test clips, 2026-12-04 (dfbench/perturbations/codecs.py docstring)"


def libx265_args(crf: int) -> tuple[str, ...]:
    """x265 at `crf`, preset medium (x265's default), 8-bit yuv420p, with a fixed thread pool and frame threads
    (ours: the bitstream depends on them)."""
    return ("-c:v", "libx265", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-x265-params", "log-level=error:pools=4:frame-threads=2")


def libvpx_vp9_args(crf: int) -> tuple[str, ...]:
    """libvpx VP9 in constant-quality mode (``-crf N -b:v 0``, as the FFmpeg VP9 guide and Google's VOD settings
    give it), deadline good, cpu-used 2 (ours: libvpx's default, 0, took twice as long on a test clip),
    row multithreading with 4 threads and 2 tile columns pinned."""
    return ("-c:v", "libvpx-vp9", "-crf", str(crf), "-b:v", "0", "-deadline", "good", "-cpu-used", "2",
            "-row-mt", "1", "-threads", "4", "-tile-columns", "1", "-pix_fmt", "yuv420p")


def libsvtav1_args(crf: int) -> tuple[str, ...]:
    """SVT-AV1 at `crf`, preset 8 (ours: SVT-AV1's real-time-capable middle preset; its default, 10, is
    faster and coarser), 8-bit yuv420p, level of parallelism pinned at 4."""
    return ("-c:v", "libsvtav1", "-preset", "8", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-svtav1-params", "lp=4")


def libx264_ladder_args(kbps: int) -> tuple[str, ...]:
    """libx264, preset medium, one-pass average bit rate at `kbps` with a VBV cap of the same rate and a two-second
    buffer (the rate control of live and low-latency ladders). Ours, instead of capped CRF, which leaves every rung
    identical wherever the CRF needs fewer bits than the cap (all four rungs gave the same frames on a 320x256 test
    clip), and of two passes, which need a second full encode per rung. One thread: with frame threads, x264's
    bit-rate control gave a different stream on every run (4 runs, 4 streams; CRF with 4 threads repeats)."""
    return ("-c:v", "libx264", "-preset", "medium", "-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize",
            f"{2 * kbps}k", "-pix_fmt", "yuv420p", "-x264-params", "threads=1")


@operation("hevc_crf", category="compression", short="hevc{level}", version=1, unit="crf", levels=(22, 33),
           level_range=(0, 51), media=("video",),
           source="libx265 preset medium; CRF 22 and 33 match libx264 CRF 23 and 40 in bit rate, " + MEASURED
                  + "; the FFmpeg H.265 guide calls x265 CRF 28 the visual match of x264 CRF 23")
def hevc_crf(crf: Level, seed: int) -> list[Step]:
    """Re-encode the whole video with HEVC (libx265) at constant rate factor `crf` (higher = stronger)."""
    return [EncodeStep(libx265_args(int(crf)))]


@operation("vp9_crf", category="compression", short="vp9 {level}", version=1, unit="crf", levels=(30, 46),
           level_range=(0, 63), media=("video",),
           source="libvpx-vp9 constant quality (-crf N -b:v 0, FFmpeg VP9 guide); CRF 30 and 46 match libx264 "
                  "CRF 23 and 40 in bit rate, " + MEASURED + "; Google's VOD settings use CRF 31-33 for 480p-1080p")
def vp9_crf(crf: Level, seed: int) -> list[Step]:
    """Re-encode the whole video with VP9 (libvpx) at constant quality `crf` (0-63, higher = stronger)."""
    return [EncodeStep(libvpx_vp9_args(int(crf)), suffix=".webm")]


@operation("av1_crf", category="compression", short="av1 {level}", version=1, unit="crf", levels=(21, 54),
           level_range=(1, 63), media=("video",),
           source="SVT-AV1 (libsvtav1) preset 8; CRF 21 and 54 match libx264 CRF 23 and 40 in bit rate, " + MEASURED
                  + "; SVT-AV1's default CRF is 35")
def av1_crf(crf: Level, seed: int) -> list[Step]:
    """Re-encode the whole video with AV1 (SVT-AV1) at constant rate factor `crf` (1-63, higher = stronger)."""
    return [EncodeStep(libsvtav1_args(int(crf)))]


@operation("h264_ladder", category="compression", short="{level}k", version=1, unit="kbps",
           levels=(2000, 1000, 500, 250), level_range=(16, 100_000), media=("video",),
           source="ours: a doubling ladder of 2000-250 kbit/s at the source resolution (0.087-0.011 bits per pixel "
                  "at 720p25), libx264 preset medium, one-pass ABR at the rung with VBV maxrate = the rung, 2 s buffer")
def h264_ladder(kbps: Level, seed: int) -> list[Step]:
    """Re-encode with libx264 at `kbps` kbit/s (one-pass ABR, VBV-capped): one rung of a bit-rate ladder."""
    return [EncodeStep(libx264_ladder_args(int(kbps)))]
