"""A found face: what every finder returns and every crop reads."""

from __future__ import annotations

from dataclasses import dataclass, field

Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """A found face: box corners in pixels of the frame (x right, y down) and the finder's confidence."""

    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float
    landmarks: tuple[Point, ...] | None = field(default=None, repr=False)  # 68 (x, y), iBUG 300-W order, or none
    # the five points of MTCNN and RetinaFace: left eye, right eye, nose, left and right mouth corner (image left
    # and right), or none; no crop reads them
    keypoints: tuple[Point, ...] | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)
