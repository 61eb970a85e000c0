"""Gathering: one sample from its file to its crops, for every cell of a suite.

Probe, decode once and fan out to every cell (`video.engine`), find faces in each sampled frame (or map the clean
frame's faces through the cell's geometry), and cut them with the detector card's crop spec. `run`, `predict` and
training all gather through `Gatherer`; the face cache wraps it (read before, written after) and nothing below
`Gatherer` touches the cache. A `Gatherer` holds no model, so it pickles: worker processes run it while the main
process runs the model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfbench.config import Cell, SuiteConfig, load_suite
from dfbench.errors import MediaError
from dfbench.faces import CropSpec, Face, FaceFinder, Owner, SampleCrops, WholeFrameFinder, crop_face, select_faces
from dfbench.faces.cache import FaceCache
from dfbench.faces.crop import no_crops
from dfbench.faces.finder import choose_finder, make_finder
from dfbench.faces.mapping import map_faces
from dfbench.perturbations import OPERATIONS
from dfbench.perturbations.geometry import Geometry
from dfbench.timing import StageClock
from dfbench.video.engine import CellFailure, CellPlan, sample_frames
from dfbench.video.probe import media_of, probe_video, sample_indices

__all__ = ["CLEAN_PASS", "Gatherer", "choose_finder", "clean_suite", "find_and_cut", "make_finder"]

CLEAN_PASS = "clean-pass"   # the decode-only pass of faces=clean when the suite has no clean cell to reuse


def clean_suite(frames: int) -> SuiteConfig:
    """The shipped ``clean`` suite with `frames` per video: what `predict` and training gather with, so that
    their crops are the crops of ``dfbench run --suite clean``."""
    return load_suite("clean").with_frames(frames)


@dataclass(frozen=True)
class Gatherer:
    """Gathers samples for a suite with one finder and crop spec; `cache` (None: no face cache) wraps it.

    With the whole-frame finder (``--finder none``: inputs that are already face crops), the crop is the whole
    frame resized, whatever margin the card's spec asks for around a found face.
    """

    suite: SuiteConfig
    finder: FaceFinder
    spec: CropSpec
    work_limit: int | None = None
    cache: FaceCache | None = None

    def __post_init__(self) -> None:
        if isinstance(self.finder, WholeFrameFinder) and not self.spec.whole_frame:
            object.__setattr__(self, "spec", dataclasses.replace(self.spec, whole_frame=True))

    def kept(self, sample_id: str, path: Path, cells: list[Cell]) -> tuple[SampleCrops, StageClock] | None:
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
        return kept._replace(seconds=seconds), clock

    def gather(self, sample_id: str, path: Path, cells: list[Cell],
               workdir: Path | None) -> tuple[SampleCrops, StageClock]:
        """Probe, decode, perturb, find and cut; the faces come from the face cache when it has them, and go to it
        after (callers that can use kept crops try `kept` first)."""
        clock = StageClock()
        ids = [c.id for c in cells]
        known = self.cache.faces(sample_id, path, ids) if self.cache else None
        gathered = self._cut(sample_id, path, cells, workdir, clock, known)
        if self.cache and gathered.unreadable is None and not gathered.failures \
                and len(cells) == len(self.suite.cells):
            self.cache.save(path, gathered, self.spec)
        return gathered, clock

    def gather_all(self, sample_id: str, path: Path, workdir: Path | None = None) -> SampleCrops:
        """Every cell of the suite for one sample, from kept crops where there are some."""
        cells = list(self.suite.cells)
        found = self.kept(sample_id, path, cells) or self.gather(sample_id, path, cells, workdir)
        return found[0]

    def _cut(self, sample_id: str, path: Path, cells: list[Cell], workdir: Path | None, clock: StageClock,
             known: dict[Owner, list[Face]] | None) -> SampleCrops:
        started = time.perf_counter()
        ids = tuple(c.id for c in cells)
        media = media_of(path)
        try:
            info = probe_video(path)   # (a still's pixel limit is checked where it is decoded, `read_image`)
        except MediaError as exc:
            return SampleCrops(sample_id, ids, [], no_crops(self.spec), [], {}, {}, unreadable=str(exc))
        indices = sample_indices(info.frame_count, self.suite.frames.per_video)
        plans = [CellPlan(c.id, c.steps(self.suite.seed, sample_id)) for c in cells]
        geometries = None
        if self.suite.faces == "clean" and known is None:
            geometries = {c.id: [OPERATIONS.get(op).geometry(level) for op, level in c.parts] for c in cells}
        found = find_and_cut(sample_id, self.finder, self.spec, plans, path, indices, workdir, clock, media,
                             self.work_limit, info.fps, geometries, known)
        return found._replace(seconds=time.perf_counter() - started)


def find_and_cut(sample_id: str, finder: FaceFinder, spec: CropSpec, plans: list[CellPlan], path: Path,
                 indices: list[int], workdir: Path | None, clock: StageClock, media: str = "video",
                 work_limit: int | None = None, fps: float = 25.0, geometries: dict[str, list[Geometry]] | None = None,
                 known: dict[Owner, list[Face]] | None = None) -> SampleCrops:
    """Decode and fan out, find faces in each sampled frame as it arrives, cut the crops.

    Args:
        geometries: None finds faces in every perturbed frame (``redetect``). Otherwise (``clean``) faces are
            found once, in the clean frames (a first, decode-only pass; the clean cell is scored from it), and
            carried into each cell's frames through the cell's geometries (cell id -> operations' geometries).
        known: the faces of each (cell, frame), from the face cache: nothing is found or mapped.
        work_limit: most bytes of intermediate files (compression encodes) at a time.
    """
    crops: list[np.ndarray] = []
    owners: list[Owner] = []
    seen: dict[Owner, int] = {}
    failures: dict[str, str] = {}
    every: dict[Owner, list[Face]] = {}
    clean: dict[int, tuple[list[Face], tuple[int, int]]] = {}
    ids = tuple(p.cell_id for p in plans)

    def take(cell_id: str, index: int, image: np.ndarray, faces: list[Face]) -> None:
        every[(cell_id, index)] = faces
        chosen = select_faces(faces, spec)
        seen[(cell_id, index)] = len(chosen)
        for face in chosen:
            crops.append(crop_face(image, face, spec))
            owners.append((cell_id, index))

    def result() -> SampleCrops:
        stacked = np.stack(crops) if crops else no_crops(spec)
        return SampleCrops(sample_id, ids, indices, stacked, owners, seen, failures, every)

    if geometries is not None and known is None:
        clean_plan = next((p for p in plans if not p.steps), CellPlan(CLEAN_PASS, ()))
        for event in _timed(sample_frames(path, [clean_plan], indices, workdir, media, work_limit, fps), clock):
            if isinstance(event, CellFailure):
                failures.update({plan.cell_id: f"{event.status}: {event.message}" for plan in plans})
                return result()
            t0 = time.perf_counter()
            found = finder.find(event.image)
            clean[event.index] = found, (event.image.shape[1], event.image.shape[0])
            if clean_plan in plans:
                take(event.cell_id, event.index, event.image, found)
            clock.add("faces", time.perf_counter() - t0, 1)
        plans = [p for p in plans if p is not clean_plan]
    # Cells whose steps are the same give the same frames (the clean cell and the adversarial cells, which attack
    # the clean crops when they are scored): one of them is decoded and searched, the others share its faces.
    twins: dict[str, list[str]] = {}
    first: dict[tuple, str] = {}
    for plan in plans:
        twins.setdefault(first.setdefault(plan.steps, plan.cell_id), []).append(plan.cell_id)
    plans = [p for p in plans if p.cell_id in twins]
    for event in _timed(sample_frames(path, plans, indices, workdir, media, work_limit, fps), clock):
        if isinstance(event, CellFailure):
            failures.update({cell: f"{event.status}: {event.message}" for rep in event.cell_ids
                             for cell in twins.get(rep, [rep])})
            continue
        t0 = time.perf_counter()
        for cell_id in twins[event.cell_id]:
            if known is not None:
                faces = known.get((cell_id, event.index), [])
            elif cell_id != event.cell_id:
                faces = every[(event.cell_id, event.index)]
            elif geometries is None:
                faces = finder.find(event.image)
            else:
                found, size = clean.get(event.index, ([], (0, 0)))
                shape = (event.image.shape[1], event.image.shape[0])
                faces = map_faces(found, geometries[cell_id], size, shape) if found else []
            take(cell_id, event.index, event.image, faces)
        clock.add("cached_faces" if known is not None else "faces", time.perf_counter() - t0, 1)
    return result()


def _timed(events: Iterator, clock: StageClock) -> Iterator:
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
