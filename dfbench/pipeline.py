"""The run loop: samples x cells, batching, resume. No image or metric math lives here.

For each sample not finished yet: decode once and fan out to every cell (`video.engine`), find faces in
each sampled frame, crop them with the detector card's spec, score the crops in batches, and commit the
sample's rows to the store in one transaction.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dfbench.cache import cache_root
from dfbench.config import Cell, SuiteConfig, load_suite
from dfbench.data import Dataset, load_dataset
from dfbench.detectors import DetectorAdapter, get_detector
from dfbench.errors import ConfigError, DiskSpaceError, MediaError
from dfbench.faces import CropSpec, Face, FaceFinder, crop_face, make_finder, select_faces
from dfbench.faces.cache import FaceCache
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
        batch_size: faces per inference batch; None picks per device (`resolve_batch_size`).
        limit: score at most this many samples (balanced by label).
        trust_checkpoint: allow unpickling a checkpoint that is not a plain state dict.
        finder: face finder name (``mtcnn``, or ``none`` for inputs that are already face crops).
        faces: ``redetect`` or ``clean``, overriding the suite's face mode (None keeps it).
        cache_limit: most bytes of intermediate files (compression encodes) at a time; None: no limit.
        min_free_bytes: the run stops cleanly (resumable) before a sample when less disk than this is free.
        face_cache: read and write the face cache (`dfbench.faces.cache`): the faces found per sample, reused by
            the next detector on the same data and suite.
        keep_crops: also keep this run's crops there, so that a detector with the same crop spec only runs its
            model.
        workers: processes that decode, perturb and find faces while this one runs the model; 0 does it all in
            this process, None picks: 0 on a CPU (the model already uses every core), else up to 8.
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
    batch_size: int | None = None
    limit: int | None = None
    trust_checkpoint: bool = False
    finder: str = "mtcnn"
    faces: str | None = None
    cache_limit: int | None = None
    min_free_bytes: int = 256 * 1024 * 1024
    face_cache: bool = True
    keep_crops: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be 0 or more, got {self.workers}.")
        if self.batch_size is not None and self.batch_size < 1:
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

    def merge(self, other: StageClock) -> None:
        for stage, seconds in other.seconds.items():
            self.add(stage, seconds, other.items[stage])

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
    face_cache: FaceCache | None = None


ProgressFn = Callable[[int, int, str], None]


def prepare(config: RunConfig) -> Prepared:
    """Resolve and validate everything (dataset, suite, weights) before any work starts."""
    notes: list[str] = []
    suite = load_suite(config.suite).with_frames(config.frames).with_faces(config.faces)
    dataset = load_dataset(config.dataset)
    if dataset.skipped:
        notes.append(f"{len(dataset.skipped)} files in {dataset.name} are not samples and are skipped (e.g. "
                     f"{dataset.skipped[0]}); 'dfbench data check' lists them.")
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
    cache = None
    if config.face_cache:
        cache = FaceCache(cache_root() / "faces", suite.hash, finder.describe(), config.keep_crops)
    elif config.keep_crops:
        raise ConfigError("--keep-crops needs the face cache; drop --no-face-cache.")
    return Prepared(config, suite, dataset, adapter, finder, run_id, prov, notes, cache)


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
    jobs = [(s.sample_id, Path(s.path), [c for c in cells if (s.sample_id, c.id) not in finished]) for s in todo]
    workers = resolve_workers(prep.config.workers, prep.adapter.device, len(jobs))
    try:
        results = (_gather_in_workers(prep, jobs, workdir, workers, clock) if workers else
                   (score_sample(prep, sample_id, path, pending, workdir, clock) for sample_id, path, pending in jobs))
        for frames, tasks in results:
            started = time.perf_counter()
            store.write_sample(prep.run_id, frames, tasks)
            clock.add("store", time.perf_counter() - started, len(frames))
            done += 1
            if on_progress:
                on_progress(done, total, tasks[0].sample_id if tasks else "")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return clock


def resolve_batch_size(batch_size: int | None, device: str) -> int:
    """Faces per inference batch: as asked, else the size that ran fastest in `benchmarks/adapters.py`: 16 on a
    CPU (larger batches were slower there for effb2, bf16, 2 cores), 256 on CUDA (fastest for every adapter at
    bf16 on an H100), 32 elsewhere."""
    if batch_size is not None:
        return batch_size
    return 16 if device == "cpu" else 256 if device.startswith("cuda") else 32


def resolve_workers(workers: int | None, device: str, n_jobs: int) -> int:
    """The number of gathering processes: as asked, else none on a CPU and up to 8 beside an accelerator
    (one core is left to the process that feeds the model)."""
    if workers is None:
        workers = 0 if device == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))
    return min(workers, n_jobs)


def _gather_in_workers(prep: Prepared, jobs: list[tuple[str, Path, list[Cell]]], workdir: Path, workers: int,
                       clock: StageClock) -> Iterator[tuple[list[FrameRow], list[TaskRow]]]:
    """Yield each sample's rows in order, its frames decoded and its faces found in `workers` processes while
    this one scores the earlier samples; at most `workers + 2` samples are held at a time. Samples whose crops
    were kept are opened here (memory-mapped) and never reach a worker; the workers start only when a sample
    needs gathering.

    The stage ``wait_for_workers`` is the time this process spent blocked on the next gathered sample (the
    first wait includes starting the workers): where it is large, gathering, not the model, sets the pace."""
    gatherer = Gatherer.of(prep)
    pool: ProcessPoolExecutor | None = None
    pending: deque[Future] = deque()
    queue = iter(jobs)

    def submit(n: int) -> None:
        nonlocal pool
        for sample_id, path, cells in itertools.islice(queue, n):
            kept = gatherer.cached(sample_id, path, cells)
            if kept is not None:                        # memory-mapped: nothing for a worker to do
                pending.append(_done(kept))
                continue
            check_free_space(workdir, prep.config.min_free_bytes)
            if pool is None:                            # started at the first sample that needs one
                context = multiprocessing.get_context("spawn")   # no fork of a process holding torch threads
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                           initargs=(max(1, (os.cpu_count() or 2) // workers),))
            pending.append(pool.submit(gatherer.gather, sample_id, path, cells, workdir))

    previous: Scoring | None = None
    try:
        submit(workers + 1)
        while pending:
            waited = time.perf_counter()
            gathered, worker_clock = pending.popleft().result()
            clock.add("wait_for_workers", time.perf_counter() - waited, 1)
            submit(1)
            clock.merge(worker_clock)
            scoring = start_scoring(prep.adapter, gathered, prep.config.batch_size)
            if previous is not None:        # its batches ran on the device while this sample arrived
                yield finish_sample(prep, previous, clock)
            previous = scoring
        if previous is not None:
            yield finish_sample(prep, previous, clock)
    except BaseException:
        if pool is not None:    # stopped (Ctrl-C, SIGTERM, an error): end the workers' current samples too
            _stop_workers(pool)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _done(result: tuple[Gathered, StageClock]) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Send SIGTERM to every worker: each stops its sample as on Ctrl-C, killing its ffmpeg children."""
    for process in list(getattr(pool, "_processes", {}).values()):   # the executor offers no public handle
        if process.is_alive():
            process.terminate()


def _init_worker(threads: int) -> None:
    import cv2

    from dfbench import signals

    signals.install()
    cv2.setNumThreads(threads)


def score_sample(prep: Prepared, sample_id: str, path: Path, cells: list[Cell], workdir: Path,
                 clock: StageClock) -> tuple[list[FrameRow], list[TaskRow]]:
    """Score every cell of one sample; media failures become status rows, never exceptions."""
    check_free_space(workdir, prep.config.min_free_bytes)
    gatherer = Gatherer.of(prep)
    gathered, gather_clock = (gatherer.cached(sample_id, path, cells)
                              or gatherer.gather(sample_id, path, cells, workdir))
    clock.merge(gather_clock)
    return finish_sample(prep, start_scoring(prep.adapter, gathered, prep.config.batch_size), clock)


class Gathered(NamedTuple):
    """One sample's crops, ready for the model: everything before inference."""

    sample_id: str
    cells: list[Cell]
    indices: list[int]
    crops: np.ndarray                   # N x size x size x 3 uint8 RGB (memory-mapped from the face cache)
    owners: list[tuple[str, int]]       # (cell, frame index) of each crop
    seen: dict[tuple[str, int], int]    # faces scored per received (cell, frame)
    failures: dict[str, str]            # cells ffmpeg failed on -> message
    seconds: float                      # time spent gathering
    unreadable: str | None = None       # why the file could not be probed (every cell is a decode_error)


@dataclass(frozen=True)
class Gatherer:
    """Decoding, perturbing, face finding and cropping of one sample, the face cache read and written.
    Holds no model, so it pickles: worker processes run it while the main process runs the model."""

    suite: SuiteConfig
    finder: FaceFinder
    spec: CropSpec
    cache: FaceCache | None
    cache_limit: int | None

    @classmethod
    def of(cls, prep: Prepared) -> Gatherer:
        return cls(prep.suite, prep.finder, prep.adapter.card.crop, prep.face_cache, prep.config.cache_limit)

    def cached(self, sample_id: str, path: Path, cells: list[Cell]) -> tuple[Gathered, StageClock] | None:
        """The sample's kept crops, memory-mapped from the face cache (stage ``cached_crops``: opening them; the
        pixels are read as the model takes them), or None when they were not kept for this crop spec."""
        if self.cache is None:
            return None
        started = time.perf_counter()
        kept = self.cache.crops(sample_id, path, self.spec, [c.id for c in cells])
        if kept is None:
            return None
        seconds = time.perf_counter() - started
        clock = StageClock()
        clock.add("cached_crops", seconds, len(kept.crops))
        return Gathered(sample_id, cells, kept.indices, kept.crops, kept.owners, kept.seen, {}, seconds), clock

    def gather(self, sample_id: str, path: Path, cells: list[Cell],
               workdir: Path) -> tuple[Gathered, StageClock]:
        """Probe, decode, perturb, find (or reuse the cached faces) and cut; callers try `cached` first."""
        clock = StageClock()
        started = time.perf_counter()
        try:
            info = probe_video(path)
        except MediaError as exc:
            return Gathered(sample_id, cells, [], _no_crops(self.spec), [], {}, {}, 0.0, str(exc)), clock
        indices = sample_indices(info.frame_count, self.suite.frames.per_video)
        cell_ids = [c.id for c in cells]
        cache = self.cache
        known = cache.faces(sample_id, path, cell_ids) if cache else None
        plans = [CellPlan(c.id, c.steps(self.suite.seed, sample_id)) for c in cells]
        geometries = None
        if self.suite.faces == "clean" and known is None:
            geometries = {c.id: [OPERATIONS.get(op).geometry(level) for op, level in c.parts] for c in cells}
        found = collect_faces(self.finder, self.spec, plans, path, indices, workdir, clock, media_of(path),
                              self.cache_limit, info.fps, geometries, known)
        crops = np.stack(found.crops) if found.crops else _no_crops(self.spec)
        if cache and not found.failures and len(cells) == len(self.suite.cells):
            cache.save(sample_id, path, cell_ids, found.faces, self.spec, crops, found.owners, found.seen, indices)
        gathered = Gathered(sample_id, cells, indices, crops, found.owners, found.seen, found.failures,
                            time.perf_counter() - started)
        return gathered, clock


def _no_crops(spec: CropSpec) -> np.ndarray:
    return np.zeros((0, spec.size, spec.size, 3), np.uint8)


def finish_sample(prep: Prepared, scoring: Scoring, clock: StageClock) -> tuple[list[FrameRow], list[TaskRow]]:
    """Wait for a sample's scores and turn them into its frame and task rows."""
    gathered = scoring.gathered
    if gathered.unreadable is not None:
        return [], [TaskRow(gathered.sample_id, c.id, "decode_error", gathered.unreadable, 0, 0.0)
                    for c in gathered.cells]
    started = time.perf_counter()
    scores = _frame_scores(scoring)
    inference = scoring.seconds + time.perf_counter() - started
    clock.add("inference", inference, sum(len(ids) for ids, _, _ in scoring.batches))
    elapsed = gathered.seconds + inference
    sample_id, indices, seen = gathered.sample_id, gathered.indices, gathered.seen
    seeds = {c.id: c.seed(prep.suite.seed, sample_id) for c in gathered.cells}
    frames: list[FrameRow] = []
    tasks: list[TaskRow] = []
    for cell in gathered.cells:
        if cell.id in gathered.failures:
            tasks.append(TaskRow(sample_id, cell.id, "ffmpeg_error", gathered.failures[cell.id], 0, elapsed,
                                 seeds[cell.id]))
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


class Collected(NamedTuple):
    """What `collect_faces` gathered from one sample."""

    crops: list[np.ndarray]             # uint8 RGB, size x size x 3
    owners: list[tuple[str, int]]       # (cell, frame index) of each crop
    seen: dict[tuple[str, int], int]    # faces scored per received (cell, frame)
    failures: dict[str, str]            # cells ffmpeg failed on -> message
    faces: dict[tuple[str, int], list[Face]]   # every face found (or mapped) per received (cell, frame)


def collect_faces(finder: FaceFinder, spec: CropSpec, plans: list[CellPlan], path: Path, indices: list[int],
                  workdir: Path | None, clock: StageClock, media: str = "video", cache_limit: int | None = None,
                  fps: float = 25.0, geometries: dict[str, list[Geometry]] | None = None,
                  known: dict[tuple[str, int], list[Face]] | None = None) -> Collected:
    """Decode and fan out, find faces in each sampled frame as it arrives, cut the crops.

    Args:
        geometries: None finds faces in every perturbed frame (``redetect``). Otherwise (``clean``) faces are
            found once, in the clean frames (a first, decode-only pass; the clean cell is scored from it), and
            carried into each cell's frames through the cell's geometries (cell id -> operations' geometries).
        known: the faces of each (cell, frame) from the face cache: nothing is found or mapped.
    """
    crops: list[np.ndarray] = []
    owners: list[tuple[str, int]] = []
    seen: dict[tuple[str, int], int] = {}
    failures: dict[str, str] = {}
    every: dict[tuple[str, int], list[Face]] = {}
    clean: dict[int, tuple[list[Face], tuple[int, int]]] = {}

    def take(cell_id: str, index: int, image: np.ndarray, faces: list[Face]) -> None:
        every[(cell_id, index)] = faces
        chosen = select_faces(faces, spec)
        seen[(cell_id, index)] = len(chosen)
        for face in chosen:
            crops.append(crop_face(image, face, spec))
            owners.append((cell_id, index))

    if geometries is not None and known is None:
        clean_plan = next((p for p in plans if not p.steps), CellPlan(CLEAN_PASS, ()))
        for event in _timed_events(sample_frames(path, [clean_plan], indices, workdir, media, cache_limit, fps),
                                   clock):
            if isinstance(event, CellFailure):
                message = f"{event.status}: {event.message}"
                return Collected(crops, owners, seen, {plan.cell_id: message for plan in plans}, every)
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
        if known is not None:
            faces = known.get((event.cell_id, event.index), [])
        elif geometries is None:
            faces = finder.find(event.image)
        else:
            found, size = clean.get(event.index, ([], (0, 0)))
            shape = (event.image.shape[1], event.image.shape[0])
            faces = map_faces(found, geometries[event.cell_id], size, shape) if found else []
        take(event.cell_id, event.index, event.image, faces)
        clock.add("cached_faces" if known is not None else "faces", time.perf_counter() - t0, 1)
    return Collected(crops, owners, seen, failures, every)


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


class Scoring(NamedTuple):
    """A gathered sample whose batches were handed to the model; on CUDA they may still be running."""

    gathered: Gathered
    batches: list[tuple[np.ndarray, Any, Any]]     # (crop indices, scores, class probabilities or None)
    seconds: float                                  # spent launching


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


def start_scoring(adapter: DetectorAdapter, gathered: Gathered, batch_size: int | None) -> Scoring:
    """Hand a sample's crops (N x size x size x 3 uint8) to the model in batches, without waiting for results.

    A batch travels as uint8 (a quarter of float32's bytes), from pinned memory when the model is on CUDA, and
    becomes float on the model's device; permuting to N x 3 x H x W leaves it channels-last, as the model is.
    The outputs stay on the device, so the GPU works through the batches while this process moves on (to the
    next sample's crops); `finish_sample` copies them back."""
    import torch

    started = time.perf_counter()
    owners, failures = gathered.owners, gathered.failures
    keep = np.array([i for i, (cell, _) in enumerate(owners) if cell not in failures], dtype=np.int64)
    every = len(keep) == len(gathered.crops)       # then a batch is a slice: a view, not a copy
    pin = adapter.device.startswith("cuda")
    batch_size = resolve_batch_size(batch_size, adapter.device)
    batches = []
    for start in range(0, len(keep), batch_size):
        batch_ids = keep[start:start + batch_size]
        crops = gathered.crops[start:start + batch_size] if every else gathered.crops[batch_ids]
        rows = padded_rows(len(batch_ids), batch_size, adapter.device)
        if rows > len(batch_ids):
            crops = np.concatenate([crops, np.zeros((rows - len(batch_ids), *crops.shape[1:]), crops.dtype)])
        batch = torch.from_numpy(crops)
        if pin:
            batch = batch.pin_memory()
        batch = batch.to(adapter.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        scores, probs = adapter.predict_all(batch, copy_back=False)
        n = len(batch_ids)
        batches.append((batch_ids, scores[:n], None if probs is None else probs[:n]))
    return Scoring(gathered, batches, time.perf_counter() - started)


def _frame_scores(scoring: Scoring) -> dict[tuple[str, int], FrameScore]:
    """Wait for the model's outputs. A frame's score is the max over its faces (one face unless the card asks),
    with the class probabilities of that face (JSON) for adapters that have classes."""
    owners = scoring.gathered.owners
    per_face: dict[tuple[str, int], list[FrameScore]] = defaultdict(list)
    for batch_ids, scores, probs in scoring.batches:
        values = scores.cpu().tolist()
        rows = None if probs is None else probs.cpu().tolist()
        for j, i in enumerate(batch_ids.tolist()):
            per_face[owners[i]].append((values[j], None if rows is None else json.dumps(rows[j])))
    # A non-finite score for any face makes the frame's score non-finite (reported as bad_score).
    return {key: max(v) if np.isfinite([s for s, _ in v]).all() else (float("nan"), None)
            for key, v in per_face.items()}
