"""Still images in Python (Pillow): decoding for `data check`, and the size check every reader makes first
(decoding for runs and `predict` goes through ffmpeg)."""

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

    check_image_size(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"{path.name}: too large to decode safely ({exc})".split(" could be")[0]) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{path.name}: cannot read as an image ({exc})") from None


def check_image_size(path: Path) -> None:
    """Refuse an image that declares more pixels than Pillow's decompression-bomb limit, from its header only.

    Raises:
        TooLargeError: it is too large to decode safely (``too_large``).
        MediaError: its header cannot be read.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError as exc:
        raise TooLargeError(f"{path.name}: too large to decode safely ({exc})".split(" could be")[0]) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{path.name}: cannot read as an image ({exc})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise TooLargeError(f"{path.name}: too large to decode safely ({width * height} pixels, more than "
                            f"Pillow's limit of {limit})")
