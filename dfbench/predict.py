"""`dfbench predict`: P(fake) for single images or videos, outside any suite.

Each input is gathered and scored exactly as ``dfbench run --suite clean`` would (`dfbench.gather`,
`dfbench.scoring`): the same sampled frames, finder, crops, frame rule (max over a frame's scored faces) and video
rule (the detector card's, as the clean suite says ``aggregation: card``, over the scored frames). With
``faces="none"`` each input is taken as an already-cropped face (or a whole image, for whole-image detectors) and
only resized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dfbench import scoring
from dfbench.detectors import DetectorAdapter
from dfbench.errors import ConfigError, MediaError, TooLargeError
from dfbench.faces import FaceFinder, WholeFrameFinder
from dfbench.gather import Gatherer, choose_finder, clean_suite
from dfbench.video.image import check_image_size
from dfbench.video.probe import IMAGE_SUFFIXES, VIDEO_SUFFIXES

log = logging.getLogger(__name__)
FIND_MODES = ("find", "none")


@dataclass(frozen=True)
class Prediction:
    """One input's result: `score` is P(fake) or None with the reason in `status`."""

    path: str
    kind: str
    status: str
    score: float | None
    n_frames: int
    n_faces: int


def predict_paths(adapter: DetectorAdapter, paths: list[Path], faces: str = "find", frames: int = 32,
                  finder: str | FaceFinder = "card", batch_size: int | None = None) -> list[Prediction]:
    """Score each path with a loaded adapter; unreadable inputs and inputs without faces are statuses.

    Args:
        finder: a finder, or its name (``card``: the detector's authors' finder, where it runs offline)."""
    if faces not in FIND_MODES:
        raise ConfigError(f"--faces must be 'find' or 'none', got {faces!r}.")
    spec = adapter.card.crop
    if faces == "none" or spec.whole_frame:
        chosen: FaceFinder = WholeFrameFinder()
    elif isinstance(finder, str):
        chosen, notice = choose_finder(finder, adapter.card.finder, adapter.card.key, device=adapter.device)
        if notice:
            log.warning(notice)
    else:
        chosen = finder
    gatherer = Gatherer(clean_suite(frames), chosen, spec)
    return [_predict_one(adapter, gatherer, Path(p), batch_size) for p in paths]


def _predict_one(adapter: DetectorAdapter, gatherer: Gatherer, path: Path, batch_size: int | None) -> Prediction:
    suffix = path.suffix.lower()
    kind = "video" if suffix in VIDEO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else "unknown"
    if not path.is_file():
        return Prediction(str(path), kind, "missing", None, 0, 0)
    if kind == "unknown":
        return Prediction(str(path), kind, "unsupported_type", None, 0, 0)
    if kind == "image":
        try:
            check_image_size(path)
        except TooLargeError:
            return Prediction(str(path), kind, "too_large", None, 0, 0)
        except MediaError:
            return Prediction(str(path), kind, "decode_error", None, 0, 0)
    gathered = gatherer.gather_all(path.name, path)
    cell = gatherer.suite.cells[0].id
    if gathered.unreadable is not None or cell in gathered.failures:
        return Prediction(str(path), kind, "decode_error", None, 0, 0)
    frame_scores = scoring.score(adapter, gathered, batch_size)
    received = [i for i in gathered.indices if (cell, i) in gathered.seen]
    scored = [frame_scores[(cell, i)][0] for i in received if (cell, i) in frame_scores]
    n_faces = sum(gathered.seen[(cell, i)] for i in received)
    if not scored:
        return Prediction(str(path), kind, "no_face", None, len(received), 0)
    valid = [s for s in scored if scoring.is_valid(s)]
    if not valid:
        return Prediction(str(path), kind, "bad_score", None, len(received), n_faces)
    rule = scoring.video_rule(gatherer.suite.aggregation, adapter.card.aggregation)
    video = scoring.video_score(valid, scoring.sample_rule(rule, kind))
    return Prediction(str(path), kind, "ok", video, len(received), n_faces)
