"""The seven distortions of DeeperForensics-1.0 (Jiang et al., CVPR 2020) at their five published levels.

Parameters and formulas as published in ``EndlessSora/DeeperForensics-1.0``, ``perturbation/distortions.py``
and ``add_distortion_to_video.py`` (reference/perturbations.md section 3); this code is written here from
that description. Frames are processed in OpenCV's BGR order, as the original does, and converted back.

The six frame distortions end as the released dataset's videos did (``add_distortion_to_video.py``, the
``via_xvid`` path that "strictly aligns" with the dataset): the distorted frames go to an XVID ``.avi``
through OpenCV's ``VideoWriter`` and then through ``ffmpeg -i tmp.avi out.mp4``, two lossy generations. Here
the XVID step is ffmpeg's MPEG-4 part 2 encoder (``mpeg4``, tag XVID) at the bit rate OpenCV's writer sets
(``fps * width * height``, plus the half of it that ``CvVideoWriter_FFMPEG::open`` adds), GOP and everything
else at libavcodec's defaults as OpenCV leaves them; the second is libx264 at its defaults (CRF 23, preset
medium), as a bare ``ffmpeg -i`` gives. The ``*_lossless`` twins (suite ``deeperforensics-lossless``) keep the
distorted frames bit-exact instead, as dfbench did before.

One deliberate difference: the random generators are seeded per (sample, op, level, frame), where the original
draws from the unseeded global generator. Their "JPEG compression" is not JPEG encoding: it shrinks by 2-6 and
enlarges back. Here it is ``dfo_resize``.
"""

from __future__ import annotations

import math

import numpy as np

from dfbench.perturbations.base import OPENCV_BITRATE, EncodeStep, FrameStep, Level, Step, operation

LEVELS = (1, 2, 3, 4, 5)
SOURCE = "DeeperForensics-1.0 perturbation/add_distortion_to_video.py level table and distortions.py"
# Level 1 to 5 parameters, as published (get_distortion_parameter).
PARAMS = {
    "cs": (0.4, 0.3, 0.2, 0.1, 0.0),           # colour saturation factor, smaller is worse
    "cc": (0.85, 0.725, 0.6, 0.475, 0.35),     # contrast (a multiplication), smaller is worse
    "bw": (16, 32, 48, 64, 80),                # blocks per 256 px of the shorter side
    "gnc": (0.001, 0.002, 0.005, 0.01, 0.05),  # noise variance in normalised YCbCr
    "gb": (7, 9, 13, 17, 21),                  # Gaussian kernel size (sigma = size / 6)
    "jpeg": (2, 3, 4, 5, 6),                   # shrink factor of their "JPEG" (down and up again)
    "vc": (30, 32, 35, 38, 40),                # x264 CRF
}


def _param(op: str, level: Level) -> float:
    return PARAMS[op][int(level) - 1]


def _bgr_to_ycbcr(bgr: np.ndarray) -> np.ndarray:
    """DeeperForensics' conversion: OpenCV YCrCb of the 0-255 float image, channels reordered to Y, Cb, Cr,
    then mapped to the 16-235 (luma) and 16-240 (chroma) ranges divided by 255."""
    import cv2

    ycrcb = cv2.cvtColor(bgr.astype(np.float32), cv2.COLOR_BGR2YCrCb)
    ycbcr = ycrcb[:, :, (0, 2, 1)].astype(np.float32)
    ycbcr[:, :, 0] = (ycbcr[:, :, 0] * (235 - 16) + 16) / 255.0
    ycbcr[:, :, 1:] = (ycbcr[:, :, 1:] * (240 - 16) + 16) / 255.0
    return ycbcr


def _ycbcr_to_bgr(ycbcr: np.ndarray) -> np.ndarray:
    """The inverse of `_bgr_to_ycbcr` (float BGR, unclipped)."""
    import cv2

    ycbcr = ycbcr.astype(np.float32).copy()
    ycbcr[:, :, 0] = (ycbcr[:, :, 0] * 255.0 - 16) / (235 - 16)
    ycbcr[:, :, 1:] = (ycbcr[:, :, 1:] * 255.0 - 16) / (240 - 16)
    return cv2.cvtColor(np.ascontiguousarray(ycbcr[:, :, (0, 2, 1)]), cv2.COLOR_YCrCb2BGR)


def _bgr(fn):
    """Run a BGR-frame function on an RGB frame."""

    def wrapped(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(fn(np.ascontiguousarray(rgb[:, :, ::-1]), rng)[:, :, ::-1])

    return wrapped


def _saturation(factor: float):
    def fn(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ycbcr = _bgr_to_ycbcr(bgr)
        ycbcr[:, :, 1:] = 0.5 + (ycbcr[:, :, 1:] - 0.5) * factor
        return _ycbcr_to_bgr(ycbcr).astype(np.uint8)

    return fn


def _contrast(factor: float):
    def fn(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (bgr.astype(np.float32) * factor).astype(np.uint8)

    return fn


def _blocks(per_256px: int):
    def fn(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = bgr.copy()
        height, width = out.shape[:2]
        side = 8
        for _ in range(min(height, width) // 256 * per_256px):
            x = int(rng.integers(0, width - 1 - side + 1))
            y = int(rng.integers(0, height - 1 - side + 1))
            out[y:y + side, x:x + side] = 128
        return out

    return fn


def _noise(variance: float):
    def fn(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ycbcr = _bgr_to_ycbcr(bgr) / 255
        noisy = (ycbcr + math.sqrt(variance) * rng.standard_normal(ycbcr.shape)) * 255
        return np.clip(_ycbcr_to_bgr(noisy), 0, 255).astype(np.uint8)

    return fn


def _gaussian_blur(size: int):
    def fn(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        return cv2.GaussianBlur(bgr, (size, size), size / 6)

    return fn


def _down_up(factor: int):
    def fn(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        height, width = bgr.shape[:2]
        small = cv2.resize(bgr, (max(1, width // factor), max(1, height // factor)))
        return cv2.resize(small, (width, height))

    return fn


# The dataset's two re-encodes after a frame distortion (see the module docstring).
XVID = EncodeStep(("-c:v", "mpeg4", "-vtag", "XVID", "-b:v", OPENCV_BITRATE, "-pix_fmt", "yuv420p"), suffix=".avi")
X264_DEFAULTS = EncodeStep(("-c:v", "libx264", "-pix_fmt", "yuv420p"))


def _frame_op(name: str, factory, kind: str, reencode: bool):
    def build(level: Level, seed: int) -> list[Step]:
        distort = FrameStep(_bgr(factory(_param(kind, level))), seed, f"{name} {level}")
        return [distort, XVID, X264_DEFAULTS] if reencode else [distort]

    return build


_FRAME_OPS = (
    ("dfo_cs", "cs", _saturation, "color", "colour saturation change (level 5 = grayscale)"),
    ("dfo_cc", "cc", _contrast, "contrast", "colour contrast change (a multiplication: it darkens)"),
    ("dfo_bw", "bw", _blocks, "occlusion", "local block-wise distortion (grey 8x8 blocks, new places every frame)"),
    ("dfo_gnc", "gnc", _noise, "noise", "white Gaussian noise in the colour components (YCbCr)"),
    ("dfo_gb", "gb", _gaussian_blur, "blur", "Gaussian blur"),
    ("dfo_resize", "jpeg", _down_up, "resolution",
     "their 'JPEG compression', which is shrinking by 2-6 and enlarging back (no JPEG encoding)"),
)

for _name, _kind, _factory, _category, _what in _FRAME_OPS:
    for _reencode in (True, False):
        _build = _frame_op(_name, _factory, _kind, _reencode)
        _build.__doc__ = (f"DeeperForensics-1.0 {_what}, levels 1-5, then "
                          + ("the dataset's XVID and x264 re-encodes." if _reencode else "stored losslessly."))
        operation(_name if _reencode else f"{_name}_lossless", category=_category, version=2 if _reencode else 1,
                  unit="dfo_level", levels=LEVELS, level_range=(1, 5), stochastic=_kind in ("bw", "gnc"),
                  short=_name[4:] + " L{level}" + ("" if _reencode else " lossless"),
                  media=("video",) if _reencode else ("video", "image"),
                  source=f"{SOURCE}: {_kind.upper()} {PARAMS[_kind]}"
                         + ("; then XVID (OpenCV VideoWriter) and x264 defaults, the via_xvid path" if _reencode
                            else "; frames kept lossless (ours)"))(_build)


@operation("dfo_vc", category="compression", version=1, unit="dfo_level", levels=LEVELS, level_range=(1, 5),
           short="vc L{level}", media=("video",),
           source=f"{SOURCE}: VC CRF {PARAMS['vc']} (ffmpeg -i in -crf c: libx264, preset medium)")
def dfo_vc(level: Level, seed: int) -> list[Step]:
    """DeeperForensics-1.0 video compression: libx264 at CRF 30, 32, 35, 38, 40 for levels 1-5."""
    return [EncodeStep(("-c:v", "libx264", "-preset", "medium", "-crf", str(int(_param("vc", level))),
                        "-pix_fmt", "yuv420p", "-x264-params", "threads=4"))]
