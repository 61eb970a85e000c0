"""Still-image and per-frame operations: JPEG sweeps and continuous severities (resize, stretch, blur,
brightness, contrast). They apply to images and to every frame of a video (before it is stored again).

Sources: the JPEG quality set 90-50 with 4:4:4 chroma is DeepFeatureX-SN's (``scripts/prep/filters.py``:
Pillow ``quality=q, subsampling=0``; reference/perturbations.md section 5.1); the 4:2:0 variant, the resize,
stretch, blur, brightness and contrast scales are ours, chosen as the standard implementations.
"""

from __future__ import annotations

import io

import numpy as np

from dfbench.perturbations.base import FilterStep, FrameStep, Level, Step, operation
from dfbench.perturbations.geometry import Resize, Stretch


def _jpeg(quality: int, subsampling: int):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=quality, subsampling=subsampling)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("RGB"))

    return fn


@operation("jpeg", category="jpeg", version=1, unit="jpeg_quality", levels=(90, 80, 70, 60, 50),
           level_range=(1, 100), short="q{level}",
           source="JPEG quality 90, 80, 70, 60, 50 with 4:4:4 chroma (Pillow subsampling=0), as DeepFeatureX-SN "
                  "scripts/prep/filters.py")
def jpeg(jpeg_quality: Level, seed: int) -> list[Step]:
    """Re-save every frame as JPEG at `jpeg_quality` with 4:4:4 chroma (Pillow); lower is stronger."""
    return [FrameStep(_jpeg(int(jpeg_quality), 0), seed, f"jpeg q{jpeg_quality}")]


@operation("jpeg420", category="jpeg", version=1, unit="jpeg_quality", levels=(90, 80, 70, 60, 50),
           level_range=(1, 100), short="q{level} 420",
           source="our choice: as 'jpeg' with 4:2:0 chroma (Pillow subsampling=2), libjpeg's and the platforms' "
                  "default")
def jpeg420(jpeg_quality: Level, seed: int) -> list[Step]:
    """Re-save every frame as JPEG at `jpeg_quality` with 4:2:0 chroma (Pillow); lower is stronger."""
    return [FrameStep(_jpeg(int(jpeg_quality), 2), seed, f"jpeg420 q{jpeg_quality}")]


@operation("resize", category="resolution", version=1, unit="scale", levels=(0.75, 0.5, 0.35, 0.25, 0.15),
           level_range=(0.01, 1.0), integer_levels=False, geometry=lambda s: Resize(float(s)), short="x{level}",
           source="our choice: bicubic (ffmpeg scale) to `scale` times each side, rounded down to even, kept small")
def resize(scale: Level, seed: int) -> list[Step]:
    """Shrink both sides by `scale` (0-1] with bicubic resampling and keep the smaller size."""
    s = float(scale)
    return [FilterStep(f"scale=max(2\\,trunc(iw*{s:g}/2)*2):max(2\\,trunc(ih*{s:g}/2)*2):flags=bicubic")]


def _down_up(scale: float):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    return fn


@operation("resize_updown", category="resolution", version=1, unit="scale", levels=(0.75, 0.5, 0.35, 0.25, 0.15),
           level_range=(0.01, 1.0), integer_levels=False, short="x{level} up",
           source="our choice: shrink by `scale` (area) and enlarge back to the original size (bicubic), OpenCV")
def resize_updown(scale: Level, seed: int) -> list[Step]:
    """Shrink both sides by `scale` and enlarge back: detail lost at the same size."""
    return [FrameStep(_down_up(float(scale)), seed, f"resize_updown {scale}")]


@operation("stretch", category="geometry", version=1, unit="width_factor", levels=(4 / 3,),
           level_range=(0.25, 4.0), integer_levels=False, geometry=lambda f: Stretch(float(f)), short="w x{level}",
           source="our choice, closest to Lu & Ebrahimi's 'stretched aspect ratio' (factor not published): width "
                  "times the factor, bicubic, square pixels")
def stretch(width_factor: Level, seed: int) -> list[Step]:
    """Change the aspect ratio: width times `width_factor`, height kept."""
    f = float(width_factor)
    return [FilterStep(f"scale=max(2\\,trunc(iw*{f:.6g}/2)*2):ih:flags=bicubic,setsar=1")]


def _gaussian_blur(sigma: float):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        return cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)

    return fn


@operation("blur", category="blur", version=1, unit="sigma_px", levels=(0.5, 1.0, 2.0, 3.0, 4.0),
           level_range=(0.1, 50.0), integer_levels=False, short="sigma {level}",
           source="our choice: isotropic Gaussian blur of standard deviation sigma_px pixels (OpenCV, kernel "
                  "from sigma); SIDBench tests sigma 2 and 4")
def blur(sigma_px: Level, seed: int) -> list[Step]:
    """Gaussian blur with standard deviation `sigma_px` pixels."""
    return [FrameStep(_gaussian_blur(float(sigma_px)), seed, f"blur {sigma_px}")]


@operation("brightness", category="brightness", version=1, unit="eq_brightness",
           levels=(0.05, 0.1, 0.15, 0.2, 0.3), level_range=(-1.0, 1.0), integer_levels=False, short="b{level}",
           source="our choice: ffmpeg eq=brightness (added to luma; 0.1 is about +27 RGB levels at mid-tones)")
def brightness(eq_brightness: Level, seed: int) -> list[Step]:
    """Shift luma by `eq_brightness` (ffmpeg eq, -1 to 1); positive brightens."""
    return [FilterStep(f"eq=brightness={float(eq_brightness):g}")]


@operation("contrast", category="contrast", version=1, unit="eq_contrast", levels=(1.1, 1.2, 1.3, 1.4, 1.5),
           level_range=(0.0, 3.0), integer_levels=False, short="c{level}",
           source="our choice: ffmpeg eq=contrast (luma scaled around mid-grey); the graded alternative to "
                  "contrast_up in reference/perturbations.md")
def contrast(eq_contrast: Level, seed: int) -> list[Step]:
    """Scale luma contrast by `eq_contrast` (ffmpeg eq; 1 leaves the frame as it is)."""
    return [FilterStep(f"eq=contrast={float(eq_contrast):g}")]
