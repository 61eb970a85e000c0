"""The offline demo set: short H.264 clips made from public-domain face photos that ship inside dependencies.

Each clip films one photo (scikit-image's ``astronaut``, NASA; matplotlib's ``grace_hopper``, US Navy;
both public domain) with a moving virtual camera: pan and zoom, slow lighting and white-balance drift,
and sensor noise. Its fake twin is the same clip, frame for frame, with the face region self-blended
in the style of SBI (Shiohara & Yamasaki, CVPR 2022): a colour- and scale-jittered copy of the face is
blended back through a soft elliptical mask. Real and fake twins share a ``group`` and a split, so the
train/test split is by clip. Everything is seeded; the set is built once into the user cache.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfbench.cache import cache_root
from dfbench.data.blend import self_blend
from dfbench.data.manifest import Dataset, validate
from dfbench.errors import MediaError
from dfbench.video.ffmpeg import base_command, input_url, last_error_line

log = logging.getLogger(__name__)

DEMO_VERSION = 4
WIDTH, HEIGHT, FPS, N_FRAMES = 854, 480, 20, 40
DEFAULT_CLIPS, TRAIN_FRACTION = 48, 3 / 4


def demo_dataset(n_clips: int = DEFAULT_CLIPS, seed: int = 0) -> Dataset:
    """The demo set (2 x `n_clips` videos), built into the cache on first use."""
    folder = cache_root() / f"demo-v{DEMO_VERSION}-n{n_clips}-s{seed}"
    if not (folder / "manifest.csv").is_file():
        build_demo(folder, n_clips, seed)
    table = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    return validate(table, "demo", root=folder)


def build_demo(folder: Path, n_clips: int = DEFAULT_CLIPS, seed: int = 0, workers: int | None = None) -> Path:
    """Render the demo set into `folder` (atomically: a half-built set is never visible)."""
    if n_clips < 2:
        raise ValueError("the demo set needs at least 2 clips (one per split)")
    photos = _photos()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=folder.parent))
    try:
        (tmp / "real").mkdir()
        (tmp / "fake").mkdir()
        jobs = [(tmp, i, seed, photos[i % len(photos)]) for i in range(n_clips)]
        workers = workers or min(2, os.cpu_count() or 1)
        # spawn, not fork: the parent has OpenCV worker threads (the face finder), which fork would copy
        # in a locked state.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            kinds = list(pool.map(_render_clip_job, jobs))
        n_train = max(1, min(n_clips - 1, round(n_clips * TRAIN_FRACTION)))
        rows = []
        for i in range(n_clips):
            for label, kind in ((0, "real"), (1, "fake")):
                rows.append({"sample_id": f"{kind}/clip_{i:03d}", "path": f"{kind}/clip_{i:03d}.mp4",
                             "label": label, "split": "train" if i < n_train else "test",
                             "method": f"sbi_{kinds[i]}" if label else "", "group": f"clip_{i:03d}"})
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def export_demo(out: Path, n_clips: int = DEFAULT_CLIPS, seed: int = 0) -> Path:
    """Copy the demo set to `out` as ``real/`` + ``fake/`` folders plus ``manifest.csv`` (with splits)."""
    source = cache_root() / f"demo-v{DEMO_VERSION}-n{n_clips}-s{seed}"
    demo_dataset(n_clips, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("real", "fake"):
        shutil.copytree(source / name, out / name, dirs_exist_ok=True)
    shutil.copyfile(source / "manifest.csv", out / "manifest.csv")
    return out


# -- the photos ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Photo:
    name: str
    image: np.ndarray          # uint8 RGB
    face: tuple[float, float, float, float]   # x1, y1, x2, y2


def _photos() -> list[_Photo]:
    from matplotlib import cbook
    from PIL import Image
    from skimage import data as skdata

    from dfbench.faces.finder import MTCNNFinder

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        hopper = np.asarray(img.convert("RGB"))
    images = {"astronaut": np.asarray(skdata.astronaut()), "grace_hopper": hopper}
    finder = MTCNNFinder(max_side=1024, min_face_px=40)
    photos = []
    for name, image in images.items():
        faces = finder.find(image)
        if not faces:
            raise MediaError(f"demo: no face found in the {name} photo")
        f = max(faces, key=lambda x: x.area)
        photos.append(_Photo(name, image, (f.x1, f.y1, f.x2, f.y2)))
    return photos


# -- rendering one clip -------------------------------------------------------------------------------

def _render_clip_job(job: tuple[Path, int, int, _Photo]) -> str:
    """Render one clip's real and fake videos; returns the fake's frequency jitter (``blur`` or ``sharpen``)."""
    import cv2

    cv2.setNumThreads(1)
    folder, index, seed, photo = job
    rng = np.random.default_rng([seed, index, DEMO_VERSION])
    world, face = _world(photo, rng)
    record: dict[str, str] = {}
    fake_world = self_blend(world, face, rng, record)
    cameras = _camera_path(world.shape, face, rng)
    names = [folder / "real" / f"clip_{index:03d}.mp4", folder / "fake" / f"clip_{index:03d}.mp4"]
    encoders = [_open_encoder(path) for path in names]
    try:
        noise = np.rint(rng.standard_normal((HEIGHT + 64, WIDTH + 64, 3), dtype=np.float32) * rng.uniform(2.0, 5.0))
        # Signed sensor noise as two saturating uint8 steps (add the positive part, subtract the negative).
        lift, drop = np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)
        light = _lighting(rng)
        for t, matrix in enumerate(cameras):
            dy, dx = rng.integers(0, 64, size=2)
            window = (slice(dy, dy + HEIGHT), slice(dx, dx + WIDTH))
            lut = light(t / (N_FRAMES - 1))
            for enc, src in zip(encoders, (world, fake_world), strict=True):
                frame = cv2.warpAffine(src, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT_101)
                frame = cv2.LUT(frame, lut)
                frame = cv2.subtract(cv2.add(frame, lift[window]), drop[window])
                assert enc.stdin is not None
                enc.stdin.write(frame.tobytes())
    finally:
        for enc, path in zip(encoders, names, strict=True):
            _close_encoder(enc, path)
    return record["frequency"]


def _world(photo: _Photo, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, ...]]:
    """The scene the camera films: the photo (maybe mirrored), scaled so the face is 28-45 % of the frame
    height, pasted with a feathered edge on a smooth backdrop (a colour gradient with soft blotches)."""
    import cv2

    image, (x1, y1, x2, y2) = photo.image, photo.face
    if rng.random() < 0.5:
        w = image.shape[1]
        image, (x1, x2) = np.ascontiguousarray(image[:, ::-1]), (w - x2, w - x1)
    canvas_w, canvas_h = int(WIDTH * 1.5), int(HEIGHT * 1.5)
    ramp = np.linspace(0.0, 1.0, canvas_w, dtype=np.float32)[None, :, None]
    top, bottom = rng.uniform(40, 200, size=(2, 3)).astype(np.float32)
    blotches = cv2.resize(rng.uniform(-25, 25, size=(6, 9, 3)).astype(np.float32), (canvas_w, canvas_h),
                          interpolation=cv2.INTER_CUBIC)
    world = np.broadcast_to(top + (bottom - top) * ramp, (canvas_h, canvas_w, 3)) + blotches
    scale = HEIGHT * rng.uniform(0.28, 0.45) / (y2 - y1)
    photo_img = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA).astype(np.float32)
    ph, pw = photo_img.shape[:2]
    # Put the face centre somewhere in the middle half of the canvas.
    fx, fy = (x1 + x2) / 2 * scale, (y1 + y2) / 2 * scale
    ox = int(rng.uniform(0.35, 0.65) * canvas_w - fx)
    oy = int(rng.uniform(0.4, 0.6) * canvas_h - fy)
    alpha = np.zeros((ph, pw), np.float32)
    alpha[6:-6, 6:-6] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 3)[..., None]
    cx0, cy0, cx1, cy1 = max(ox, 0), max(oy, 0), min(ox + pw, canvas_w), min(oy + ph, canvas_h)
    src = (slice(cy0 - oy, cy1 - oy), slice(cx0 - ox, cx1 - ox))
    region = world[cy0:cy1, cx0:cx1]
    world[cy0:cy1, cx0:cx1] = region * (1 - alpha[src]) + photo_img[src] * alpha[src]
    box = (x1 * scale + ox, y1 * scale + oy, x2 * scale + ox, y2 * scale + oy)
    return np.clip(world, 0, 255).astype(np.uint8), box


def _camera_path(shape: tuple[int, ...], face: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """One affine world-to-frame matrix per frame: a linear pan and zoom that keeps the face in view."""
    world_h, world_w = shape[:2]
    fx, fy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    zooms = rng.uniform(1.0, 1.25, size=2)
    ends = []
    for zoom in zooms:
        half_w, half_h = WIDTH / 2 / zoom, HEIGHT / 2 / zoom
        cx = np.clip(fx + rng.uniform(-0.25, 0.25) * half_w, half_w, world_w - half_w)
        cy = np.clip(fy + rng.uniform(-0.2, 0.2) * half_h, half_h, world_h - half_h)
        ends.append((cx, cy))
    mats = []
    for t in np.linspace(0.0, 1.0, N_FRAMES):
        ease = 0.5 - 0.5 * np.cos(np.pi * t)
        zoom = zooms[0] + (zooms[1] - zooms[0]) * ease
        cx = ends[0][0] + (ends[1][0] - ends[0][0]) * ease
        cy = ends[0][1] + (ends[1][1] - ends[0][1]) * ease
        mats.append(np.array([[zoom, 0, WIDTH / 2 - zoom * cx], [0, zoom, HEIGHT / 2 - zoom * cy]], dtype=np.float32))
    return mats


def _lighting(rng: np.random.Generator):
    """A function of time t in [0, 1] giving a per-channel LUT: slow exposure and white-balance drift."""
    phase = rng.uniform(0, 2 * np.pi, size=3)
    amplitude = rng.uniform(0.02, 0.06)
    exposure = rng.uniform(-0.08, 0.08)
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0

    def lut(t: float) -> np.ndarray:
        gains = 1 + exposure * t + amplitude * np.sin(2 * np.pi * t + phase)
        return np.clip(levels * gains[None, :] * 255.0, 0, 255).astype(np.uint8).reshape(256, 1, 3)

    return lut


def _open_encoder(path: Path) -> subprocess.Popen:
    cmd = base_command() + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
                            "-i", "pipe:0", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                            "-pix_fmt", "yuv420p", "-x264-params", "threads=1", input_url(path)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _close_encoder(proc: subprocess.Popen, path: Path) -> None:
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.close()
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise MediaError(f"demo: encoding {path.name} failed: {last_error_line(err)}")
