"""Scoring: crops to P(fake) per face, per frame and per video, the same way for `run`, `predict` and training.

- **Input**: a batch of uint8 crops (N x H x W x 3) becomes float N x 3 x H x W in [0, 1] on the model's device
  (`to_model_input`, the one place this conversion is written); each adapter normalises it itself.
- **Batches**: faces per batch from `resolve_batch_size`; on CUDA a sample's last batch is padded to one of four
  shapes (`padded_rows`); batches launch without waiting (`start`) and are collected later (`frame_scores`).
- **Frame rule**: a frame's score is the max over its scored faces (one face unless the card asks for all).
- **Video rule**: a video's score is the suite's aggregation (`dfbench.metrics.aggregate`) over its scored frames.
"""

from __future__ import annotations

import functools
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dfbench import metrics
from dfbench.errors import ConfigError
from dfbench.faces import Owner, SampleCrops
from dfbench.perturbations import OPERATIONS

if TYPE_CHECKING:
    import torch

    from dfbench.detectors import DetectorAdapter
    from dfbench.perturbations.adversarial import Attacker

FrameScore = tuple[float, "str | None"]      # P(fake), and the class probabilities as JSON for adapters with classes


def resolve_batch_size(batch_size: int | None, device: str) -> int:
    """Faces per inference batch: as asked, else the size that ran fastest in `benchmarks/adapters.py`: 16 on a
    CPU (larger batches were slower there for effb2, bf16, 2 cores), 256 on CUDA (fastest for every adapter at
    bf16 on an H100), 32 elsewhere."""
    if batch_size is not None:
        return batch_size
    return 16 if device == "cpu" else 256 if device.startswith("cuda") else 32


def padded_rows(n: int, batch_size: int, device: str) -> int:
    """The rows a batch of `n` crops is run with: on CUDA, `n` rounded up to a quarter of `batch_size`.

    A sample's last batch holds whatever is left of its crops, so nearly every sample would bring the model a batch
    size it has not seen; on CUDA each new input shape makes cuDNN choose (and build) a plan for every convolution
    again while the GPU idles. Rounding up keeps the shapes to at most four; the padding rows are zeros whose
    scores are dropped. On the CPU a new shape costs little and padding costs compute, so nothing is padded."""
    if not device.startswith("cuda") or n >= batch_size:
        return n
    step = max(1, batch_size // 4)
    return min(batch_size, -(-n // step) * step)


def to_model_input(crops: np.ndarray | torch.Tensor, device: str, pin: bool = False) -> torch.Tensor:
    """uint8 crops N x H x W x 3 as float N x 3 x H x W in [0, 1] on `device`.

    The batch travels as uint8 (a quarter of float32's bytes), from pinned memory when `pin`, and becomes float on
    the device; permuting leaves it channels-last, as the models are."""
    import torch

    batch = torch.from_numpy(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
    if pin and batch.device.type == "cpu":          # crops cut on the device are there already
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)


class Scoring(NamedTuple):
    """A sample's crops handed to the model; on CUDA its batches may still be running."""

    gathered: SampleCrops
    batches: list[tuple[np.ndarray, Any, Any]]     # (crop indices, scores, class probabilities or None)
    seconds: float                                  # spent launching

    @property
    def n_scored(self) -> int:
        return sum(len(ids) for ids, _, _ in self.batches)


def start(adapter: DetectorAdapter, gathered: SampleCrops, batch_size: int | None = None,
          attacker: Attacker | None = None) -> Scoring:
    """Hand a sample's crops to the model in batches, without waiting for results; crops of failed cells are
    left out. The outputs stay on the device, so the GPU works through the batches while this process moves on
    (to the next sample's crops); `frame_scores` copies them back. The crops of adversarial cells are attacked
    first, by `attacker` (`perturbations.adversarial`), and their attacked copies are scored."""
    started = time.perf_counter()
    owners, failures = gathered.owners, gathered.failures
    attacked = set(attacker.attacks) if attacker is not None else set()
    if attacker is None and any(c.split("+")[-1].startswith(_attack_prefixes()) for c in gathered.cells):
        raise ConfigError("A suite with adversarial cells needs an attacker to score them (dfbench run makes one).")
    keep = np.array([i for i, (cell, _) in enumerate(owners) if cell not in failures and cell not in attacked],
                    dtype=np.int64)
    every = len(keep) == len(gathered.crops)       # then a batch is a slice: a view, not a copy
    size = resolve_batch_size(batch_size, adapter.device)
    batches = []
    if attacker is not None:
        for cell in sorted(attacked.intersection(gathered.cells).difference(failures)):
            ids = np.array([i for i, (c, _) in enumerate(owners) if c == cell], dtype=np.int64)
            if len(ids):
                batches.extend(_attacked(adapter, attacker, cell, gathered.sample_id, gathered.crops[ids], ids, size))
    for first in range(0, len(keep), size):
        batch_ids = keep[first:first + size]
        crops = gathered.crops[first:first + size] if every else gathered.crops[batch_ids]
        rows = padded_rows(len(batch_ids), size, adapter.device)
        if rows > len(batch_ids):
            crops = _padded(crops, rows)
        batch = to_model_input(crops, adapter.device, pin=adapter.device.startswith("cuda"))
        scores, probs = adapter.predict_all(batch, copy_back=False)
        n = len(batch_ids)
        batches.append((batch_ids, scores[:n], None if probs is None else probs[:n]))
    return Scoring(gathered, batches, time.perf_counter() - started)


def _padded(crops: Any, rows: int) -> Any:
    """`crops` (a numpy array or a tensor) with zero crops added up to `rows`."""
    if isinstance(crops, np.ndarray):
        return np.concatenate([crops, np.zeros((rows - len(crops), *crops.shape[1:]), crops.dtype)])
    import torch

    return torch.cat([crops, crops.new_zeros((rows - len(crops), *crops.shape[1:]))])


@functools.cache
def _attack_prefixes() -> tuple[str, ...]:
    """``"<op>-"`` for every adversarial operation: how an attack cell's id ends (asked once per process)."""
    return tuple(f"{k}-" for k in OPERATIONS.names() if OPERATIONS.get(k).attack is not None)


def _attacked(adapter: DetectorAdapter, attacker: Attacker, cell_id: str, sample_id: str, crops: np.ndarray,
              ids: np.ndarray, size: int) -> list[tuple[np.ndarray, Any, Any]]:
    """One adversarial cell's crops of one sample, attacked in batches of `size` (on the surrogate for a transfer
    cell) and scored on `adapter`: (crop ids, P(fake), class probabilities) per batch, left on the device."""
    from dfbench.perturbations.adversarial import perturb

    attack, label = attacker.attacks[cell_id], attacker.label(sample_id)
    source = attacker.model_for(cell_id, adapter)
    noise = attacker.start(cell_id, sample_id, (len(ids), 3, crops.shape[1], crops.shape[2]))
    out = []
    for first in range(0, len(ids), size):
        batch = to_model_input(crops[first:first + size], source.device)
        start = None if noise is None else noise[first:first + size]
        attacked = perturb(source, batch, label, attack, start).to(adapter.device)
        scores, probs = adapter.predict_all(attacked, copy_back=False)
        out.append((ids[first:first + size], scores, probs))
    return out


def frame_scores(scoring: Scoring) -> dict[Owner, FrameScore]:
    """Wait for the model's outputs; the frame rule: a frame's score is the max over its faces, with the class
    probabilities (JSON) of that face for adapters that have classes. A non-finite score for any face makes the
    frame's score NaN (reported as ``bad_score``)."""
    owners = scoring.gathered.owners
    per_face: dict[Owner, list[FrameScore]] = defaultdict(list)
    for batch_ids, scores, probs in scoring.batches:
        values = scores.cpu().tolist()
        rows = None if probs is None else probs.cpu().tolist()
        for j, i in enumerate(batch_ids.tolist()):
            per_face[owners[i]].append((values[j], None if rows is None else json.dumps(rows[j])))
    return {key: max(v) if np.isfinite([s for s, _ in v]).all() else (float("nan"), None)
            for key, v in per_face.items()}


def score(adapter: DetectorAdapter, gathered: SampleCrops, batch_size: int | None = None) -> dict[Owner, FrameScore]:
    """`start` and `frame_scores` in one call: every scored frame of a gathered sample."""
    return frame_scores(start(adapter, gathered, batch_size))


def is_valid(value: float | None) -> bool:
    """Whether a frame score is a usable P(fake): finite and in [0, 1] (else the frame is ``bad_score``)."""
    return value is not None and bool(np.isfinite(value)) and 0.0 <= value <= 1.0


def video_rule(suite_rule: str, card_rule: str) -> str:
    """The video rule of a run: the detector card's (its authors') where the suite says ``card``, else the
    suite's fixed rule."""
    return card_rule if suite_rule == "card" else suite_rule


def sample_rule(rule: str, media: str) -> str:
    """The rule for one sample: a still image is scored by its one frame (``mean``), whatever the video rule (a
    share-of-frames rule such as MesoNet's ``vote`` would make it 0 or 1)."""
    return "mean" if media == "image" else rule


def video_score(scores: Sequence[float], aggregation: str = "mean") -> float:
    """The video rule: one score from the scores of a video's scored frames (`dfbench.metrics.aggregate`)."""
    return metrics.aggregate(scores, aggregation)

