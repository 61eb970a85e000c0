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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dfbench.config import Cell, SuiteConfig, load_suite
from dfbench.errors import MediaError
from dfbench.faces import CropSpec, Face, FaceFinder, Owner, SampleCrops, WholeFrameFinder, crop_face, select_faces
from dfbench.faces.cache import FaceCache
from dfbench.faces.crop import no_crops
from dfbench.faces.device import DeviceFinder, is_device_finder
from dfbench.faces.finder import choose_finder, make_finder
from dfbench.faces.mapping import map_faces
from dfbench.perturbations import OPERATIONS
from dfbench.perturbations.geometry import Geometry
from dfbench.timing import StageClock
from dfbench.video.engine import CellFailure, CellPlan, SampledFrame, sample_frames
from dfbench.video.probe import media_of, probe_video, sample_indices

__all__ = ["CLEAN_PASS", "Decoded", "Gatherer", "choose_finder", "clean_suite", "cut_on_device", "decode_frames",
           "find_and_cut", "make_finder"]

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

    @property
    def on_device(self) -> bool:
        """Whether faces are found and cut on a torch device: then workers only `decode`, and the process that
        owns the device `cut`s (`gather` does both, in one process)."""
        return is_device_finder(self.finder)

    def gather(self, sample_id: str, path: Path, cells: list[Cell], workdir: Path | None,
               host: bool = True) -> tuple[SampleCrops, StageClock]:
        """Probe, decode, perturb, find and cut; the faces come from the face cache when it has them, and go to it
        after (callers that can use kept crops try `kept` first). The crops are a numpy array, or with `host`
        False, a tensor on the device where a device finder cut them."""
        if self.on_device:
            decoded, clock = self.decode(sample_id, path, cells, workdir)
            gathered = self.cut(decoded, path, clock)
            return (gathered._replace(crops=_host(gathered.crops)) if host else gathered), clock
        clock = StageClock()
        ids = [c.id for c in cells]
        known = self.cache.faces(sample_id, path, ids) if self.cache else None
        gathered = self._cut(sample_id, path, cells, workdir, clock, known)
        self._keep(path, gathered, len(cells))
        return gathered, clock

    def decode(self, sample_id: str, path: Path, cells: list[Cell],
               workdir: Path | None) -> tuple[Decoded, StageClock]:
        """Probe, decode and perturb only (a worker's part when the finder runs on the device); the faces the
        face cache has travel with the frames."""
        clock = StageClock()
        started = time.perf_counter()
        known = self.cache.faces(sample_id, path, [c.id for c in cells]) if self.cache else None
        plan = self._plan(sample_id, path, cells, known)
        if isinstance(plan, str):
            decoded = Decoded(sample_id, [CellPlan(c.id, ()) for c in cells], [], [], [], {}, None, known,
                              unreadable=plan)
        else:
            plans, indices, media, fps, geometries = plan
            decoded = decode_frames(sample_id, self.spec, plans, path, indices, workdir, clock, media,
                                    self.work_limit, fps, geometries, known)
        return decoded._replace(seconds=time.perf_counter() - started), clock

    def cut(self, decoded: Decoded, path: Path, clock: StageClock) -> SampleCrops:
        """Find and cut a decoded sample on the finder's device (crops left there, as a uint8 tensor), and keep
        its faces (and crops) in the face cache."""
        started = time.perf_counter()
        ids = tuple(p.cell_id for p in decoded.plans)
        if decoded.unreadable is not None:
            return SampleCrops(decoded.sample_id, ids, [], no_crops(self.spec), [], {}, {},
                               unreadable=decoded.unreadable)
        gathered = cut_on_device(decoded, self.finder, self.spec, clock)   # type: ignore[arg-type]
        gathered = gathered._replace(seconds=decoded.seconds + time.perf_counter() - started)
        self._keep(path, gathered, len(ids))
        return gathered

    def _keep(self, path: Path, gathered: SampleCrops, n_cells: int) -> None:
        if self.cache and gathered.unreadable is None and not gathered.failures and n_cells == len(self.suite.cells):
            self.cache.save(path, gathered._replace(crops=_host(gathered.crops)) if self.cache.keep_crops
                            else gathered, self.spec)

    def gather_all(self, sample_id: str, path: Path, workdir: Path | None = None) -> SampleCrops:
        """Every cell of the suite for one sample, from kept crops where there are some."""
        cells = list(self.suite.cells)
        found = self.kept(sample_id, path, cells) or self.gather(sample_id, path, cells, workdir)
        return found[0]

    def _plan(self, sample_id: str, path: Path, cells: list[Cell], known: dict[Owner, list[Face]] | None,
              ) -> str | tuple[list[CellPlan], list[int], str, float, dict[str, list[Geometry]] | None]:
        """The cells' plans, sampled indices, media kind, frame rate and geometries (``faces: clean``), or why
        the file cannot be probed."""
        media = media_of(path)
        try:
            info = probe_video(path)   # (a still's pixel limit is checked where it is decoded, `read_image`)
        except MediaError as exc:
            return str(exc)
        indices = sample_indices(info.frame_count, self.suite.frames.per_video)
        plans = [CellPlan(c.id, c.steps(self.suite.seed, sample_id)) for c in cells]
        geometries = None
        if self.suite.faces == "clean" and known is None:
            geometries = {c.id: [OPERATIONS.get(op).geometry(level) for op, level in c.parts] for c in cells}
        return plans, indices, media, info.fps, geometries

    def _cut(self, sample_id: str, path: Path, cells: list[Cell], workdir: Path | None, clock: StageClock,
             known: dict[Owner, list[Face]] | None) -> SampleCrops:
        started = time.perf_counter()
        plan = self._plan(sample_id, path, cells, known)
        if isinstance(plan, str):
            return SampleCrops(sample_id, tuple(c.id for c in cells), [], no_crops(self.spec), [], {}, {},
                               unreadable=plan)
        plans, indices, media, fps, geometries = plan
        found = find_and_cut(sample_id, self.finder, self.spec, plans, path, indices, workdir, clock, media,
                             self.work_limit, fps, geometries, known)
        return found._replace(seconds=time.perf_counter() - started)


def _host(crops: Any) -> np.ndarray:
    """Crops as a numpy array (a device tensor is copied back)."""
    return crops if isinstance(crops, np.ndarray) else crops.cpu().numpy()


def find_and_cut(sample_id: str, finder: FaceFinder, spec: CropSpec, plans: list[CellPlan], path: Path,
                 indices: list[int], workdir: Path | None, clock: StageClock, media: str = "video",
                 work_limit: int | None = None, fps: float = 25.0, geometries: dict[str, list[Geometry]] | None = None,
                 known: dict[Owner, list[Face]] | None = None) -> SampleCrops:
    """Decode and fan out, find faces in each sampled frame as it arrives, cut the crops (all on the CPU, in this
    process: the streaming path of the CPU finders).

    Args:
        geometries: None finds faces in every perturbed frame (``redetect``). Otherwise (``clean``) faces are
            found once, in the clean frames (a first, decode-only pass; the clean cell is scored from it), and
            carried into each cell's frames through the cell's geometries (cell id -> operations' geometries).
        known: the faces of each (cell, frame), from the face cache: nothing is found or mapped.
        work_limit: most bytes of intermediate files (compression encodes) at a time.
    """
    cuts = _Cuts(sample_id, spec, plans, indices, geometries, known)
    for stage, event in _frames(cuts, path, indices, workdir, clock, media, work_limit, fps):
        t0 = time.perf_counter()
        if stage == "clean":
            cuts.clean_frame(event, finder.find(event.image), event.image)
            clock.add("faces", time.perf_counter() - t0, 1)
            continue
        found = finder.find(event.image) if known is None and geometries is None else []
        cuts.cell_frame(event, found, event.image)
        clock.add("cached_faces" if known is not None else "faces", time.perf_counter() - t0, 1)
    return cuts.result(lambda: np.stack(cuts.crops) if cuts.crops else no_crops(spec))


class Decoded(NamedTuple):
    """A sample's sampled frames, decoded and perturbed by a worker for the process that owns the device.

    Attributes:
        clean: the decode-only pass of ``faces: clean`` (faces are found there and mapped), else empty.
        frames: every decoded (cell, frame) of the cells that are decoded (one of each set of identical cells).
        failures: cells ffmpeg failed on -> message.
    """

    sample_id: str
    plans: list[CellPlan]
    indices: list[int]
    clean: list[SampledFrame]
    frames: list[SampledFrame]
    failures: dict[str, str]
    geometries: dict[str, list[Geometry]] | None
    known: dict[Owner, list[Face]] | None
    seconds: float = 0.0
    unreadable: str | None = None


def decode_frames(sample_id: str, spec: CropSpec, plans: list[CellPlan], path: Path, indices: list[int],
                  workdir: Path | None, clock: StageClock, media: str = "video", work_limit: int | None = None,
                  fps: float = 25.0, geometries: dict[str, list[Geometry]] | None = None,
                  known: dict[Owner, list[Face]] | None = None) -> Decoded:
    """Decode and fan out only (what a worker does when the finder runs on the device): the frames that
    `cut_on_device` finds faces in and cuts."""
    cuts = _Cuts(sample_id, spec, plans, indices, geometries, known)
    clean: list[SampledFrame] = []
    frames: list[SampledFrame] = []
    for stage, event in _frames(cuts, path, indices, workdir, clock, media, work_limit, fps):
        (clean if stage == "clean" else frames).append(event)
    return Decoded(sample_id, plans, indices, clean, frames, cuts.failures, geometries, known)


def cut_on_device(decoded: Decoded, finder: DeviceFinder, spec: CropSpec, clock: StageClock) -> SampleCrops:
    """Find faces in a decoded sample's frames and cut them on the finder's device, in batches: the frames go to
    the device once, as uint8; the crops stay there (a uint8 tensor, N x size x size x 3)."""
    from dfbench.faces.device import DeviceFrames

    t0 = time.perf_counter()
    cuts = _Cuts(decoded.sample_id, spec, decoded.plans, decoded.indices, decoded.geometries, decoded.known)
    cuts.failures.update(decoded.failures)
    on_device = DeviceFrames([e.image for e in decoded.clean + decoded.frames], finder.where())
    handles = iter(range(len(decoded.clean) + len(decoded.frames)))
    clean_handles = [next(handles) for _ in decoded.clean]
    frame_handles = [next(handles) for _ in decoded.frames]
    redetect = decoded.known is None and decoded.geometries is None
    search = clean_handles if decoded.geometries is not None and decoded.known is None else \
        frame_handles if redetect else []
    found = dict(zip(search, on_device.find(finder, search), strict=True))
    for event, handle in zip(decoded.clean, clean_handles, strict=True):
        cuts.clean_frame(event, found[handle], handle)
    for event, handle in zip(decoded.frames, frame_handles, strict=True):
        cuts.cell_frame(event, found.get(handle, []), handle)
    result = cuts.result(lambda: on_device.crop(cuts.pending, spec))
    clock.add("cached_faces" if decoded.known is not None else "faces", time.perf_counter() - t0,
              len(decoded.clean) + len(decoded.frames))
    return result


class _Cuts:
    """What cutting collects for one sample, from frames that arrive one at a time: which faces each (cell,
    frame) has (found, shared with an identical cell, mapped from the clean frame, or known), and the crops."""

    def __init__(self, sample_id: str, spec: CropSpec, plans: list[CellPlan], indices: list[int],
                 geometries: dict[str, list[Geometry]] | None, known: dict[Owner, list[Face]] | None) -> None:
        self.sample_id, self.spec, self.indices = sample_id, spec, indices
        self.ids = tuple(p.cell_id for p in plans)
        self.geometries, self.known = geometries, known
        self.crops: list[np.ndarray] = []
        self.pending: list[tuple[object, Face]] = []       # (frame handle, face) of crops cut at the end
        self.owners: list[Owner] = []
        self.seen: dict[Owner, int] = {}
        self.failures: dict[str, str] = {}
        self.every: dict[Owner, list[Face]] = {}
        self.clean: dict[int, tuple[list[Face], tuple[int, int]]] = {}
        self.clean_plan: CellPlan | None = None
        if geometries is not None and known is None:
            self.clean_plan = next((p for p in plans if not p.steps), CellPlan(CLEAN_PASS, ()))
            plans = [p for p in plans if p is not self.clean_plan]
        self.clean_scored = self.clean_plan is not None and self.clean_plan.cell_id in self.ids
        # Cells whose steps are the same give the same frames (the clean cell and the adversarial cells, which
        # attack the clean crops when they are scored): one of them is decoded and searched, the others share its
        # faces.
        self.twins: dict[str, list[str]] = {}
        first: dict[tuple, str] = {}
        for plan in plans:
            self.twins.setdefault(first.setdefault(plan.steps, plan.cell_id), []).append(plan.cell_id)
        self.decoded = [p for p in plans if p.cell_id in self.twins]

    def take(self, cell_id: str, index: int, frame: object, faces: list[Face]) -> None:
        """Record a (cell, frame)'s faces and cut the chosen ones: now from an image, or later from a handle."""
        self.every[(cell_id, index)] = faces
        chosen = select_faces(faces, self.spec)
        self.seen[(cell_id, index)] = len(chosen)
        for face in chosen:
            if isinstance(frame, np.ndarray):
                self.crops.append(crop_face(frame, face, self.spec))
            else:
                self.pending.append((frame, face))
            self.owners.append((cell_id, index))

    def clean_frame(self, event: SampledFrame, faces: list[Face], frame: object) -> None:
        self.clean[event.index] = faces, (event.image.shape[1], event.image.shape[0])
        if self.clean_scored:
            self.take(event.cell_id, event.index, frame, faces)

    def cell_frame(self, event: SampledFrame, found: list[Face], frame: object) -> None:
        """A decoded cell's frame: its faces (`found` where the finder searched it) go to it and its twins."""
        for cell_id in self.twins[event.cell_id]:
            if self.known is not None:
                faces = self.known.get((cell_id, event.index), [])
            elif cell_id != event.cell_id:
                faces = self.every[(event.cell_id, event.index)]
            elif self.geometries is None:
                faces = found
            else:
                clean, size = self.clean.get(event.index, ([], (0, 0)))
                shape = (event.image.shape[1], event.image.shape[0])
                faces = map_faces(clean, self.geometries[cell_id], size, shape) if clean else []
            self.take(cell_id, event.index, frame, faces)

    def fail(self, event: CellFailure) -> None:
        self.failures.update({cell: f"{event.status}: {event.message}" for rep in event.cell_ids
                              for cell in self.twins.get(rep, [rep])})

    def result(self, crops: Callable[[], Any]) -> SampleCrops:
        return SampleCrops(self.sample_id, self.ids, self.indices, crops(), self.owners, self.seen, self.failures,
                           self.every)


def _frames(cuts: _Cuts, path: Path, indices: list[int], workdir: Path | None, clock: StageClock, media: str,
            work_limit: int | None, fps: float) -> Iterator[tuple[str, SampledFrame]]:
    """The sample's frames as ffmpeg gives them: first the clean pass of ``faces: clean`` (stage ``clean``; a
    failure there fails every cell and ends the sample), then every decoded cell (``cell``); failures are
    recorded in `cuts`."""
    if cuts.clean_plan is not None:
        for event in _timed(sample_frames(path, [cuts.clean_plan], indices, workdir, media, work_limit, fps), clock):
            if isinstance(event, CellFailure):
                cuts.failures.update({cell: f"{event.status}: {event.message}" for cell in cuts.ids})
                return
            yield "clean", event
    for event in _timed(sample_frames(path, cuts.decoded, indices, workdir, media, work_limit, fps), clock):
        if isinstance(event, CellFailure):
            cuts.fail(event)
            continue
        yield "cell", event


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
