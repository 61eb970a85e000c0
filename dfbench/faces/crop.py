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
        faces: score the largest face of a frame, the finder's first (FF++ ``faces[0]``: dlib's order), or all
            faces (frame score = max over them).
        min_relative_area: with ``faces="all"``, faces smaller than this fraction of the largest are skipped.
        aligned: MesoNet's landmark-aligned square (`aligned_crop`) where the face has landmarks; `scale` is
            then MesoNet's ``l_factor``. A face without landmarks (a finder that has none) gets the square box crop.
        interpolation: resampling used to resize the crop to `size`.
        whole_frame: the detector scores whole frames or images (no face finding); the frame is resized
            to `size` x `size` without keeping its aspect ratio.
    """

    size: int
    scale: float = 1.3
    square: bool = True
    faces: Literal["largest", "first", "all"] = "largest"
    min_relative_area: float = 0.0
    interpolation: str = "linear"
    whole_frame: bool = False
    aligned: bool = False

    def __post_init__(self) -> None:
        if self.size < 8 or self.scale <= 0:
            raise ConfigError(f"CropSpec needs size >= 8 and scale > 0, got size={self.size}, scale={self.scale}.")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"Unknown interpolation {self.interpolation!r}; allowed: {', '.join(_INTERPOLATIONS)}.")
        if self.faces not in ("largest", "first", "all"):
            raise ConfigError(f"CropSpec.faces must be 'largest', 'first' or 'all', got {self.faces!r}.")


def select_faces(faces: list[Face], spec: CropSpec) -> list[Face]:
    """The faces of one frame that get scored, largest first."""
    if not faces:
        return []
    if spec.faces == "first":
        return faces[:1]
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


def crop_rect(face: Face, width: int, height: int, spec: CropSpec) -> tuple[int, int, int, int] | None:
    """The rectangle `spec` cuts around `face` in a `width` x `height` frame (the whole frame for whole-frame
    specs), or None where it cuts MesoNet's aligned square instead (`aligned_crop`: a turned square)."""
    if spec.aligned and face.landmarks is not None and not spec.whole_frame:
        return None
    return (0, 0, width, height) if spec.whole_frame else crop_box(face, width, height, spec)


def aligned_face(frame: np.ndarray, face: Face, spec: CropSpec) -> np.ndarray:
    """MesoNet's aligned crop of `face` (which has landmarks), resized to ``spec.size``."""
    assert face.landmarks is not None
    return resize_square(aligned_crop(frame, face.landmarks, spec.scale), spec.size, spec.interpolation)


def crop_face(frame: np.ndarray, face: Face, spec: CropSpec) -> np.ndarray:
    """Cut `face` out of `frame` (uint8 RGB) and resize it to ``spec.size``; returns uint8 RGB, size x size x 3."""
    rect = crop_rect(face, frame.shape[1], frame.shape[0], spec)
    if rect is None:
        return aligned_face(frame, face, spec)
    x1, y1, x2, y2 = rect
    return resize_square(frame[y1:y2, x1:x2], spec.size, spec.interpolation)


# MesoNet's alignment (pipeline.py, FaceFinder.find_coordinates and get_aligned_face): the side is
# K * max(eye-eye, eye-mouth distance) * l_factor with K = 2.2, centred between the nose tip and the nose bridge,
# turned so that the eye-mouth axis is vertical; the frame is reflect-padded where the square leaves it.
MESONET_K = 2.2
_LEFT_EYE, _RIGHT_EYE = range(36, 42), range(42, 48)             # iBUG 300-W indices, as face_recognition
_NOSE_BRIDGE, _NOSE_TIP = range(27, 31), range(31, 36)           # groups them (api.face_landmarks)
_TOP_LIP = [*range(48, 55), 64, 63, 62, 61, 60]
_BOTTOM_LIP = [*range(54, 60), 48, 60, 67, 66, 65, 64]


def aligned_geometry(landmarks: tuple[tuple[float, float], ...]) -> tuple[tuple[int, int], int, float]:
    """MesoNet's ``find_coordinates``: the centre (row, column), the side before `l_factor`, and the rotation
    in degrees, from 68 landmarks."""
    points = np.asarray(landmarks, dtype=np.float64)

    def centre(indices) -> np.ndarray:
        return points[list(indices)].mean(axis=0)

    eye1, eye2 = centre(_LEFT_EYE), centre(_RIGHT_EYE)
    eyes = (eye1 + eye2) / 2
    nose = centre(_NOSE_TIP) / 2 + centre(_NOSE_BRIDGE) / 2
    mouth = (centre(_TOP_LIP) + centre(_BOTTOM_LIP)) / 2
    side = max(float(np.linalg.norm(eye1 - eye2)), float(np.linalg.norm(mouth - eyes))) * MESONET_K
    if mouth[1] == eyes[1]:
        rotation = 90.0 if mouth[0] > eyes[0] else -90.0
    else:
        rotation = float(np.degrees(np.arctan((mouth[0] - eyes[0]) / (mouth[1] - eyes[1]))))
    return (int(np.floor(nose[1])), int(np.floor(nose[0]))), int(np.floor(side)), rotation


def aligned_crop(frame: np.ndarray, landmarks: tuple[tuple[float, float], ...], l_factor: float = 1.3) -> np.ndarray:
    """MesoNet's ``get_aligned_face``: a square around the face, turned upright, before any resize.

    A square of half-side ``floor(sqrt(2) * l / 2)`` (large enough for any rotation) is cut with reflect
    padding, rotated by the eye-mouth angle (``scipy.ndimage.rotate``, cubic spline, the same size), and its
    centre ``l`` x ``l`` is cut again, where ``l = int(side) * l_factor``."""
    from scipy.ndimage import rotate

    (row, col), side, rotation = aligned_geometry(landmarks)
    length = int(side) * l_factor
    half = int(np.floor(np.sqrt(2) * length / 2))
    patch = _reflect_slice(frame, row - half, row + half, col - half, col + half)
    turned = rotate(patch, -rotation, reshape=False)
    low, high = int(np.floor(half - length // 2)), int(np.floor(half + length // 2))
    out = _reflect_slice(turned, low, high, low, high)
    if out.shape[0] < 1 or out.shape[1] < 1:
        raise ValueError(f"landmarks give an empty aligned crop (side {side})")
    return np.ascontiguousarray(out)


def _reflect_slice(image: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` where the range may leave the image: outside it, the image is mirrored
    (``numpy.pad`` reflect, by the same amount on every side, as MesoNet's ``get_image_slice``)."""
    rows, cols = image.shape[:2]
    pad = max(-y0, y1 - rows, -x0, x1 - cols, 0)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), "reflect") if pad else image
    return padded[pad + y0:pad + y1, pad + x0:pad + x1]


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
