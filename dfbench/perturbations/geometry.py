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
class Resize(Geometry):
    """Scale both sides by `scale`, rounded down to an even number, at least 2 (``trunc(iw*s/2)*2``)."""

    scale: float = 0.5
    kind: ClassVar[str] = "resize"

    def size(self, width: int, height: int) -> tuple[int, int]:
        return max(2, int(width * self.scale / 2) * 2), max(2, int(height * self.scale / 2) * 2)

    def map_box(self, box: Box, width: int, height: int) -> Box:
        out_w, out_h = self.size(width, height)
        x1, y1, x2, y2 = box
        return x1 * out_w / width, y1 * out_h / height, x2 * out_w / width, y2 * out_h / height


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
