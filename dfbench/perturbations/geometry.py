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
