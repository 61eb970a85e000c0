"""faces=clean: faces found once in the clean frames and carried into every cell by the operations' geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dfbench.gather as gather
import dfbench.pipeline as pipeline
from dfbench.api import run
from dfbench.config import Cell, RunConfig
from dfbench.faces import CropSpec, Face, make_finder
from dfbench.faces.mapping import map_faces
from dfbench.gather import find_and_cut
from dfbench.perturbations import OPERATIONS
from dfbench.perturbations.geometry import Downscale, HorizontalFlip, Stretch, VerticalFlip
from dfbench.timing import StageClock
from dfbench.video.engine import CellPlan
from dfbench.video.probe import sample_indices

FACE = Face(100.0, 50.0, 180.0, 150.0, 0.99)


def _box(face: Face) -> tuple[float, ...]:
    return face.x1, face.y1, face.x2, face.y2


def _iou(a: Face, b: Face) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    return inter / (a.area + b.area - inter)


def test_boxes_follow_flips_and_resizes_in_order():
    size = (640, 360)
    assert _box(map_faces([FACE], [HorizontalFlip()], size, size)[0]) == (460.0, 50.0, 540.0, 150.0)
    assert _box(map_faces([FACE], [VerticalFlip()], size, size)[0]) == (100.0, 210.0, 180.0, 310.0)
    # flip at full size, then halve: the flip uses the 640 px width, the halving scales by 0.5
    both = map_faces([FACE], [HorizontalFlip(), Downscale(2.0)], size, (320, 180))[0]
    assert _box(both) == (230.0, 25.0, 270.0, 75.0)
    wide = map_faces([FACE], [Stretch(1.5)], size, (960, 360))[0]
    assert _box(wide) == (150.0, 50.0, 270.0, 150.0)


def test_a_frame_of_another_size_than_declared_scales_the_box():
    # a platform profile that caps the long side declares no geometry; the frame came back at half size
    mapped = map_faces([FACE], [OPERATIONS.get("none").geometry(0)], (640, 360), (320, 180))[0]
    assert _box(mapped) == (50.0, 25.0, 90.0, 75.0) and mapped.confidence == FACE.confidence


class CountingFinder:
    """The real finder, counting calls and keeping what it found per call."""

    name = "mtcnn"

    def __init__(self) -> None:
        self.inner = make_finder("mtcnn")
        self.calls = 0

    def find(self, frame: np.ndarray) -> list[Face]:
        self.calls += 1
        return self.inner.find(frame)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


def _collect(path: Path, cells: list[Cell], mode: str, finder, indices: list[int]):
    plans = [CellPlan(c.id, c.steps(0, "s")) for c in cells]
    geometries = None
    if mode == "clean":
        geometries = {c.id: [OPERATIONS.get(op).geometry(level) for op, level in c.parts] for c in cells}
    found = find_and_cut("s", finder, CropSpec(size=64), plans, path, indices, None, StageClock(), "video", None, 20.0,
                         geometries)
    return list(found.crops), found.owners, found.seen, found.failures


def test_clean_mode_finds_faces_once_per_frame_and_lands_on_the_redetected_faces(small_demo: Path):
    path = small_demo / "real" / "clip_003.mp4"
    indices = sample_indices(40, 4)
    cells = [Cell("none", 0), Cell("hflip", 1), Cell("vflip", 1), Cell("downscale", 2), Cell("h264_crf", 40),
             Cell("resize", 0.5)]
    clean_finder, redetect_finder = CountingFinder(), CountingFinder()
    clean = _collect(path, cells, "clean", clean_finder, indices)
    redetect = _collect(path, cells, "redetect", redetect_finder, indices)
    assert clean_finder.calls == len(indices)                       # the clean frames only
    assert redetect_finder.calls == len(indices) * len(cells)       # every frame of every cell
    assert clean[3] == redetect[3] == {}                            # no cell failed
    assert set(clean[2]) == set(redetect[2]) and all(n == 1 for n in clean[2].values())
    crops_clean = dict(zip(clean[1], clean[0], strict=True))
    crops_redetect = dict(zip(redetect[1], redetect[0], strict=True))
    for index in indices:                                           # the clean cell is scored identically
        np.testing.assert_array_equal(crops_clean[("none-0", index)], crops_redetect[("none-0", index)])
    # a flipped cell's mapped crop, flipped back, is the clean crop up to chroma siting (4:2:0) and rounding:
    # at least as close to it as the crop around the face found again in the flipped frame
    for index in indices:
        base = crops_clean[("none-0", index)].astype(float)
        for cell, undo in (("hflip-1", np.fliplr), ("vflip-1", np.flipud)):
            mapped = np.abs(undo(crops_clean[(cell, index)]).astype(float) - base).mean()
            found = np.abs(undo(crops_redetect[(cell, index)]).astype(float) - base).mean()
            assert mapped < 10 and mapped <= found + 1, (cell, index, mapped, found)


def test_mapped_boxes_overlap_the_boxes_found_in_the_perturbed_frames(small_demo: Path, monkeypatch):
    path = small_demo / "fake" / "clip_003.mp4"
    indices = sample_indices(40, 3)
    cells = [Cell("none", 0), Cell("hflip", 1), Cell("downscale", 2), Cell("stretch", 4 / 3)]
    mapped: list[Face] = []
    monkeypatch.setattr(gather, "crop_face", lambda image, face, spec: mapped.append(face) or np.zeros((1,)))
    clean = _collect(path, cells, "clean", make_finder("mtcnn"), indices)
    mapped_by_owner = dict(zip(clean[1], mapped, strict=True))
    mapped.clear()
    redetect = _collect(path, cells, "redetect", make_finder("mtcnn"), indices)
    found = dict(zip(redetect[1], mapped, strict=True))
    assert set(found) == set(mapped_by_owner) and len(found) == len(cells) * len(indices)
    ious = [_iou(mapped_by_owner[k], found[k]) for k in found]
    assert min(ious) > 0.75, ious


def test_faces_clean_from_the_run_api_changes_the_run_id_and_keeps_the_clean_cell(small_demo: Path, tmp_path: Path):
    suite = tmp_path / "clean-test.yaml"
    suite.write_text("name: clean-test\nversion: 1\ncells: [none, hflip, {op: downscale, level: 2}, "
                     "{op: h264_crf, level: 40}]\n")

    def config(out: str, faces: str | None) -> RunConfig:
        return RunConfig(detector="effb2", suite=str(suite), dataset=str(small_demo / "manifest.csv"),
                         weights="random", frames=2, out=tmp_path / out, device="cpu", precision="fp32", faces=faces)

    redetect = run(config("r", None))
    clean = run(config("c", "clean"))
    assert clean.run_id != redetect.run_id
    a, b = redetect.results.frames, clean.results.frames
    assert len(a) == len(b) == 4 * 2 * 2
    key = ["sample_id", "cell", "frame"]
    merged = a.merge(b, on=key, suffixes=("_r", "_c"))
    clean_cell = merged[merged["cell"] == "none-0"]
    pd.testing.assert_series_equal(clean_cell["score_r"], clean_cell["score_c"], check_names=False)
    assert (b["status"] == "ok").all()


def test_an_unknown_face_mode_is_one_clear_error(tmp_path: Path):
    from dfbench.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed: 'redetect', 'clean'"):
        pipeline.prepare(RunConfig(detector="effb2", weights="random", faces="sometimes", out=tmp_path))
