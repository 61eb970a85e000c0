"""Crop specs (on each detector's card) and the crop itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from dfbench.errors import ConfigError
from dfbench.faces.finder import Face

# cv2 resamplers, plus Pillow's (the authors of FF++ Xception, Capsule-Forensics and DeepFeatureX resized
# with torchvision's PIL-based Resize, which antialiases when shrinking; cv2's linear does not).
_INTERPOLATIONS = ("linear", "area", "cubic", "nearest", "pil_bilinear", "pil_nearest")


@dataclass(frozen=True)
class CropSpec:
    """How a detector wants its faces cut out of a frame.

    Attributes:
        size: output side in pixels (the detector's input size).
        scale: the box grows by this factor. Square crops take ``scale * max(w, h)`` as their side,
            centred on the box (FaceForensics++ ``get_boundingbox``: the corner is clamped to the frame,
            then the side shrinks to fit). Non-square crops grow each side by ``(scale - 1) / 2`` of
            its length and are clamped to the frame (SBI: scale 1.25 = w/8 and h/8 per side).
        square: square crop (FF++) or box-shaped crop (SBI).
        faces: score the largest face of a frame, or all faces (frame score = max over them).
        min_relative_area: with ``faces="all"``, faces smaller than this fraction of the largest are skipped.
        interpolation: resampling used to resize the crop to `size`.
        whole_frame: the detector scores whole frames or images (no face finding); the frame is resized
            to `size` x `size` without keeping its aspect ratio.
    """

    size: int
    scale: float = 1.3
    square: bool = True
    faces: Literal["largest", "all"] = "largest"
    min_relative_area: float = 0.0
    interpolation: str = "linear"
    whole_frame: bool = False

    def __post_init__(self) -> None:
        if self.size < 8 or self.scale <= 0:
            raise ConfigError(f"CropSpec needs size >= 8 and scale > 0, got size={self.size}, scale={self.scale}.")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"Unknown interpolation {self.interpolation!r}; allowed: {', '.join(_INTERPOLATIONS)}.")
        if self.faces not in ("largest", "all"):
            raise ConfigError(f"CropSpec.faces must be 'largest' or 'all', got {self.faces!r}.")


def select_faces(faces: list[Face], spec: CropSpec) -> list[Face]:
    """The faces of one frame that get scored, largest first."""
    if not faces:
        return []
    ranked = sorted(faces, key=lambda f: -f.area)
    if spec.faces == "largest":
        return ranked[:1]
    floor = spec.min_relative_area * ranked[0].area
    return [f for f in ranked if f.area >= floor]


def crop_box(face: Face, width: int, height: int, spec: CropSpec) -> tuple[int, int, int, int]:
    """Integer crop rectangle ``(x1, y1, x2, y2)``, clamped to a `width` x `height` frame.

    Example:
        >>> crop_box(Face(40, 40, 60, 60, 1.0), 100, 100, CropSpec(size=32, scale=1.5))
        (35, 35, 65, 65)
    """
    w, h = face.x2 - face.x1, face.y2 - face.y1
    if spec.square:
        side = int(max(w, h) * spec.scale)
        cx, cy = int((face.x1 + face.x2) // 2), int((face.y1 + face.y2) // 2)
        x1, y1 = max(cx - side // 2, 0), max(cy - side // 2, 0)
        side = max(1, min(side, width - x1, height - y1))
        return x1, y1, x1 + side, y1 + side
    grow = (spec.scale - 1) / 2
    x1 = max(0, int(face.x1 - w * grow))
    y1 = max(0, int(face.y1 - h * grow))
    x2 = min(width, int(face.x2 + w * grow) + 1)
    y2 = min(height, int(face.y2 + h * grow) + 1)
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def crop_face(frame: np.ndarray, face: Face, spec: CropSpec) -> np.ndarray:
    """Cut `face` out of `frame` (uint8 RGB) and resize it to ``spec.size``; returns uint8 RGB, size x size x 3."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (0, 0, width, height) if spec.whole_frame else crop_box(face, width, height, spec)
    return resize_square(frame[y1:y2, x1:x2], spec.size, spec.interpolation)


def resize_square(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """Resize uint8 RGB `image` to `size` x `size` with the named resampler."""
    import cv2

    if interpolation.startswith("pil_"):
        from PIL import Image

        resample = Image.Resampling.BILINEAR if interpolation == "pil_bilinear" else Image.Resampling.NEAREST
        if image.shape[0] == size and image.shape[1] == size:
            return np.ascontiguousarray(image)
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), resample))
    flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC,
            "nearest": cv2.INTER_NEAREST}[interpolation]
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=flag)


Owner = tuple[str, int]            # (cell id, frame index) of a crop


class SampleCrops(NamedTuple):
    """One sample's crops, ready for the model: what gathering yields, what the face cache keeps and what scoring
    takes, for `run`, `predict` and training alike.

    Attributes:
        sample_id: the sample.
        cells: the ids of the cells gathered.
        indices: the sampled frame indices.
        crops: N x size x size x 3 uint8 RGB (memory-mapped when read from kept crops).
        owners: the (cell, frame) of each crop.
        seen: faces cut per received (cell, frame); a sampled frame that never arrived has no entry.
        failures: cells ffmpeg failed on -> message (their crops, if any, are not scored).
        faces: every face found (or mapped) per received (cell, frame), for the face cache; None when the crops
            came from kept crops.
        seconds: the time gathering took.
        unreadable: why the file could not be probed (then every cell is a decode error), else None.
    """

    sample_id: str
    cells: tuple[str, ...]
    indices: list[int]
    crops: np.ndarray
    owners: list[Owner]
    seen: dict[Owner, int]
    failures: dict[str, str]
    faces: dict[Owner, list[Face]] | None = None
    seconds: float = 0.0
    unreadable: str | None = None


def no_crops(spec: CropSpec) -> np.ndarray:
    """An empty crop array of `spec`'s shape (0 x size x size x 3 uint8)."""
    return np.zeros((0, spec.size, spec.size, 3), np.uint8)
