"""Decoding a still image in Python (Pillow), for `predict` and `data check`; runs go through ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dfbench.errors import MediaError, TooLargeError


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H x W x 3), decoded by Pillow.

    Raises:
        TooLargeError: it declares more pixels than Pillow's decompression-bomb limit (``too_large``).
        MediaError: it cannot be read otherwise.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"{path.name}: too large to decode safely ({exc})".split(" could be")[0]) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{path.name}: cannot read as an image ({exc})") from None
