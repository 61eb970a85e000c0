"""The video operations of Lu & Ebrahimi, "Impact of Video Processing Operations in Deepfake Detection"
(arXiv 2303.17247, Table I), as ffmpeg filters and encoder settings.

The paper publishes no command strings. Where a value is ours, the `source` says so and names the
closest standard implementation; the filter definitions and measured effects are in
`reference/perturbations.md` sections 1, 2 and 7. Every op is applied to the whole video, real and fake
alike, before faces are found.
"""

from __future__ import annotations

from dfbench.perturbations.base import EncodeStep, FilterStep, Level, Step, operation
from dfbench.perturbations.geometry import Downscale, HorizontalFlip, VerticalFlip


def libx264_args(crf: int) -> tuple[str, ...]:
    """x264 settings of the FaceForensics++ compression script (`dataset/compress.py`: CRF, preset left
    at libx264's default `medium`), with yuv420p output (our choice: what delivered video uses)."""
    # NOTE: x264's output depends on its thread count; pinning it keeps copies byte-identical across
    # machines with different core counts.
    return ("-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-x264-params", "threads=4")


@operation("none", category="clean", short="clean", version=1, levels=(0,), level_range=(0, 0),
           source="the unmodified test set; goes through the same code path as every other cell")
def none(level: Level, seed: int) -> list[Step]:
    """The clean copy: frames exactly as decoded."""
    return [FilterStep("null")]


@operation("h264_crf", category="compression", short="crf{level}", version=1, unit="crf", levels=(23, 40),
           level_range=(0, 51), media=("video",),
           source="CRF 23 and 40 as in Lu & Ebrahimi Table I and FaceForensics++ dataset/compress.py "
                  "(libx264, preset medium); yuv420p is our choice")
def h264_crf(crf: Level, seed: int) -> list[Step]:
    """Re-encode the whole video with libx264 at constant rate factor `crf` (higher = stronger)."""
    return [EncodeStep(libx264_args(int(crf)))]


@operation("lighten", category="brightness", short="light", version=1,
           source="our choice, closest to the paper's 'FFMPEG Lighten': curves preset 'lighter' "
                  "(master curve 0/0 0.4/0.5 1/1; +16 mean levels)")
def lighten(level: Level, seed: int) -> list[Step]:
    """Brighten with ffmpeg's `curves=preset=lighter`."""
    return [FilterStep("curves=preset=lighter")]


@operation("darken", category="brightness", short="dark", version=1,
           source="our choice, closest to the paper's 'FFMPEG Darken': curves preset 'darker' "
                  "(master curve 0/0 0.5/0.4 1/1; -16 mean levels)")
def darken(level: Level, seed: int) -> list[Step]:
    """Darken with ffmpeg's `curves=preset=darker`."""
    return [FilterStep("curves=preset=darker")]


@operation("contrast_up", category="contrast", short="contrast", version=1,
           source="our choice, closest to the paper's contrast increase: curves preset "
                  "'increase_contrast' (slope 1.42 at mid-grey)")
def contrast_up(level: Level, seed: int) -> list[Step]:
    """Increase contrast with ffmpeg's `curves=preset=increase_contrast`."""
    return [FilterStep("curves=preset=increase_contrast")]


@operation("noise_t", category="noise", short="noise{level}", version=2, unit="strength", levels=(20,),
           level_range=(0, 100),
           stochastic=True,
           source="our choice, closest to the paper's 'Gaussian noise with constant intensity but varying "
                  "temporal distribution': ffmpeg noise, Gaussian, flag t (re-drawn every frame); "
                  "strength 20 gives luma sigma 11.2")
def noise_t(strength: Level, seed: int) -> list[Step]:
    """Add Gaussian noise of ffmpeg strength `strength` (0-100), re-drawn every frame, seeded."""
    # NOTE: noise is drawn on full-resolution YUV planes for every medium, so luma noise is the same for a
    # video (stored 4:2:0 afterwards) and for an image (stored RGB); on RGB planes it would differ.
    return [FilterStep(f"format=yuv444p,noise=alls={int(strength)}:allf=t:all_seed={seed}", temporal=True)]


@operation("hflip", category="flip", short="H", version=1, geometry=HorizontalFlip(),
           source="horizontal flip, as in Lu & Ebrahimi (exact operation)")
def hflip(level: Level, seed: int) -> list[Step]:
    """Mirror every frame left-right."""
    return [FilterStep("hflip")]


@operation("vflip", category="flip", short="V", version=1, geometry=VerticalFlip(),
           source="vertical flip, as in Lu & Ebrahimi (exact operation)")
def vflip(level: Level, seed: int) -> list[Step]:
    """Mirror every frame top-bottom."""
    return [FilterStep("vflip")]


@operation("downscale", category="resolution", short="1/{level}", version=1, unit="scale_factor", levels=(2, 4),
           level_range=(1, 64), geometry=lambda factor: Downscale(float(factor)),
           source="resolution x2 and x4 as in Lu & Ebrahimi Table I; bicubic scaling to an even size "
                  "and keeping the reduced size are our choice")
def downscale(scale_factor: Level, seed: int) -> list[Step]:
    """Reduce the resolution by `scale_factor` in each dimension (bicubic, even output size)."""
    div = 2 * int(scale_factor)
    return [FilterStep(f"scale=trunc(iw/{div})*2:trunc(ih/{div})*2:flags=bicubic")]


@operation("gray", category="filter", short="gray", version=1,
           source="our choice, closest to the paper's grayscale filter: ffmpeg hue=s=0 (keeps yuv420p)")
def gray(level: Level, seed: int) -> list[Step]:
    """Remove colour (saturation 0)."""
    return [FilterStep("hue=s=0")]


@operation("vintage", category="filter", short="vintage", version=1,
           source="our choice, closest to the paper's vintage filter: ffmpeg curves preset 'vintage', "
                  "ffmpeg's only named vintage look")
def vintage(level: Level, seed: int) -> list[Step]:
    """Apply ffmpeg's `curves=preset=vintage` colour look."""
    return [FilterStep("curves=preset=vintage")]
