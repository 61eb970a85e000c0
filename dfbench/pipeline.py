"""The run loop: samples x cells, batching, resume. No image or metric math lives here.

For each sample not finished yet: decode once and fan out to every cell (`video.engine`), find faces in
each sampled frame, crop them with the detector card's spec, score the crops in batches, and commit the
sample's rows to the store in one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfbench.config import Cell, SuiteConfig, load_suite
from dfbench.data import Dataset, load_dataset
from dfbench.detectors import DetectorAdapter, get_detector
from dfbench.errors import ConfigError, DiskSpaceError, MediaError
from dfbench.faces import CropSpec, Face, FaceFinder, crop_face, make_finder, select_faces
from dfbench.faces.mapping import map_faces
from dfbench.perturbations import OPERATIONS
from dfbench.perturbations.geometry import Geometry
from dfbench.provenance import provenance, stable_hash
from dfbench.store import FrameRow, ScoreStore, TaskRow
from dfbench.video.engine import CellFailure, CellPlan, sample_frames
from dfbench.video.probe import media_of, probe_video, sample_indices

log = logging.getLogger(__name__)
DEMO = "demo"
CLEAN_PASS = "clean-pass"   # the decode-only pass of faces=clean when the suite has no clean cell to reuse


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; CLI flags map one to one.

    Attributes:
        detector: adapter key.
        suite: shipped suite name or YAML path.
        dataset: ``demo``, a folder with real/ and fake/, or a manifest.
        weights: a file, ``demo`` or ``random``; None picks ``demo`` for the demo set and is an error otherwise.
        split: the split to score; None means ``test`` when the dataset has splits, else everything.
        out: output folder (store, run.json, CSV files).
        frames: frames per video, overriding the suite.
        device, precision: inference placement (``auto`` picks the best available).
        batch_size: faces per inference batch.
        limit: score at most this many samples (balanced by label).
        trust_checkpoint: allow unpickling a checkpoint that is not a plain state dict.
        finder: face finder name (``mtcnn``, or ``none`` for inputs that are already face crops).
        faces: ``redetect`` or ``clean``, overriding the suite's face mode (None keeps it).
        cache_limit: most bytes of intermediate files (compression encodes) at a time; None: no limit.
        min_free_bytes: the run stops cleanly (resumable) before a sample when less disk than this is free.
    """

    detector: str
    suite: str = "video-ops"
    dataset: str = DEMO
    weights: str | tuple[str, ...] | None = None
    split: str | None = None
    out: Path = Path("runs/latest")
    frames: int | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 32
    limit: int | None = None
    trust_checkpoint: bool = False
    finder: str = "mtcnn"
    faces: str | None = None
    cache_limit: int | None = None
    min_free_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {self.frames}.")
        if self.limit is not None and self.limit < 2:
            raise ConfigError(f"--limit must be at least 2 (one real, one fake), got {self.limit}.")

    def resolved_weights(self, has_demo_weights: bool) -> str | tuple[str, ...]:
        """The weights to load: the demo set defaults to the demo weights, or random ones where none ship."""
        if self.weights is not None:
            return self.weights
        if self.dataset == DEMO:
            return "demo" if has_demo_weights else "random"
        raise ConfigError(f"--weights is required for dataset {self.dataset!r}: the shipped demo weights were "
                          "trained on the synthetic demo set only. Pass --weights FILE (or --weights demo to "
                          "use them anyway).")


@dataclass
class StageClock:
    """Seconds and item counts per pipeline stage, for the frames-per-second report."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    items: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, stage: str, seconds: float, items: int = 0) -> None:
        self.seconds[stage] += seconds
        self.items[stage] += items

    def report(self) -> dict[str, dict[str, float]]:
        return {k: {"seconds": round(v, 3), "items": self.items[k],
                    "per_second": round(self.items[k] / v, 2) if v > 0 else 0.0}
                for k, v in self.seconds.items()}


@dataclass
class Prepared:
    """A run resolved and validated, before any sample is processed."""

    config: RunConfig
    suite: SuiteConfig
    dataset: Dataset
    adapter: DetectorAdapter
    finder: FaceFinder
    run_id: str
    provenance: dict
    notes: list[str]


ProgressFn = Callable[[int, int, str], None]


def prepare(config: RunConfig) -> Prepared:
    """Resolve and validate everything (dataset, suite, weights) before any work starts."""
    notes: list[str] = []
    suite = load_suite(config.suite).with_frames(config.frames).with_faces(config.faces)
    dataset = load_dataset(config.dataset)
    split = config.split
    if split is None and dataset.has_splits:
        split = "test"
        notes.append(f"Scoring the 'test' split of {dataset.name} ({(dataset.table['split'] == 'test').sum()} "
                     "samples); pass --split to choose another.")
    dataset = dataset.select(split, config.limit)
    dataset.check_evaluable()
    for media, paths in dataset.media_groups().items():
        suite.check_media(media, Path(paths[0]).name, len(paths))
    adapter = get_detector(config.detector)
    weights = config.resolved_weights(bool(adapter.card.demo_weights))
    if config.weights is None and weights == "demo":
        notes.append(f"Using the shipped demo weights of {config.detector!r} (trained on the demo set's train "
                     "split); pass --weights FILE for your own.")
    adapter.load(weights, config.device, config.precision, config.trust_checkpoint)
    notes.extend(adapter.notes)
    if weights in ("random", ("random",)):
        notes.append(f"{config.detector!r} runs with random weights (it ships no demo weights): its scores are "
                     "meaningless, for checking the pipeline only. Pass --weights FILE.")
    finder = make_finder("none" if adapter.card.crop.whole_frame else config.finder)
    identity = {
        "detector": config.detector, "weights": adapter.weights_label, "weights_sha256": adapter.weights_sha256,
        "dataset": dataset.name, "dataset_hash": dataset.hash, "suite": suite.name, "suite_hash": suite.hash,
        "finder": finder.describe(), "crop": dataclasses.asdict(adapter.card.crop),
        "device_type": adapter.device.split(":")[0], "precision": adapter.precision,
    }
    run_id = stable_hash(identity)
    prov = provenance(identity, suite, adapter, config)
    return Prepared(config, suite, dataset, adapter, finder, run_id, prov, notes)


def execute(prep: Prepared, store: ScoreStore, on_progress: ProgressFn | None = None) -> StageClock:
    """Process every unfinished sample of a prepared run; safe to interrupt at any moment."""
    clock = StageClock()
    cells = list(prep.suite.cells)
    finished = store.finished(prep.run_id)
    todo = [r for r in prep.dataset.table.itertuples() if any((r.sample_id, c.id) not in finished for c in cells)]
    total, done = len(prep.dataset), len(prep.dataset) - len(todo)
    if on_progress:
        on_progress(done, total, "")
    workdir = Path(prep.config.out) / ".work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for sample in todo:
            check_free_space(workdir, prep.config.min_free_bytes)
            pending = [c for c in cells if (sample.sample_id, c.id) not in finished]
            frames, tasks = score_sample(prep, sample.sample_id, Path(sample.path), pending, workdir, clock)
            started = time.perf_counter()
            store.write_sample(prep.run_id, frames, tasks)
            clock.add("store", time.perf_counter() - started, len(frames))
            done += 1
            if on_progress:
                on_progress(done, total, sample.sample_id)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return clock


def score_sample(prep: Prepared, sample_id: str, path: Path, cells: list[Cell], workdir: Path,
                 clock: StageClock) -> tuple[list[FrameRow], list[TaskRow]]:
    """Score every cell of one sample; media failures become status rows, never exceptions."""
    started = time.perf_counter()
    try:
        info = probe_video(path)
    except MediaError as exc:
        return [], [TaskRow(sample_id, c.id, "decode_error", str(exc), 0, 0.0) for c in cells]
    indices = sample_indices(info.frame_count, prep.suite.frames.per_video)
    seeds = {c.id: c.seed(prep.suite.seed, sample_id) for c in cells}
    plans = [CellPlan(c.id, c.steps(prep.suite.seed, sample_id)) for c in cells]
    geometries = None
    if prep.suite.faces == "clean":
        geometries = {c.id: [OPERATIONS.get(op).geometry(level) for op, level in c.parts] for c in cells}
    crops, owners, seen, failures = collect_faces(prep.finder, prep.adapter.card.crop, plans, path, indices,
                                                  workdir, clock, media_of(path), prep.config.cache_limit, info.fps,
                                                  geometries)
    scores = _infer(prep.adapter, crops, owners, failures, prep.config.batch_size, clock)
    frames: list[FrameRow] = []
    tasks: list[TaskRow] = []
    elapsed = time.perf_counter() - started
    for cell in cells:
        if cell.id in failures:
            tasks.append(TaskRow(sample_id, cell.id, "ffmpeg_error", failures[cell.id], 0, elapsed, seeds[cell.id]))
            continue
        for index in indices:
            n_faces = seen.get((cell.id, index))
            frames.append(_frame_row(sample_id, cell.id, index, n_faces, scores.get((cell.id, index), (None, None))))
        tasks.append(TaskRow(sample_id, cell.id, "ok", "", len(indices), elapsed, seeds[cell.id]))
    return frames, tasks


def check_free_space(folder: Path, min_free: int) -> None:
    """Stop cleanly (DiskSpaceError) when the disk holding `folder` has less than `min_free` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < min_free:
        raise DiskSpaceError(f"Only {free / 1e6:.0f} MB free on the disk of {str(folder.parent)!r} (the run needs "
                             f"{min_free / 1e6:.0f} MB to go on). Free space, then run the same command again to "
                             "resume.")


def _frame_row(sample_id: str, cell: str, index: int, n_faces: int | None,
               scored: tuple[float | None, str | None]) -> FrameRow:
    score, probs = scored
    if n_faces is None:
        return FrameRow(sample_id, cell, index, "missing_frame", None, 0)
    if n_faces == 0:
        return FrameRow(sample_id, cell, index, "no_face", None, 0)
    if score is None or not np.isfinite(score) or not 0.0 <= score <= 1.0:
        return FrameRow(sample_id, cell, index, "bad_score", None, n_faces)
    return FrameRow(sample_id, cell, index, "ok", float(score), n_faces, probs)


def collect_faces(finder: FaceFinder, spec: CropSpec, plans: list[CellPlan], path: Path, indices: list[int],
                  workdir: Path | None, clock: StageClock, media: str = "video", cache_limit: int | None = None,
                  fps: float = 25.0, geometries: dict[str, list[Geometry]] | None = None):
    """Decode and fan out, find faces in each sampled frame as it arrives, cut the crops.

    Args:
        geometries: None finds faces in every perturbed frame (``redetect``). Otherwise (``clean``) faces are
            found once, in the clean frames (a first, decode-only pass; the clean cell is scored from it), and
            carried into each cell's frames through the cell's geometries (cell id -> operations' geometries).

    Returns:
        crops (uint8 RGB, size x size x 3), their owners (cell, frame index), the number of faces scored
        per received (cell, frame), and the cells ffmpeg failed on (cell -> message).
    """
    crops: list[np.ndarray] = []
    owners: list[tuple[str, int]] = []
    seen: dict[tuple[str, int], int] = {}
    failures: dict[str, str] = {}
    clean: dict[int, tuple[list[Face], tuple[int, int]]] = {}

    def take(cell_id: str, index: int, image: np.ndarray, faces: list[Face]) -> None:
        chosen = select_faces(faces, spec)
        seen[(cell_id, index)] = len(chosen)
        for face in chosen:
            crops.append(crop_face(image, face, spec))
            owners.append((cell_id, index))

    if geometries is not None:
        clean_plan = next((p for p in plans if not p.steps), CellPlan(CLEAN_PASS, ()))
        for event in _timed_events(sample_frames(path, [clean_plan], indices, workdir, media, cache_limit, fps),
                                   clock):
            if isinstance(event, CellFailure):
                message = f"{event.status}: {event.message}"
                return crops, owners, seen, {plan.cell_id: message for plan in plans}
            t0 = time.perf_counter()
            found = finder.find(event.image)
            clean[event.index] = found, (event.image.shape[1], event.image.shape[0])
            if clean_plan in plans:
                take(event.cell_id, event.index, event.image, found)
            clock.add("faces", time.perf_counter() - t0, 1)
        plans = [p for p in plans if p is not clean_plan]
    for event in _timed_events(sample_frames(path, plans, indices, workdir, media, cache_limit, fps), clock):
        if isinstance(event, CellFailure):
            failures.update({cell: f"{event.status}: {event.message}" for cell in event.cell_ids})
            continue
        t0 = time.perf_counter()
        if geometries is None:
            faces = finder.find(event.image)
        else:
            found, size = clean.get(event.index, ([], (0, 0)))
            shape = (event.image.shape[1], event.image.shape[0])
            faces = map_faces(found, geometries[event.cell_id], size, shape) if found else []
        take(event.cell_id, event.index, event.image, faces)
        clock.add("faces", time.perf_counter() - t0, 1)
    return crops, owners, seen, failures


def _timed_events(events, clock: StageClock):
    """`events`, with the time spent waiting for each (decoding and perturbing) added to the clock."""
    while True:
        t0 = time.perf_counter()
        event = next(events, None)
        t1 = time.perf_counter()
        if event is None:
            clock.add("decode_perturb", t1 - t0)
            return
        clock.add("decode_perturb", t1 - t0, 0 if isinstance(event, CellFailure) else 1)
        yield event


FrameScore = tuple[float, "str | None"]


def _infer(adapter: DetectorAdapter, crops: list[np.ndarray], owners: list[tuple[str, int]],
           failures: dict[str, str], batch_size: int, clock: StageClock) -> dict[tuple[str, int], FrameScore]:
    """Score the crops in batches. A frame's score is the max over its faces (one face unless the card asks),
    with the class probabilities of that face (JSON) for adapters that have classes."""
    import torch

    keep = [i for i, (cell, _) in enumerate(owners) if cell not in failures]
    started = time.perf_counter()
    per_face: dict[tuple[str, int], list[FrameScore]] = defaultdict(list)
    for start in range(0, len(keep), batch_size):
        batch_ids = keep[start:start + batch_size]
        batch = torch.from_numpy(np.stack([crops[i] for i in batch_ids])).permute(0, 3, 1, 2).float().div_(255)
        scores, probs = adapter.predict_all(batch)
        for j, i in enumerate(batch_ids):
            per_face[owners[i]].append((float(scores[j]), None if probs is None else json.dumps(probs[j].tolist())))
    clock.add("inference", time.perf_counter() - started, len(keep))
    # A non-finite score for any face makes the frame's score non-finite (reported as bad_score).
    return {key: max(v) if np.isfinite([s for s, _ in v]).all() else (float("nan"), None)
            for key, v in per_face.items()}
