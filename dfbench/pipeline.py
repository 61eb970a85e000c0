"""The run loop: samples x cells, workers, resume. Gathering is `dfbench.gather`, scoring `dfbench.scoring`.

For each sample not finished yet: gather its crops for every unfinished cell (in worker processes beside an
accelerator), score them, and commit the sample's frame and task rows to the store in one transaction.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dfbench import scoring
from dfbench.cache import cache_root
from dfbench.config import Cell, RunConfig, SuiteConfig, load_suite
from dfbench.data import Dataset, load_dataset, scored_samples
from dfbench.data.audit import audit
from dfbench.detectors import DetectorAdapter, get_detector
from dfbench.detectors.base import DetectorCard
from dfbench.errors import ConfigError, DiskSpaceError
from dfbench.faces import SampleCrops
from dfbench.faces.cache import FaceCache
from dfbench.gather import Decoded, Gatherer, choose_finder
from dfbench.hashing import stable_hash
from dfbench.perturbations.adversarial import Attacker, load_surrogate
from dfbench.provenance import provenance
from dfbench.store import FrameRow, ScoreStore, TaskRow
from dfbench.timing import StageClock

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A run resolved and validated, before any sample is processed."""

    config: RunConfig
    suite: SuiteConfig
    dataset: Dataset
    adapter: DetectorAdapter
    gatherer: Gatherer
    run_id: str
    provenance: dict
    notes: list[str]
    calibration: Prepared | None = None   # the validation split's clean cells (--calibrate-on val)
    warnings: list[str] = dataclasses.field(default_factory=list)
    attacker: Attacker | None = None      # the suite's adversarial cells (`perturbations.adversarial`)


ProgressFn = Callable[[int, int, str], None]
Job = tuple[str, Path, list[Cell]]                  # a sample id, its file, and its cells not finished yet
Rows = tuple[list[FrameRow], list[TaskRow]]


class Backend(Protocol):
    """Where samples are gathered and scored: `execute` gathers here (workers or this process) unless a backend
    is given (`dfbench.cluster.RayBackend`). It yields each job's rows, in any order, as they are finished."""

    def rows(self, prep: Prepared, jobs: list[Job], clock: StageClock) -> Iterator[Rows]: ...


def prepare(config: RunConfig) -> Prepared:
    """Resolve and validate everything (dataset, suite, weights) before any work starts."""
    notes: list[str] = []
    suite = load_suite(config.suite).with_frames(config.frames).with_faces(config.faces)
    full = load_dataset(config.dataset)
    dataset = scored_samples(full, config.split, config.limit, notes)
    if config.by is not None and config.by not in dataset.table.columns:
        raise ConfigError(f"--by {config.by!r} is not a column of {dataset.name}; its columns: "
                          f"{', '.join(c for c in dataset.table.columns if c not in ('sample_id', 'path', 'label'))}.")
    # Before the model loads: the validation split (a missing one is a one-line error) and the format audit.
    val_split = None if config.calibrate_on == "clean" else full.validation_split(
        config.calibrate_on, config.split or ("test" if full.has_splits else None))
    clean = suite.clean_only() if val_split is not None else None   # a suite without a clean cell: an error now
    leak = audit(dataset)                      # headers only: the format-only baseline (README "Format leaks")
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
    card = adapter.card
    finder, notice = choose_finder(config.finder or suite.finder, card.finder, config.detector, card.crop.whole_frame,
                                   adapter.device)
    if notice:
        notes.append(notice)
    if config.keep_crops and not config.face_cache:
        raise ConfigError("--keep-crops needs the face cache; drop --no-face-cache.")
    def gatherer_for(cells: SuiteConfig) -> Gatherer:
        cache = FaceCache(cache_root() / "faces", cells.hash, finder.describe(), config.keep_crops) \
            if config.face_cache else None
        return Gatherer(cells, finder, adapter.card.crop, config.work_limit, cache)

    gatherer = gatherer_for(suite)
    identity = {
        "detector": config.detector, "weights": adapter.weights_label, "weights_sha256": adapter.weights_sha256,
        "dataset": dataset.name, "dataset_hash": dataset.hash, "suite": suite.name, "suite_hash": suite.hash,
        "finder": finder.describe(), "crop": dataclasses.asdict(gatherer.spec),
        "device_type": adapter.device.split(":")[0], "precision": adapter.precision,
        "protocol": scoring_protocol(suite, card, finder.name, config.no_face),
    }
    attacker = make_attacker(config, suite, dataset, adapter)
    if attacker is not None and attacker.surrogate is not None:
        identity["surrogate"] = {"detector": config.surrogate, "weights": attacker.surrogate.weights_label,
                                 "weights_sha256": attacker.surrogate.weights_sha256}
    elif config.surrogate is not None:
        notes.append(f"--surrogate {config.surrogate} is not used: suite {suite.name!r} has no transfer attack.")
    run_id = stable_hash(identity)
    batch_size = scoring.resolve_batch_size(config.batch_size, adapter.device)
    prov = {**provenance(identity, suite, adapter, config, batch_size), "protocol": identity["protocol"]}
    prov["format_audit"] = leak.record()
    warnings = [leak.warning()] if leak.leak else []
    if val_split is None or clean is None:
        return Prepared(config, suite, dataset, adapter, gatherer, run_id, prov, notes, warnings=warnings,
                        attacker=attacker)
    # --calibrate-on val: the validation split's clean cells, scored under the same protocol, stored as a run of
    # its own that `dfbench.results` reads as this run's threshold source (never as a result).
    val = full.select(val_split, config.limit)
    val.check_evaluable()
    val_identity = {**identity, "dataset": val.name, "dataset_hash": val.hash, "suite_hash": clean.hash,
                    "role": "calibration"}
    val_id = stable_hash(val_identity)
    val_prov = {**provenance(val_identity, clean, adapter, config, batch_size), "protocol": identity["protocol"],
                "role": "calibration", "calibrates": run_id}
    prov["calibration"] = {"on": config.calibrate_on, "split": val_split, "run_id": val_id}
    notes.append(f"Calibrating acc_cal's threshold on the {val_split!r} split ({len(val)} samples, clean cell), "
                 "frozen for every cell.")
    calibration = Prepared(config, clean, val, adapter, gatherer_for(clean), val_id, val_prov, [])
    return Prepared(config, suite, dataset, adapter, gatherer, run_id, prov, notes, calibration, warnings, attacker)


def make_attacker(config: RunConfig, suite: SuiteConfig, dataset: Dataset | None, adapter: DetectorAdapter,
                  labels: dict[str, int] | None = None) -> Attacker | None:
    """The attacker of the suite's adversarial cells (None when it has none), with the surrogate detector of its
    transfer cells loaded on the run's device."""
    if not any(c.attack is not None for c in suite.cells):
        return None
    transfer = any(c.attack is not None and c.attack.transfer for c in suite.cells)
    surrogate = load_surrogate(config.surrogate, config.surrogate_weights, adapter.device, adapter.precision,
                               config.trust_checkpoint) if transfer else None
    if labels is None:
        assert dataset is not None
        labels = dict(zip(dataset.table["sample_id"], dataset.table["label"].astype(int), strict=True))
    return Attacker(suite, labels, surrogate)


def scoring_protocol(suite: SuiteConfig, card: DetectorCard, finder: str, no_face: str) -> dict[str, object]:
    """How a run's frames become video numbers, recorded with it (and part of its id): the video rule (the
    card's where the suite says ``card``), the finder, the no-face rule, the fallback score and the decision."""
    return {"aggregation": scoring.video_rule(suite.aggregation, card.aggregation),
            "finder": finder, "no_face": no_face, "fallback_score": card.fallback_score, "decision": card.decision}


def execute(prep: Prepared, store: ScoreStore, on_progress: ProgressFn | None = None,
            backend: Backend | None = None) -> StageClock:
    """Process every unfinished sample of a prepared run; safe to interrupt at any moment. Only this process
    writes the store, one sample's rows in one transaction, as they arrive."""
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
        if backend is not None:
            results = backend.rows(prep, jobs, clock) if jobs else iter(())
        elif workers:
            results = _gather_in_workers(prep, jobs, workdir, workers, clock)
        else:
            results = (score_sample(prep, sample_id, path, pending, workdir, clock)
                       for sample_id, path, pending in jobs)
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


def resolve_workers(workers: int | None, device: str, n_jobs: int) -> int:
    """The number of gathering processes: as asked, else none on a CPU and up to 8 beside an accelerator
    (one core is left to the process that feeds the model)."""
    if workers is None:
        workers = 0 if device == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))
    return min(workers, n_jobs)


def _gather_in_workers(prep: Prepared, jobs: list[Job], workdir: Path, workers: int,
                       clock: StageClock) -> Iterator[Rows]:
    """Yield each sample's rows in order, its frames decoded and its faces found in `workers` processes while
    this one scores the earlier samples; at most `workers + 2` samples are held at a time. With a device finder
    (`Gatherer.on_device`) the workers only decode and perturb, and this process finds and cuts each sample's
    frames on the device before scoring them. Samples whose crops were kept are opened here (memory-mapped) and
    never reach a worker; the workers start only when a sample needs gathering.

    The stage ``wait_for_workers`` is the time this process spent blocked on the next gathered sample (the
    first wait includes starting the workers): where it is large, gathering, not the model, sets the pace."""
    gatherer = prep.gatherer
    pool: ProcessPoolExecutor | None = None
    pending: deque[tuple[Future, Path]] = deque()
    queue = iter(jobs)

    def submit(n: int) -> None:
        nonlocal pool
        for sample_id, path, cells in itertools.islice(queue, n):
            kept = gatherer.kept(sample_id, path, cells)
            if kept is not None:                        # memory-mapped: nothing for a worker to do
                pending.append((_done(kept), path))
                continue
            check_free_space(workdir, prep.config.min_free_bytes)
            if pool is None:                            # started at the first sample that needs one
                context = multiprocessing.get_context("spawn")   # no fork of a process holding torch threads
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                           initargs=(max(1, (os.cpu_count() or 2) // workers),))
            work = gatherer.decode if gatherer.on_device else gatherer.gather   # a device finder runs here
            pending.append((pool.submit(work, sample_id, path, cells, workdir), path))

    previous: scoring.Scoring | None = None
    try:
        submit(workers + 1)
        while pending:
            waited = time.perf_counter()
            future, path = pending.popleft()
            done, worker_clock = future.result()
            clock.add("wait_for_workers", time.perf_counter() - waited, 1)
            submit(1)
            clock.merge(worker_clock)
            gathered = gatherer.cut(done, path, clock) if isinstance(done, Decoded) else done
            launched = scoring.start(prep.adapter, gathered, prep.config.batch_size, prep.attacker)
            if previous is not None:        # its batches ran on the device while this sample arrived
                yield sample_rows(prep.suite, previous, clock)
            previous = launched
        if previous is not None:
            yield sample_rows(prep.suite, previous, clock)
    except BaseException:
        if pool is not None:    # stopped (Ctrl-C, SIGTERM, an error): end the workers' current samples too
            _stop_workers(pool)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _done(result: tuple[SampleCrops, StageClock]) -> Future:
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
                 clock: StageClock) -> Rows:
    """Score every cell of one sample; media failures become status rows, never exceptions."""
    check_free_space(workdir, prep.config.min_free_bytes)
    gatherer = prep.gatherer
    gathered, gather_clock = gatherer.kept(sample_id, path, cells) \
        or gatherer.gather(sample_id, path, cells, workdir, host=False)
    clock.merge(gather_clock)
    launched = scoring.start(prep.adapter, gathered, prep.config.batch_size, prep.attacker)
    return sample_rows(prep.suite, launched, clock)


def sample_rows(suite: SuiteConfig, launched: scoring.Scoring,
                clock: StageClock) -> Rows:
    """Wait for a sample's scores and turn them into its frame and task rows (in the process that holds the
    model: this one, or a model actor of the Ray backend)."""
    gathered = launched.gathered
    cells = [c for c in suite.cells if c.id in gathered.cells]
    if gathered.unreadable is not None:
        return [], [TaskRow(gathered.sample_id, c.id, "decode_error", gathered.unreadable, 0, 0.0) for c in cells]
    started = time.perf_counter()
    scores = scoring.frame_scores(launched)
    inference = launched.seconds + time.perf_counter() - started
    clock.add("inference", inference, launched.n_scored)
    elapsed = gathered.seconds + inference
    sample_id, indices, seen = gathered.sample_id, gathered.indices, gathered.seen
    frames: list[FrameRow] = []
    tasks: list[TaskRow] = []
    for cell in cells:
        seed = cell.seed(suite.seed, sample_id)
        if cell.id in gathered.failures:
            tasks.append(TaskRow(sample_id, cell.id, "ffmpeg_error", gathered.failures[cell.id], 0, elapsed, seed))
            continue
        for index in indices:
            n_faces = seen.get((cell.id, index))
            frames.append(_frame_row(sample_id, cell.id, index, n_faces, scores.get((cell.id, index), (None, None))))
        tasks.append(TaskRow(sample_id, cell.id, "ok", "", len(indices), elapsed, seed))
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
    if not scoring.is_valid(score):
        return FrameRow(sample_id, cell, index, "bad_score", None, n_faces)
    return FrameRow(sample_id, cell, index, "ok", float(score), n_faces, probs)  # type: ignore[arg-type]


