"""Edits a video meets between camera and viewer: small rotations and quarter turns, re-framing crops, burned-in
captions, stickers, and beauty filters.

No benchmark publishes these with parameters; every value here is ours unless a line cites a source, chosen to
span "barely visible" to "what a heavy-handed editor does", and each level is stronger than the one before (the
contract tests check it). Geometry is declared for every operation that moves pixels, so `--faces clean` maps
boxes through it. The face edits (caption level 3, sticker, beautify) find the face with their own fixed locator
(`facezone`), never with the run's finder, and leave a frame without a face unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from dfbench.perturbations.base import FilterStep, FrameStep, Level, Step, operation
from dfbench.perturbations.facezone import LOCATOR, FaceZone, ellipse_mask, face_mask, locate
from dfbench.perturbations.geometry import Rotate90, RotateZoom, Window

# -- rotation ----------------------------------------------------------------------------------------------------


def _rotate_zoom(degrees: float):
    geometry = RotateZoom(degrees)

    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        return cv2.warpAffine(frame, geometry.matrix(width, height), (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    return fn


@operation("rotate_crop", category="geometry", version=1, unit="degrees", levels=(3, 7, 15), level_range=(-89, 89),
           integer_levels=False, geometry=lambda d: RotateZoom(float(d)), short="rot {level}",
           source="ours: a re-framing tilt (3, 7, 15 degrees, counter-clockwise), enlarged just enough to fill the "
                  "frame (cos a + max(w/h, h/w) sin a) so no corner is empty; OpenCV warpAffine, bilinear")
def rotate_crop(degrees: Level, seed: int) -> list[Step]:
    """Turn by `degrees` counter-clockwise and zoom in until the frame is full again (same size, bilinear)."""
    return [FrameStep(_rotate_zoom(float(degrees)), seed, f"rotate_crop {degrees}")]


@operation("rotate90", category="geometry", version=1, geometry=Rotate90(), short="rot 90",
           source="ours: a quarter turn clockwise (a phone video stored sideways), ffmpeg transpose=clock")
def rotate90(level: Level, seed: int) -> list[Step]:
    """Turn every frame a quarter clockwise; width and height swap."""
    return [FilterStep("transpose=clock")]


# -- re-framing crops --------------------------------------------------------------------------------------------


def _window(geometry: Window):
    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        x0, y0, w, h = geometry.window(width, height)
        kept = frame[y0:y0 + h, x0:x0 + w]
        if geometry.zoom:
            return cv2.resize(kept, (width, height), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(kept)

    return fn


@operation("zoom_crop", category="geometry", version=1, unit="keep_fraction", levels=(0.9, 0.75, 0.6),
           level_range=(0.05, 1.0), integer_levels=False, geometry=lambda k: Window(keep=float(k), zoom=True),
           short="zoom {level}",
           source="ours: a centred crop to the fraction of each side, enlarged back to the frame size (bicubic): "
                  "the digital zoom of an editor's re-framing")
def zoom_crop(keep_fraction: Level, seed: int) -> list[Step]:
    """Keep the centred `keep_fraction` of each side and enlarge it back to the frame size (bicubic)."""
    return [FrameStep(_window(Window(keep=float(keep_fraction), zoom=True)), seed, f"zoom_crop {keep_fraction}")]


@operation("reframe", category="geometry", version=1, unit="aspect", levels=(1.0, 0.8, 0.5625),
           level_range=(0.1, 10.0), integer_levels=False, geometry=lambda a: Window(aspect=float(a)),
           short="ar {level}",
           source="ours: the centred crop a platform's re-framing makes, to 1:1, 4:5 and 9:16 (the square, portrait "
                  "feed and story formats), kept at its size; levels in order of strength for landscape sources")
def reframe(aspect: Level, seed: int) -> list[Step]:
    """Crop to the largest centred window of aspect `aspect` (width / height), kept at its size."""
    return [FrameStep(_window(Window(aspect=float(aspect))), seed, f"reframe {aspect}")]


OFF_CENTRE = (0.25, 0.25)   # ours: the window starts a quarter of the free margin from the left and the top


@operation("reframe_offcenter", category="geometry", version=1, unit="aspect", levels=(1.0, 0.8, 0.5625),
           level_range=(0.1, 10.0), integer_levels=False,
           geometry=lambda a: Window(aspect=float(a), anchor=OFF_CENTRE), short="ar {level} off",
           source="ours: as reframe, with the window a quarter of the free margin from the left and top edges "
                  "instead of centred (a crop that follows something else than the face)")
def reframe_offcenter(aspect: Level, seed: int) -> list[Step]:
    """Crop to the largest window of aspect `aspect`, off-centre (a quarter of the margin from the top-left)."""
    return [FrameStep(_window(Window(aspect=float(aspect), anchor=OFF_CENTRE)), seed, f"reframe_offcenter {aspect}")]


# -- captions ----------------------------------------------------------------------------------------------------

# Ours: lines of the kind burned into re-shared clips; one is drawn per video, from the op's seed.
CAPTIONS = (
    "BREAKING: the interview everyone is talking about",
    "wait for the end...",
    "I can't believe he actually said this",
    "Full speech in the comments",
    "This changes everything",
    "Watch before it gets deleted",
    "Exclusive footage from last night",
    "Nobody expected this answer",
)
FONT_FILE = "DejaVuSans-Bold.ttf"


def font_path() -> Path:
    """DejaVu Sans Bold as matplotlib ships it (``mpl-data/fonts/ttf``), found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        from dfbench.errors import ConfigError

        raise ConfigError("The caption operation needs matplotlib's DejaVu fonts: pip install matplotlib.")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / FONT_FILE


@functools.lru_cache(maxsize=1)
def _font_digest() -> str:
    try:
        return hashlib.sha256(font_path().read_bytes()).hexdigest()
    except OSError:
        return "missing"


@functools.lru_cache(maxsize=64)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_path()), size)


def _fitted_font(draw, text: str, size: int, max_width: float):
    """The font at `size`, or smaller until `text` fits in `max_width` pixels."""
    while size > 6 and draw.textlength(text, font=_font(size)) > max_width:
        size = int(size * 0.9)
    return _font(max(6, size))


def _draw_line(draw, text: str, size: int, centre_x: float, bottom: float, width: int, box_alpha: int,
               middle: float | None = None) -> None:
    """One line of `text` centred on `centre_x`, its bottom at `bottom` (or its middle at `middle`)."""
    font = _fitted_font(draw, text, size, 0.92 * width)
    left, top, right, low = draw.textbbox((0, 0), text, font=font, stroke_width=max(1, font.size // 12))
    w, h = right - left, low - top
    x = min(max(2.0, centre_x - w / 2), width - w - 2.0)
    y = bottom - h if middle is None else middle - h / 2
    if box_alpha:
        pad = font.size * 0.25
        draw.rectangle((x - pad, y - pad, x + w + pad, y + h + pad), fill=(0, 0, 0, box_alpha))
    draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255, 255), stroke_width=max(1, font.size // 12),
              stroke_fill=(0, 0, 0, 255))


def _caption(level: int, seed: int):
    pick = np.random.default_rng([seed, 0])
    first, second, third = (CAPTIONS[i] for i in pick.choice(len(CAPTIONS), 3, replace=False))
    jitter_x, jitter_y, jitter_size = pick.uniform(-0.05, 0.05), pick.uniform(-0.02, 0.0), pick.uniform(0.9, 1.1)

    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image, ImageDraw

        height, width = frame.shape[:2]
        base = Image.fromarray(frame).convert("RGBA")
        layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        centre = width * (0.5 + jitter_x)
        bottom = height * (0.93 + jitter_y)
        if level == 1:      # one subtitle line, outlined, no box
            _draw_line(draw, first, round(0.045 * height * jitter_size), centre, bottom, width, 0)
        else:               # two larger lines on a translucent box
            size = round(0.065 * height * jitter_size)
            _draw_line(draw, second, size, centre, bottom, width, 150)
            _draw_line(draw, first, size, centre, bottom - 1.45 * size, width, 150)
        zone = locate(frame) if level >= 3 else None
        if zone is not None:   # a caption across the lower face, centred on the mouth
            mouth_y = (zone.mouth_left[1] + zone.mouth_right[1]) / 2
            size = max(8, round(0.2 * zone.height * jitter_size))
            _draw_line(draw, third, size, zone.centre[0], 0.0, width, 200, middle=mouth_y)
        return np.asarray(Image.alpha_composite(base, layer).convert("RGB"))

    return fn


@operation("caption", category="overlay", version=1, unit="caption_level", levels=(1, 2, 3), level_range=(1, 3),
           stochastic=True, short="caption {level}",
           settings={"font": FONT_FILE, "font_sha256": _font_digest(), "locator": LOCATOR, "captions": CAPTIONS},
           source="ours: burned-in captions in DejaVu Sans Bold (matplotlib's copy) through Pillow's FreeType: "
                  "1 = one outlined subtitle line (4.5 % of the height), 2 = two lines at 6.5 % on a translucent "
                  "box, 3 = level 2 plus a line across the lower face at the mouth (20 % of the face height); text, "
                  "position and size drawn from the seed")
def caption(caption_level: Level, seed: int) -> list[Step]:
    """Burn in a caption: 1 one subtitle line, 2 two larger lines on a box, 3 also a line across the mouth."""
    return [FrameStep(_caption(int(caption_level), seed), seed, f"caption {caption_level}")]


# -- stickers ----------------------------------------------------------------------------------------------------

STICKER_COLOURS = ((255, 204, 77), (255, 120, 180), (90, 200, 255), (130, 230, 120))   # ours: emoji-like fills


STICKER_ANGLE = 40.0     # ours: degrees below the face's horizontal axis, on the viewer's right (the cheek)


def _sticker(diameter: float, seed: int):
    colour = STICKER_COLOURS[int(np.random.default_rng([seed, 1]).integers(len(STICKER_COLOURS)))]
    angle = np.radians(STICKER_ANGLE)     # the same place at every level, so the levels differ in size only

    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        zone = locate(frame)
        if zone is None:
            return frame
        import cv2

        out = frame.copy()
        cx, cy = zone.centre
        x = cx + 0.45 * zone.width * np.cos(angle)       # on the edge of the face, half over it
        y = cy + 0.55 * zone.height * np.sin(angle)
        r = max(2, round(diameter * zone.width / 2))
        centre = (round(x), round(y))
        cv2.circle(out, centre, r, colour, -1, cv2.LINE_AA)
        cv2.circle(out, centre, r, (40, 30, 20), max(1, r // 12), cv2.LINE_AA)
        eye = max(1, r // 7)
        for side in (-1, 1):
            cv2.circle(out, (round(x + side * 0.35 * r), round(y - 0.25 * r)), eye, (40, 30, 20), -1, cv2.LINE_AA)
        cv2.ellipse(out, centre, (max(1, round(0.55 * r)), max(1, round(0.45 * r))), 0, 20, 160, (40, 30, 20),
                    max(1, r // 10), cv2.LINE_AA)
        return out

    return fn


@operation("sticker", category="overlay", version=1, unit="diameter_face_fraction", levels=(0.3, 0.5, 0.7),
           level_range=(0.05, 2.0), integer_levels=False, stochastic=True, short="sticker {level}",
           settings={"locator": LOCATOR, "colours": STICKER_COLOURS, "angle": STICKER_ANGLE},
           source="ours: an opaque emoji-like sticker (filled disc, eyes, smile) of `diameter_face_fraction` x the "
                  "face width, centred on the face's edge at the lower cheek (40 degrees below the face's axis, "
                  "viewer's right) so about half of it covers the face, following the face; colour from the seed")
def sticker(diameter_face_fraction: Level, seed: int) -> list[Step]:
    """Paste an opaque emoji-like sticker of the given size (x face width) on the edge of the face."""
    return [FrameStep(_sticker(float(diameter_face_fraction), seed), seed, f"sticker {diameter_face_fraction}")]


# -- beauty filter -----------------------------------------------------------------------------------------------

# Ours, per strength 1-3: bilateral sigmaColor (grey levels), sigmaSpace (x face width), skin lift and eye lift
# (fractions of the way to white).
BEAUTY = {1: (25.0, 0.02, 0.05, 0.08), 2: (45.0, 0.035, 0.10, 0.15), 3: (75.0, 0.05, 0.15, 0.22)}


def _beautify(strength: int):
    sigma_colour, sigma_space, skin_lift, eye_lift = BEAUTY[strength]

    def fn(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        zone = locate(frame)
        if zone is None:
            return frame
        import cv2

        height, width = frame.shape[:2]
        margin = 0.75 * max(zone.width, zone.height)
        x0, y0 = max(0, int(zone.centre[0] - margin)), max(0, int(zone.centre[1] - margin))
        x1, y1 = min(width, int(zone.centre[0] + margin) + 1), min(height, int(zone.centre[1] + margin) + 1)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return frame
        roi = frame[y0:y1, x0:x1]
        local = _shifted(zone, x0, y0)
        space = max(1.0, sigma_space * zone.width)
        smooth = cv2.bilateralFilter(roi, d=min(2 * round(1.5 * space) + 1, 25), sigmaColor=sigma_colour,
                                     sigmaSpace=space).astype(np.float32)
        skin = face_mask(roi.shape, local)[:, :, None]
        eyes = sum(ellipse_mask(roi.shape, eye, (0.12 * zone.width, 0.07 * zone.width), 0.04 * zone.width)
                   for eye in (local.left_eye, local.right_eye))
        eyes = np.minimum(eyes, 1.0)[:, :, None]
        out = roi.astype(np.float32) * (1 - skin) + smooth * skin
        out += (255.0 - out) * (skin_lift * skin + eye_lift * eyes)
        result = frame.copy()
        result[y0:y1, x0:x1] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return result

    return fn


def _shifted(zone: FaceZone, dx: float, dy: float) -> FaceZone:
    def move(p):
        return p[0] - dx, p[1] - dy

    x1, y1, x2, y2 = zone.box
    return FaceZone((x1 - dx, y1 - dy, x2 - dx, y2 - dy), move(zone.left_eye), move(zone.right_eye), move(zone.nose),
                    move(zone.mouth_left), move(zone.mouth_right))


@operation("beautify", category="face_edit", version=1, unit="strength", levels=(1, 2, 3), level_range=(1, 3),
           short="beauty {level}", settings={"locator": LOCATOR, "strengths": BEAUTY},
           source="ours: a beauty filter inside the face only: edge-preserving smoothing (OpenCV bilateral filter, "
                  "sigmaColor 25/45/75, sigmaSpace 2/3.5/5 % of the face width) through a feathered ellipse, skin "
                  "lifted 5/10/15 % and the eyes 8/15/22 % of the way to white; face enhancement is among the steps "
                  "that hurt detectors most in industry reports")
def beautify(strength: Level, seed: int) -> list[Step]:
    """Smooth and brighten the skin, and brighten the eyes, inside the face (strength 1-3)."""
    return [FrameStep(_beautify(int(strength)), seed, f"beautify {strength}")]
