"""Self-blending (after SBI, Shiohara & Yamasaki, CVPR 2022): the demo set's fakes and the ``sbi`` training recipe."""

from __future__ import annotations

import numpy as np


def self_blend(world: np.ndarray, face: tuple[float, ...], rng: np.random.Generator,
               record: dict[str, str] | None = None) -> np.ndarray:
    """A self-blended fake of `world` (uint8 RGB): a colour-, frequency- and scale-jittered copy of the image
    blended back through a soft elliptical mask fitted to the face box ``(x1, y1, x2, y2)``.

    After SBI (Shiohara & Yamasaki, CVPR 2022): source and target are the same image, so the only artefact is
    the blend itself. The mask needs no landmarks: an ellipse inside the finder's box, blurred.
    `record`, when given, receives ``frequency``: ``blur`` or ``sharpen``, the jitter drawn.
    """
    import cv2

    x1, y1, x2, y2 = face
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    def away_from_one(low: float, high: float) -> float:  # a factor in [1/high, 1/low] or [low, high]
        value = rng.uniform(low, high)
        return value if rng.random() < 0.5 else 1 / value

    source = world.astype(np.float32)
    cast = rng.uniform(8, 18, size=3) * rng.choice([-1, 1], size=3)
    source = source * away_from_one(1.06, 1.14) + cast                            # brightness, colour cast
    gray = source.mean(axis=2, keepdims=True)
    source = gray + (source - gray) * away_from_one(1.1, 1.25)                    # saturation
    blurred = rng.random() < 0.5
    if record is not None:
        record["frequency"] = "blur" if blurred else "sharpen"
    if blurred:
        source = cv2.GaussianBlur(source, (0, 0), rng.uniform(0.6, 1.4))          # frequency: blur
    else:
        soft = cv2.GaussianBlur(source, (0, 0), 1.0)
        source = source + (source - soft) * rng.uniform(0.5, 1.2)                # frequency: sharpen
    ratio = away_from_one(1.02, 1.06)                                             # scale and shift jitter
    shift = rng.uniform(-0.03, 0.03, size=2) * (w, h)
    matrix = np.array([[ratio, 0, (1 - ratio) * cx + shift[0]], [0, ratio, (1 - ratio) * cy + shift[1]]],
                      dtype=np.float32)
    moved = cv2.warpAffine(source, matrix, (world.shape[1], world.shape[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    mask = np.zeros(world.shape[:2], np.float32)
    axes = (int(w * rng.uniform(0.42, 0.52)), int(h * rng.uniform(0.5, 0.62)))
    cv2.ellipse(mask, (int(cx), int(cy + 0.05 * h)), axes, rng.uniform(-8, 8), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * w))[..., None] * rng.uniform(0.9, 1.0)
    return np.clip(world * (1 - mask) + moved * mask, 0, 255).astype(np.uint8)
