"""``faces: clean``: faces found once in the clean frame, carried into every perturbed frame by geometry.

Landmarks, where a finder gives them, move with their face, each as a box of no size.

Each operation declares how it changes the frame (`perturbations.geometry`): flips mirror boxes, resizes scale
them. A cell's boxes go through its operations' geometries in order. Every size-changing operation here keeps
the whole field of view, so when the frame that comes back is not the size the declared geometry predicts
(a platform profile that caps the long side, an even-size rounding), the box is scaled by the actual over the
predicted size as well.
"""

from __future__ import annotations

from collections.abc import Sequence

from dfbench.faces.finder import Face
from dfbench.perturbations.geometry import Geometry


def map_faces(faces: Sequence[Face], geometries: Sequence[Geometry], clean_size: tuple[int, int],
              out_size: tuple[int, int]) -> list[Face]:
    """`faces` found in a clean frame of `clean_size` (width, height), in the pixels of the perturbed frame; a face
    the operations moved out of the frame entirely (a re-framing crop) is left out.

    >>> from dfbench.perturbations.geometry import HorizontalFlip
    >>> map_faces([Face(10, 20, 30, 60, 0.99)], [HorizontalFlip()], (100, 80), (100, 80))
    [Face(x1=70.0, y1=20.0, x2=90.0, y2=60.0, confidence=0.99)]
    """
    width, height = clean_size
    boxes = [(f.x1, f.y1, f.x2, f.y2) for f in faces]
    # a landmark or keypoint maps as a box of no size (its position; a flip does not swap the keypoints' names)
    points = [[list(f.landmarks or ()), list(f.keypoints or ())] for f in faces]
    for geometry in geometries:
        boxes = [geometry.map_box(box, width, height) for box in boxes]
        points = [[[geometry.map_box((x, y, x, y), width, height)[:2] for x, y in group] for group in face]
                  for face in points]
        width, height = geometry.size(width, height)
    sx, sy = out_size[0] / width, out_size[1] / height

    def scaled(group: list, present: object) -> tuple | None:
        return tuple((x * sx, y * sy) for x, y in group) if present is not None else None

    # a face that a crop left outside the frame (its clamped box has no area) is not in the perturbed frame
    return [Face(x1 * sx, y1 * sy, x2 * sx, y2 * sy, f.confidence, scaled(moved[0], f.landmarks),
                 scaled(moved[1], f.keypoints))
            for (x1, y1, x2, y2), moved, f in zip(boxes, points, faces, strict=True) if x2 > x1 and y2 > y1]
