"""`dfbench predict`: P(fake) for single images or videos, outside any suite.

An image's score is the max over its scored faces (one face unless the card scores all); a video's is the
card's aggregation (mean) over its sampled frames. With ``faces="none"`` each input is taken as an
already-cropped face (or a whole image, for whole-image detectors) and only resized.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfbench.detectors import DetectorAdapter
from dfbench.errors import ConfigError, MediaError, TooLargeError
from dfbench.faces import CropSpec, FaceFinder, crop_face, make_finder, select_faces
from dfbench.faces.crop import resize_square
from dfbench.perturbations import OPERATIONS
from dfbench.video.image import read_image
from dfbench.video.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES, probe_video, sample_indices


@dataclass(frozen=True)
class Prediction:
    """One input's result: `score` is P(fake) or None with the reason in `status`."""

    path: str
    kind: str
    status: str
    score: float | None
    n_frames: int
    n_faces: int


def _crops(frame: np.ndarray, finder: FaceFinder | None, spec: CropSpec) -> list[np.ndarray]:
    if finder is None:
        return [resize_square(frame, spec.size, spec.interpolation)]
    return [crop_face(frame, face, spec) for face in select_faces(finder.find(frame), spec)]


def _score(adapter: DetectorAdapter, crops: list[np.ndarray]) -> list[float]:
    import torch

    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)
    return adapter.predict(batch).tolist()


def predict_paths(adapter: DetectorAdapter, paths: list[Path], faces: str = "find",
                  frames: int = 32) -> list[Prediction]:
    """Score each path with a loaded adapter; unreadable inputs and inputs without faces are statuses."""
    if faces not in ("find", "none"):
        raise ConfigError(f"--faces must be 'find' or 'none', got {faces!r}.")
    spec = adapter.card.crop
    finder = None if faces == "none" or spec.whole_frame else make_finder("mtcnn")
    return [_predict_one(adapter, Path(p), finder, spec, frames) for p in paths]


def _predict_one(adapter: DetectorAdapter, path: Path, finder: FaceFinder | None, spec: CropSpec,
                 frames: int) -> Prediction:
    suffix = path.suffix.lower()
    kind = "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else "unknown"
    if not path.is_file():
        return Prediction(str(path), kind, "missing", None, 0, 0)
    if kind == "unknown":
        return Prediction(str(path), kind, "unsupported_type", None, 0, 0)
    try:
        images = [read_image(path)] if kind == "image" else _video_frames(path, frames)
    except TooLargeError:
        return Prediction(str(path), kind, "too_large", None, 0, 0)
    except MediaError:
        return Prediction(str(path), kind, "decode_error", None, 0, 0)
    frame_scores, n_faces = [], 0
    for image in images:
        crops = _crops(image, finder, spec)
        n_faces += len(crops)
        if crops:
            frame_scores.append(max(_score(adapter, crops)))
    if not frame_scores:
        return Prediction(str(path), kind, "no_face", None, len(images), 0)
    return Prediction(str(path), kind, "ok", float(np.mean(frame_scores)), len(images), n_faces)


def _video_frames(path: Path, frames: int) -> list[np.ndarray]:
    from dfbench.video.engine import CellFailure, CellPlan, SampledFrame, sample_frames

    indices = sample_indices(probe_video(path).frame_count, frames)
    plan = [CellPlan("none-0", tuple(OPERATIONS.get("none").steps(0, 0)))]
    out = []
    for event in sample_frames(path, plan, indices):
        if isinstance(event, CellFailure):
            raise MediaError(event.message)
        if isinstance(event, SampledFrame):
            out.append(event.image)
    return out
