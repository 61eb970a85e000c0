"""Screen recapture: a video played on a display and filmed with a phone, approximated frame by frame.

Each frame goes through, in order (every value ours; ScreenDeepfakeBench, RAID 2026, films real displays and
publishes no simulation parameters):

1. the camera's view of the screen: a perspective warp (the camera below and to one side of the screen, so the
   top edge is shorter), dark bezel outside the screen;
2. moire: the screen's RGB stripe sub-pixels (one colour per third of a pixel, a dark gap between rows) seen
   through camera pixels of a slightly different pitch. Each camera pixel integrates the sub-pixel pattern over
   its footprint (a box of the warp's local scale, in screen pixels), which beats against the grid; the exact
   integral of the stripe pattern gives the beat without rendering the screen at sub-pixel resolution;
3. the display's and camera's tone curves: a gamma and a colour cast (per-channel gains);
4. the camera lens: a slight Gaussian blur; its sensor: Gaussian noise, re-drawn every frame (seeded);
5. the phone's encoder: libx264 at a camera-like CRF (the step after this module's frame step).
"""

from __future__ import annotations

import numpy as np

from dfbench.perturbations.base import EncodeStep, FrameStep, Level, Step, operation
from dfbench.perturbations.geometry import Homography

# Ours, per level 1-3: corner inset (fraction of the size), moire strength, gamma, RGB gains, blur sigma (px),
# noise sigma (grey levels), x264 CRF.
LEVELS = {
    1: (0.02, 0.25, 1.05, (1.02, 1.00, 0.97), 0.5, 1.5, 20),
    2: (0.04, 0.45, 1.12, (1.04, 1.00, 0.93), 0.8, 3.0, 23),
    3: (0.07, 0.65, 1.20, (1.06, 1.00, 0.90), 1.2, 5.0, 26),
}
BEZEL = (24, 24, 26)        # ours: the dark frame around the screen
ROW_GAP, STRIPE_FILL = 0.25, 0.9    # ours: the dark share of each pixel row; the lit share of each sub-pixel stripe


def geometry(level: Level) -> Homography:
    """Where the screen's corners land in the camera frame (top-left, top-right, bottom-right, bottom-left)."""
    a = LEVELS[int(level)][0]
    return Homography(((1.5 * a, a), (1 - 2.5 * a, 1.5 * a), (1 - a, 1 - a), (a, 1 - 0.5 * a)))


def _box_integral(x: np.ndarray, offset: float, width: float) -> np.ndarray:
    """The integral from 0 to `x` of a pattern of period 1 that is 1 on [offset, offset + width) and 0 elsewhere."""
    whole = np.floor(x)
    part = x - whole
    return whole * width + np.clip(part - offset, 0.0, width)


def _response(coord: np.ndarray, footprint: float, offset: float, width: float) -> np.ndarray:
    """The mean of that pattern over [coord - footprint/2, coord + footprint/2], divided by its overall mean."""
    high = _box_integral(coord + footprint / 2, offset, width)
    low = _box_integral(coord - footprint / 2, offset, width)
    return (high - low) / (footprint * width)


def _recapture(level: int):
    _, moire, gamma, gains, blur, noise, _ = LEVELS[level]
    homography = geometry(level)

    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        matrix = homography.matrix(width, height)
        warped = cv2.warpPerspective(frame, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=BEZEL).astype(np.float32)
        inside = cv2.warpPerspective(np.ones((height, width), np.float32), matrix, (width, height),
                                     flags=cv2.INTER_LINEAR, borderValue=0.0)
        # screen coordinates (in screen pixels) of every camera pixel's centre, and the footprint's size
        inverse = np.linalg.inv(matrix)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        w = inverse[2, 0] * xs + inverse[2, 1] * ys + inverse[2, 2]
        u = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]) / w
        v = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]) / w
        footprint = float(np.sqrt(abs(np.linalg.det(inverse[:2, :2]))))
        rows = _response(v, footprint, ROW_GAP, 1.0 - ROW_GAP)
        for channel in range(3):
            stripes = _response(u, footprint, channel / 3, STRIPE_FILL / 3)
            pattern = 1.0 + moire * (rows * stripes - 1.0) * inside
            warped[:, :, channel] *= pattern
        out = 255.0 * np.power(np.clip(warped, 0, None) / 255.0, gamma) * np.array(gains, dtype=np.float32)
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=blur, borderType=cv2.BORDER_REFLECT_101)
        out += rng.normal(0.0, noise, out.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    return fn


def camera_encode(crf: int) -> EncodeStep:
    """A phone camera's H.264 (ours: libx264 preset medium at `crf`, yuv420p, threads pinned)."""
    return EncodeStep(("-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
                       "-x264-params", "threads=4"))


@operation("recapture", category="recapture", version=1, unit="recapture_level", levels=(1, 2, 3), level_range=(1, 3),
           stochastic=True, geometry=geometry, media=("video",), short="recapture {level}",
           settings={"levels": LEVELS, "bezel": BEZEL, "row_gap": ROW_GAP, "stripe_fill": STRIPE_FILL},
           source="ours: screen recapture approximated (perspective warp with 2/4/7 % corner insets, moire of RGB "
                  "stripe sub-pixels at strength 0.25/0.45/0.65, gamma 1.05/1.12/1.2 and a warm cast, blur sigma "
                  "0.5/0.8/1.2 px, sensor noise sigma 1.5/3/5, then libx264 CRF 20/23/26)")
def recapture(recapture_level: Level, seed: int) -> list[Step]:
    """Film the video off a screen: perspective, moire, tone and colour shift, blur, noise, a camera encode."""
    level = int(recapture_level)
    return [FrameStep(_recapture(level), seed, f"recapture {level}"), camera_encode(LEVELS[level][6])]
