"""DeepFeatureX-SN's robustness operations besides JPEG (the JPEG sweep is `image_ops.jpeg`).

Every parameter is from mfs-iplab/DeepFeatureX-SN ``scripts/prep/filters.py`` (the ``main`` calls, test set):

- ``GaussNoise`` is a Gaussian *blur*: ``cv2.GaussianBlur(img, (k, k), cv2.BORDER_DEFAULT)``, so sigmaX is the
  value of ``BORDER_DEFAULT``, 4; kernels 3, 7 and 15. Here ``dfxsn_blur``.
- ``Scaling``: ``cv2.resize`` to ``int(side * p / 100)`` with ``INTER_AREA``, p = 50 and 200 (``dfxsn_scale``).
- ``Mirror``: ``cv2.flip(img, -1)``, both axes (``flip_both``).
- ``Rotation``: ``cv2.warpAffine`` with ``getRotationMatrix2D((w / 2, h / 2), angle, 1.0)`` at the same size
  (linear interpolation, black corners), angles 45 and 135 (``rotate``).

The authors read with ``cv2.imread`` (BGR) and wrote PNG; each of these operations treats the three channels
alike, so on RGB frames they give the same pixels.
"""

from __future__ import annotations

import numpy as np

from dfbench.perturbations.base import FrameStep, Level, Step, operation
from dfbench.perturbations.geometry import BothFlip, Rotate, ScalePercent

SOURCE = "DeepFeatureX-SN scripts/prep/filters.py"
BORDER_DEFAULT = 4        # cv2.BORDER_DEFAULT (= BORDER_REFLECT_101), which filters.py passes as sigmaX


def _blur(kernel: int):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        return cv2.GaussianBlur(frame, (kernel, kernel), BORDER_DEFAULT)

    return fn


@operation("dfxsn_blur", category="blur", version=1, unit="kernel", levels=(3, 7, 15), level_range=(1, 99),
           short="k{level}", source=f"{SOURCE} GaussNoise: cv2.GaussianBlur((k, k), sigmaX=BORDER_DEFAULT=4), "
                                    "k = 3, 7, 15 (a blur, whatever its name)")
def dfxsn_blur(kernel: Level, seed: int) -> list[Step]:
    """Gaussian blur with a `kernel` x `kernel` window and sigma 4, as DeepFeatureX-SN's "GaussNoise"."""
    k = int(kernel)
    if k % 2 == 0:
        from dfbench.errors import ConfigError

        raise ConfigError(f"dfxsn_blur needs an odd kernel, got {k}.")
    return [FrameStep(_blur(k), seed, f"dfxsn_blur k{k}")]


def _scale(percent: int):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        size = ScalePercent(percent).size(width, height)
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    return fn


# Levels in order of strength (dfbench's convention): doubling loses less than halving.
@operation("dfxsn_scale", category="resolution", version=1, unit="percent", levels=(200, 50), level_range=(1, 400),
           geometry=lambda p: ScalePercent(float(p)), short="{level}%", media=("image",),
           source=f"{SOURCE} Scaling: cv2.resize to int(side * p / 100), INTER_AREA, p = 50, 200")
def dfxsn_scale(percent: Level, seed: int) -> list[Step]:
    """Resize both sides to `percent` % with OpenCV's area resampling (images only: odd sizes)."""
    return [FrameStep(_scale(int(percent)), seed, f"dfxsn_scale {percent}%")]


def _flip_both(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    return cv2.flip(frame, -1)


@operation("flip_both", category="geometry", version=1, geometry=BothFlip(), short="flip both",
           source=f"{SOURCE} Mirror: cv2.flip(img, -1)")
def flip_both(level: Level, seed: int) -> list[Step]:
    """Mirror left-right and top-bottom at once (a half turn)."""
    return [FrameStep(_flip_both, seed, "flip_both")]


def _rotate(degrees: float):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
        return cv2.warpAffine(frame, matrix, (width, height))

    return fn


@operation("rotate", category="geometry", version=1, unit="degrees", levels=(45, 135), level_range=(-360, 360),
           geometry=lambda d: Rotate(float(d)), short="{level} deg",
           source=f"{SOURCE} Rotation: cv2.warpAffine, getRotationMatrix2D((w/2, h/2), angle, 1.0), same size, "
                  "angles 45, 135")
def rotate(degrees: Level, seed: int) -> list[Step]:
    """Turn the frame counter-clockwise by `degrees` about its centre, at the same size (corners cut, black)."""
    return [FrameStep(_rotate(float(degrees)), seed, f"rotate {degrees}")]
