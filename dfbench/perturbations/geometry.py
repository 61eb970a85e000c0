"""How an operation changes frame geometry, so sizes can be checked and face boxes mapped.

A box is ``(x1, y1, x2, y2)`` in pixels of the frame it was found in, with x to the right and y down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Geometry:
    """Identity geometry: size and boxes unchanged."""

    kind: ClassVar[str] = "identity"

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The output frame size for an input of `width` x `height` pixels."""
        return width, height

    def map_box(self, box: Box, width: int, height: int) -> Box:
        """Map a box found in the input frame (of the given size) to the output frame."""
        return box


@dataclass(frozen=True)
class HorizontalFlip(Geometry):
    """Mirror left-right: x becomes width - x."""

    kind: ClassVar[str] = "hflip"

    def map_box(self, box: Box, width: int, height: int) -> Box:
        x1, y1, x2, y2 = box
        return width - x2, y1, width - x1, y2


@dataclass(frozen=True)
class VerticalFlip(Geometry):
    """Mirror top-bottom: y becomes height - y."""

    kind: ClassVar[str] = "vflip"

    def map_box(self, box: Box, width: int, height: int) -> Box:
        x1, y1, x2, y2 = box
        return x1, height - y2, x2, height - y1


class _Scaling(Geometry):
    """A geometry that scales the frame to `size`: boxes scale by the output over the input size."""

    def map_box(self, box: Box, width: int, height: int) -> Box:
        out_w, out_h = self.size(width, height)
        x1, y1, x2, y2 = box
        return x1 * out_w / width, y1 * out_h / height, x2 * out_w / width, y2 * out_h / height


@dataclass(frozen=True)
class Downscale(Geometry):
    """Divide both sides by `factor`, rounded down to an even number (``trunc(iw/(2f))*2``)."""

    factor: float = 2.0
    kind: ClassVar[str] = "downscale"

    def size(self, width: int, height: int) -> tuple[int, int]:
        return int(width / (2 * self.factor)) * 2, int(height / (2 * self.factor)) * 2

    def map_box(self, box: Box, width: int, height: int) -> Box:
        out_w, out_h = self.size(width, height)
        sx, sy = out_w / width, out_h / height
        x1, y1, x2, y2 = box
        return x1 * sx, y1 * sy, x2 * sx, y2 * sy


IDENTITY = Geometry()


@dataclass(frozen=True)
class Resize(_Scaling):
    """Scale both sides by `scale`, rounded down to an even number, at least 2 (``trunc(iw*s/2)*2``)."""

    scale: float = 0.5
    kind: ClassVar[str] = "resize"

    def size(self, width: int, height: int) -> tuple[int, int]:
        return max(2, int(width * self.scale / 2) * 2), max(2, int(height * self.scale / 2) * 2)


@dataclass(frozen=True)
class Stretch(Geometry):
    """Scale the width by `factor` (rounded down to even), keep the height."""

    factor: float = 4 / 3
    kind: ClassVar[str] = "stretch"

    def size(self, width: int, height: int) -> tuple[int, int]:
        factor = float(f"{self.factor:.6g}")  # the precision the ffmpeg expression is written with
        return max(2, int(width * factor / 2) * 2), height

    def map_box(self, box: Box, width: int, height: int) -> Box:
        sx = self.size(width, height)[0] / width
        x1, y1, x2, y2 = box
        return x1 * sx, y1, x2 * sx, y2


@dataclass(frozen=True)
class BothFlip(Geometry):
    """Mirror both axes (a half turn): x becomes width - x, y becomes height - y."""

    kind: ClassVar[str] = "flip_both"

    def map_box(self, box: Box, width: int, height: int) -> Box:
        x1, y1, x2, y2 = box
        return width - x2, height - y2, width - x1, height - y1


@dataclass(frozen=True)
class ScalePercent(_Scaling):
    """Scale both sides to ``int(side * percent / 100)`` (OpenCV's usual resize arithmetic), at least 1."""

    percent: float = 50.0
    kind: ClassVar[str] = "scale_percent"

    def size(self, width: int, height: int) -> tuple[int, int]:
        return max(1, int(width * self.percent / 100)), max(1, int(height * self.percent / 100))


@dataclass(frozen=True)
class Rotate(Geometry):
    """Turn by `degrees` counter-clockwise about the frame's centre, keeping the frame size (corners are cut): a
    box becomes the bounding box of its turned corners, clamped to the frame."""

    degrees: float = 45.0
    kind: ClassVar[str] = "rotate"

    def map_box(self, box: Box, width: int, height: int) -> Box:
        import math

        x1, y1, x2, y2 = box
        cx, cy = width / 2, height / 2
        cos, sin = math.cos(math.radians(self.degrees)), math.sin(math.radians(self.degrees))
        # OpenCV's getRotationMatrix2D: positive angles turn counter-clockwise on screen (y down)
        corners = [(cos * (x - cx) + sin * (y - cy) + cx, -sin * (x - cx) + cos * (y - cy) + cy)
                   for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        return (max(0.0, min(xs)), max(0.0, min(ys)), min(float(width), max(xs)), min(float(height), max(ys)))


def _even(value: float) -> int:
    """`value` rounded down to an even number, at least 2."""
    return max(2, int(value / 2) * 2)


def _clamped(xs: list[float], ys: list[float], width: int, height: int) -> Box:
    return (max(0.0, min(xs)), max(0.0, min(ys)), min(float(width), max(xs)), min(float(height), max(ys)))


@dataclass(frozen=True)
class RotateZoom(Geometry):
    """Turn by `degrees` counter-clockwise about the centre and enlarge just enough that the turned frame covers the
    whole canvas (no empty corners), at the same size. A box becomes the bounding box of its mapped corners."""

    degrees: float = 3.0
    kind: ClassVar[str] = "rotate_zoom"

    def zoom(self, width: int, height: int) -> float:
        """The smallest scale at which a frame turned by `degrees` still covers a `width` x `height` canvas:
        ``cos a + max(w/h, h/w) * sin a`` for ``a = |degrees|`` folded into [0, 90]."""
        import math

        angle = math.radians(abs(self.degrees) % 180)
        angle = min(angle, math.pi - angle)
        ratio = max(width / height, height / width)
        return math.cos(angle) + ratio * math.sin(angle)

    def matrix(self, width: int, height: int):
        """The 2 x 3 affine matrix (OpenCV's `getRotationMatrix2D` about the centre, with the zoom)."""
        import cv2

        return cv2.getRotationMatrix2D((width / 2, height / 2), self.degrees, self.zoom(width, height))

    def map_box(self, box: Box, width: int, height: int) -> Box:
        m = self.matrix(width, height)
        x1, y1, x2, y2 = box
        corners = [(m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2])
                   for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))]
        return _clamped([c[0] for c in corners], [c[1] for c in corners], width, height)


@dataclass(frozen=True)
class Rotate90(Geometry):
    """A quarter turn clockwise (ffmpeg ``transpose=clock``): the size swaps, and (x, y) goes to (height - y, x)."""

    kind: ClassVar[str] = "rotate90"

    def size(self, width: int, height: int) -> tuple[int, int]:
        return height, width

    def map_box(self, box: Box, width: int, height: int) -> Box:
        x1, y1, x2, y2 = box
        return height - y2, x1, height - y1, x2


@dataclass(frozen=True)
class Window(Geometry):
    """Keep a window of the frame: the largest one of aspect ratio `aspect` (width / height) that fits, or, when
    `aspect` is 0, `keep` times each side; its free margin split by `anchor` (0.5: centred, 0: at the top-left).
    Sides and offsets are rounded down to even numbers (4:2:0 video stores nothing else). With `zoom`, the
    window is enlarged back to the frame's size."""

    aspect: float = 0.0
    keep: float = 1.0
    anchor: tuple[float, float] = (0.5, 0.5)
    zoom: bool = False
    kind: ClassVar[str] = "window"

    def window(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, w, h)`` of the kept window in a `width` x `height` frame."""
        if self.aspect > 0:
            w, h = ((_even(height * self.aspect), _even(height)) if width / height > self.aspect
                    else (_even(width), _even(width / self.aspect)))
        else:
            w, h = _even(width * self.keep), _even(height * self.keep)
        w, h = min(w, width), min(h, height)
        ax, ay = self.anchor
        return int((width - w) * ax / 2) * 2, int((height - h) * ay / 2) * 2, w, h

    def size(self, width: int, height: int) -> tuple[int, int]:
        return (width, height) if self.zoom else self.window(width, height)[2:]

    def map_box(self, box: Box, width: int, height: int) -> Box:
        x0, y0, w, h = self.window(width, height)
        out_w, out_h = self.size(width, height)
        sx, sy = out_w / w, out_h / h
        x1, y1, x2, y2 = box
        return _clamped([(x1 - x0) * sx, (x2 - x0) * sx], [(y1 - y0) * sy, (y2 - y0) * sy], out_w, out_h)


@dataclass(frozen=True)
class Homography(Geometry):
    """A perspective warp at the same size: each output point is the 3 x 3 `corners`-defined homography of an input
    point. `corners` are the four frame corners' destinations as fractions of the size, in the order top-left,
    top-right, bottom-right, bottom-left."""

    corners: tuple[tuple[float, float], ...] = ((0, 0), (1, 0), (1, 1), (0, 1))
    kind: ClassVar[str] = "homography"

    def matrix(self, width: int, height: int):
        """The 3 x 3 matrix that maps input pixels to output pixels."""
        import cv2
        import numpy as np

        src = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
        dst = np.array([[x * width, y * height] for x, y in self.corners], dtype=np.float32)
        return cv2.getPerspectiveTransform(src, dst)

    def map_box(self, box: Box, width: int, height: int) -> Box:
        m = self.matrix(width, height)
        x1, y1, x2, y2 = box
        xs, ys = [], []
        for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2)):
            w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
            xs.append((m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w)
            ys.append((m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w)
        return _clamped(xs, ys, width, height)
